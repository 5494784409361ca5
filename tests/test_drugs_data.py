"""The shared chunked builder (data/build.py) with its two sources: drug-like SMILES (data/drugs.py,
`confgf-fast build-drugs`) and QM9 (data/qm9.py). No molsets wheel and no qm9pack needed: the
sources are replaced by tiny in-test lists."""

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import canonical_smiles, stereo_smiles_from_3d
from confgf_fast.data import build as build_mod
from confgf_fast.data import drugs, qm9
from confgf_fast.data.build import heldout_keys
from confgf_fast.data.dataset import ConformerDataset

GEOM_SDF = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "geom_drugs_10.sdf"

SMILES = [
    "CS(=O)(=O)Nc1ccc(Cl)cc1",  # sulfonamide, aryl chloride
    "NC(=O)c1ccc(Br)cc1",  # aryl bromide
    "CC(O)c1ccccc1",  # one unassigned stereocentre
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",  # ibuprofen: in the exclusion csv below
    "OB(O)c1ccccc1",  # boron: MMFF94 has no parameters
    "C1CC",  # invalid SMILES
    "CCOC(=O)c1ccc(F)cc1",
]
SMALL = dict(confs=2, dedup_rmsd=0.5, chunk_size=3, mmff_iters=200, embed_timeout=10)


def _exclusion_csv(tmp_path, smiles=("CC(C)Cc1ccc(C(C)C(O)=O)cc1",)):
    path = tmp_path / "test_smiles.csv"
    path.write_text("smiles,n_conformers,corrected_smiles\n" + "".join(f"{s},1,{s}\n" for s in smiles))
    return path


def _build(tmp_path, smiles=SMILES, exclude=None, **kw):
    cfg = drugs.DrugsBuildConfig(**SMALL)
    exclude = [_exclusion_csv(tmp_path)] if exclude is None else exclude
    return drugs.build_drugs(tmp_path / "drugs.pt", exclude, workers=1, cfg=cfg, smiles=list(smiles),
                             progress=False, **kw)


def test_heldout_keys_reads_csv_and_sdf(tmp_path):
    csv_keys = heldout_keys(_exclusion_csv(tmp_path, ["C[C@H](N)C(=O)O", "not a smiles"]))
    assert csv_keys == {canonical_smiles("CC(N)C(=O)O")}  # stereo-free; the bad row is skipped
    sdf = tmp_path / "m.sdf"
    w = Chem.SDWriter(str(sdf))
    for smi in ["CCO", "c1ccsc1Cl"]:
        m = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(m, randomSeed=1)
        w.write(m)
    w.close()
    assert heldout_keys(sdf) == {canonical_smiles("CCO"), canonical_smiles("Clc1cccs1")}


@pytest.mark.skipif(not GEOM_SDF.is_file(), reason="../shared/fixtures/geom_drugs_10.sdf not present")
def test_heldout_keys_of_the_geom_fixture():
    # 503 conformer records of 10 molecules: every record's structure is a key, and so is its
    # `smiles` property where it parses (one record's geometry reads as a different structure,
    # one GEOM SMILES has stray characters; the structures cover it).
    keys = heldout_keys(GEOM_SDF)
    records = [r for r in Chem.SDMolSupplier(str(GEOM_SDF), removeHs=False) if r is not None]
    assert len(records) == 503
    assert {canonical_smiles(r) for r in records} <= keys
    assert 10 <= len(keys) <= 12


