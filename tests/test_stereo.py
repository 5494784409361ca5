"""Stereo constraints (RDKit side), guidance force, mirror fix and the sampler hook."""

from pathlib import Path

import numpy as np
import pytest
import torch
from oracle import OracleScore
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import conformer_positions, featurize, mol_from_smiles, set_conformers, stereo_matches
from confgf_fast.chem.stereo import (
    CHIRAL_MARGIN,
    StereoConstraints,
    StereoGuidance,
    batch_constraints,
    chiral_triples,
    chiral_volumes,
    dihedral_cosines,
    fix_mirror,
    make_guidance,
    stereo_constraints,
    stereo_guidance_force,
    stereo_ok,
    stereo_penalty,
    violations,
)
from confgf_fast.config import ModelConfig, NoiseConfig, resolve_schedule
from confgf_fast.graph import PackedGraphs
from confgf_fast.model.network import ScoreNet
from confgf_fast.ops import reference
from confgf_fast.sampling.sampler import langevin_sample

DRUGS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "geom_drugs_10.sdf"

# (SMILES, tetrahedral centres, stereo double bonds)
CASES = [
    ("C[C@H](N)O", 1, 0),
    ("C[C@@H](N)O", 1, 0),
    ("[H][C@](C)(N)O", 1, 0),  # explicit H written first: a different neighbour order
    ("N[C@@H](C)C(=O)O", 1, 0),  # L-alanine
    ("O[C@H]1CC[C@@H](O)CC1", 2, 0),  # ring stereo, ring-closure bond in the neighbour list
    ("OC[C@H]1O[C@@H](O)[C@H](O)[C@@H](O)[C@@H]1O", 5, 0),  # a glucopyranose
    ("C[S@](=O)CC", 1, 0),  # 3-coordinate centre (lone pair)
    ("C/C=C/C", 0, 1),
    ("C/C=C\\C", 0, 1),
    ("C/C=C/c1ccccc1", 0, 1),  # (E)-styrene-like
    ("F/C=C(/Cl)Br", 0, 1),
    ("C/C=N/O", 0, 1),  # oxime: N has no H, one stereo atom per side
    ("C[C@H](O)/C=C/[C@@H](C)N", 2, 1),
]

def paper(**overrides):
    """The paper's Langevin schedule with `overrides` (config.resolve_schedule), e.g. a few levels for speed."""
    return resolve_schedule("paper", overrides=overrides)



def embedded(smiles: str, n: int = 2, seed: int = 7) -> Chem.Mol:
    mol = mol_from_smiles(smiles)
    assert len(AllChem.EmbedMultipleConfs(mol, n, randomSeed=seed)) == n
    return mol


def one_batch(mol: Chem.Mol):
    """All conformers of one Mol as a GraphBatch + pos [N, 3] (float64)."""
    X = conformer_positions(mol).double()
    batch = PackedGraphs([featurize(mol)]).batch(torch.zeros(X.shape[0], dtype=torch.long))
    return batch, X.reshape(-1, 3)


def mirrored(pos, atom_ptr, which):
    out = pos.clone()
    for g in which:
        out[atom_ptr[g]:atom_ptr[g + 1], 0] *= -1
    return out


# ---- RDKit side ---------------------------------------------------------------------------------

