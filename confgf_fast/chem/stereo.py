"""Keeping the input's stereochemistry: tetrahedral centres and double-bond cis/trans geometry.

The ConfGF score lives on interatomic distances, and a conformer and its mirror image have the
same distances, so the sampler alone picks the handedness of every stereocentre at random (and,
with only the weak 3-hop distances to go by, sometimes the wrong side of a double bond). This
module adds what the distances cannot see, in two layers.

RDKit side (`stereo_constraints`): from the input Mol, one signed target per stereo element, as
plain tensors with the molecule's atom indices (`StereoConstraints`); `batch_constraints` offsets
them into a GraphBatch.

- Tetrahedral centre c with neighbours n0..n3 in RDKit's bond order. Target sign s = +1 for
  RDKit's CHI_TETRAHEDRAL_CCW, -1 for CW: looking from n0 towards c, n1 -> n2 -> n3 run
  counter-clockwise for CCW; an implicit H or a lone pair counts as the last neighbour. Atom order
  and CIP ranks do not enter. Two measures, both with the sign s when the centre is right:
    T = (r0 - rc) . ((r1 - rc) x (r2 - rc))   [A^3], the triple product RDKit's 3D perception
        (AssignStereochemistryFrom3D) reads; it calls the centre unspecified when |T| <= 0.1 A^3;
    V = -e1 . (e2 x e3),  e_i = (r_i - r0) / sqrt(|r_i - r0|^2 + delta^2): the orientation of the
        tetrahedron of the four neighbours (the arrangement of the substituents, wherever the
        centre atom is), normalised; 0.71 for a regular one. A 3-coordinate centre (sulfoxide,
        phosphine, bridgehead N) is stored with n3 = c and uses V = u0 . (u1 x u2), u_i the
        softened unit vectors from c.
  Why both: T is small at strained centres (ETKDG conformers of 1000 QM9 test molecules:
  T >= 0.12 A^3, 1st percentile 0.37), and a push on T alone can satisfy it by squeezing the
  centre atom through the plane of n0..n2 while the substituents stay in the wrong arrangement.
  V stays >= 0.37 on ETKDG and GEOM-Drugs conformers. The guidance pushes both, the final check
  requires both, so it agrees with RDKit's perception. (In oracle-score sampling, V + T reached
  the input stereo more often and left fewer distorted conformers than either measure alone, and
  than a V built from unit vectors out of the centre, whose push moves the centre atom instead of
  the substituents.)
- Stereo double bond b=c with RDKit's stereo atoms a (on b) and d (on c); STEREOZ / STEREOCIS
  say a and d are cis, STEREOE / STEREOTRANS trans. The dihedral a-b=c-d,
      cos(phi) = n1 . n2 / (|n1| |n2|),   n1 = (r_b - r_a) x (r_c - r_b),  n2 = (r_c - r_b) x (r_d - r_c),
  target sign t = +1 for cis (|phi| < 90 deg), -1 for trans.
The sign conventions are checked against RDKit's 3D perception of ETKDG conformers and of
GEOM-Drugs records in tests/test_stereo.py.

Torch side (no RDKit): the measures for a whole batch, the flat-bottom penalty
      P = sum_centres [h(m_V - s V) + h(m_T - s T)] + sum_bonds h(m_c - t cos(phi)),
h = smooth_hinge (0 for x <= 0, slope 1 beyond a small quadratic corner), its force -k grad P
(exactly zero when every element is right with margin: correct conformers are not touched),
`fix_mirror` (reflecting a conformer keeps every distance and flips every V and T, so a conformer
with mostly inverted centres is repaired for free) and the final check `stereo_ok`.
`StereoGuidance` is the sampler hook and `make_guidance` the one call the pipeline makes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from ..config import Schedule
from ..graph import GraphBatch, offsets

# Margins of the flat-bottom penalty. V: regular 0.71, ETKDG / GEOM-Drugs conformers (small
# rings included) >= 0.37. T: RDKit's perception threshold 0.1 A^3 plus half; ETKDG
# conformers >= 0.12 A^3 (4 of 1625 centres are below 0.15 and get a slight push). cos(phi): a
# clean double bond has |cos| ~ 1 (ETKDG > 0.99); 0.5 means |phi| < 60 deg or > 120 deg.
CHIRAL_MARGIN = 0.2
TRIPLE_MARGIN = 0.15
BOND_MARGIN = 0.5
# RDKit's zero-volume tolerance in assignChiralTypesFrom3D (A^3): |T| below it reads as unspecified.
RDKIT_VOLUME_TOL = 0.1
# Width of the quadratic corner of smooth_hinge (units of the measure).
HINGE_WIDTH = 0.1
# Softening length (A) of the unit vectors and normals, so V, cos(phi) and their gradients stay
# bounded when atoms overlap (early in sampling, or in a broken conformer).
_DELTA = 0.1


# ---- constraints -------------------------------------------------------------------------------

@dataclass
class StereoConstraints:
    """Stereo targets of one molecule (local atom indices) or of a batch (global atom indices).

    chiral_atoms: [T, 5] int64 (c, n0, n1, n2, n3): centre and its neighbours in RDKit's bond
                  order; n3 = c for a 3-coordinate centre
    chiral_sign:  [T] float32, +1 / -1: target sign of V (see chiral_volumes)
    bond_atoms:   [D, 4] int64 (a, b, c, d): b=c is the double bond, a on b, d on c
    bond_sign:    [D] float32, +1 = cis (cos(phi) > 0), -1 = trans
    """

    chiral_atoms: Tensor
    chiral_sign: Tensor
    bond_atoms: Tensor
    bond_sign: Tensor

    @classmethod
    def empty(cls, device: torch.device | str | None = None) -> StereoConstraints:
        return cls(torch.zeros(0, 5, dtype=torch.long, device=device), torch.zeros(0, device=device),
                   torch.zeros(0, 4, dtype=torch.long, device=device), torch.zeros(0, device=device))

    @property
    def num_chiral(self) -> int:
        return int(self.chiral_atoms.shape[0])

    @property
    def num_bonds(self) -> int:
        return int(self.bond_atoms.shape[0])

    def __len__(self) -> int:
        return self.num_chiral + self.num_bonds

    def to(self, device: torch.device | str) -> StereoConstraints:
        return StereoConstraints(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def stereo_constraints(mol) -> StereoConstraints:
    """Specified tetrahedral centres and stereo double bonds of an RDKit Mol, as tensors.

    The Mol should carry explicit hydrogens (as chem.mol_from_smiles makes it) so that indices are
    those of the sampled graph; a centre with an implicit H still gets the right sign (the implicit
    H is the last neighbour in RDKit's convention). Stereo is taken as assigned on the Mol (from
    the SMILES, or from 3D for a Mol read from a 3D file): a copy gets
    AssignStereochemistry(cleanIt=True, force=True), which drops tags on atoms and bonds that are
    not stereo elements; unspecified elements give no constraint. Double bonds use the bond's
    stereo atoms: STEREOZ / STEREOCIS means those two are cis, STEREOE / STEREOTRANS trans.
    """
    from rdkit import Chem

    m = Chem.Mol(mol)
    Chem.AssignStereochemistry(m, cleanIt=True, force=True)
    tags = {Chem.ChiralType.CHI_TETRAHEDRAL_CCW: 1.0, Chem.ChiralType.CHI_TETRAHEDRAL_CW: -1.0}
    chiral, chiral_sign = [], []
    for atom in m.GetAtoms():
        sign = tags.get(atom.GetChiralTag())
        if sign is None:
            continue
        c = atom.GetIdx()
        # The tag refers to the order of the atom's bonds (not of GetNeighbors in general).
        nbrs = [b.GetOtherAtomIdx(c) for b in atom.GetBonds()]
        if len(nbrs) not in (3, 4):
            continue  # a tag RDKit kept on a centre we cannot read as tetrahedral
        chiral.append([c, *nbrs, c] if len(nbrs) == 3 else [c, *nbrs])
        chiral_sign.append(sign)
    bond_kind = {Chem.BondStereo.STEREOZ: 1.0, Chem.BondStereo.STEREOCIS: 1.0,
                 Chem.BondStereo.STEREOE: -1.0, Chem.BondStereo.STEREOTRANS: -1.0}
    dbl, dbl_sign = [], []
    for bond in m.GetBonds():
        sign = bond_kind.get(bond.GetStereo())
        if sign is None:
            continue
        sa = list(bond.GetStereoAtoms())
        if len(sa) != 2:
            continue
        b, c = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        # Stereo atoms are listed begin-side first; guard anyway, the dihedral needs a on b, d on c.
        if m.GetBondBetweenAtoms(sa[0], b) is None:
            sa.reverse()
        dbl.append([sa[0], b, c, sa[1]])
        dbl_sign.append(sign)
    return StereoConstraints(
        chiral_atoms=torch.tensor(chiral, dtype=torch.long).reshape(-1, 5),
        chiral_sign=torch.tensor(chiral_sign, dtype=torch.float32),
        bond_atoms=torch.tensor(dbl, dtype=torch.long).reshape(-1, 4),
        bond_sign=torch.tensor(dbl_sign, dtype=torch.float32),
    )


def _rows_per_conformer(counts: Tensor, mol_index: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of a by-molecule packed table (molecule m has counts[m] rows) for each conformer g of
    molecule mol_index[g], concatenated over g -> (row in the packed table [K], conformer [K])."""
    ptr = offsets(counts)
    per_conf = counts[mol_index]  # [G]
    graph = torch.repeat_interleave(torch.arange(mol_index.numel()), per_conf)  # [K]
    start = offsets(per_conf)
    return ptr[mol_index][graph] + (torch.arange(graph.numel()) - start[graph]), graph


