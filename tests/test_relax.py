"""relax.py (MMFF / UFF / GFN2-xTB relaxation, energy window, RMSD pruning) and its wiring into
generate / generate_iter and `confgf-fast generate --relax`. Small molecules, few conformers."""

import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdForceFieldHelpers

from confgf_fast.chem.molecule import mol_from_smiles
from confgf_fast.chem.relax import (
    HARTREE_KCAL,
    RelaxError,
    RelaxOptions,
    check_conformers,
    prune_by_rms,
    relax_conformers,
    relax_flags,
    within_energy_window,
)
from confgf_fast.chem.xtb import available as tblite_available
from confgf_fast.config import Schedule, resolve_schedule

needs_tblite = pytest.mark.skipif(not tblite_available(), reason="tblite (GFN2-xTB) not installed")


def _embedded(smiles: str, n: int, seed: int = 7) -> Chem.Mol:
    m = mol_from_smiles(smiles)
    AllChem.EmbedMultipleConfs(m, n, randomSeed=seed)
    assert m.GetNumConformers() == n
    return m


def test_mmff_energies_are_the_force_fields_in_kcal_per_mol_and_input_is_untouched():
    m = _embedded("CC(=O)NCCO", 4)
    before = np.stack([c.GetPositions() for c in m.GetConformers()])
    res = relax_conformers(m, "mmff", threads=1)
    assert np.array_equal(before, np.stack([c.GetPositions() for c in m.GetConformers()]))
    assert res.mol.GetNumConformers() == 4 and res.source == [0, 1, 2, 3]
    assert res.methods == ["MMFF94"] * 4 and all(res.converged)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(res.mol)
    for k, c in enumerate(res.mol.GetConformers()):
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(res.mol, props, confId=c.GetId())
        assert ff.CalcEnergy() == pytest.approx(res.energies[k], abs=1e-3)
        assert np.abs(np.asarray(ff.CalcGrad())).max() < 0.05  # a minimum
    assert res.stereo_ok == [1] * 4 and res.defects == [[]] * 4
    assert min(res.relative_energies()) == 0.0
    assert relax_conformers(m, "mmff94s", threads=1).methods == ["MMFF94s"] * 4


def test_uff_fallback_where_mmff_has_no_parameters_is_recorded_and_warned():
    m = _embedded("C[Se]CC", 2)
    assert not rdForceFieldHelpers.MMFFHasAllMoleculeParams(m)
    res = relax_conformers(m, "mmff")
    assert res.methods == ["UFF", "UFF"]
    assert all(math.isfinite(e) for e in res.energies)
    assert any("UFF" in w for w in res.warnings)


def test_energy_window_prune_and_sort():
    m = _embedded("CCCCO", 12, seed=3)
    full = relax_conformers(m, "mmff")
    e = full.energies
    order = sorted(range(12), key=lambda k: e[k])
    srt = relax_conformers(m, "mmff", sort_energy=True)
    assert srt.source == order and srt.energies == sorted(e)
    # energy window 0: only the lowest (and exact ties) survive; counted
    win = relax_conformers(m, "mmff", energy_window=0.0)
    assert win.source == [k for k in range(12) if e[k] - min(e) <= 0.0]
    assert win.dropped["energy_window"] == 12 - len(win.source)
    assert within_energy_window([1.0, 3.5, 2.0, math.nan], 1.5) == [0, 2]
    # prune: a huge threshold keeps only the lowest; zero keeps every distinct geometry
    one = relax_conformers(m, "mmff", prune_rms=100.0)
    assert one.source == [order[0]] and one.dropped["prune_rms"] == 11
    # kept conformers are more than R apart, and every dropped one is within R of a lower kept one
    r = 0.3
    kept = prune_by_rms(full.mol, e, r)
    heavy = Chem.RemoveHs(full.mol)
    from rdkit.Chem import rdMolAlign

    def rms(i, j):
        return rdMolAlign.GetBestRMS(Chem.Mol(heavy), heavy, prbId=i, refId=j)

    for a in kept:
        assert all(rms(a, b) > r for b in kept if b != a)
    for k in set(range(12)) - set(kept):
        assert any(rms(k, j) <= r and e[j] <= e[k] for j in kept)
    assert kept == sorted(kept, key=lambda k: e[k])


