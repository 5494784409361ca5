"""Triton langevin_step, fused: per block of atoms, the score over their CSR rows, the per-atom
norm clip and r + a * clip(S) + sqrt(2a) * noise, written to a new buffer in one launch."""

import math

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .segment import BLOCK_ATOMS, atom_score, rows, split_float


@triton.jit
def langevin_step_kernel(pos_ptr, dst_ptr, score_ptr, noise_ptr, rowptr_ptr, out_ptr, N,
                         a_hi, a_lo, ns_hi, ns_lo, clip_hi, clip_lo, BLOCK: tl.constexpr):
    atoms = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = atoms < N
    xi, yi, zi, sx, sy, sz = atom_score(pos_ptr, dst_ptr, score_ptr, rowptr_ptr, atoms, mask, N)
    dtype = pos_ptr.dtype.element_ty
    # Scalars arrive as fp32 pairs (see segment.split_float) so a float64 run keeps their precision.
    a = tl.cast(a_hi, dtype) + tl.cast(a_lo, dtype)
    noise_scale = tl.cast(ns_hi, dtype) + tl.cast(ns_lo, dtype)
    limit = tl.cast(clip_hi, dtype) + tl.cast(clip_lo, dtype)
    norm = tl.sqrt(sx * sx + sy * sy + sz * sz)
    # clip_norm: rescale to length `limit` only when longer (norm > limit >= 0 => norm > 0).
    big = norm > limit
    scale = tl.where(big, limit / tl.where(big, norm, 1.0), 1.0)
    as_ = a * scale
    zx = tl.load(noise_ptr + 3 * atoms, mask=mask, other=0.0)
    zy = tl.load(noise_ptr + 3 * atoms + 1, mask=mask, other=0.0)
    zz = tl.load(noise_ptr + 3 * atoms + 2, mask=mask, other=0.0)
    tl.store(out_ptr + 3 * atoms, xi + as_ * sx + noise_scale * zx, mask=mask)
    tl.store(out_ptr + 3 * atoms + 1, yi + as_ * sy + noise_scale * zy, mask=mask)
    tl.store(out_ptr + 3 * atoms + 2, zi + as_ * sz + noise_scale * zz, mask=mask)


@triton_op("confgf_fast::triton_langevin_step", mutates_args=())
def langevin_step(pos: Tensor, edge_index: Tensor, edge_score: Tensor, noise: Tensor, rowptr: Tensor | None,
                  step_size: float, clip: float) -> Tensor:
    """pos, noise: [N, 3]; edge_index: [2, E] sorted by source; edge_score: [E]; rowptr: [N+1] or None
    -> r + a * clip(S) + sqrt(2a) * noise as a new [N, 3] tensor."""
    if step_size < 0 or clip < 0:
        raise ValueError(f"step_size and clip must be >= 0, got {step_size}, {clip}")
    pos = pos.contiguous()
    edge_index = edge_index.contiguous()
    score = edge_score.to(pos.dtype).contiguous()
    noise = noise.to(pos.dtype).contiguous()
    N = pos.shape[0]
    rp = rows(edge_index, N, rowptr)
    out = torch.empty_like(pos)
    if N > 0:
        grid = (triton.cdiv(N, BLOCK_ATOMS),)
        wrap_triton(langevin_step_kernel)[grid](
            pos, edge_index[1], score, noise, rp, out, N,
            *split_float(float(step_size)), *split_float(math.sqrt(2.0 * step_size)), *split_float(float(clip)),
            BLOCK=BLOCK_ATOMS,
        )
    return out


@langevin_step.register_fake
def _(pos: Tensor, edge_index: Tensor, edge_score: Tensor, noise: Tensor, rowptr: Tensor | None,
      step_size: float, clip: float) -> Tensor:
    # Shape-only, for the same reason as in pairwise_distance.py (interpreted kernels and FakeTensors).
    return pos.new_empty(pos.shape)
