"""Graph and input generators for testing and benchmarking the ops, without RDKit.

Everything here builds edge lists that satisfy the ops' contract: int64 [2, E], sorted by source
(then destination), both directions present, no self loops. Used by tests/test_ops_*.py and
bench/ (the GPU machine has no RDKit, so benchmark graphs can be synthesised with the same sizes).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import EDGE_SINGLE
from ..graph import extended_graph as _extended_graph


def edges_from_pairs(pairs: Tensor, num_atoms: int) -> Tensor:
    """pairs: [P, 2] undirected pairs (i != j) -> edge_index [2, 2P'] with both directions, sorted by
    (src, dst), duplicates removed."""
    pairs = pairs.long().reshape(-1, 2)
    both = torch.cat([pairs, pairs.flip(1)], 0)
    both = both[both[:, 0] != both[:, 1]]
    key = torch.unique(both[:, 0] * max(num_atoms, 1) + both[:, 1])  # sorted
    return torch.stack([key // max(num_atoms, 1), key % max(num_atoms, 1)])


def reverse_index(edge_index: Tensor, num_atoms: int) -> Tensor:
    """[E] index of each edge's reverse (dst, src); edges must be sorted by (src, dst) and symmetric."""
    n = max(num_atoms, 1)
    key = edge_index[0] * n + edge_index[1]
    rev = torch.searchsorted(key, edge_index[1] * n + edge_index[0])
    if rev.numel() and not torch.equal(key[rev.clamp_max(key.numel() - 1)], edge_index[1] * n + edge_index[0]):
        raise ValueError("edge_index is not symmetric or not sorted by (src, dst)")
    return rev


def random_graph(num_atoms: int, avg_degree: float = 6.0, num_isolated: int = 0,
                 generator: torch.Generator | None = None) -> Tensor:
    """A random undirected graph as a sorted, symmetric edge_index [2, E]; `num_isolated` atoms,
    chosen at random, get no edges."""
    if num_atoms < 2:
        return torch.zeros(2, 0, dtype=torch.long)
    num_pairs = int(num_atoms * avg_degree / 2)
    pairs = torch.randint(0, num_atoms, (num_pairs, 2), generator=generator)
    if num_isolated:
        isolated = torch.randperm(num_atoms, generator=generator)[:num_isolated]
        keep = ~(torch.isin(pairs[:, 0], isolated) | torch.isin(pairs[:, 1], isolated))
        pairs = pairs[keep]
    return edges_from_pairs(pairs, num_atoms)


def extended_graph(bonds: list[tuple[int, int]], num_atoms: int, order: int = 3) -> Tensor:
    """Bond list -> edge_index of all atom pairs within `order` bonds (the ConfGF extended graph),
    sorted and symmetric: graph.extended_graph's edges (the one implementation, which chem.featurize
    uses too), for callers that have only bonds and no atom or bond types."""
    bond_index = torch.tensor(bonds, dtype=torch.long).reshape(-1, 2).t()
    bond_index = bond_index[:, bond_index[0] != bond_index[1]]  # a self "bond" is no edge
    z = torch.zeros(num_atoms, dtype=torch.long)
    bond_type = torch.full((bond_index.shape[1],), EDGE_SINGLE, dtype=torch.long)
    return _extended_graph(z, bond_index, bond_type, order).edge_index


def synthetic_molecule(num_atoms: int, target_edges: int, tries: int = 200, seed: int = 0) -> Tensor:
    """A molecule-like tree (valence <= 4) whose order-3 extended graph has about `target_edges`
    directed edges: the closest of `tries` random trees. For benchmarks where RDKit is missing."""
    best, best_gap = None, None
    g = torch.Generator().manual_seed(seed)
    for _ in range(tries):
        bonds, degree = [], [0] * num_atoms
        for a in range(1, num_atoms):
            open_atoms = [b for b in range(a) if degree[b] < 4]
            b = open_atoms[int(torch.randint(len(open_atoms), (1,), generator=g))]
            bonds.append((a, b))
            degree[a] += 1
            degree[b] += 1
        ei = extended_graph(bonds, num_atoms)
        gap = abs(ei.shape[1] - target_edges)
        if best_gap is None or gap < best_gap:
            best, best_gap = ei, gap
        if gap == 0:
            break
    return best


def replicate(edge_index: Tensor, num_atoms: int, copies: int) -> Tensor:
    """One graph repeated `copies` times as one flat batch (atom offsets added), still sorted."""
    offsets = torch.arange(copies, dtype=torch.long).repeat_interleave(edge_index.shape[1]) * num_atoms
    return edge_index.repeat(1, copies) + offsets.unsqueeze(0)


def random_inputs(num_atoms: int, edge_index: Tensor, dtype: torch.dtype = torch.float32, device="cpu",
                  generator: torch.Generator | None = None, spread: float = 1.5):
    """(pos [N, 3], edge_score [E], noise [N, 3]) drawn at random."""
    E = edge_index.shape[1]
    pos = (spread * torch.randn(num_atoms, 3, generator=generator, dtype=torch.float64)).to(dtype)
    score = torch.randn(E, generator=generator, dtype=torch.float64).to(dtype)
    noise = torch.randn(num_atoms, 3, generator=generator, dtype=torch.float64).to(dtype)
    return pos.to(device), score.to(device), noise.to(device)


def norm_rel_err(got: Tensor, want: Tensor) -> float:
    """||got - want|| / max(||want||, 1e-30) in float64: one number for a whole scatter output."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if want.numel() == 0:
        return 0.0 if got.numel() == 0 else float("inf")
    return float((got - want).norm() / want.norm().clamp_min(1e-30))
