"""Flagging broken conformers (outliers) after sampling, per conformer of a GraphBatch.

Langevin sampling occasionally ends in a tangled or exploded geometry. The tests, with L_ij =
R_cov(Z_i) + R_cov(Z_j) (RDKit's covalent radii) and W_ij = R_vdw(Z_i) + R_vdw(Z_j) (RDKit's
van der Waals radii: H 1.2, C 1.7, N 1.6, O 1.55, F 1.5 A):

- nonfinite: any coordinate NaN/inf;
- bond (1-2 pairs: edge types single/double/triple/aromatic):
      |d_ij - L_ij| > bond_tolerance * L_ij.
  One reference for every bond order: real bonds sit at d / L = 0.78 (C#C, C#N) .. 1.11
  (measured on the xTB dev benchmark and the GEOM-Drugs fixture), so the default tolerance 0.3
  (C-C outside 1.06..1.98 A, C-H outside 0.75..1.39 A) passes every real bond with room and flags
  stretched, broken and collapsed bonds. A bond longer than 1.3 L is also one that bond
  perception (RDKit's DetermineConnectivity: d < 1.3 L) would not see;
- clash (1-3 and 1-4 pairs, the angle and dihedral edges of the extended graph):
      d_ij < max(clash_distance, clash_scale * L_ij),
  closer than clash_distance (1.0 A) and closer than they would be if bonded. Real conformers
  have 1-3 / 1-4 pairs at >= 1.63 A (geminal H...H) and >= 1.3 L_ij for heavy atoms
  (bicyclo[1.1.1]pentane's bridgeheads, 1.87 A = 1.23 L measured, 1.29 L after MMFF, are the
  tightest case we know of: so 1-3 pairs cannot be held to the perception threshold 1.3 L);
- vdw (every pair of atoms at topological distance >= 3 bonds, i.e. 1-4 pairs and all pairs not
  on the extended graph, anywhere in the conformer):
      d_ij < vdw_fraction * W_ij,
  except hydrogen-bond pairs (an H bonded to N, O or S and an N, O or F atom), which are held
  only to the next test;
- connectivity (the same pairs, hydrogen bonds included): d_ij < (1 + bond_tolerance) * L_ij,
  i.e. bond perception would see a bond the input does not have (O-H 1.26 A, N-H 1.33, C-C 1.98;
  with `bond` this covers every change of connectivity except at 1-3 pairs, which `clash` bounds
  at 1.0 L).

VDW_FRACTION = 0.6, measured: the smallest d / W over pairs >= 3 bonds apart, per kind of pair,
on the 2,100 GFN2-xTB reference conformers and 4,186 ETKDGv3 conformers (2K per molecule, seed =
molecule index) of the 190 QM9 dev-benchmark molecules, the 503 GEOM-Drugs fixture records and the
923 GFN2-xTB conformers of the 40-molecule drug dev benchmark:

    pair kind                       xTB QM9   ETKDG QM9   GEOM-Drugs   xTB drugs
    heavy...heavy                    0.711     0.700       0.781 *      0.694
    H...H                            0.793     0.688       0.790        0.785
    H...heavy, not a hydrogen bond   0.756     0.681       0.710        0.714
    hydrogen bond H...acceptor       0.671     0.648       0.509        0.620

(* leaving out the one fixture record whose bond table lacks a P-C bond that its coordinates
have, 1.86 A = 0.51 W: `connectivity` and `vdw` flag it, as they should.) Every ordinary contact
is >= 0.68 W, so 0.6 W (C...C 2.04, C...H 1.74, H...H 1.44 A) flags none of them, with a margin
of 0.08, and catches every overlap that sampling produces (heavy atoms 0.3-0.8 A apart, an H
inside a ring). A
hydrogen bond in a salt bridge (GEOM-Drugs, N-H+...O=P, 1.40 A) reaches 0.51 W, so no single
fraction in 0.5-0.6 would be safe for them; for such pairs the meaningful failure is a proton
transfer, which `connectivity` catches. With these settings all of the conformers above are
clean except 3 of the 4,186 ETKDG ones, which have a collapsed methyl C-H (0.44-0.59 A, `bond`).

The all-pairs tests cost O(n^2) per conformer (n atoms): distances of every pair, built in
chunks of at most `max_pairs` pairs so memory stays bounded, all vectorised over the batch.
Measured on one core of a busy 2-core machine: all tests on a batch of 50 conformers of a 23-atom
QM9 molecule (1,150 atoms) take 23 ms, on 20 conformers of a 55-atom drug-like molecule 35 ms;
one evaluation of the shipped score network on the first batch took 252 ms, and sampling makes
966 (`fast`) to 5000 (`paper`) of them. Reading the batch's atom counts and edges to the host to
build the pair indices is the only host synchronisation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..config import EDGE_ANGLE, EDGE_DIHEDRAL
from ..graph import GraphBatch

# Smallest allowed d / (R_vdw(i) + R_vdw(j)) for atoms >= 3 bonds apart (measurement in the docstring).
VDW_FRACTION = 0.6
# Hydrogen bonds: an H on one of DONORS and an atom of ACCEPTORS are exempt from the vdw test.
DONORS = (7, 8, 16)
ACCEPTORS = (7, 8, 9)
# Pairs per chunk of the all-pairs tests: 4 M pairs is ~100 MB of temporaries in float32.
MAX_PAIRS = 1 << 22
# The names of conformer_defects' tests, in the order reasons are reported.
DEFECTS = ("nonfinite", "bond", "clash", "vdw", "connectivity")


@lru_cache(maxsize=1)
def _radii_tables() -> tuple[Tensor, Tensor]:
    from rdkit import Chem

    pt = Chem.GetPeriodicTable()
    cov = torch.tensor([pt.GetRcovalent(z) if z > 0 else 0.0 for z in range(119)], dtype=torch.float32)
    vdw = torch.tensor([pt.GetRvdw(z) if z > 0 else 0.0 for z in range(119)], dtype=torch.float32)
    return cov, vdw


def covalent_radii(z: Tensor) -> Tensor:
    """z: [N] atomic numbers -> [N] covalent radii (A) from RDKit's periodic table (the only RDKit
    use here; the table is read once)."""
    return _radii_tables()[0].to(z.device)[z]


def vdw_radii(z: Tensor) -> Tensor:
    """z: [N] atomic numbers -> [N] van der Waals radii (A) from RDKit's periodic table."""
    return _radii_tables()[1].to(z.device)[z]