def batch_constraints(per_mol: Sequence[StereoConstraints], batch: GraphBatch) -> StereoConstraints:
    """Constraints of every conformer of a GraphBatch, in its global atom indices.

    per_mol[m] holds molecule m's constraints (local indices); conformer g is molecule
    batch.mol_index[g] and its atoms start at batch.atom_ptr[g], so its rows are per_mol[m]'s with
    atom_ptr[g] added. Rows come grouped by conformer; vectorised over conformers; the result is on
    the batch's device.
    """
    dev = batch.atom_ptr.device
    mol_index, atom_ptr = batch.mol_index.long().cpu(), batch.atom_ptr.long().cpu()
    out = {}
    for atoms_key, sign_key, width in (("chiral_atoms", "chiral_sign", 5), ("bond_atoms", "bond_sign", 4)):
        counts = torch.tensor([getattr(c, atoms_key).shape[0] for c in per_mol], dtype=torch.long)
        atoms = torch.cat([getattr(c, atoms_key).cpu().long().reshape(-1, width) for c in per_mol]
                          + [torch.zeros(0, width, dtype=torch.long)])
        signs = torch.cat([getattr(c, sign_key).cpu().float() for c in per_mol] + [torch.zeros(0)])
        rows, graph = _rows_per_conformer(counts, mol_index)
        out[atoms_key] = (atoms[rows] + atom_ptr[graph].unsqueeze(1)).to(dev)
        out[sign_key] = signs[rows].to(dev)
    return StereoConstraints(**out)