@pytest.mark.parametrize("smiles,n_chiral,n_bonds", CASES)
def test_sign_convention_matches_rdkit_3d_perception(smiles, n_chiral, n_bonds):
    """On ETKDG conformers, which have the input's stereo, every constraint must be satisfied, and
    RDKit's own 3D perception must give back the input's tags on the same atoms."""
    mol = embedded(smiles)
    c = stereo_constraints(mol)
    assert (c.num_chiral, c.num_bonds) == (n_chiral, n_bonds)
    assert c.chiral_atoms.dtype == torch.long and c.chiral_atoms.shape == (n_chiral, 5)
    assert c.bond_atoms.shape == (n_bonds, 4) and set(c.bond_sign.tolist()) <= {-1.0, 1.0}
    batch, pos = one_batch(mol)
    assert stereo_ok(pos, batch_constraints([c], batch), batch.atom_ptr).all()
    assert stereo_matches(mol, smiles).all()
    for k in range(mol.GetNumConformers()):
        x = pos[batch.atom_ptr[k]:batch.atom_ptr[k + 1]]
        assert (chiral_volumes(x, c.chiral_atoms) * c.chiral_sign > CHIRAL_MARGIN).all()
        assert (dihedral_cosines(x, c.bond_atoms) * c.bond_sign > 0.9).all()
        m = Chem.Mol(mol)
        Chem.AssignStereochemistryFrom3D(m, confId=mol.GetConformers()[k].GetId())
        for (centre, *_), s in zip(c.chiral_atoms.tolist(), c.chiral_sign.tolist()):
            want = Chem.ChiralType.CHI_TETRAHEDRAL_CCW if s > 0 else Chem.ChiralType.CHI_TETRAHEDRAL_CW
            assert m.GetAtomWithIdx(centre).GetChiralTag() == want
        # The triple RDKit reads has the target sign, clear of RDKit's 0.1 A^3 tolerance.
        assert (chiral_triples(x, c.chiral_atoms) * c.chiral_sign > 0.1).all()


def test_constraints_of_unspecified_and_nonstereo_inputs():
    """Unspecified elements and tags on non-stereo atoms give no constraint."""
    expected = {"CC(N)O": 0, "CC=CC": 0, "C[C@H](C)O": 0, "C=C/C": 0,
                "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O": 4}  # anomeric centre left open
    for smi, n in expected.items():
        assert len(stereo_constraints(mol_from_smiles(smi))) == n, smi
    empty = StereoConstraints.empty()
    assert len(empty) == 0 and empty.chiral_atoms.shape == (0, 5)


@pytest.mark.skipif(not DRUGS.is_file(), reason=f"{DRUGS} not present")
def test_constraints_from_3d_records_hold_on_their_own_geometry():
    """GEOM-Drugs records carry stereo perceived from their 3D coordinates; the constraints read
    from those tags must hold on every record (drug-size molecules, many centres and rings)."""
    n_chiral = 0
    for m in Chem.SDMolSupplier(str(DRUGS), removeHs=False):
        c = stereo_constraints(m)
        n_chiral += c.num_chiral
        batch, pos = one_batch(m)
        assert stereo_ok(pos, batch_constraints([c], batch), batch.atom_ptr).all()
    assert n_chiral > 50


# ---- torch side ---------------------------------------------------------------------------------

def test_mirror_image_violates_every_centre_but_no_double_bond():
    mol = embedded("C[C@H](O)/C=C/[C@@H](C)N", 3)
    c = stereo_constraints(mol)
    batch, pos = one_batch(mol)
    bc = batch_constraints([c], batch)
    mir = mirrored(pos, batch.atom_ptr, range(3))
    bad_v, bad_c = violations(mir, bc, batch.atom_ptr)
    assert bad_v.tolist() == [2, 2, 2] and bad_c.tolist() == [0, 0, 0]
    assert not stereo_ok(mir, bc, batch.atom_ptr).any()
    assert not stereo_matches(set_conformers(mol, mir.reshape(3, -1, 3)), "C[C@H](O)/C=C/[C@@H](C)N").any()