def reference_lengths(batch: GraphBatch) -> Tensor:
    """[E] L_ij = R_cov(Z_i) + R_cov(Z_j) for every edge of the batch (A)."""
    r = covalent_radii(batch.z)
    return r[batch.edge_index[0]] + r[batch.edge_index[1]]


def hbond_atoms(batch: GraphBatch) -> tuple[Tensor, Tensor]:
    """([N] bool hydrogens bonded to a DONORS atom, [N] bool ACCEPTORS atoms) of the batch."""
    z = batch.z
    src, dst = batch.edge_index
    polar = (batch.edge_type < EDGE_ANGLE) & (z[src] == 1) & torch.isin(z[dst], torch.tensor(DONORS, device=z.device))
    donor_h = torch.zeros(z.numel(), dtype=torch.bool, device=z.device)
    donor_h[src[polar]] = True
    return donor_h, torch.isin(z, torch.tensor(ACCEPTORS, device=z.device))


def hbond_pairs(batch: GraphBatch, src: Tensor, dst: Tensor) -> Tensor:
    """[P] bool: pair (src, dst) is a hydrogen bond, an H on a DONORS atom and an ACCEPTORS atom."""
    donor_h, acceptor = hbond_atoms(batch)
    return (donor_h[src] & acceptor[dst]) | (donor_h[dst] & acceptor[src])


