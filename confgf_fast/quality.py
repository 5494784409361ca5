"""Flagging broken conformers (outliers) after sampling, per conformer of a GraphBatch.

Langevin sampling occasionally ends in a tangled or exploded geometry. Three cheap tests, all on
the extended graph's edges (so one pass over tensors the sampler already has):

- non-finite: any coordinate NaN/inf;
- bond: a bonded pair (edge types single/double/triple/aromatic) with
      |d_ij - L_ij| > bond_tolerance * L_ij,   L_ij = R_cov(Z_i) + R_cov(Z_j)
  (RDKit's covalent radii). One reference for every bond order: real bonds sit at
  d / L = 0.78 (C#C, C#N) .. 1.11 (measured on the xTB dev benchmark and the GEOM-Drugs
  fixture), so the default tolerance 0.3 (C-C outside 1.06..1.98 A, C-H outside 0.75..1.39 A)
  passes every real bond with room and flags stretched, broken and collapsed bonds;
- clash: a non-bonded pair on an angle (1-3) or dihedral (1-4) edge with
      d_ij < max(clash_distance, clash_scale * L_ij),
  i.e. closer than clash_distance (1.0 A) and closer than they would be if bonded. Real
  conformers have 1-3 / 1-4 pairs at >= 1.63 A (geminal H...H) and >= 1.3 L_ij for heavy atoms
  (bicyclo[1.1.1]pentane's bridgeheads, 1.87 A = 1.23 L measured, 1.29 L after MMFF, are the
  tightest case we know of).
Limitation: pairs more than 3 bonds apart are not on the extended graph and are not checked, so
two remote parts of a molecule passing through each other are not caught (an all-pairs test would
cost O(n^2) per conformer).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from .config import EDGE_ANGLE
from .graph import GraphBatch


@lru_cache(maxsize=1)
def _radii_table() -> Tensor:
    from rdkit import Chem

    pt = Chem.GetPeriodicTable()
    return torch.tensor([pt.GetRcovalent(z) if z > 0 else 0.0 for z in range(119)], dtype=torch.float32)


def covalent_radii(z: Tensor) -> Tensor:
    """z: [N] atomic numbers -> [N] covalent radii (A) from RDKit's periodic table (the only RDKit
    use here; the table is read once)."""
    return _radii_table().to(z.device)[z]


def reference_lengths(batch: GraphBatch) -> Tensor:
    """[E] L_ij = R_cov(Z_i) + R_cov(Z_j) for every edge of the batch (A)."""
    r = covalent_radii(batch.z)
    return r[batch.edge_index[0]] + r[batch.edge_index[1]]


def conformer_defects(pos: Tensor, batch: GraphBatch, bond_tolerance: float = 0.3, clash_distance: float = 1.0,
                      clash_scale: float = 1.0) -> dict[str, Tensor]:
    """pos: [N, 3] -> {"nonfinite", "bond", "clash"}: [G] bool each, the tests of the module doc."""
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

    return {
        "nonfinite": per_conf(nonfinite_atom, batch.node_graph),
        "bond": per_conf(bad_bond, batch.edge_graph),
        "clash": per_conf(bad_clash, batch.edge_graph),
    }


def broken_conformers(pos: Tensor, batch: GraphBatch, bond_tolerance: float = 0.3, clash_distance: float = 1.0,
                      clash_scale: float = 1.0) -> Tensor:
    """pos: [N, 3] -> [G] bool: the conformer fails any test of conformer_defects (non-finite
    coordinates, a bond off by more than bond_tolerance * L, or a 1-3 / 1-4 clash)."""
    defects = conformer_defects(pos, batch, bond_tolerance, clash_distance, clash_scale)
    return defects["nonfinite"] | defects["bond"] | defects["clash"]


__all__ = ["broken_conformers", "conformer_defects", "covalent_radii", "reference_lengths"]