def test_fix_mirror_repairs_inverted_conformers_only():
    smi = "OC[C@H]1O[C@@H](O)[C@H](O)[C@@H](O)[C@@H]1O"
    mol = embedded(smi, 4)
    c = stereo_constraints(mol)
    batch, pos = one_batch(mol)
    bc = batch_constraints([c], batch)
    mir = mirrored(pos, batch.atom_ptr, [1, 3])
    assert stereo_ok(mir, bc, batch.atom_ptr).tolist() == [True, False, True, False]
    fixed = fix_mirror(mir, bc, batch.atom_ptr)
    assert stereo_ok(fixed, bc, batch.atom_ptr).all()
    a = batch.atom_ptr
    assert torch.equal(fixed[a[0]:a[1]], pos[a[0]:a[1]]) and torch.equal(fixed[a[2]:a[3]], pos[a[2]:a[3]])
    # a reflection keeps every distance
    d = reference.pairwise_distance(pos, batch.edge_index)
    torch.testing.assert_close(reference.pairwise_distance(fixed, batch.edge_index), d)
    assert stereo_matches(set_conformers(mol, fixed.reshape(4, -1, 3)), smi).all()


def test_fix_mirror_leaves_minority_inversions_alone():
    """One inverted centre out of five: the conformer is not reflected (that would make four)."""
    mol = embedded("OC[C@H]1O[C@@H](O)[C@H](O)[C@@H](O)[C@@H]1O", 1)
    c = stereo_constraints(mol)
    batch, pos = one_batch(mol)
    bc = batch_constraints([c], batch)
    one = replace_sign(bc, 0)
    assert violations(pos, one, batch.atom_ptr)[0].tolist() == [1]
    assert torch.equal(fix_mirror(pos, one, batch.atom_ptr), pos)


def replace_sign(c: StereoConstraints, k: int) -> StereoConstraints:
    sign = c.chiral_sign.clone()
    sign[k] = -sign[k]
    return StereoConstraints(c.chiral_atoms, sign, c.bond_atoms, c.bond_sign)


def test_guidance_force_is_minus_gradient_and_lowers_the_penalty():
    """F = -k dP/dpos checked against central finite differences (float64) at a geometry that
    violates a centre and a double bond; a small step along F lowers P."""
    mol = embedded("C[C@H](O)/C=C/[C@@H](C)N", 1)
    c = stereo_constraints(mol)
    batch, pos = one_batch(mol)
    bc = batch_constraints([c], batch)
    wrong = replace_sign(StereoConstraints(bc.chiral_atoms, bc.chiral_sign, bc.bond_atoms, -bc.bond_sign), 0)
    x = pos + 0.05 * torch.randn(pos.shape, generator=torch.Generator().manual_seed(0), dtype=pos.dtype)
    p0 = float(stereo_penalty(x, wrong))
    assert p0 > 0.5
    F = stereo_guidance_force(x, wrong, strength=2.0)
    num = torch.zeros_like(x)
    h = 1e-6
    for i in range(x.shape[0]):
        for j in range(3):
            xp, xm = x.clone(), x.clone()
            xp[i, j] += h
            xm[i, j] -= h
            num[i, j] = (stereo_penalty(xp, wrong) - stereo_penalty(xm, wrong)) / (2 * h)
    torch.testing.assert_close(F, -2.0 * num, atol=1e-6, rtol=1e-5)
    assert float(stereo_penalty(x + 1e-3 * F, wrong)) < p0
    # only atoms of the violated elements are pushed
    involved = torch.zeros(x.shape[0], dtype=torch.bool)
    involved[wrong.chiral_atoms[0]] = True
    involved[wrong.bond_atoms[0]] = True
    assert (F[~involved] == 0).all() and (F[involved].norm(dim=-1) > 0).any()


@pytest.mark.parametrize("smiles", [s for s, _, _ in CASES])
def test_guidance_force_is_zero_on_correct_conformers(smiles):
    mol = embedded(smiles, 2)
    batch, pos = one_batch(mol)
    bc = batch_constraints([stereo_constraints(mol)], batch)
    assert float(stereo_penalty(pos, bc)) == 0.0
    assert torch.equal(stereo_guidance_force(pos, bc, 100.0), torch.zeros_like(pos))
    g = StereoGuidance(bc, batch.atom_ptr, strength=5.0, sigma_max=0.5)
    assert g(pos, 1.0, 0) is None  # above sigma_max: no force at all
    if len(bc):
        assert torch.equal(g(pos, 0.1, 40), torch.zeros_like(pos))


