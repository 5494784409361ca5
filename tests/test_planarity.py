"""planarity.PlanarGroups: which atoms form planar groups, and the projection onto their planes."""

import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import conformer_positions, featurize
from confgf_fast.config import resolve_schedule
from confgf_fast.graph import PackedGraphs
from confgf_fast.sampling.planarity import PlanarGroups
from confgf_fast.sampling.sampler import sample


def _batch(smiles: str, copies: int = 1):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    return mol, PackedGraphs([featurize(mol)]).batch(torch.zeros(copies, dtype=torch.long))


def _groups(g: PlanarGroups) -> list[set[int]]:
    return [set(g.atom[g.group == k].tolist()) for k in range(g.num_groups)]


def test_groups_of_toluene_acetone_and_naphthalene():
    mol, batch = _batch("Cc1ccccc1")
    ring = {a.GetIdx() for a in mol.GetAtoms() if a.GetIsAromatic()}
    bonded = {n.GetIdx() for i in ring for n in mol.GetAtomWithIdx(i).GetNeighbors()}
    assert _groups(PlanarGroups(batch)) == [ring | bonded]  # 6 ring C, 5 H and the methyl C
    assert len(ring | bonded) == 12
    mol, batch = _batch("CC(C)=O")
    centre = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "C" and a.GetDegree() == 3)
    assert _groups(PlanarGroups(batch)) == [{centre} | {n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors()}]
    _, batch = _batch("c1ccc2ccccc2c1")  # fused rings: one system of 10 C and 8 H
    assert [len(s) for s in _groups(PlanarGroups(batch))] == [18]
    _, batch = _batch("CCO")
    assert PlanarGroups(batch).num_groups == 0


def test_flatten_puts_a_bent_ring_in_its_plane_and_keeps_other_atoms():
    mol, batch = _batch("Cc1ccccc1", copies=2)
    pos = conformer_positions(mol)[0].repeat(2, 1)
    pos = pos + 0.2 * torch.randn(pos.shape, generator=torch.Generator().manual_seed(0))
    groups = PlanarGroups(batch)
    out = groups.flatten(pos)
    for k in range(groups.num_groups):
        x = out[groups.atom[groups.group == k]]
        assert torch.linalg.svdvals(x - x.mean(0))[-1] < 1e-4  # on one plane
    members = torch.zeros(batch.num_atoms, dtype=torch.bool)
    members[groups.atom] = True
    assert torch.equal(out[~members], pos[~members])  # the methyl H are not in the group
    assert torch.allclose(groups.flatten(pos, 0.0), pos)


def test_project_sampler_with_planar_writes_flat_rings():
    """With the shipped weights from noise, planar=1 leaves aromatic groups flat (measured off: 0.1-0.3 A
    rms out of plane on drug molecules) without breaking the conformer."""
    from confgf_fast.model.checkpoint import load_model

    loaded = load_model(None, "cpu")

    model, noise = loaded.model, loaded.noise
    _mol, batch = _batch("Cc1ccc(O)cc1", copies=4)
    cfg = resolve_schedule("quick", overrides={"num_steps": 10, "planar": 1.0, "stereo": False})
    pos = sample(model, batch, noise, cfg,
                 generator=torch.Generator().manual_seed(0))
    groups = PlanarGroups(batch)
    for k in range(groups.num_groups):
        x = pos[groups.atom[groups.group == k]]
        assert float(torch.linalg.svdvals(x - x.mean(0))[-1]) / x.shape[0] ** 0.5 < 0.02
