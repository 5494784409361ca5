"""Pieces shared by the segment-reduction kernels: CSR rows and the per-atom score."""

import math
import struct

import triton
import triton.language as tl
from torch import Tensor

from confgf_fast.graph import rowptr_from_sorted
from confgf_fast.ops.validation import check_graph_unless_checked

# Atoms per program. A row is ~10 edges on molecular graphs; 128 lanes x 4 warps keeps enough
# independent gathers in flight while the per-block loop runs to the block's longest row.
BLOCK_ATOMS = 128
BLOCK_EDGES = 1024


def rows(edge_index: Tensor, num_atoms: int, rowptr: Tensor | None) -> Tensor:
    """edge_index: [2, E] sorted by source -> rowptr [N+1], rowptr[i] = first edge with src >= i.

    Uses the caller's rowptr when given (the sampler keeps one per batch). Checks the graph first
    (check_graph: indices in range, sources sorted, rowptr matching them) unless confgf_fast.ops
    has already done so for this call; the kernels also mask every dst index outside [0, N).
    """
    check_graph_unless_checked(edge_index, num_atoms, rowptr)
    if rowptr is not None:
        return rowptr.contiguous()
    return rowptr_from_sorted(edge_index[0], num_atoms)


def split_float(x: float) -> tuple[float, float]:
    """x -> (hi, lo) with hi = fp32(x), lo = fp32(x - hi).

    Triton passes Python floats to kernels as fp32; a float64 kernel rebuilds x as hi + lo in
    float64, which keeps ~48 bits of x instead of 24.
    """
    try:
        hi = struct.unpack("f", struct.pack("f", x))[0]  # fp32 rounding in plain Python: traceable anywhere
    except OverflowError:  # beyond fp32's range: infinite in fp32 anyway
        return math.copysign(math.inf, x), 0.0
    if not math.isfinite(hi):  # inf/nan: inf - inf would turn lo into nan
        return hi, 0.0
    return hi, x - hi


@triton.jit
def atom_score(pos_ptr, dst_ptr, score_ptr, rowptr_ptr, atoms, mask, N):
    """For a block of atoms: (r_i, S_i) with S_i = sum_{e in row i} s_e (r_i - r_dst(e)) / d_e.

    The block loops to its longest row; lanes past their own row are masked. Each lane adds its
    edges in storage order (deterministic), and an edge with d_e == 0 adds 0 (the reference's
    convention).
    """
    e0 = tl.load(rowptr_ptr + atoms, mask=mask, other=0)
    e1 = tl.load(rowptr_ptr + atoms + 1, mask=mask, other=0)
    xi = tl.load(pos_ptr + 3 * atoms, mask=mask, other=0.0)
    yi = tl.load(pos_ptr + 3 * atoms + 1, mask=mask, other=0.0)
    zi = tl.load(pos_ptr + 3 * atoms + 2, mask=mask, other=0.0)
    sx = tl.zeros_like(xi)
    sy = tl.zeros_like(xi)
    sz = tl.zeros_like(xi)
    max_deg = tl.max(e1 - e0, axis=0)
    for k in range(max_deg):
        e = e0 + k
        m = mask & (e < e1)
        j = tl.load(dst_ptr + e, mask=m, other=0)
        m = m & (j >= 0) & (j < N)  # never read outside pos, whatever dst holds
        s = tl.load(score_ptr + e, mask=m, other=0.0)
        dx = xi - tl.load(pos_ptr + 3 * j, mask=m, other=0.0)
        dy = yi - tl.load(pos_ptr + 3 * j + 1, mask=m, other=0.0)
        dz = zi - tl.load(pos_ptr + 3 * j + 2, mask=m, other=0.0)
        d = tl.sqrt(dx * dx + dy * dy + dz * dz)
        ok = m & (d > 0.0)
        w = tl.where(ok, s / tl.where(ok, d, 1.0), 0.0)
        sx += w * dx
        sy += w * dy
        sz += w * dz
    return xi, yi, zi, sx, sy, sz