def test_batch_constraints_offsets_with_mixed_molecules():
    smiles = ["C[C@H](N)O", "C/C=C/c1ccccc1", "OC[C@H]1O[C@@H](O)[C@H](O)[C@@H](O)[C@@H]1O", "CCO"]
    mols = [embedded(s, 1, seed=k) for k, s in enumerate(smiles)]
    per_mol = [stereo_constraints(m) for m in mols]
    mol_ids = torch.tensor([2, 0, 1, 2, 3, 0, 1])
    batch = PackedGraphs([featurize(m) for m in mols]).batch(mol_ids)
    bc = batch_constraints(per_mol, batch)
    assert bc.num_chiral == sum(per_mol[m].num_chiral for m in mol_ids.tolist())
    assert bc.num_bonds == sum(per_mol[m].num_bonds for m in mol_ids.tolist())
    # rows come grouped by conformer, each molecule's rows shifted by its conformer's first atom
    rows_c, rows_b = [], []
    for g, m in enumerate(mol_ids.tolist()):
        off = int(batch.atom_ptr[g])
        rows_c.append(per_mol[m].chiral_atoms + off)
        rows_b.append(per_mol[m].bond_atoms + off)
    assert torch.equal(bc.chiral_atoms, torch.cat(rows_c)) and torch.equal(bc.bond_atoms, torch.cat(rows_b))
    pos = torch.cat([conformer_positions(mols[m])[0] for m in mol_ids.tolist()])
    assert stereo_ok(pos, bc, batch.atom_ptr).all()
    mir = mirrored(pos, batch.atom_ptr, [0, 1, 2])
    # conformer 2 is the styrene: a reflection keeps its E double bond
    assert stereo_ok(mir, bc, batch.atom_ptr).tolist() == [False, False, True, True, True, True, True]
    assert stereo_ok(fix_mirror(mir, bc, batch.atom_ptr), bc, batch.atom_ptr).all()
    # make_guidance accepts Mols or precomputed constraints alike
    g1, _ = make_guidance(mols, batch, resolve_schedule("paper"))
    g2, _ = make_guidance(per_mol, batch, resolve_schedule("paper"))
    assert torch.equal(g1.constraints.chiral_atoms, bc.chiral_atoms)
    assert torch.equal(g2.constraints.bond_sign, bc.bond_sign)


def test_make_guidance_off_or_without_stereo_is_none():
    mols = [mol_from_smiles("CCO"), mol_from_smiles("C[C@H](N)O")]
    packed = PackedGraphs([featurize(m) for m in mols])
    g, finalize = make_guidance(mols, packed.batch(torch.tensor([0, 0])), resolve_schedule("paper"))
    assert g is None
    batch = packed.batch(torch.tensor([1, 0]))
    g, finalize = make_guidance(mols, batch, paper(stereo=False))
    assert g is None
    pos = torch.randn(batch.num_atoms, 3)
    out, ok = finalize(pos)
    assert torch.equal(out, pos) and ok.shape == (2,) and bool(ok[1])  # stereo off: no reflection


# ---- sampler hook -------------------------------------------------------------------------------

