"""GFN2-xTB refinement of training conformers (xtb.py, build-qm9 --xtb)."""

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

pytest.importorskip("tblite")

from confgf_fast.chem.xtb import refine_conformer, topology_kept, xtb_optimize
from confgf_fast.data.qm9 import add_etkdg_conformers


def test_water_reaches_the_gfn2_minimum():
    # From a distorted geometry (O-H 1.10 and 0.90 A, angle 120 deg) to the GFN2-xTB minimum:
    # both O-H ~0.96 A (experiment 0.958), the gradient below tolerance, the energy lower.
    a = np.deg2rad(120.0)
    pos = np.array([[0.0, 0.0, 0.0], [1.10, 0.0, 0.0], [0.90 * np.cos(a), 0.90 * np.sin(a), 0.0]])
    start = xtb_optimize(np.array([8, 1, 1]), pos, max_steps=0)
    res = xtb_optimize(np.array([8, 1, 1]), pos)
    assert res.converged and res.grad_max <= 1e-3
    assert res.energy < start.energy
    oh = np.linalg.norm(res.pos[1:] - res.pos[0], axis=1)
    assert np.allclose(oh, 0.96, atol=0.02), oh
    hoh = np.degrees(np.arccos(np.dot(res.pos[1] - res.pos[0], res.pos[2] - res.pos[0]) / oh.prod()))
    assert 100 < hoh < 110, hoh


def test_refine_conformer_in_place_and_topology_check():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    before = mol.GetConformer().GetPositions()
    res = refine_conformer(mol, mol.GetConformer().GetId())
    assert res is not None and res.converged
    after = mol.GetConformer().GetPositions()
    assert np.allclose(after, res.pos) and not np.allclose(after, before)
    assert topology_kept(mol, after)
    # a stretched bond (C-O at 2.5 A) and a clash are both caught
    bad = after.copy()
    o = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "O")
    c = mol.GetAtomWithIdx(o).GetNeighbors()[0].GetIdx()
    bad[o] = bad[c] + 2.5 * (bad[o] - bad[c]) / np.linalg.norm(bad[o] - bad[c])
    assert not topology_kept(mol, bad)
    clash = after.copy()
    hs = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "H"]
    clash[hs[0]] = clash[hs[-1]] + 0.2
    assert not topology_kept(mol, clash)


def test_builder_conformers_with_xtb_are_refined():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)N"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    out = add_etkdg_conformers(Chem.Mol(mol), 2, seed=1, dedup_rmsd=0.0, xtb=True)
    assert out.GetNumConformers() >= 2
    z = np.array([a.GetAtomicNum() for a in out.GetAtoms()])
    for conf in out.GetConformers():  # all sit at GFN2-xTB minima, the input's conformer too
        check = xtb_optimize(z, conf.GetPositions(), max_steps=0)
        assert check.grad_max <= 2e-3, check.grad_max
