"""GEOM rdkit_folder loader on a tiny fixture in that layout (tests/data/geom_rdkit_folder, made by
tests/data/make_geom_fixture.py)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from confgf_fast.chem.molecule import canonical_smiles
from confgf_fast.data.dataset import ConformerDataset
from confgf_fast.data.geom import build_geom_dataset, load_geom_rdkit_folder, load_geom_rdkit_folder_with_stats

ROOT = Path(__file__).resolve().parent / "data" / "geom_rdkit_folder"
LOADABLE = {"CCO": 3, "CC(N)=O": 2, "C[C@H](N)C(=O)O": 4}  # GEOM key -> conformers in the pickle


def pickle_confs(name: str) -> list[dict]:
    with open(ROOT / "qm9" / f"{name}.pickle", "rb") as f:
        return pickle.load(f)["conformers"]


def by_smiles(mols: list[Chem.Mol]) -> dict[str, Chem.Mol]:
    return {m.GetProp("smiles"): m for m in mols}


def test_fixture_is_small():
    assert sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()) < 100_000


def test_load_qm9_counts_and_skips():
    mols, stats = load_geom_rdkit_folder_with_stats(ROOT, "qm9")
    got = by_smiles(mols)
    assert {k: m.GetNumConformers() for k, m in got.items()} == LOADABLE
    assert stats.n_listed == 6 and stats.n_loaded == 3 and stats.n_conformers == 9
    assert stats.n_missing_pickle == 1  # CCC: pickle_path given, file absent
    assert stats.n_no_pickle_path == 1  # CC#N
    assert stats.n_mismatch == 1  # OCCO: one conformer lost its C-C bond
    for m in mols:
        assert any(a.GetAtomicNum() == 1 for a in m.GetAtoms())  # hydrogens kept
        assert [c.GetId() for c in m.GetConformers()] == list(range(m.GetNumConformers()))
        w = json.loads(m.GetProp("boltzmann_weights"))
        assert w == sorted(w, reverse=True)
        assert m.GetProp("geom_pickle").startswith("qm9/")


def test_conformers_are_the_pickled_ones_by_weight():
    eth = by_smiles(load_geom_rdkit_folder(ROOT, "qm9", max_confs_per_mol=2))["CCO"]
    confs = pickle_confs("ethanol")  # weights 0.2, 0.5, 0.3 -> order 1, 2
    assert eth.GetNumConformers() == 2
    assert json.loads(eth.GetProp("boltzmann_weights")) == [0.5, 0.3]
    for cid, src in enumerate((1, 2)):
        np.testing.assert_allclose(eth.GetConformer(cid).GetPositions(),
                                   confs[src]["rd_mol"].GetConformer().GetPositions())


def test_max_molecules_and_seed():
    first = [m.GetProp("smiles") for m in load_geom_rdkit_folder(ROOT, max_molecules=2, seed=None)]
    assert first == ["CCO", "CC(N)=O"]  # file order
    a = [m.GetProp("smiles") for m in load_geom_rdkit_folder(ROOT, max_molecules=2, seed=3)]
    b = [m.GetProp("smiles") for m in load_geom_rdkit_folder(ROOT, max_molecules=2, seed=3)]
    assert a == b and len(a) == 2 and set(a) <= set(LOADABLE)


def test_exclude_smiles_removes_molecule():
    # Stereo-free canonical keys: the chiral alanine goes with its flat key.
    exclude = {canonical_smiles("NC(=O)C"), canonical_smiles("CC(N)C(=O)O")}
    mols, stats = load_geom_rdkit_folder_with_stats(ROOT, exclude_smiles=exclude)
    assert set(by_smiles(mols)) == {"CCO"}
    assert stats.n_excluded == 2


def test_drop_bad_conformers_keeps_the_rest():
    mols, stats = load_geom_rdkit_folder_with_stats(ROOT, drop_bad_conformers=True)
    glycol = by_smiles(mols)["OCCO"]
    assert glycol.GetNumConformers() == 1 and stats.n_dropped_conformers == 1 and stats.n_mismatch == 0
    assert canonical_smiles(glycol) == "OCCO"


def test_unreadable_and_empty_pickles(tmp_path):
    root = tmp_path / "geom"
    shutil.copytree(ROOT, root)
    (root / "qm9" / "ethanol.pickle").write_bytes(b"not a pickle")
    with open(root / "qm9" / "acetamide.pickle", "wb") as f:
        pickle.dump({"smiles": "CC(N)=O", "conformers": []}, f, protocol=4)
    mols, stats = load_geom_rdkit_folder_with_stats(root)
    assert set(by_smiles(mols)) == {"C[C@H](N)C(=O)O"}
    assert stats.n_unreadable_pickle == 1 and stats.n_no_conformers == 1


def test_drugs_summary():
    mols = load_geom_rdkit_folder(ROOT, "drugs")
    assert [m.GetProp("smiles") for m in mols] == ["Oc1ccccc1"]
    assert mols[0].GetNumConformers() == 2 and mols[0].GetNumAtoms() == 13
    with pytest.raises(ValueError):
        load_geom_rdkit_folder(ROOT, "qm7")


def test_build_geom_dataset(tmp_path):
    out = tmp_path / "sub" / "geom_qm9.pt"
    ds = build_geom_dataset(ROOT, out, "qm9", max_confs_per_mol=3,
                            exclude_smiles={canonical_smiles("CC(N)=O")}, seed=None)
    loaded = ConformerDataset.load(out)
    assert loaded.num_molecules == 2 and loaded.num_conformers == 3 + 3
    assert loaded.meta["stats"]["n_excluded"] == 1 and loaded.meta["dataset"] == "qm9"
    assert [canonical_smiles(s) for s in loaded.smiles] == [canonical_smiles("CCO"), canonical_smiles("CC(N)C(=O)O")]
    # Ethanol's conformers in Boltzmann order, coordinates intact.
    confs = pickle_confs("ethanol")
    expected = torch.tensor(np.stack([confs[i]["rd_mol"].GetConformer().GetPositions() for i in (1, 2, 0)]),
                            dtype=torch.float32)
    torch.testing.assert_close(loaded.conformers(0), expected)
    assert ds.num_conformers == loaded.num_conformers