def test_sampler_hook_default_unchanged_and_adds_alpha_times_force():
    model = ScoreNet(ModelConfig(16, 2)).eval()
    batch = PackedGraphs([featurize(mol_from_smiles("C[C@H](N)O"))]).batch(torch.zeros(2, dtype=torch.long))
    cfg = paper(levels=3, steps_per_level=4)
    noise = NoiseConfig()

    def run(**kw):
        return langevin_sample(model, batch, noise, cfg, generator=torch.Generator().manual_seed(3), **kw)

    plain = run()
    assert torch.equal(run(guidance=None), plain)
    assert torch.equal(run(guidance=lambda pos, sigma, level: None), plain)
    # A constant force at the last level only: with a zero-score model the trajectories differ by
    # exactly sum_steps alpha_L F there (same noise draws).
    zero = ScoreNet(ModelConfig(16, 2)).eval()
    for p in zero.parameters():
        torch.nn.init.zeros_(p)
    F = 1e4 * torch.randn(batch.num_atoms, 3, generator=torch.Generator().manual_seed(1))  # moves ~0.1 A
    calls = []

    def guide(pos, sigma, level):
        calls.append((sigma, level))
        return F if level == noise.num_levels - 1 else None

    a = langevin_sample(zero, batch, noise, cfg, generator=torch.Generator().manual_seed(3))
    b = langevin_sample(zero, batch, noise, cfg, generator=torch.Generator().manual_seed(3), guidance=guide)
    alpha = cfg.eps  # the last level has sigma_L, so alpha = eps
    torch.testing.assert_close(b - a, cfg.steps_per_level * alpha * F, atol=1e-5, rtol=1e-4)
    assert len(calls) == 3 * cfg.steps_per_level and calls[-1][1] == noise.num_levels - 1


ORACLE_SMILES = ["N[C@@H](C)C(=O)O", "C[C@@H]1C[C@H](O)[C@@H](N)C[C@H]1C", "C/C=C/c1ccccc1", "C/C=C\\C"]


def oracle_run(stereo: bool, k: int = 4, seed: int = 0):
    """Sample k conformers per molecule with the oracle score of one ETKDG conformer; return the
    per-molecule stereo match rates (chem.stereo_matches) and finalize's ok mask."""
    mols = [embedded(s, 1, seed=3) for s in ORACLE_SMILES]
    mol_ids = torch.arange(len(mols)).repeat_interleave(k)
    batch = PackedGraphs([featurize(m) for m in mols]).batch(mol_ids)
    pos0 = torch.cat([conformer_positions(mols[m])[0] for m in mol_ids.tolist()])
    d0 = reference.pairwise_distance(pos0, batch.edge_index)
    # 10 of the 50 levels; 100 steps at 2x the paper's eps (the oracle is stable there).
    cfg = paper(levels=10, steps_per_level=100, eps=2 * 2.4e-6, stereo=stereo)
    guidance, finalize = make_guidance(mols, batch, cfg)
    pos = langevin_sample(OracleScore(d0), batch, NoiseConfig(), cfg, generator=torch.Generator().manual_seed(seed),
                          guidance=guidance)
    pos, ok = finalize(pos)
    assert torch.isfinite(pos).all()
    ptr = batch.atom_ptr
    rates = []
    for i, (m, smi) in enumerate(zip(mols, ORACLE_SMILES)):
        gs = (mol_ids == i).nonzero().flatten().tolist()
        rates.append(float(stereo_matches(set_conformers(m, [pos[ptr[g]:ptr[g + 1]] for g in gs]), smi).mean()))
    return np.array(rates), ok


def test_oracle_sampling_keeps_input_stereo_with_guidance():
    """The oracle score is mirror-blind: without guidance the handedness is random (measured over
    12 seeds x 4 conformers: alanine 0.52, the 4-centre cyclohexane 0.08, the (E)-styrene-like
    alkene 0.96, (Z)-but-2-ene 1.0 match); with guidance + finalize every conformer must match
    the input stereo (measured: all 192 of those runs)."""
    rates_off, _ = oracle_run(stereo=False)
    assert rates_off.shape == (len(ORACLE_SMILES),)
    # The control: unguided, the mirror-blind oracle must get some handedness wrong (the 4-centre
    # cyclohexane matches in ~8 % of conformers), or the guided run below would prove nothing.
    assert rates_off.min() < 0.75, rates_off
    rates_on, ok = oracle_run(stereo=True)
    assert (rates_on == 1.0).all(), rates_on
    assert ok.all()