def test_stereo_is_checked_again_on_the_relaxed_geometry():
    m = _embedded("C[C@H](O)CC", 2)
    conf = m.GetConformer(1)
    for i in range(m.GetNumAtoms()):  # conformer 1 -> its mirror image: the centre inverted
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (-p.x, p.y, p.z))
    assert check_conformers(m)[0] == [1, 0]
    res = relax_conformers(m, "mmff")
    assert res.stereo_ok == [1, 0]


def test_relax_flags_keep_the_sampled_flags_and_add_energies():
    m = _embedded("CCO", 3)
    flags = [{"stereo_ok": 1, "quality": "broken", "quality_reasons": "vdw", "extra": k} for k in range(3)]
    res, new = relax_flags(m, flags, RelaxOptions("mmff", sort_energy=True))
    assert [f["extra"] for f in new] == res.source
    for f, e in zip(new, res.energies):
        assert f["quality"] == "ok" and "quality_reasons" not in f  # relaxed geometry is clean
        assert f["energy"] == round(e, 4) and f["energy_method"] == "MMFF94"
    assert new[0]["relative_energy"] == 0.0


def test_options_are_validated():
    with pytest.raises(RelaxError, match="unknown relax method"):
        RelaxOptions("amber")
    with pytest.raises(RelaxError, match="need energies"):
        RelaxOptions("none", energy_window=3.0)
    with pytest.raises(RelaxError, match=">= 0"):
        RelaxOptions("mmff", prune_rms=-1.0)


def test_xtb_without_tblite_is_a_clear_error(monkeypatch):
    import confgf_fast.chem.xtb as xtb

    monkeypatch.setattr(xtb, "available", lambda: False)
    with pytest.raises(RelaxError, match="pip install tblite"):
        RelaxOptions("xtb")


@needs_tblite
def test_xtb_relaxes_and_reports_kcal_per_mol():
    from tblite.interface import Calculator

    from confgf_fast.chem.xtb import BOHR

    m = _embedded("CO", 2)
    res = relax_conformers(m, "xtb", threads=1)
    assert res.methods == ["GFN2-xTB"] * 2 and res.source == [0, 1] and all(res.converged)
    z = np.array([a.GetAtomicNum() for a in m.GetAtoms()])
    calc = Calculator("GFN2-xTB", z, res.mol.GetConformer(0).GetPositions() / BOHR)
    calc.set("verbosity", 0)
    assert res.energies[0] == pytest.approx(calc.singlepoint().get("energy") * HARTREE_KCAL, abs=0.01)
    assert -8.3 < res.energies[0] / HARTREE_KCAL < -8.1  # methanol: GFN2-xTB total energy -8.2 hartree


@needs_tblite
def test_xtb_drops_and_counts_conformers_whose_bonds_change(monkeypatch):
    import confgf_fast.chem.xtb as xtb

    real = xtb.xtb_optimize
    calls = []

    def fake(z, pos, **kw):
        res = real(z, pos, **kw)
        calls.append(1)
        if len(calls) == 2:  # the second conformer: pull an H off its carbon
            res.pos = res.pos.copy()
            res.pos[2] = res.pos[0] + 3.0 * (res.pos[2] - res.pos[0])
        return res

    monkeypatch.setattr(xtb, "xtb_optimize", fake)
    m = _embedded("CO", 3)
    res = relax_conformers(m, RelaxOptions("xtb", threads=1))
    assert len(res.source) == 2 and res.dropped["bonds_changed"] == 1
    assert any("bonds changed" in w for w in res.warnings)


# ---- generate / generate_iter and the CLI --------------------------------------------------------
def _tiny_sampler() -> Schedule:
    return resolve_schedule("fast", overrides={"levels": 2, "steps_per_level": 2})


