"""Ensemble property prediction (confgf_fast/evaluation/properties.py, `confgf-fast evaluate --properties`)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.xtb import BOHR, HARTREE_EV, homo_lumo_gap
from confgf_fast.cli import EXIT_FATAL, EXIT_OK, main
from confgf_fast.evaluation.properties import (
    EnsembleProperties,
    PropertyResult,
    compare_ensembles,
    ensemble_statistics,
    leave_one_out_shift,
    outlier_masks,
    tblite_problem,
)

# ---- statistics on hand-made numbers (no xTB) ---------------------------------------------------


def test_ensemble_statistics_exact_and_nan_skipped():
    s = ensemble_statistics(np.array([-3.0, -1.0, -2.0, np.nan]), np.array([4.0, 2.0, np.nan, 6.0]))
    assert s == {"e_mean": -2.0, "e_min": -3.0, "gap_mean": 4.0, "gap_min": 2.0, "gap_max": 6.0}
    empty = ensemble_statistics(np.array([np.nan]), np.array([np.nan]))
    assert all(math.isnan(v) for v in empty.values())


def test_leave_one_out_shift():
    v = np.array([5.0, 1.0, 1.5, 3.0])
    # only the unique minimum moves the min, by the distance to the second smallest
    assert leave_one_out_shift(v, "min").tolist() == [0.0, 0.5, 0.0, 0.0]
    assert leave_one_out_shift(v, "max").tolist() == [2.0, 0.0, 0.0, 0.0]
    # mean: |v_c - mean(others)| / C equals |mean(all) - mean(others)|
    brute = [abs(v.mean() - np.delete(v, i).mean()) for i in range(v.size)]
    assert np.allclose(leave_one_out_shift(v, "mean"), brute, rtol=0, atol=1e-15)
    # a tied minimum: removing either copy leaves the minimum where it was
    assert leave_one_out_shift(np.array([1.0, 1.0, 2.0]), "min").tolist() == [0.0, 0.0, 0.0]
    # fewer than two finite values: nothing can be left out
    assert leave_one_out_shift(np.array([1.0, np.nan]), "min").tolist() == [0.0, 0.0]


def test_outliers_on_a_constructed_ensemble():
    # conformer 0 alone sets E_min 0.5 eV below the rest; conformer 2 alone sets the largest gap
    # 0.45 eV above the rest; conformer 1 sits 0.05 eV from its neighbour (within the margin).
    energy = np.array([-10.0, -9.5, -9.45, -9.4])
    gap = np.array([3.0, 3.05, 3.5, 3.0])
    m = outlier_masks(energy, gap, margin=0.1)
    assert m["e_min"].tolist() == [True, False, False, False]
    assert m["gap_max"].tolist() == [False, False, True, False]
    ref = EnsembleProperties(np.array([-9.6, -9.5]), np.array([3.05, 3.0]))
    row = compare_ensembles("X", ref, EnsembleProperties(energy, gap), margin=0.1)
    assert row.status == "ok"
    assert row.outliers_gen == {"e_min": 1, "gap_max": 1, "any": 2}
    assert row.outliers_ref == {"e_min": 0, "gap_max": 0, "any": 0}
    assert row.abs_err["e_min"] == pytest.approx(0.4, abs=1e-12)
    assert row.abs_err["gap_max"] == pytest.approx(0.45, abs=1e-12)
    # without the two outliers: E_min -9.5 (error 0.1), gap_max 3.05 (error 0)
    assert row.abs_err_no_outliers["e_min"] == pytest.approx(0.1, abs=1e-12)
    assert row.abs_err_no_outliers["gap_max"] == pytest.approx(0.0, abs=1e-12)
    # a wider margin (0.5 eV) counts nothing: the leverages are 0.5 and 0.45, not above it
    row = compare_ensembles("X", ref, EnsembleProperties(energy, gap), margin=0.5)
    assert row.outliers_gen["any"] == 0


def test_summary_mae_median_and_signed_exact():
    ref = EnsembleProperties(np.array([0.0, 1.0]), np.array([2.0, 4.0]))
    gens = [EnsembleProperties(np.array([0.5, 1.5]), np.array([2.0, 4.0])),   # all energies +0.5
            EnsembleProperties(np.array([-1.0, 1.0]), np.array([1.0, 5.0]))]  # wider spread
    rows = [compare_ensembles(k, ref, g) for k, g in zip("AB", gens)]
    rows.append(compare_ensembles("C", ref, None))
    s = PropertyResult(rows, margin=0.1).summary()
    assert s["n_mols"] == 2 and s["n_missing"] == 1 and s["units"] == "eV"
    # A: e_mean +0.5, e_min +0.5, gaps 0. B: e_mean -0.5, e_min -1, gap_mean 0, gap_min -1, gap_max +1
    assert s["mae"] == {"e_mean": 0.5, "e_min": 0.75, "gap_mean": 0.0, "gap_min": 0.5, "gap_max": 0.5}
    assert s["median_ae"] == s["mae"]  # the median of two values is their mean
    assert s["mean_signed"] == {"e_mean": 0.0, "e_min": -0.25, "gap_mean": 0.0, "gap_min": -0.5,
                                "gap_max": 0.5}


def test_homo_lumo_gap_counts_electrons():
    e = np.array([-0.5, -0.3, 0.1, -0.2, 0.4])  # unsorted on purpose
    assert homo_lumo_gap(e, np.array([2, 2, 0, 2, 0])) == pytest.approx(0.3)  # 6 e: HOMO -0.2, LUMO 0.1
    assert homo_lumo_gap(e, np.array([2, 2, 0, 1, 0])) == pytest.approx(0.3)  # 5 e: SOMO -0.2
    assert homo_lumo_gap(e, np.array([2, 1.9, 0.1, 2, 0])) == pytest.approx(0.3)  # smeared, still 6 e
    assert math.isnan(homo_lumo_gap(e, np.full(5, 2.0)))  # no virtual orbital


# ---- GFN2-xTB (tblite) ---------------------------------------------------------------------------


def _embedded(smiles: str, n: int, seed: int) -> Chem.Mol:
    m = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMultipleConfs(m, n, randomSeed=seed)
    AllChem.MMFFOptimizeMoleculeConfs(m)
    return m


def test_singlepoint_matches_an_independent_tblite_call():
    pytest.importorskip("tblite")
    from tblite.interface import Calculator

    from confgf_fast.chem.xtb import xtb_singlepoints

    m = _embedded("CC(=O)N", 2, seed=7)
    z = np.array([a.GetAtomicNum() for a in m.GetAtoms()])
    pos = np.stack([c.GetPositions() for c in m.GetConformers()])
    ours = xtb_singlepoints(z, pos)
    for x, sp in zip(pos, ours):
        calc = Calculator("GFN2-xTB", z.astype(np.int32), x / BOHR)
        calc.set("verbosity", 0)
        res = calc.singlepoint()
        occ, orb = res.get("orbital-occupations"), res.get("orbital-energies")
        # independent gap: lowest orbital less than half filled minus highest more than half filled
        gap = orb[occ < 1.0].min() - orb[occ > 1.0].max()
        assert sp.energy == pytest.approx(res.get("energy"), abs=1e-9)
        assert sp.gap == pytest.approx(gap, abs=1e-9)
        assert 0.05 < sp.gap * HARTREE_EV < 20  # a closed-shell molecule: a gap of a few eV
    # the two conformers differ, so do their energies: one Calculator is updated, not reused stale
    assert ours[0].energy != ours[1].energy


def _write(path, mols_and_confs) -> None:
    w = Chem.SDWriter(str(path))
    for mol, smiles, conf_ids in mols_and_confs:
        for c in conf_ids:
            mol.SetProp("smiles", smiles)
            w.write(mol, confId=c)
    w.close()


@pytest.fixture
def two_molecule_sdfs(tmp_path):
    a, b = _embedded("CCO", 3, seed=1), _embedded("CC(=O)N", 3, seed=2)
    ref, gen = tmp_path / "ref.sdf", tmp_path / "gen.sdf"
    _write(ref, [(a, "CCO", [0, 1, 2]), (b, "CC(=O)N", [0, 1, 2])])
    _write(gen, [(a, "CCO", [1, 2]), (b, "CC(=O)N", [0])])  # generated = subsets of the references
    return a, b, ref, gen


def test_cli_properties_end_to_end(two_molecule_sdfs, tmp_path, capsys):
    pytest.importorskip("tblite")
    from confgf_fast.chem.xtb import xtb_singlepoints

    _, _, ref, gen = two_molecule_sdfs
    js = tmp_path / "out.json"
    assert main(["evaluate", str(gen), str(ref), "--properties", "--json", str(js), "-q"]) == EXIT_OK
    out = json.loads(js.read_text())
    assert "cov_r_mean" in out  # the COV/MAT figures are still there
    p = out["properties"]
    assert p["units"] == "eV" and p["n_mols"] == 2 and p["n_ref_confs"] == 6 and p["n_gen_confs"] == 3
    assert "ensemble properties" in capsys.readouterr().out
    rows = {r["key"]: r for r in p["per_molecule"]}
    # independent single points of the records as written (the SDF keeps 4 decimals)
    recs = [m for m in Chem.SDMolSupplier(str(ref), removeHs=False)]
    for smiles, gen_ids in (("CCO", [1, 2]), ("CC(=O)N", [0])):
        mine = [m for m in recs if m.GetProp("smiles") == smiles]
        key = Chem.MolToSmiles(Chem.MolFromSmiles(smiles))  # rows are keyed by canonical SMILES
        z = np.array([x.GetAtomicNum() for x in mine[0].GetAtoms()])
        sp = xtb_singlepoints(z, np.stack([m.GetConformer().GetPositions() for m in mine]))
        e = np.array([s.energy for s in sp]) * HARTREE_EV
        g = np.array([s.gap for s in sp]) * HARTREE_EV
        r = rows[key]
        assert r["ref"]["e_min"] == pytest.approx(e.min(), abs=1e-6)
        assert r["gen"]["e_mean"] == pytest.approx(e[gen_ids].mean(), abs=1e-6)
        assert r["gen"]["gap_max"] == pytest.approx(g[gen_ids].max(), abs=1e-6)
        # a subset can only raise E_min and lower the largest gap
        assert r["gen"]["e_min"] >= r["ref"]["e_min"] - 1e-9
        assert r["gen"]["gap_max"] <= r["ref"]["gap_max"] + 1e-9
    assert p["mae"]["e_min"] == pytest.approx(np.mean([r["abs_err"]["e_min"] for r in rows.values()]))
    # the references against themselves: every error is exactly zero
    assert main(["evaluate", str(ref), str(ref), "--properties", "--json", str(js), "-q"]) == EXIT_OK
    assert all(v == 0.0 for v in json.loads(js.read_text())["properties"]["mae"].values())
    # --max-confs: a seeded subset of at most 2 conformers per ensemble
    assert main(["evaluate", str(gen), str(ref), "--properties", "--max-confs", "2", "--json", str(js),
                 "-q"]) == EXIT_OK
    assert json.loads(js.read_text())["properties"]["n_ref_confs"] == 4


def test_cli_properties_mismatched_sets_one_line_error(two_molecule_sdfs, tmp_path, capsys):
    pytest.importorskip("tblite")
    a, b, ref, _ = two_molecule_sdfs
    # hydrogen-free generated records: xTB of them would be another molecule
    bad = tmp_path / "noh.sdf"
    w = Chem.SDWriter(str(bad))
    for c in a.GetConformers():
        h = Chem.RemoveHs(Chem.Mol(a, confId=c.GetId()))
        h.SetProp("smiles", "CCO")
        w.write(h)
    w.close()
    capsys.readouterr()
    assert main(["evaluate", str(bad), str(ref), "--properties", "-q"]) == EXIT_FATAL
    err = capsys.readouterr().err.strip()
    assert "implicit hydrogens" in err and "'CCO'" in err and len(err.splitlines()) == 1
    # a record claiming (by its smiles property) to be CCO while its atoms are the amide's
    wrong = tmp_path / "wrong.sdf"
    _write(wrong, [(b, "CCO", [0])])
    assert main(["evaluate", str(wrong), str(ref), "--properties", "-q"]) == EXIT_FATAL
    err = capsys.readouterr().err.strip()
    assert "do not match" in err and len(err.splitlines()) == 1


def test_cli_properties_without_tblite(two_molecule_sdfs, monkeypatch, capsys):
    _, _, ref, gen = two_molecule_sdfs
    monkeypatch.setitem(sys.modules, "tblite.interface", None)  # `import tblite.interface` raises
    assert tblite_problem() is not None
    assert main(["evaluate", str(gen), str(ref), "--properties", "-q"]) == EXIT_FATAL
    err = capsys.readouterr().err
    assert "pip install tblite" in err and len(err.strip().splitlines()) == 1