def far_pair_index(batch: GraphBatch, max_pairs: int = MAX_PAIRS, below: int = EDGE_DIHEDRAL):
    """Yield (src [P], dst [P]) int64 numpy arrays of global atom indices: every pair src < dst
    within one conformer not joined by an edge of type < `below` (the default: >= 3 bonds apart,
    not a 1-2 or 1-3 pair of the extended graph; NUM_EDGE_TYPES: no edge at all, >= 4 bonds
    apart), in chunks of whole atom rows with at most max_pairs candidate pairs each (or one row,
    if longer).

    Built on the host with numpy: index arithmetic on small arrays, where torch's parallel
    kernels cost more in thread start-up than the work (measured 17 ms per repeat_interleave
    call on a busy 2-core machine, 0.03 ms with numpy)."""
    ptr = batch.atom_ptr.cpu().numpy()
    N = int(ptr[-1])
    ei = batch.edge_index.cpu().numpy()
    keep = (ei[0] < ei[1]) & (batch.edge_type.cpu().numpy() < below)
    near = ei[0, keep] * N + ei[1, keep]  # ascending: edges are sorted by (src, dst)
    partners = np.repeat(ptr[1:], np.diff(ptr)) - 1 - np.arange(N)  # [N] atoms after each in its conformer
    cum = np.concatenate([[0], np.cumsum(partners)])
    a0 = 0
    while a0 < N:
        # Last row end a1 with cum[a1] - cum[a0] <= max_pairs (at least one row).
        a1 = min(N, max(a0 + 1, int(np.searchsorted(cum, cum[a0] + max_pairs, side="right")) - 1))
        P = int(cum[a1] - cum[a0])
        if P > 0:
            cnt = partners[a0:a1]
            src = np.repeat(np.arange(a0, a1), cnt)
            dst = src + 1 + np.arange(P) - np.repeat(cum[a0:a1] - cum[a0], cnt)
            if near.size:
                key = src * N + dst
                far = near[np.searchsorted(near, key).clip(max=near.size - 1)] != key
                src, dst = src[far], dst[far]
            yield src, dst
        a0 = a1


def far_pairs(pos: Tensor, batch: GraphBatch, max_pairs: int = MAX_PAIRS):
    """pos: [N, 3] -> yield (src [P], dst [P], d [P]) tensors on pos.device for the pairs >= 3
    bonds apart (1-4 and beyond) within each conformer, in chunks (far_pair_index): the pairs of
    the vdw and connectivity tests."""
    for s, t in far_pair_index(batch, max_pairs):
        src = torch.from_numpy(s).to(pos.device)
        dst = torch.from_numpy(t).to(pos.device)
        yield src, dst, (pos[src] - pos[dst]).norm(dim=-1)


def closest_far_contacts(pos: Tensor, batch: GraphBatch, max_pairs: int = MAX_PAIRS) -> tuple[Tensor, Tensor]:
    """pos: [N, 3] -> ([G] min d / W, [G] min d / L) over the pairs >= 3 bonds apart of each
    conformer (d / W without hydrogen-bond pairs; inf where a conformer has none): how close the
    vdw and connectivity tests came."""
    G = batch.num_graphs
    rv, rc = vdw_radii(batch.z).to(pos.dtype), covalent_radii(batch.z).to(pos.dtype)
    out_w = torch.full((G,), float("inf"), dtype=pos.dtype, device=pos.device)
    out_l = out_w.clone()
    for src, dst, d in far_pairs(pos, batch, max_pairs):
        g = batch.node_graph[src]
        hbond = hbond_pairs(batch, src, dst)
        out_w.scatter_reduce_(0, g, torch.where(hbond, torch.inf, d / (rv[src] + rv[dst])), "amin")
        out_l.scatter_reduce_(0, g, d / (rc[src] + rc[dst]), "amin")
    return out_w, out_l


