"""Broken-conformer flags (quality.py) on real and deliberately broken geometries."""

from pathlib import Path

import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem import conformer_positions, featurize, mol_from_smiles
from confgf_fast.config import EDGE_ANGLE, EDGE_DIHEDRAL
from confgf_fast.graph import PackedGraphs
from confgf_fast.quality import broken_conformers, conformer_defects, covalent_radii, reference_lengths

DRUGS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "geom_drugs_10.sdf"
SMILES = ["CC(=O)NC", "C#CC#N", "c1ccoc1", "OC[C@H]1O[C@@H](O)[C@H](O)[C@@H](O)[C@@H]1O", "C1C2CC1C2", "CS(=O)C"]


@pytest.fixture(scope="module")
def sample():
    """ETKDG + MMFF conformers of a few molecules (3 each) in one batch: (batch, pos [N, 3])."""
    mols = []
    for s in SMILES:
        m = mol_from_smiles(s)
        AllChem.EmbedMultipleConfs(m, 3, randomSeed=11)
        AllChem.MMFFOptimizeMoleculeConfs(m)
        mols.append(m)
    mol_ids = torch.arange(len(mols)).repeat_interleave(3)
    batch = PackedGraphs([featurize(m) for m in mols]).batch(mol_ids)
    pos = torch.cat([conformer_positions(m).reshape(-1, 3) for m in mols])
    return batch, pos


def test_reference_lengths_from_rdkit_radii(sample):
    batch, _ = sample
    z = torch.tensor([1, 6, 7, 8])
    torch.testing.assert_close(covalent_radii(z), torch.tensor([0.31, 0.76, 0.71, 0.66]))
    L = reference_lengths(batch)
    assert L.shape == (batch.num_edges,)
    torch.testing.assert_close(L, L[batch.rev])


def test_real_conformers_are_not_broken(sample):
    batch, pos = sample
    assert not broken_conformers(pos, batch).any()


@pytest.mark.skipif(not DRUGS.is_file(), reason=f"{DRUGS} not present")
def test_geom_drugs_records_are_not_broken():
    for m in Chem.SDMolSupplier(str(DRUGS), removeHs=False):
        batch = PackedGraphs([featurize(m)]).batch(torch.zeros(1, dtype=torch.long))
        assert not broken_conformers(conformer_positions(m)[0], batch).any()


def _pair(batch, g, types):
    """An edge (i, j) of conformer g with a type in `types`."""
    k = int(((batch.edge_graph == g) & torch.isin(batch.edge_type, torch.tensor(types))).nonzero()[0])
    return int(batch.edge_index[0, k]), int(batch.edge_index[1, k])


def test_stretched_bond_collapsed_atoms_and_nan_are_flagged(sample):
    batch, pos = sample
    G = batch.num_graphs
    bad = pos.clone()
    # conformer 1: one bond stretched by 60 %
    i, j = _pair(batch, 1, [0, 1, 2, 3])
    bad[j] = bad[i] + 1.6 * (bad[j] - bad[i])
    # conformer 4: two atoms two bonds apart put on top of each other
    i, j = _pair(batch, 4, [EDGE_ANGLE])
    bad[j] = bad[i] + 0.05
    # conformer 8: a 1-4 pair pulled to 0.8 A (its bonds move too: only "clash" is asserted)
    i, j = _pair(batch, 8, [EDGE_DIHEDRAL])
    bad[j] = bad[i] + 0.8 * (bad[j] - bad[i]) / (bad[j] - bad[i]).norm()
    # conformer 13: a NaN coordinate
    bad[int(batch.atom_ptr[13]) + 2, 1] = float("nan")
    flags = broken_conformers(bad, batch)
    assert flags.nonzero().flatten().tolist() == [1, 4, 8, 13]
    d = conformer_defects(bad, batch)
    assert bool(d["bond"][1]) and not bool(d["clash"][1])
    assert bool(d["clash"][4]) and bool(d["clash"][8])
    assert d["nonfinite"].nonzero().flatten().tolist() == [13]
    assert d["bond"].shape == (G,)


def test_tolerances_are_honoured(sample):
    batch, pos = sample
    bad = pos.clone()
    i, j = _pair(batch, 0, [0])  # a single bond of CC(=O)NC
    L = float(reference_lengths(batch)[((batch.edge_index[0] == i) & (batch.edge_index[1] == j))])
    bad[j] = bad[i] + (bad[j] - bad[i]) / (bad[j] - bad[i]).norm() * 1.25 * L  # 25 % long
    assert not bool(broken_conformers(bad, batch)[0])
    assert bool(broken_conformers(bad, batch, bond_tolerance=0.2)[0])
