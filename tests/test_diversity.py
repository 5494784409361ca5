"""diversity.py: Kabsch RMSD rows and farthest-point selection; the warm start's oversampling."""

import numpy as np
import pytest
import torch
from rdkit.Chem import AllChem, rdMolAlign

from confgf_fast.chem.diversity import farthest_point_subset, rmsd_to_all
from confgf_fast.chem.molecule import etkdg_coordinates, mol_from_smiles, set_conformers


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.linalg.det(q))


def test_rmsd_is_invariant_to_rotation_and_translation_but_not_to_reflection():
    x = torch.randn(9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    moved = x @ _rotation(1).T + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    mirror = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    d = rmsd_to_all(torch.stack([x, moved, mirror]), x)
    assert d[0] < 1e-6 and d[1] < 1e-6
    assert d[2] > 0.1  # a mirror image of a chiral point set is no rotation of it


def test_rmsd_matches_rdkit_alignment_without_symmetry():
    mol = mol_from_smiles("CC(O)CCN")
    AllChem.EmbedMultipleConfs(mol, 5, randomSeed=3)
    pos = torch.from_numpy(np.array([c.GetPositions() for c in mol.GetConformers()]))
    ours = rmsd_to_all(pos, pos[0])
    for k in range(5):
        m = set_conformers(mol, [pos[k], pos[0]])
        ref = rdMolAlign.AlignMol(m, m, prbCid=0, refCid=1)  # fixed atom map: the identity
        assert float(ours[k]) == pytest.approx(ref, abs=1e-5)


def test_farthest_point_subset_skips_duplicates():
    base = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(2))
    # conformers 0..3 distinct; 4..7 rotated copies of 0..3
    copies = torch.stack([b @ _rotation(10 + i).T.float() for i, b in enumerate(base)])
    pos = torch.cat([base, copies])
    pick = farthest_point_subset(pos, 4)
    assert pick[0] == 0 and len(pick) == 4
    assert sorted(int(i) % 4 for i in pick) == [0, 1, 2, 3]  # one of each, never a copy
    assert torch.equal(farthest_point_subset(pos, 20), torch.arange(8))


def test_warm_start_oversampling_keeps_n_conformers_that_are_more_diverse():
    mol = mol_from_smiles("CCCCCCCO")
    heavy = torch.tensor([a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1])

    def closest_pair(pos):
        d = torch.stack([rmsd_to_all(pos[:, heavy], p[heavy]) for p in pos])
        return float((d + torch.eye(len(pos)) * 1e9).min())

    plain, _ = etkdg_coordinates(mol, 6, seed=5)
    diverse, _ = etkdg_coordinates(mol, 6, seed=5, oversample=4)
    assert plain.shape == diverse.shape == (6, mol.GetNumAtoms(), 3)
    assert closest_pair(diverse) > closest_pair(plain)
    # the first conformer is the same embedding either way (selection starts from it)
    assert torch.allclose(plain[0], diverse[0])


def test_select_conformers_prefers_good_ones_then_diversity():
    from confgf_fast.chem.diversity import select_conformers

    mol = mol_from_smiles("CCCCO")
    AllChem.EmbedMultipleConfs(mol, 6, randomSeed=5)
    pos = [torch.from_numpy(c.GetPositions()).float() for c in mol.GetConformers()]
    coords = [pos[0], pos[0].clone(), pos[1], pos[2], pos[3], pos[4]]  # 1 is a duplicate of 0
    ok, bad = {"quality": "ok", "stereo_ok": 1}, {"quality": "broken", "stereo_ok": 1}
    flags = [ok, ok, bad, ok, {"quality": "ok", "stereo_ok": 0}, ok]
    keep = select_conformers(mol, coords, flags, 3)
    assert len(keep) == 3 and len(set(keep)) == 3
    assert set(keep) <= {0, 1, 3, 5}  # only good ones while enough are good
    assert not {0, 1} <= set(keep)  # the duplicate is not kept next to its original
    keep = select_conformers(mol, coords, flags, 6)  # more than the good ones: the flagged fill in last
    assert sorted(keep) == list(range(6)) and set(keep[:4]) == {0, 1, 3, 5}


def test_oversampling_from_noise_keeps_the_count_and_counts_evaluations():
    from confgf_fast.config import resolve_schedule
    from confgf_fast.model.checkpoint import load_models
    from confgf_fast.pipeline.generate import generate
    from confgf_fast.sampling.sampler import num_evaluations

    base = resolve_schedule("quick")
    over = resolve_schedule("quick", overrides={"oversample": 2})
    noise = load_models(None, "cpu")[0].noise
    assert num_evaluations(noise, over) == 2 * num_evaluations(noise, base)
    assert "oversample=2" in over.describe()
    res = generate(["CCN(CC=O)CCO"], 4, schedule=over, seed=0)
    assert res.mols[0].GetNumConformers() == 4 and len(res.flags[0]) == 4
    # a warm start takes its diversity from ETKDG (init_oversample), not from this
    warm = resolve_schedule("warm", overrides={"oversample": 2})
    assert num_evaluations(noise, warm) == num_evaluations(noise, resolve_schedule("warm"))