def conformer_defects(pos: Tensor, batch: GraphBatch, bond_tolerance: float = 0.3, clash_distance: float = 1.0,
                      clash_scale: float = 1.0, vdw_fraction: float = VDW_FRACTION,
                      max_pairs: int = MAX_PAIRS) -> dict[str, Tensor]:
    """pos: [N, 3] -> {name: [G] bool} for each name in DEFECTS, the tests of the module doc."""
    G = batch.num_graphs
    dev = pos.device
    nonfinite_atom = ~torch.isfinite(pos).all(dim=-1)  # [N]
    src, dst = batch.edge_index
    d = (pos[src] - pos[dst]).norm(dim=-1)  # [E]
    L = reference_lengths(batch).to(pos.dtype)
    bonded = batch.edge_type < EDGE_ANGLE
    # NaN distances compare False everywhere; they are caught by the non-finite test.
    bad_bond = bonded & ((d - L).abs() > bond_tolerance * L)
    bad_clash = ~bonded & (d < torch.clamp(clash_scale * L, min=clash_distance))

    def per_conf(flags: Tensor, index: Tensor) -> Tensor:
        return torch.zeros(G, dtype=torch.long, device=dev).index_add_(0, index, flags.long()) > 0

    vdw_hits = torch.zeros(G, dtype=torch.long, device=dev)
    conn_hits = torch.zeros(G, dtype=torch.long, device=dev)
    rv, rc = vdw_radii(batch.z).to(pos.dtype), covalent_radii(batch.z).to(pos.dtype)
    for s, t, dd in far_pairs(pos, batch, max_pairs):
        g = batch.node_graph[s]
        hbond = hbond_pairs(batch, s, t)
        vdw_hits.index_add_(0, g, ((dd < vdw_fraction * (rv[s] + rv[t])) & ~hbond).long())
        conn_hits.index_add_(0, g, (dd < (1.0 + bond_tolerance) * (rc[s] + rc[t])).long())
    return {
        "nonfinite": per_conf(nonfinite_atom, batch.node_graph),
        "bond": per_conf(bad_bond, batch.edge_graph),
        "clash": per_conf(bad_clash, batch.edge_graph),
        "vdw": vdw_hits > 0,
        "connectivity": conn_hits > 0,
    }


def broken_conformers(pos: Tensor, batch: GraphBatch, bond_tolerance: float = 0.3, clash_distance: float = 1.0,
                      clash_scale: float = 1.0, vdw_fraction: float = VDW_FRACTION) -> Tensor:
    """pos: [N, 3] -> [G] bool: the conformer fails any test of conformer_defects (non-finite
    coordinates, a bond off by more than bond_tolerance * L, a 1-3 / 1-4 clash, two atoms >= 3
    bonds apart closer than vdw_fraction of their van der Waals radii or close enough to be
    perceived as bonded)."""
    defects = conformer_defects(pos, batch, bond_tolerance, clash_distance, clash_scale, vdw_fraction)
    out = defects["nonfinite"]
    for name in DEFECTS[1:]:
        out = out | defects[name]
    return out


def defect_reasons(defects: dict[str, Tensor]) -> list[list[str]]:
    """conformer_defects' output -> per conformer the names of the failed tests (empty: ok)."""
    flags = torch.stack([defects[name].cpu() for name in DEFECTS], 1).tolist()  # [G, len(DEFECTS)]
    return [[name for name, hit in zip(DEFECTS, row) if hit] for row in flags]


def quality_flags(defects: list[str]) -> dict:
    """One conformer's defect names (defect_reasons' list for it) -> its SDF flags: {"quality": "ok"}
    or {"quality": "broken", "quality_reasons": "vdw,connectivity"}."""
    return {"quality": "broken", "quality_reasons": ",".join(defects)} if defects else {"quality": "ok"}


__all__ = [
    "DEFECTS",
    "VDW_FRACTION",
    "broken_conformers",
    "closest_far_contacts",
    "conformer_defects",
    "covalent_radii",
    "defect_reasons",
    "far_pair_index",
    "far_pairs",
    "hbond_atoms",
    "hbond_pairs",
    "quality_flags",
    "reference_lengths",
    "vdw_radii",
]
