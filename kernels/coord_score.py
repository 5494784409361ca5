"""Triton coord_score: S_i = sum_{(i,j)} s_ij (r_i - r_j) / d_ij, one program per block of atoms
looping over their CSR rows (segment reduction: no atomics, deterministic)."""

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .segment import BLOCK_ATOMS, atom_score, rows


@triton.jit
def coord_score_kernel(pos_ptr, dst_ptr, score_ptr, rowptr_ptr, out_ptr, N, BLOCK: tl.constexpr):
    atoms = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = atoms < N
    _, _, _, sx, sy, sz = atom_score(pos_ptr, dst_ptr, score_ptr, rowptr_ptr, atoms, mask, N)
    tl.store(out_ptr + 3 * atoms, sx, mask=mask)
    tl.store(out_ptr + 3 * atoms + 1, sy, mask=mask)
    tl.store(out_ptr + 3 * atoms + 2, sz, mask=mask)


@triton_op("confgf_fast::triton_coord_score", mutates_args=())
def coord_score(pos: Tensor, edge_index: Tensor, edge_score: Tensor, rowptr: Tensor | None) -> Tensor:
    """pos: [N, 3], edge_index: [2, E] sorted by source, edge_score: [E], rowptr: [N+1] or None
    -> S: [N, 3]."""
    pos = pos.contiguous()
    edge_index = edge_index.contiguous()
    score = edge_score.to(pos.dtype).contiguous()
    N = pos.shape[0]
    rp = rows(edge_index, N, rowptr)
    out = torch.empty_like(pos)
    if N > 0:
        grid = (triton.cdiv(N, BLOCK_ATOMS),)
        wrap_triton(coord_score_kernel)[grid](pos, edge_index[1], score, rp, out, N, BLOCK=BLOCK_ATOMS)
    return out


@coord_score.register_fake
def _(pos: Tensor, edge_index: Tensor, edge_score: Tensor, rowptr: Tensor | None) -> Tensor:
    # Shape-only, for the same reason as in pairwise_distance.py (interpreted kernels and FakeTensors).
    return pos.new_empty(pos.shape)
