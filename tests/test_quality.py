"""Broken-conformer flags (quality.py) on real and deliberately broken geometries."""

from pathlib import Path

import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import conformer_positions, featurize, mol_from_smiles
from confgf_fast.chem.quality import (
    VDW_FRACTION,
    broken_conformers,
    closest_far_contacts,
    conformer_defects,
    covalent_radii,
    defect_reasons,
    far_pairs,
    reference_lengths,
    vdw_radii,
)
from confgf_fast.config import EDGE_ANGLE, EDGE_DIHEDRAL, EDGE_SINGLE
from confgf_fast.graph import PackedGraphs, extended_graph

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DRUGS = SHARED / "fixtures" / "geom_drugs_10.sdf"
DEV = SHARED / "benchmarks" / "qm9_xtb_dev.sdf"
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


def _one_batch(m: Chem.Mol):
    """All conformers of m as one batch: (batch, pos [N, 3])."""
    C = m.GetNumConformers()
    return PackedGraphs([featurize(m)]).batch(torch.zeros(C, dtype=torch.long)), conformer_positions(m).reshape(-1, 3)


@pytest.mark.skipif(not DRUGS.is_file(), reason=f"{DRUGS} not present")
def test_geom_drugs_records_are_not_broken():
    """Every record is clean but one whose bond table lacks a P-C bond its coordinates have (1.86 A):
    the connectivity test must see that one. The fixture also has a salt-bridge hydrogen bond,
    N-H+...O=P at 1.40 A = 0.51 of the vdW sum: hydrogen bonds are exempt from the vdw test."""
    groups: dict[tuple, Chem.Mol] = {}  # records with the same atoms and bond table share one graph
    for m in Chem.SDMolSupplier(str(DRUGS), removeHs=False):
        key = (tuple(a.GetAtomicNum() for a in m.GetAtoms()),
               tuple((b.GetBeginAtomIdx(), b.GetEndAtomIdx(), str(b.GetBondType())) for b in m.GetBonds()))
        if key in groups:
            groups[key].AddConformer(m.GetConformer(), assignId=True)
        else:
            groups[key] = Chem.Mol(m)
    flagged = []
    for m in groups.values():
        batch, pos = _one_batch(m)
        flagged += [r for r in defect_reasons(conformer_defects(pos, batch)) if r]
    assert sum(m.GetNumConformers() for m in groups.values()) == 503
    assert len(flagged) == 1 and "connectivity" in flagged[0], flagged


@pytest.mark.skipif(not DEV.is_file(), reason=f"{DEV} not present")
def test_dev_benchmark_references_and_etkdg_are_clean():
    """The 2,100 GFN2-xTB reference conformers of the QM9 dev benchmark, and ETKDGv3 conformers of
    a slice of its molecules, pass every test; the closest contact >= 3 bonds apart stays above
    VDW_FRACTION with room (measured minimum 0.65-0.67, quality.py docstring)."""
    groups: dict[str, Chem.Mol] = {}
    for rec in Chem.SDMolSupplier(str(DEV), removeHs=False):
        key = rec.GetProp("mol_id")
        if key in groups:
            groups[key].AddConformer(rec.GetConformer(), assignId=True)
        else:
            groups[key] = Chem.Mol(rec)
    mols = list(groups.values())
    etkdg = []
    for k, m in enumerate(mols[:40]):
        e = Chem.Mol(m)
        e.RemoveAllConformers()
        AllChem.EmbedMultipleConfs(e, 4, randomSeed=k)
        etkdg.append(e)
    every = [m for m in mols + etkdg if m.GetNumConformers()]
    mol_ids = torch.cat([torch.full((m.GetNumConformers(),), k) for k, m in enumerate(every)])
    batch = PackedGraphs([featurize(m) for m in every]).batch(mol_ids)  # all of them in one batch
    pos = torch.cat([conformer_positions(m).reshape(-1, 3) for m in every])
    assert batch.num_graphs > 2100
    broken = broken_conformers(pos, batch)
    assert not broken.any(), [Chem.MolToSmiles(every[int(batch.mol_index[g])]) for g in broken.nonzero()]
    assert float(closest_far_contacts(pos, batch)[0].min()) > VDW_FRACTION + 0.03


