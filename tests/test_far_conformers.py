"""bench/far_conformers.py: the far-conformer classifier on constructed cases whose class is known."""

import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Chem import rdMolTransforms as T
from rdkit.Geometry import Point3D

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import far_conformers as fc


def _with_confs(mol: Chem.Mol, confs: list[Chem.Conformer]) -> Chem.Mol:
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    for c in confs:
        out.AddConformer(Chem.Conformer(c), assignId=True)
    return out


@pytest.fixture(scope="module")
def heptane() -> Chem.Mol:
    """All-anti n-heptane, MMFF94-minimised: the single reference conformer."""
    m = Chem.AddHs(Chem.MolFromSmiles("CCCCCCC"))
    AllChem.EmbedMolecule(m, randomSeed=1)
    for i in range(4):
        T.SetDihedralDeg(m.GetConformer(), i, i + 1, i + 2, i + 3, 180.0)
    AllChem.MMFFOptimizeMolecule(m, maxIters=2000)
    return m


def _variant(ref: Chem.Mol, edit) -> Chem.Conformer:
    c = Chem.Conformer(ref.GetConformer())
    edit(c)
    return c


def test_classes_of_constructed_conformers(heptane):
    def gauche(c):  # one middle torsion rotated by 120 deg: anti -> gauche, a minimum MMFF keeps
        T.SetDihedralDeg(c, 1, 2, 3, 4, 300.0)

    def clash(c):  # a terminal carbon put 0.4 A from C3: bonds broken, atoms overlapping
        c.SetAtomPosition(0, c.GetAtomPosition(2) + Point3D(0.3, 0.2, 0.1))

    def twisted(c):  # every torsion 40 deg off anti, alternating: far, but MMFF goes back to anti
        for i in range(4):
            T.SetDihedralDeg(c, i, i + 1, i + 2, i + 3, 180.0 + (40.0 if i % 2 else -40.0))

    gen = _with_confs(heptane, [heptane.GetConformer(), _variant(heptane, gauche), _variant(heptane, clash),
                                _variant(heptane, twisted)])
    recs = fc.classify(gen, heptane)
    assert [r["far"] for r in recs] == [False, True, True, True]
    assert [r["class"] for r in recs] == [None, "rotamer", "broken", "strained"]
    assert recs[1]["torsion_dev"] == pytest.approx(120.0, abs=0.5)
    assert recs[1]["relaxed_rmsd"] > fc.DELTA  # gauche stays gauche
    assert recs[2]["defects"]  # quality.py names the failed tests
    assert recs[3]["relaxed_rmsd"] < 0.1 and recs[3]["torsion_dev"] < fc.TORSION_DEG
    assert np.isnan(recs[1]["ring_rmsd"])  # no ring


def test_axial_chair_is_a_wrong_pucker():
    """Methylcyclohexane: the equatorial chair is the reference, the axial chair (an MMFF minimum
    ~1.5 kcal/mol higher, > 0.5 A away) is a different ring conformation; the ring-atom RMSD alone
    is ~0 here (the molecule's mirror map turns the flipped chair into the original), the methyl
    carbon counted with the ring is what tells them apart."""
    m = Chem.AddHs(Chem.MolFromSmiles("CC1CCCCC1"))
    AllChem.EmbedMultipleConfs(m, 20, randomSeed=7)
    energies = np.array([e for _, e in AllChem.MMFFOptimizeMoleculeConfs(m, maxIters=2000)])
    confs = list(m.GetConformers())
    eq = confs[int(np.argmin(energies))]
    axial = [c for c, e in zip(confs, energies) if 0.5 < e - energies.min() < 3.0]
    assert axial, "no axial chair among the embedded conformers"
    recs = fc.classify(_with_confs(m, axial[:1]), _with_confs(m, [eq]))
    assert recs[0]["far"] and recs[0]["class"] == "pucker"
    assert recs[0]["ring_rmsd"] > fc.RING_RMSD
    assert np.isnan(recs[0]["torsion_dev"])  # no rotatable heavy-atom bond


def test_torsion_helpers():
    assert fc.angle_diff(170.0, -170.0) == pytest.approx(20.0)
    assert fc.angle_diff(10.0, 250.0) == pytest.approx(120.0)
    # propanoic acid: one heavy-atom rotatable bond, CH2-C(=O)O, whose far end has two equivalent
    # terminal oxygens (=O and -O, as GetBestRMS symmetrises them)
    mol = Chem.MolFromSmiles("CCC(=O)O")
    quads = fc.torsion_quads(mol)
    assert len(quads) == 1
    ii, j, k, ll = quads[0]
    assert (ii, j, k, sorted(ll)) == ([0], 1, 2, [3, 4])
    assert fc.ring_systems(Chem.MolFromSmiles("c1ccccc1C1CC1")) == [[5, 6, 7, 8]]


def test_summary_and_table(heptane):
    gen = _with_confs(heptane, [heptane.GetConformer(),
                                _variant(heptane, lambda c: T.SetDihedralDeg(c, 1, 2, 3, 4, 300.0))])
    s = fc.summarise([("CCCCCCC", fc.classify(gen, heptane))])
    assert s["n_generated"] == 2 and s["n_far"] == 1 and s["far_percent"] == pytest.approx(50.0)
    assert s["classes"]["rotamer"]["count"] == 1 and s["classes"]["rotamer"]["percent_of_far"] == 100.0
    table = fc.markdown_table({"methods": {"ours": s}})
    assert "| rotamer | 1 | 100 | 50.0 |" in table