def test_generate_resamples_broken_conformers_and_counts_what_still_fails():
    """Two levels x two steps leave every conformer broken: each is resampled `retries` times and
    written flagged, with its reasons; with a relax the relaxed geometry is flagged instead."""
    from confgf_fast.pipeline.generate import generate

    torch.set_num_threads(1)
    res = generate(["CCO", "CC(=O)N"], 2, schedule=_tiny_sampler(), retries=1)
    flags = [f for fl in res.flags.values() for f in fl]
    assert len(flags) == 4 and not res.errors
    assert all(f["quality"] == "broken" and f["quality_reasons"] for f in flags)
    assert res.stats.broken_resampled == 4 and res.stats.broken_written == 4
    assert res.stats.sample_s > 0 and res.stats.relax_s == 0

    res = generate(["CCO", "CC(=O)N"], 2, schedule=_tiny_sampler(), retries=0, relax="mmff", sort_energy=True)
    assert res.stats.broken_resampled == 0 and res.stats.relaxed == 4 and res.stats.relax_s > 0
    for k, fl in res.flags.items():
        energies = [f["energy"] for f in fl]
        assert energies == sorted(energies) and all(f["energy_method"] == "MMFF94" for f in fl)
        assert len(fl) == res.mols[k].GetNumConformers()
    assert res.stats.broken_written == sum(f["quality"] != "ok" for fl in res.flags.values() for f in fl)


def test_cli_relax_options_write_energies_and_summarise(tmp_path, capsys):
    from confgf_fast.cli import EXIT_OK, main

    out = tmp_path / "out.sdf"
    rc = main(["generate", "CCCO", "-n", "4", "--out", str(out), "--schedule", "fast", "--levels", "2",
               "--steps-per-level", "2", "--threads", "1", "--relax", "mmff", "--energy-window", "50",
               "--prune-rms", "0.05", "--sort-energy", "-q"])
    assert rc == EXIT_OK
    recs = list(Chem.SDMolSupplier(str(out), removeHs=False))
    assert recs and all(r.GetProp("energy_method") == "MMFF94" for r in recs)
    energies = [float(r.GetProp("energy")) for r in recs]
    assert energies == sorted(energies) and float(recs[0].GetProp("relative_energy")) == 0.0
    assert all(int(r.GetProp("num_confs")) == len(recs) for r in recs)
    err = capsys.readouterr().err
    assert "relaxing (mmff)" in err and "sampling" in err and "dropped after relaxing" in err


def test_cli_relax_usage_errors(tmp_path, monkeypatch, capsys):
    import confgf_fast.chem.xtb as xtb
    from confgf_fast.cli import EXIT_USAGE, main

    out = str(tmp_path / "o.sdf")
    assert main(["generate", "CCO", "--out", out, "--energy-window", "3", "-q"]) == EXIT_USAGE
    assert "add --relax" in capsys.readouterr().err
    monkeypatch.setattr(xtb, "available", lambda: False)
    assert main(["generate", "CCO", "--out", out, "--relax", "xtb", "-q"]) == EXIT_USAGE
    assert "pip install tblite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "CCO", "--out", out, "--relax", "mmff", "--prune-rms", "-1"])


def test_mmff_leaves_the_input_graph_and_its_stereo_as_they_were():
    """MMFF has its own aromaticity model; the relaxed molecule must keep the input's graph (flags,
    bond types), so that stereo checks read the same molecule: GEOM-Drugs molecule 1, a
    pyrazolidinedione with an exocyclic C=C whose stereo only the 3D geometry gives."""
    from pathlib import Path

    sdf = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "geom_drugs_10.sdf"
    if not sdf.is_file():
        pytest.skip("../shared/fixtures/geom_drugs_10.sdf not present")
    ref = next(iter(Chem.SDMolSupplier(str(sdf), removeHs=False)))
    Chem.AssignStereochemistryFrom3D(ref)
    m = Chem.Mol(ref)
    m.RemoveAllConformers()
    AllChem.EmbedMultipleConfs(m, 3, randomSeed=3)
    assert check_conformers(m)[0] == [1, 1, 1]
    res = relax_conformers(m, "mmff")
    assert [a.GetIsAromatic() for a in res.mol.GetAtoms()] == [a.GetIsAromatic() for a in m.GetAtoms()]
    assert [b.GetBondType() for b in res.mol.GetBonds()] == [b.GetBondType() for b in m.GetBonds()]
    assert res.stereo_ok == [1, 1, 1]
    from confgf_fast.chem.molecule import stereo_matches

    target = Chem.MolToSmiles(Chem.RemoveHs(ref))
    assert list(stereo_matches(m, target)) == [True] * 3
    assert list(stereo_matches(res.mol, target)) == [True] * 3
