"""The v2 reference builder (data/reference_search.py) on two small dev-set molecules, real GFN2-xTB."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tblite")
from rdkit import Chem

from confgf_fast.chem.molecule import heavy_copy, stereo_smiles_from_3d
from confgf_fast.chem.xtb import topology_kept
from confgf_fast.data.reference_search import (
    SearchSettings,
    build_union,
    read_reference_groups,
    rotatable_torsions,
)

DEV = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "qm9_xtb_dev.sdf"
pytestmark = pytest.mark.skipif(not DEV.is_file(), reason="../shared/benchmarks/qm9_xtb_dev.sdf not present")


@pytest.fixture(scope="module")
def two_molecules(tmp_path_factory):
    groups = read_reference_groups(DEV)
    # the two molecules with the fewest atoms and references that still have a rotatable torsion
    keys = sorted((k for k in groups if rotatable_torsions(groups[k][0])),
                  key=lambda k: (groups[k][0].GetNumAtoms(), len(groups[k])))[:2]
    tmp = tmp_path_factory.mktemp("v2")
    small = tmp / "refs.sdf"
    with Chem.SDWriter(str(small)) as w:
        for k in keys:
            for m in groups[k]:
                w.write(m)
    settings = SearchSettings(starts=3)
    out = tmp / "union.sdf.gz"
    summary = build_union(small, out, tmp / "cache", settings, progress=False)
    return groups, keys, small, out, summary, settings, tmp


def test_union_keeps_references_and_adds_only_new_minima(two_molecules):
    groups, keys, _, out, summary, settings, _ = two_molecules
    with gzip.open(out, "rb") as fh:
        recs = [m for m in Chem.ForwardSDMolSupplier(fh, removeHs=False)]
    assert all(m is not None for m in recs)
    assert {m.GetProp("mol_id") for m in recs} == set(keys)
    for row in summary["molecules"]:
        k = row["mol_id"]
        mine = [m for m in recs if m.GetProp("mol_id") == k]
        refs = [m for m in mine if m.GetProp("source") == "reference"]
        new = [m for m in mine if m.GetProp("source") == "independent"]
        assert len(mine) == row["union"] and len(refs) == row["union_references"]
        # the sampling budget stays the original reference count, whatever the union adds
        assert {int(m.GetProp("budget_k")) for m in mine} == {len(groups[k])}
        if row["lower_than_references_kcal"] == 0.0:  # window unchanged: every reference stays
            assert len(refs) == len(groups[k])
        energies = np.array([float(m.GetProp("energy_kcal")) for m in mine])
        assert energies.min() == pytest.approx(0.0, abs=1e-3) and energies.max() <= settings.window + 1e-3
        target = stereo_smiles_from_3d(groups[k][0])
        heavy_refs = [heavy_copy(r) for r in groups[k]]
        for m in new:  # an added minimum: same bonds and stereo, and not a duplicate of any reference
            assert topology_kept(groups[k][0], m.GetConformer().GetPositions())
            assert stereo_smiles_from_3d(m) == target
            assert min(Chem.rdMolAlign.GetBestRMS(heavy_copy(m), r) for r in heavy_refs) > settings.dedup
        assert row["kept"] <= settings.starts and row["minima"] <= row["kept"]
        assert row["unmatched_0p25"] >= row["unmatched_0p5"]


def test_rerun_resumes_from_cache_bit_identical(two_molecules):
    _, _, small, out, summary, settings, tmp = two_molecules
    out2 = tmp / "again.sdf.gz"
    calls = []
    again = build_union(small, out2, tmp / "cache", settings, progress=False,
                        optimize=lambda z, p: calls.append(1))  # must not be called: all cached
    assert not calls
    with gzip.open(out, "rt") as a, gzip.open(out2, "rt") as b:
        assert a.read() == b.read()
    assert again["totals"] == summary["totals"]
    with pytest.raises(ValueError, match="settings"):
        build_union(small, tmp / "x.sdf.gz", tmp / "cache", SearchSettings(starts=4), progress=False)


def test_cache_is_plain_json(two_molecules):
    *_, tmp = two_molecules
    files = sorted((tmp / "cache").glob("*.json.gz"))
    assert len(files) == 2
    for f in files:
        with gzip.open(f, "rt") as fh:
            data = json.load(fh)
        assert set(data) == {"summary", "settings", "union"}


def test_rotatable_torsions_skip_hydrogen_rotors():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))  # C-C (methyl) and C-O (hydroxyl) only move hydrogens
    assert rotatable_torsions(mol) == []
    mol = Chem.AddHs(Chem.MolFromSmiles("CCCC"))
    assert len(rotatable_torsions(mol)) == 1
    mol = Chem.AddHs(Chem.MolFromSmiles("CC#CCC"))  # the C-C next to the triple bond is linear
    assert rotatable_torsions(mol) == []