# ---- torch side: measures and penalties --------------------------------------------------------

def _soft_unit(v: Tensor, delta2: float) -> Tensor:
    """v: [..., 3] -> v / sqrt(|v|^2 + delta2)."""
    return v * torch.rsqrt((v * v).sum(-1, keepdim=True) + delta2)


def chiral_volumes(pos: Tensor, chiral_atoms: Tensor) -> Tensor:
    """pos: [N, 3], chiral_atoms: [T, 5] (c, n0, n1, n2, n3) -> V: [T] (dimensionless, |V| <= 1).

    Four neighbours: V = -e1 . (e2 x e3), e_i = (r_ni - r_n0) / sqrt(|r_ni - r_n0|^2 + delta^2)
    (delta = 0.1 A): the orientation of the tetrahedron of the neighbours themselves, normalised
    by its edges from n0; 0.71 for a regular one, >= 0.37 in ETKDG / GEOM-Drugs conformers.
    Three neighbours (n3 = c): V = u0 . (u1 x u2) with u_i = (r_ni - r_c) softened the same way.
    V > 0 for RDKit's CCW.
    """
    x = pos[chiral_atoms]  # [T, 5, 3]
    e = _soft_unit(x[:, 2:] - x[:, 1:2], _DELTA**2)  # [T, 3, 3]: n1, n2, n3 seen from n0
    four = -(e[:, 0] * torch.linalg.cross(e[:, 1], e[:, 2], dim=-1)).sum(-1)
    u = _soft_unit(x[:, 1:4] - x[:, :1], _DELTA**2)  # [T, 3, 3]: n0, n1, n2 seen from c
    three = (u[:, 0] * torch.linalg.cross(u[:, 1], u[:, 2], dim=-1)).sum(-1)
    return torch.where(chiral_atoms[:, 4] == chiral_atoms[:, 0], three, four)