def test_build_drugs_exclusions_elements_stereo(tmp_path):
    stats, ds = _build(tmp_path)
    assert stats["total"] == len(SMILES)
    assert stats["excluded"] == 1 and stats["mmff_fail"] == 1 and stats["invalid"] == 1
    assert stats["kept"] == 4 == ds.num_molecules
    keys = {canonical_smiles(s) for s in ds.smiles}
    assert canonical_smiles("CC(C)Cc1ccc(cc1)C(C)C(=O)O") not in keys
    assert keys == {canonical_smiles(s) for s in (SMILES[0], SMILES[1], SMILES[2], SMILES[6])}
    # S, Cl, Br (and F) survive featurisation: they are in the graphs and the composition.
    z = set(ds.graphs.z.tolist())
    assert {16, 17, 35, 9} <= z
    comp = ds.meta["composition"]
    assert {"S", "Cl", "Br", "F"} <= set(comp["elements"])
    assert comp["elements"]["Br"] == {"atoms": 1, "molecules": 1}
    assert sum(comp["heavy_atoms"]["histogram"].values()) == 4
    assert comp["conformers_per_molecule"]["sum"] == ds.num_conformers == stats["conformers"]
    assert ds.meta["conformer_method"] == "etkdgv3+mmff94"
    assert ds.meta["build"]["confs"] == 2 and ds.meta["excluded_keys"] == 1
    # The unassigned stereocentre was fixed: the stored SMILES has it, every conformer agrees.
    saved = ConformerDataset.load(tmp_path / "drugs.pt")
    m = next(i for i, s in enumerate(saved.smiles) if canonical_smiles(s) == canonical_smiles("CC(O)c1ccccc1"))
    assert "@" in saved.smiles[m]
    mol = Chem.AddHs(Chem.MolFromSmiles(SMILES[2]))
    src = saved.meta["source_index"][m]
    assert SMILES[src] == SMILES[2]
    for xyz in saved.conformers(m):
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, p in enumerate(xyz.tolist()):
            conf.SetAtomPosition(i, p)
        mol.RemoveAllConformers()
        mol.AddConformer(conf)
        assert stereo_smiles_from_3d(mol) == canonical_smiles(saved.smiles[m], stereo=True)


def test_chunks_are_cached_and_resumed(tmp_path, monkeypatch):
    stats1, ds1 = _build(tmp_path)
    chunks = sorted((tmp_path / "drugs_chunks").glob("drugs_*.pt"))
    assert len(chunks) == 3  # 7 rows in chunks of 3
    calls = []
    real = build_mod.build_chunk

    def counting(job):
        calls.append(job.path.name)
        return real(job)

    monkeypatch.setattr(build_mod, "build_chunk", counting)
    stats2, ds2 = _build(tmp_path)  # everything cached: no chunk is built again
    assert calls == []
    assert {k: v for k, v in stats2.items() if k != "seconds"} == {k: v for k, v in stats1.items() if k != "seconds"}
    assert ds2.smiles == ds1.smiles and torch.equal(ds2.pos, ds1.pos)
    chunks[1].unlink()  # an interrupted build: only the missing chunk is built, with the same result
    _, ds3 = _build(tmp_path)
    assert calls == [chunks[1].name]
    assert ds3.smiles == ds1.smiles and torch.equal(ds3.pos, ds1.pos)
    # A prefix of chunks is a subset of the same molecules.
    _, ds_one = _build(tmp_path, num_chunks=1)
    assert set(ds_one.smiles) <= set(ds1.smiles) and calls == [chunks[1].name]


def test_exclusions_are_checked_again_when_merging(tmp_path):
    _, ds = _build(tmp_path, exclude=[])  # cached chunks made without the exclusion list
    assert canonical_smiles(SMILES[3]) in {canonical_smiles(s) for s in ds.smiles}
    stats, ds2 = _build(tmp_path)  # same chunks, now with the list
    assert stats["excluded_at_merge"] == 1
    assert canonical_smiles(SMILES[3]) not in {canonical_smiles(s) for s in ds2.smiles}
    assert len(ds2.meta["source_index"]) == ds2.num_molecules == ds.num_molecules - 1


def test_cli_build_drugs(tmp_path, monkeypatch, capsys):
    from confgf_fast.cli import main

    monkeypatch.setattr(drugs, "molsets_wheel", lambda *a, **k: tmp_path / "fake.whl")
    monkeypatch.setattr(drugs, "read_moses_smiles", lambda *a, **k: list(SMILES))
    out = tmp_path / "d.pt"
    rc = main(["build-drugs", "--out", str(out), "--chunks", "2", "--chunk-size", "3", "--workers", "1",
               "--confs", "2", "--exclude", str(_exclusion_csv(tmp_path)), "--quiet"])
    assert rc == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out.strip().splitlines()[-1])
    assert stats["total"] == 6
    assert "heavy atoms per molecule" in captured.err and "conformers per molecule" in captured.err
    ds = ConformerDataset.load(out)
    assert ds.meta["chunks"] == 2 and ds.meta["source"].startswith("MOSES")


