"""Triton project_sweeps: `iters` damped Jacobi sweeps of stress majorisation,
    r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij,   d_ij = |r_i - r_j|,
an edge with d_ij = 0 adding 0. One launch per sweep (the launch boundary is the barrier Jacobi
needs), one program per block of atoms looping over their CSR rows, two [N, 3] buffers taking turns
as the previous and the next sweep (nothing E-length is written)."""

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

from confgf_fast.ops.validation import check_graph_unless_checked

from .segment import BLOCK_ATOMS, rows


@triton.jit
def project_sweep_kernel(prev_ptr, dst_ptr, target_ptr, step_ptr, rowptr_ptr, next_ptr, N, BLOCK: tl.constexpr):
    atoms = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = atoms < N
    e0 = tl.load(rowptr_ptr + atoms, mask=mask, other=0)
    e1 = tl.load(rowptr_ptr + atoms + 1, mask=mask, other=0)
    xi = tl.load(prev_ptr + 3 * atoms, mask=mask, other=0.0)
    yi = tl.load(prev_ptr + 3 * atoms + 1, mask=mask, other=0.0)
    zi = tl.load(prev_ptr + 3 * atoms + 2, mask=mask, other=0.0)
    ax = tl.zeros_like(xi)
    ay = tl.zeros_like(xi)
    az = tl.zeros_like(xi)
    # The block loops to its longest row; lanes past their own row are masked. Each lane adds its
    # edges in storage order, as the C++ kernels do.
    max_deg = tl.max(e1 - e0, axis=0)
    for k in range(max_deg):
        e = e0 + k
        m = mask & (e < e1)
        j = tl.load(dst_ptr + e, mask=m, other=0)
        m = m & (j >= 0) & (j < N)  # never read outside prev, whatever dst holds
        t = tl.load(target_ptr + e, mask=m, other=0.0)
        dx = xi - tl.load(prev_ptr + 3 * j, mask=m, other=0.0)
        dy = yi - tl.load(prev_ptr + 3 * j + 1, mask=m, other=0.0)
        dz = zi - tl.load(prev_ptr + 3 * j + 2, mask=m, other=0.0)
        d = tl.sqrt(dx * dx + dy * dy + dz * dz)
        ok = m & (d > 0.0)
        w = tl.where(ok, (t - d) / tl.where(ok, d, 1.0), 0.0)
        ax += w * dx
        ay += w * dy
        az += w * dz
    a = tl.load(step_ptr + atoms, mask=mask, other=0.0)
    tl.store(next_ptr + 3 * atoms, xi + a * ax, mask=mask)
    tl.store(next_ptr + 3 * atoms + 1, yi + a * ay, mask=mask)
    tl.store(next_ptr + 3 * atoms + 2, zi + a * az, mask=mask)


@triton_op("confgf_fast::triton_project_sweeps", mutates_args=())
def project_sweeps(pos: Tensor, edge_index: Tensor, target: Tensor, step: Tensor, rowptr: Tensor | None,
                   iters: int) -> Tensor:
    """pos: [N, 3], edge_index: [2, E] sorted by source, target: [E], step: [N], rowptr: [N+1] or
    None -> new pos [N, 3] after `iters` sweeps."""
    pos = pos.contiguous()
    edge_index = edge_index.contiguous()
    tgt = target.to(pos.dtype).contiguous()
    stp = step.to(pos.dtype).contiguous()
    N = pos.shape[0]
    out = torch.empty_like(pos)
    check_graph_unless_checked(edge_index, N, rowptr)
    if iters == 0 or N == 0:
        return out.copy_(pos)
    rp = rows(edge_index, N, rowptr)  # built once, reused by every sweep
    spare = torch.empty_like(pos) if iters > 1 else out
    grid = (triton.cdiv(N, BLOCK_ATOMS),)
    prev = pos
    for k in range(iters):
        nxt = out if (iters - 1 - k) % 2 == 0 else spare  # the last sweep lands in out
        wrap_triton(project_sweep_kernel)[grid](prev, edge_index[1], tgt, stp, rp, nxt, N, BLOCK=BLOCK_ATOMS)
        prev = nxt
    return out


@project_sweeps.register_fake
def _(pos: Tensor, edge_index: Tensor, target: Tensor, step: Tensor, rowptr: Tensor | None, iters: int) -> Tensor:
    # Shape-only, as the other Triton ops' fakes.
    return pos.new_empty(pos.shape)