def chiral_triples(pos: Tensor, chiral_atoms: Tensor) -> Tensor:
    """pos: [N, 3], chiral_atoms: [T, 5] -> T: [T] (A^3), T = (r0 - rc) . ((r1 - rc) x (r2 - rc)),
    the quantity RDKit's 3D perception reads (> 0.1: CCW, < -0.1: CW, else unspecified)."""
    x = pos[chiral_atoms[:, :4]]  # [T, 4, 3]
    v = x[:, 1:] - x[:, :1]  # [T, 3, 3]
    return (v[:, 0] * torch.linalg.cross(v[:, 1], v[:, 2], dim=-1)).sum(-1)


def dihedral_cosines(pos: Tensor, bond_atoms: Tensor) -> Tensor:
    """pos: [N, 3], bond_atoms: [D, 4] (a, b, c, d) -> cos(phi_abcd): [D], from the plane normals
    n1 = (r_b - r_a) x (r_c - r_b), n2 = (r_c - r_b) x (r_d - r_c), softened by delta^2 like
    chiral_volumes so a degenerate (collinear) dihedral gives ~0 and a bounded gradient."""
    x = pos[bond_atoms]  # [D, 4, 3]
    b1, b2, b3 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 1], x[:, 3] - x[:, 2]
    n1 = _soft_unit(torch.linalg.cross(b1, b2, dim=-1), _DELTA**4)
    n2 = _soft_unit(torch.linalg.cross(b2, b3, dim=-1), _DELTA**4)
    return (n1 * n2).sum(-1)


def smooth_hinge(x: Tensor, width: float = HINGE_WIDTH) -> Tensor:
    """h(x) = 0 for x <= 0, x^2 / (2 w) for 0 < x < w, x - w/2 beyond: a hinge with a quadratic
    corner. Its slope is 1 across the whole wrong region, so the push stays as strong in the middle
    of an inversion (V ~ 0, where the distance score resists most) as at its start; a squared hinge
    fades there and left centres stuck half-inverted in sampling tests."""
    x = torch.relu(x)
    return torch.where(x < width, x * x / (2 * width), x - width / 2)


def stereo_penalty(pos: Tensor, constraints: StereoConstraints) -> Tensor:
    """pos: [N, 3] -> scalar P = sum_centres [h(m_V - s V) + h(m_T - s T)] + sum_bonds h(m_c - t cos(phi)),
    h = smooth_hinge, margins CHIRAL_MARGIN, TRIPLE_MARGIN, BOND_MARGIN; 0 when every element is
    right with margin."""
    s = constraints.chiral_sign.to(pos.dtype)
    t = constraints.bond_sign.to(pos.dtype)
    pv = smooth_hinge(CHIRAL_MARGIN - s * chiral_volumes(pos, constraints.chiral_atoms)).sum()
    pt = smooth_hinge(TRIPLE_MARGIN - s * chiral_triples(pos, constraints.chiral_atoms)).sum()
    pc = smooth_hinge(BOND_MARGIN - t * dihedral_cosines(pos, constraints.bond_atoms)).sum()
    return pv + pt + pc


def stereo_guidance_force(pos: Tensor, constraints: StereoConstraints, strength: float) -> Tensor:
    """pos: [N, 3] -> F: [N, 3] = -strength * dP/dpos (P = stereo_penalty).

    Autograd through a detached copy of pos, so it also works inside torch.no_grad (the sampler).
    Only the atoms of violated elements get a non-zero force.
    """
    if len(constraints) == 0:
        return torch.zeros_like(pos)
    with torch.enable_grad():
        x = pos.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(stereo_penalty(x, constraints), x)
    return -strength * g


# ---- per conformer: check and mirror fix -------------------------------------------------------