def test_moses_smiles_are_read_from_the_wheel(tmp_path):
    wheel = tmp_path / "wheels" / "molsets-0.3.1-py3-none-any.whl"
    wheel.parent.mkdir()
    buf = io.BytesIO()
    with gzip.open(buf, "wt") as f:
        f.write("SMILES\nCCO\nc1ccccc1Cl\n")
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(drugs.MOSES_TRAIN, buf.getvalue())
    assert drugs.molsets_wheel(tmp_path, download=False) == wheel
    assert drugs.read_moses_smiles(cache_dir=tmp_path) == ["CCO", "c1ccccc1Cl"]
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="not a molsets wheel"):
        drugs.read_moses_smiles(bad)


def test_missing_wheel_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match=r"no molsets-0\.3\.1 wheel"):
        drugs.molsets_wheel(tmp_path, download=False)

    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement molsets==0.3.1"

    monkeypatch.setattr(drugs.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match=r"could not download the molsets 0\.3\.1 wheel"):
        drugs.molsets_wheel(tmp_path)


def _qm9_row(idx, smiles, seed):
    """A qm9pack-like row (index, smiles, elements, xyz json) with an MMFF geometry as 'DFT'."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    xyz = json.dumps(mol.GetConformer().GetPositions().tolist())
    return (idx, smiles, [a.GetSymbol() for a in mol.GetAtoms()], xyz)


def test_qm9_builds_through_the_shared_builder(tmp_path, monkeypatch):
    rows = [_qm9_row(1, "CCO", 1), _qm9_row(2, "CC(=O)N", 2), _qm9_row(3, "OCC#N", 3), _qm9_row(4, "CC#C", 4)]
    monkeypatch.setattr(qm9, "read_qm9_rows", lambda *a, **k: rows)
    heldout = _exclusion_csv(tmp_path, ["N#CCO"])
    cfg = qm9.QM9BuildConfig(extra_confs=2, chunk_size=2)
    out = tmp_path / "qm9.pt"
    stats = qm9.build_qm9(out, heldout, workers=1, cache_dir=tmp_path / "cache", cfg=cfg, progress=False)
    assert stats["total"] == 4 and stats["excluded"] == 1 and stats["kept"] == 3
    assert sorted((tmp_path / "cache").glob("qm9_v2_e2_r0.125_s2021_c2_*.pt"))  # the v2 chunk names
    ds = ConformerDataset.load(out)
    assert sorted(ds.meta["qm9_index"]) == [1, 2, 4]
    assert ds.meta["source"] == "qm9pack" and ds.meta["composition"]["molecules"] == 3
    for m, idx in enumerate(ds.meta["qm9_index"]):  # the first conformer is the given geometry
        xyz = np.array(json.loads(next(r for r in rows if r[0] == idx)[3]))
        assert np.allclose(ds.conformers(m)[0].numpy(), xyz, atol=1e-5)


def test_shared_dir_from_the_environment_or_beside_the_checkout(tmp_path, monkeypatch):
    """One place finds the held-out files: $CONFGF_FAST_SHARED first, else ../shared beside the git
    checkout; a named directory that does not exist gives none (the builders then refuse)."""
    from confgf_fast.data import exclusions

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qm9_heldout_smiles.csv").write_text("smiles\nCCO\n")
    monkeypatch.setenv(exclusions.SHARED_ENV, str(tmp_path))
    assert exclusions.shared_dir() == tmp_path
    assert exclusions.default_exclusion_files() == [tmp_path / "data" / "qm9_heldout_smiles.csv"]
    assert exclusions.default_qm9_heldout() == tmp_path / "data" / "qm9_heldout_smiles.csv"
    monkeypatch.setenv(exclusions.SHARED_ENV, str(tmp_path / "missing"))
    assert exclusions.shared_dir() is None and exclusions.default_exclusion_files() == []
    assert exclusions.default_qm9_heldout() is None
    monkeypatch.delenv(exclusions.SHARED_ENV)
    beside = exclusions.shared_dir()  # this checkout: ../shared, as CI lays it out
    assert beside is not None and (beside / "data" / "drugs_test_smiles.csv").is_file()