def test_mmff_energies_score_geometry_without_optimising():
    from rdkit.Chem import rdForceFieldHelpers

    from confgf_fast.chem.molecule import mmff_energies

    mol = mol_from_smiles("CCCCO")
    AllChem.EmbedMultipleConfs(mol, 3, randomSeed=7)
    pos = [c.GetPositions() for c in mol.GetConformers()]
    squashed = pos[0] * 0.8  # every bond 20 % short: strained
    e = mmff_energies(mol, [*pos, squashed])
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    for k, c in enumerate(mol.GetConformers()):  # the force field's own energy of each conformer
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=c.GetId())
        assert e[k] == pytest.approx(ff.CalcEnergy(), rel=1e-9)
    assert e[3] > e[0] + 50
    assert np.allclose(mol.GetConformer(0).GetPositions(), pos[0])  # the input is left as it was
    noparams = mol_from_smiles("[Pt](N)(N)Cl")
    assert np.isinf(mmff_energies(noparams, [np.zeros((noparams.GetNumAtoms(), 3))])).all()


def test_select_conformers_energy_window_drops_strained_outliers():
    from confgf_fast.chem.diversity import select_conformers

    mol = mol_from_smiles("CCCCO")
    AllChem.EmbedMultipleConfs(mol, 4, randomSeed=5)
    pos = [torch.from_numpy(c.GetPositions()).float() for c in mol.GetConformers()]
    # 5: a strained, far-from-everything sample (farthest-point alone would pick it second)
    outlier = pos[0] * 3.0
    coords = [*pos, outlier]
    ok = {"quality": "ok", "stereo_ok": 1}
    flags = [ok] * 5
    energies = [1.0, 2.0, 3.0, 4.0, 90.0]
    assert 4 in select_conformers(mol, coords, flags, 2)
    keep = select_conformers(mol, coords, flags, 2, energies, window=10.0)
    assert len(keep) == 2 and 4 not in keep and keep[0] == 0
    # a window too narrow for n: topped up with the lowest energies outside it, never short
    assert sorted(select_conformers(mol, coords, flags, 3, energies, window=0.5)) == [0, 1, 2]
    # no force field (inf everywhere): no cut, the plain selection
    inf = [float("inf")] * 5
    assert select_conformers(mol, coords, flags, 2, inf, 10.0) == select_conformers(mol, coords, flags, 2)


def test_from_noise_energy_window_runs_through_generate():
    from confgf_fast.config import resolve_schedule
    from confgf_fast.pipeline.generate import generate

    cfg = resolve_schedule("quick", overrides={"num_steps": 8, "oversample": 3, "select_window": 10.0})
    assert "select_window=10.0" in cfg.describe() and "oversample=3" in cfg.describe()
    res = generate(["CCN(CC=O)CCO"], 3, schedule=cfg, seed=0, relax="none")
    assert res.mols[0].GetNumConformers() == 3
    once = resolve_schedule(cfg, overrides={"oversample": 1})  # no oversampling: nothing to cut,
    assert "select_window" not in once.describe()  # and the tag does not claim a cut


def test_energy_weighted_selection_starts_low_and_discounts_strain():
    from confgf_fast.chem.diversity import select_conformers

    mol = mol_from_smiles("CCCCO")
    AllChem.EmbedMultipleConfs(mol, 4, randomSeed=5)
    pos = [torch.from_numpy(c.GetPositions()).float() for c in mol.GetConformers()]
    coords = [*pos, pos[0] * 3.0]  # 4: far from everything and strained
    flags = [{"quality": "ok", "stereo_ok": 1}] * 5
    energies = [3.0, 1.0, 2.0, 4.0, 60.0]
    keep = select_conformers(mol, coords, flags, 2, energies, temperature=5.0)
    assert keep[0] == 1 and 4 not in keep  # lowest first; exp(-59/5) outweighs any distance
    # a hot temperature is plain farthest-point from the lowest: the outlier comes back
    assert 4 in select_conformers(mol, coords, flags, 2, energies, temperature=1e9)
    # duplicates (all remaining scores 0) never repeat a pick
    dup = [pos[0]] * 4
    assert sorted(select_conformers(mol, dup, flags[:4], 3, [0.0] * 4, temperature=5.0)) == [0, 1, 2]
    # no force field: plain selection
    inf = [float("inf")] * 5
    assert select_conformers(mol, coords, flags, 2, inf, temperature=5.0) == select_conformers(mol, coords, flags, 2)