def _move_to(pos: torch.Tensor, i: int, j: int, dist: float) -> None:
    """Put atom j at `dist` from atom i, along their current direction (in place)."""
    v = pos[j] - pos[i]
    pos[j] = pos[i] + dist * v / v.norm()


def test_heavy_atoms_half_an_angstrom_apart_four_bonds_apart_are_flagged():
    """The issue's case: two heavy atoms 4 bonds apart put 0.5 A from each other."""
    m = mol_from_smiles("OCCCCC")
    AllChem.EmbedMolecule(m, randomSeed=3)
    batch, pos = _one_batch(m)
    assert len(Chem.GetShortestPath(m, 0, 4)) - 1 == 4
    assert not broken_conformers(pos, batch).any()
    bad = pos.clone()
    _move_to(bad, 0, 4, 0.5)
    d = conformer_defects(bad, batch)
    assert bool(broken_conformers(bad, batch)[0])
    assert {"vdw", "connectivity"} <= set(defect_reasons(d)[0])


def _helix_chain(n: int, gap: float, bond: float = 1.54) -> tuple:
    """A chain of n carbons (no H) on a helix that turns once every 6 bonds, so atoms k and k + 6
    sit `gap` apart; bonds ~`bond`, 1-3 pairs 2.67 A, 1-4 pairs 3.08 A: only pairs >= 6 bonds
    apart (off the extended graph) can clash. -> (batch, pos [n, 3])."""
    import math

    k = torch.arange(n, dtype=torch.float32)
    pos = torch.stack([bond * torch.cos(k * math.pi / 3), bond * torch.sin(k * math.pi / 3), k * gap / 6], 1)
    bonds = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    graph = extended_graph(torch.full((n,), 6), bonds, torch.full((n - 1,), EDGE_SINGLE))
    return PackedGraphs([graph]).batch(torch.zeros(1, dtype=torch.long)), pos


def test_clash_between_atoms_many_bonds_apart_is_flagged_and_only_by_the_all_pairs_tests():
    batch, pos = _helix_chain(8, gap=0.5)  # atoms 0-6 and 1-7: 6 bonds apart, 0.5 A
    d = conformer_defects(pos, batch)
    assert defect_reasons(d) == [["vdw", "connectivity"]]
    batch, pos = _helix_chain(8, gap=3.5)  # the same chain, stretched: 3.5 A > 0.6 x 3.4 A
    assert defect_reasons(conformer_defects(pos, batch)) == [[]]
    batch, pos = _helix_chain(8, gap=1.9)  # closer than 0.6 W = 2.04 A, not bonded (1.3 L = 1.98 A)
    assert defect_reasons(conformer_defects(pos, batch)) == [["vdw", "connectivity"]]
    assert defect_reasons(conformer_defects(pos, batch, vdw_fraction=0.5)) == [["connectivity"]]


def test_far_pairs_are_every_pair_three_or_more_bonds_apart_in_any_chunking(sample):
    batch, pos = sample
    expected = []
    ptr = batch.atom_ptr.tolist()
    near = {(int(a), int(b)) for a, b, t in zip(*batch.edge_index, batch.edge_type) if t < EDGE_DIHEDRAL}
    for g in range(batch.num_graphs):
        expected += [(i, j) for i in range(ptr[g], ptr[g + 1]) for j in range(i + 1, ptr[g + 1]) if (i, j) not in near]
    for max_pairs in (1, 7, 1000, 1 << 22):
        got = []
        for s, t, d in far_pairs(pos, batch, max_pairs=max_pairs):
            got += list(zip(s.tolist(), t.tolist()))
            torch.testing.assert_close(d, (pos[s] - pos[t]).norm(dim=-1))
        assert got == expected
    # Chunking does not change the flags either.
    bad = pos.clone()
    _move_to(bad, int(batch.atom_ptr[5]), int(batch.atom_ptr[5]) + 7, 0.4)
    ref = conformer_defects(bad, batch)
    for max_pairs in (1, 50):
        small = conformer_defects(bad, batch, max_pairs=max_pairs)
        assert all(torch.equal(ref[k], small[k]) for k in ref)


def test_vdw_radii_are_rdkits():
    torch.testing.assert_close(vdw_radii(torch.tensor([1, 6, 7, 8])), torch.tensor([1.2, 1.7, 1.6, 1.55]))


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