def _graph_of(atoms: Tensor, atom_ptr: Tensor) -> Tensor:
    """Conformer of each atom index: atom_ptr[g] <= atom < atom_ptr[g+1]."""
    return torch.searchsorted(atom_ptr, atoms.contiguous(), right=True) - 1


def _count(graph: Tensor, flags: Tensor, G: int) -> Tensor:
    """[G] int64: number of True flags per conformer."""
    return torch.zeros(G, dtype=torch.long, device=flags.device).index_add_(0, graph, flags.long())


def violations(pos: Tensor, constraints: StereoConstraints, atom_ptr: Tensor) -> tuple[Tensor, Tensor]:
    """pos: [N, 3], atom_ptr: [G+1] -> (wrong centres [G], wrong double bonds [G]) int64 counts.

    A centre is right when s V > 0 and s T > 0.1 A^3 (so RDKit perceives it, with the right
    handedness, from 3D), a double bond when t cos(phi) > 0. NaN coordinates count as wrong.
    """
    atom_ptr = atom_ptr.to(pos.device)
    G = atom_ptr.numel() - 1
    c = constraints
    s = c.chiral_sign.to(pos.dtype)
    ok_v = (s * chiral_volumes(pos, c.chiral_atoms) > 0) & (s * chiral_triples(pos, c.chiral_atoms) > RDKIT_VOLUME_TOL)
    ok_c = c.bond_sign.to(pos.dtype) * dihedral_cosines(pos, c.bond_atoms) > 0
    return (_count(_graph_of(c.chiral_atoms[:, 0], atom_ptr), ~ok_v, G),
            _count(_graph_of(c.bond_atoms[:, 1], atom_ptr), ~ok_c, G))


def stereo_ok(pos: Tensor, constraints: StereoConstraints, atom_ptr: Tensor) -> Tensor:
    """pos: [N, 3], atom_ptr: [G+1] -> [G] bool: every centre and double bond of the conformer is
    right (see violations); conformers without stereo elements are True. Sufficient for
    chem.stereo_matches, not necessary: for a molecule that is its own mirror image (e.g.
    cis-1,4-cyclohexanediol) the all-inverted conformer also matches there."""
    bad_v, bad_c = violations(pos, constraints, atom_ptr)
    return (bad_v == 0) & (bad_c == 0)


def mirror_flags(pos: Tensor, constraints: StereoConstraints, atom_ptr: Tensor) -> Tensor:
    """pos: [N, 3], atom_ptr: [G+1] -> [G] bool: more of the conformer's centres have s V < 0 than
    s V > 0, so its mirror image is closer to the target. Only V (the arrangement of the
    substituents) votes: it is robust where T is small."""
    atom_ptr = atom_ptr.to(pos.device)
    G = atom_ptr.numel() - 1
    c = constraints
    sv = c.chiral_sign.to(pos.dtype) * chiral_volumes(pos, c.chiral_atoms)
    graph = _graph_of(c.chiral_atoms[:, 0], atom_ptr)
    return _count(graph, sv < 0, G) > _count(graph, sv > 0, G)


def fix_mirror(pos: Tensor, constraints: StereoConstraints, atom_ptr: Tensor) -> Tensor:
    """pos: [N, 3], atom_ptr: [G+1] -> new pos [N, 3] with every conformer flagged by mirror_flags
    reflected, x -> -x.

    A reflection keeps every distance (the score cannot tell) and flips the sign of every V and T,
    so k inverted centres of K become K - k; cos(phi) and so the double bonds are unchanged.
    """
    atom_ptr = atom_ptr.to(pos.device)
    flip = mirror_flags(pos, constraints, atom_ptr)  # [G]
    node_flip = torch.repeat_interleave(flip, atom_ptr[1:] - atom_ptr[:-1], output_size=pos.shape[0])  # [N]
    out = pos.clone()
    out[:, 0] = torch.where(node_flip, -pos[:, 0], pos[:, 0])
    return out


# ---- the sampler hook --------------------------------------------------------------------------

