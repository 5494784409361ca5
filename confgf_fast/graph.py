"""Molecular graphs as plain tensors, and batching many molecules x conformers into one flat graph.

No RDKit here (chem/molecule.py builds MolGraph from RDKit) and no torch_geometric: a batch is a handful of
index tensors. Edges are directed, both directions present, sorted by source atom, so per-atom
reductions over edges are segment reductions over CSR rows (`rowptr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


class _GraphSizes:
    """Atom and edge counts of any graph holding `z` [n] and `edge_index` [2, e]."""

    z: Tensor
    edge_index: Tensor

    @property
    def num_atoms(self) -> int:
        return int(self.z.numel())

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


@dataclass
class MolGraph(_GraphSizes):
    """One molecule's extended graph (all atoms, pairs within 3 bonds).

    z: [n] int64 atomic numbers
    edge_index: [2, e] int64 (src, dst), sorted by src then dst, both directions, no self loops
    edge_type: [e] int64 (config.EDGE_*)
    rev: [e] int64, rev[k] = index of the reverse edge (dst, src) of edge k
    """

    z: Tensor
    edge_index: Tensor
    edge_type: Tensor
    rev: Tensor

    @property
    def rowptr(self) -> Tensor:
        """[n+1] CSR row pointers: the edges leaving atom i are rowptr[i]:rowptr[i+1]."""
        return rowptr_from_sorted(self.edge_index[0], self.num_atoms)

    def at_order(self, order: int) -> MolGraph:
        """The same molecule's extended graph of another order (pairs within `order` bonds), rebuilt
        from its bonds: what a model of ModelConfig.graph_order != 3 is given."""
        bond_index, bond_type = self.bonds()
        return extended_graph(self.z, bond_index, bond_type, order)

    def bonds(self) -> tuple[Tensor, Tensor]:
        """([2, B] bonded pairs with src < dst, [B] their types): all the extended graph is built from."""
        from .config import EDGE_ANGLE

        keep = (self.edge_type < EDGE_ANGLE) & (self.edge_index[0] < self.edge_index[1])
        return self.edge_index[:, keep], self.edge_type[keep]


def extended_graph(z: Tensor, bond_index: Tensor, bond_type: Tensor, order: int = 3) -> MolGraph:
    """The extended graph from the bonds alone (no RDKit): all pairs within `order` bonds.

    z: [n] atomic numbers; bond_index: [2, B] bonded pairs (each bond once, either direction);
    bond_type: [B] edge types EDGE_SINGLE..EDGE_AROMATIC. Pairs at 2 and 3 bonds get EDGE_ANGLE and
    EDGE_DIHEDRAL, pairs at h > 3 bonds (order > 3) config.hop_edge_type(h). Hop counts come from
    powers of the boolean adjacency matrix; edges come out sorted by (src, dst) because np.nonzero
    scans row-major.
    """
    from .config import hop_edge_type

    n = int(z.numel())
    bi = bond_index.numpy().astype(np.int64)
    adj = np.zeros((n, n), dtype=bool)
    adj[bi[0], bi[1]] = adj[bi[1], bi[0]] = True
    types = np.full((n, n), -1, dtype=np.int64)
    seen = np.eye(n, dtype=bool) | adj
    frontier = adj.copy()
    for hop in range(2, order + 1):
        frontier = (frontier.astype(np.uint8) @ adj.astype(np.uint8) > 0) & ~seen
        types[frontier] = hop_edge_type(hop)
        seen |= frontier
    bt = bond_type.numpy().astype(np.int64)
    types[bi[0], bi[1]] = bt
    types[bi[1], bi[0]] = bt
    src, dst = np.nonzero(types >= 0)
    eid = np.full((n, n), -1, dtype=np.int64)
    eid[src, dst] = np.arange(src.size)
    return MolGraph(
        z=z.long(),
        edge_index=torch.from_numpy(np.stack([src, dst]).astype(np.int64)),
        edge_type=torch.from_numpy(types[src, dst]),
        rev=torch.from_numpy(eid[dst, src]),
    )


def rowptr_from_sorted(src: Tensor, num_nodes: int) -> Tensor:
    """src: [E] int64 source atoms sorted ascending -> [num_nodes+1] int64 CSR row pointers: the
    edges leaving atom i are rowptr[i]:rowptr[i+1].

    The one implementation for the package, the op validation and the Triton kernels. A binary
    search per row boundary rather than bincount + cumsum: on CUDA bincount reads its maximum back
    to the host, which would break CUDA graph capture; searchsorted never syncs. The result is
    only meaningful for sorted `src` (ops.validation checks that separately).
    """
    targets = torch.arange(num_nodes + 1, device=src.device, dtype=src.dtype)
    return torch.searchsorted(src.contiguous(), targets)


def offsets(counts: Tensor) -> Tensor:
    """counts: [G] int64 sizes -> [G+1] int64 start offsets (exclusive prefix sum, 0 first), so item
    g spans offsets[g]:offsets[g+1]. Per-conformer atom and edge pointers are built with this."""
    out = torch.zeros(counts.numel() + 1, dtype=torch.long, device=counts.device)
    torch.cumsum(counts.long(), 0, out=out[1:])
    return out


def pair_edges(edge_index: Tensor, rev: Tensor) -> tuple[Tensor, Tensor]:
    """edge_index: [2, E] symmetric; rev: [E] -> (half_edges [E/2], edge_pair [E]).

    half_edges lists the edges with src < dst; edge_pair[k] is the position in half_edges of edge k
    or of its reverse. Built once per batch on the host, so the model needs no data-dependent
    shapes (no nonzero, no host sync) inside the sampling loop.
    """
    fwd = edge_index[0] < edge_index[1]
    half_edges = fwd.nonzero().squeeze(1)
    slot = torch.cumsum(fwd, 0) - 1
    edge_pair = torch.where(fwd, slot, slot[rev])
    return half_edges, edge_pair


@dataclass
class GraphBatch(_GraphSizes):
    """G conformers (of possibly different molecules) as one flat graph of N atoms and E edges.

    z: [N] int64; edge_index: [2, E] int64 (global atom indices, sorted by src); edge_type: [E];
    rev: [E] global index of each edge's reverse; rowptr: [N+1];
    atom_ptr: [G+1] atoms of conformer g are atom_ptr[g]:atom_ptr[g+1];
    node_graph: [N] conformer of each atom; edge_graph: [E] conformer of each edge;
    mol_index: [G] which input molecule each conformer belongs to.
    half_edges: [E/2] the edges with src < dst (one per undirected pair), ascending;
    edge_pair: [E] position in half_edges of each edge's pair, so edge_pair[k] == edge_pair[rev[k]].
    The score network evaluates its per-edge MLPs on half_edges only (see model.ScoreNet).
    """

    z: Tensor
    edge_index: Tensor
    edge_type: Tensor
    rev: Tensor
    rowptr: Tensor
    atom_ptr: Tensor
    node_graph: Tensor
    edge_graph: Tensor
    mol_index: Tensor
    half_edges: Tensor
    edge_pair: Tensor

    @property
    def num_graphs(self) -> int:
        return int(self.atom_ptr.numel() - 1)

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(**{k: v.to(device) for k, v in self.__dict__.items()})


class PackedGraphs:
    """Many MolGraphs concatenated, with a vectorised `batch()` that picks molecules by index.

    Used by training (random conformers of a dataset) and sampling (each molecule repeated for
    its conformers), so there is one batching code path.
    """

    def __init__(self, graphs: list[MolGraph] | None = None, *, z=None, atom_ptr=None, edge_index=None,
                 edge_type=None, rev=None, edge_ptr=None):
        if graphs is not None:
            n = torch.tensor([g.num_atoms for g in graphs], dtype=torch.long)
            e = torch.tensor([g.num_edges for g in graphs], dtype=torch.long)
            z = torch.cat([g.z for g in graphs]) if graphs else torch.zeros(0, dtype=torch.long)
            edge_index = (torch.cat([g.edge_index for g in graphs], 1) if graphs
                          else torch.zeros(2, 0, dtype=torch.long))
            edge_type = torch.cat([g.edge_type for g in graphs]) if graphs else torch.zeros(0, dtype=torch.long)
            rev = torch.cat([g.rev for g in graphs]) if graphs else torch.zeros(0, dtype=torch.long)
            atom_ptr = offsets(n)
            edge_ptr = offsets(e)
        # Local (per-molecule) indices are stored; global ones are made in batch().
        self.z = z.long()
        self.atom_ptr = atom_ptr.long()
        self.edge_index = edge_index.long()
        self.edge_type = edge_type.long()
        self.rev = rev.long()
        self.edge_ptr = edge_ptr.long()

    def __len__(self) -> int:
        return int(self.atom_ptr.numel() - 1)

    def num_atoms(self, i: int) -> int:
        return int(self.atom_ptr[i + 1] - self.atom_ptr[i])

    def graph(self, i: int) -> MolGraph:
        a0, a1 = int(self.atom_ptr[i]), int(self.atom_ptr[i + 1])
        e0, e1 = int(self.edge_ptr[i]), int(self.edge_ptr[i + 1])
        return MolGraph(self.z[a0:a1], self.edge_index[:, e0:e1], self.edge_type[e0:e1], self.rev[e0:e1])

    def at_order(self, order: int) -> PackedGraphs:
        """Every molecule's graph rebuilt at another order (MolGraph.at_order)."""
        return PackedGraphs([self.graph(i).at_order(order) for i in range(len(self))])

    def batch(self, mol_ids: Tensor | Sequence[int]) -> GraphBatch:
        """mol_ids: [G] molecule index of each conformer (repeats allowed), a tensor or any sequence
        of ints (e.g. [0, 0, 1] for two conformers of molecule 0 and one of molecule 1) -> GraphBatch.
        An index outside 0..num_molecules-1 is an IndexError naming it."""
        mol_ids = torch.as_tensor(mol_ids, dtype=torch.long).reshape(-1).cpu()
        m = self.atom_ptr.numel() - 1
        if mol_ids.numel() and (int(mol_ids.min()) < 0 or int(mol_ids.max()) >= m):
            bad = mol_ids[(mol_ids < 0) | (mol_ids >= m)][0].item()
            raise IndexError(f"molecule index {bad} out of range: this PackedGraphs holds {m} molecule(s)")
        n = self.atom_ptr[mol_ids + 1] - self.atom_ptr[mol_ids]  # [G]
        e = self.edge_ptr[mol_ids + 1] - self.edge_ptr[mol_ids]  # [G]
        G = mol_ids.numel()
        atom_ptr = offsets(n)  # [G+1]
        edge_ptr = offsets(e)  # [G+1]
        node_graph = torch.repeat_interleave(torch.arange(G), n)
        edge_graph = torch.repeat_interleave(torch.arange(G), e)
        # Source position in the packed arrays of every batch atom / edge.
        atom_src = self.atom_ptr[mol_ids][node_graph] + (torch.arange(int(atom_ptr[-1])) - atom_ptr[node_graph])
        edge_local = torch.arange(int(edge_ptr[-1])) - edge_ptr[edge_graph]
        edge_src = self.edge_ptr[mol_ids][edge_graph] + edge_local
        edge_index = self.edge_index[:, edge_src] + atom_ptr[edge_graph].unsqueeze(0)
        rev = self.rev[edge_src] + edge_ptr[edge_graph]
        half_edges, edge_pair = pair_edges(edge_index, rev)
        return GraphBatch(
            z=self.z[atom_src],
            edge_index=edge_index,
            edge_type=self.edge_type[edge_src],
            rev=rev,
            rowptr=rowptr_from_sorted(edge_index[0], int(atom_ptr[-1])),
            atom_ptr=atom_ptr,
            node_graph=node_graph,
            edge_graph=edge_graph,
            mol_index=mol_ids.clone(),
            half_edges=half_edges,
            edge_pair=edge_pair,
        )

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("z", "atom_ptr", "edge_index", "edge_type", "rev", "edge_ptr")}

    @classmethod
    def from_state_dict(cls, d: dict) -> PackedGraphs:
        return cls(**d)