class StereoGuidance:
    """The `guidance` callable of sampler.langevin_sample: (pos [N, 3], sigma, level) -> F [N, 3] or None.

    At levels with sigma <= sigma_max: F = -(strength / sigma^2) grad P, per atom clipped to
    |F_i| <= clip; above: None (no force, while the coordinates are still mostly noise). The
    1/sigma^2 makes the penalty an extra log-density term -strength * P / sigma^2, scaled like the
    distance score (~ -(d - d0) / sigma^2), so their balance, and the per-step move alpha_l F
    (alpha_l ~ sigma_l^2), are the same at every level.

    Relative configuration only: in every call, a conformer flagged by mirror_flags (centres mostly
    inverted) gets its chiral targets flipped, i.e. it is guided to the exact mirror image of the
    target, which has the same distances; finalize (fix_mirror) reflects it at the end. So the force
    never inverts more than half of a conformer's centres, and never pushes a molecule with a single
    centre at all. Double-bond targets are never flipped (a reflection keeps cis/trans).
    """

    def __init__(self, constraints: StereoConstraints, atom_ptr: Tensor, strength: float, sigma_max: float,
                 clip: float = 1000.0):
        self.constraints = constraints
        self.atom_ptr = atom_ptr.to(constraints.chiral_atoms.device)
        self.strength = float(strength)
        self.sigma_max = float(sigma_max)
        self.clip = float(clip)
        self._centre_graph = _graph_of(constraints.chiral_atoms[:, 0], self.atom_ptr)  # [T]

    def __call__(self, pos: Tensor, sigma: float, level: int) -> Tensor | None:
        if sigma > self.sigma_max or len(self.constraints) == 0:
            return None
        c = self.constraints
        flip = mirror_flags(pos, c, self.atom_ptr)[self._centre_graph]  # [T]
        relative = replace(c, chiral_sign=torch.where(flip, -c.chiral_sign, c.chiral_sign))
        f = stereo_guidance_force(pos, relative, self.strength / sigma**2)
        norm = f.norm(dim=-1, keepdim=True)
        return f * torch.where(norm > self.clip, self.clip / norm.clamp_min(1e-30), torch.ones_like(norm))


Finalize = Callable[[Tensor], tuple[Tensor, Tensor]]


def make_guidance(mols: Sequence, batch: GraphBatch, cfg: Schedule) -> tuple[StereoGuidance | None, Finalize]:
    """Stereo guidance and finalize step for one GraphBatch.

    mols[m]: molecule m of the batch, an RDKit Mol with explicit H (indices as featurised) or its
    precomputed StereoConstraints; conformer g of the batch is mols[batch.mol_index[g]] (only the
    molecules the batch uses are read). Returns (guidance, finalize):
    - guidance: pass to langevin_sample(..., guidance=guidance). None when cfg.stereo is off or the
      batch has no stereo element, and then sampling is exactly as without stereo handling.
    - finalize(pos [N, 3]) -> (pos [N, 3], ok [G] bool): fix_mirror (when cfg.stereo), then
      stereo_ok: which conformers have every stereo element right.
    """
    used = sorted(set(batch.mol_index.tolist()))
    per_mol = [StereoConstraints.empty()] * (used[-1] + 1 if used else 0)
    for m in used:
        x = mols[m]
        per_mol[m] = x if isinstance(x, StereoConstraints) else stereo_constraints(x)
    cons = batch_constraints(per_mol, batch)
    atom_ptr = batch.atom_ptr
    guidance = None
    if cfg.stereo and len(cons) > 0:
        guidance = StereoGuidance(cons, atom_ptr, cfg.stereo_strength, cfg.stereo_sigma_max, cfg.clip)

    def finalize(pos: Tensor) -> tuple[Tensor, Tensor]:
        if cfg.stereo and cons.num_chiral > 0:
            pos = fix_mirror(pos, cons, atom_ptr)
        return pos, stereo_ok(pos, cons, atom_ptr)

    return guidance, finalize


__all__ = [
    "BOND_MARGIN",
    "CHIRAL_MARGIN",
    "RDKIT_VOLUME_TOL",
    "TRIPLE_MARGIN",
    "StereoConstraints",
    "StereoGuidance",
    "batch_constraints",
    "chiral_triples",
    "chiral_volumes",
    "dihedral_cosines",
    "fix_mirror",
    "make_guidance",
    "mirror_flags",
    "smooth_hinge",
    "stereo_constraints",
    "stereo_guidance_force",
    "stereo_ok",
    "stereo_penalty",
    "violations",
]
