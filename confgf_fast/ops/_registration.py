"""Fake (meta) kernels and autograd formulas for the ops of confgf_fast._C, registered from
Python by the op registry (_registry.py, which names each op's fakes and autograd hook).

Fake kernels give output shapes/dtypes without running anything, which torch.compile, FakeTensor
and torch.library.opcheck need. Autograd is registered for pairwise_distance (the op that sits
inside the score network's forward; on its compiled and its Triton ops) and gine_aggregate;
coord_score, langevin_step and project_sweeps are used without gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Fake kernels of the compiled ops, one per confgf_fast::<name> schema of csrc/ops.cpp, same
# arguments. _registry.SPECS names them and registers them when the extension is usable.


def pairwise_distance_fake(pos: Tensor, edge_index: Tensor) -> Tensor:
    """pos: [N, 3], edge_index: [2, E] -> [E]."""
    torch._check(pos.dim() == 2 and pos.shape[1] == 3, lambda: f"pos must be [N, 3], got {tuple(pos.shape)}")
    torch._check(edge_index.dim() == 2 and edge_index.shape[0] == 2,
                 lambda: f"edge_index must be [2, E], got {tuple(edge_index.shape)}")
    return pos.new_empty(edge_index.shape[1])


def coord_score_fake(pos: Tensor, edge_index: Tensor, edge_score: Tensor, rowptr: Tensor | None) -> Tensor:
    """pos: [N, 3], edge_index: [2, E], edge_score: [E], rowptr: [N+1] or None -> [N, 3]."""
    torch._check(pos.dim() == 2 and pos.shape[1] == 3, lambda: f"pos must be [N, 3], got {tuple(pos.shape)}")
    torch._check(edge_score.shape[0] == edge_index.shape[1], lambda: "edge_score must be [E]")
    return pos.new_empty(pos.shape)


def langevin_step_fake(pos: Tensor, edge_index: Tensor, edge_score: Tensor, noise: Tensor,
                       rowptr: Tensor | None, step_size: float, clip: float) -> Tensor:
    """pos, noise: [N, 3], edge_index: [2, E], edge_score: [E], rowptr: [N+1] or None -> [N, 3]."""
    torch._check(pos.dim() == 2 and pos.shape[1] == 3, lambda: f"pos must be [N, 3], got {tuple(pos.shape)}")
    torch._check(noise.shape == pos.shape, lambda: "noise must have the shape of pos")
    torch._check(edge_score.shape[0] == edge_index.shape[1], lambda: "edge_score must be [E]")
    return pos.new_empty(pos.shape)


def gine_aggregate_fake(h: Tensor, edge_index: Tensor, edge_attr: Tensor, edge_pair: Tensor,
                        rowptr: Tensor | None) -> Tensor:
    """h: [N, H], edge_index: [2, E], edge_attr: [E/2, H], edge_pair: [E] -> [N, H]."""
    torch._check(h.dim() == 2, lambda: f"h must be [N, H], got {tuple(h.shape)}")
    torch._check(edge_pair.shape[0] == edge_index.shape[1], lambda: "edge_pair must be [E]")
    return h.new_empty(h.shape)


def gine_aggregate_backward_fake(grad_out: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor,
                                 edge_pair: Tensor, rowptr: Tensor | None) -> tuple[Tensor, Tensor]:
    """grad_out, h: [N, H], edge_attr: [E/2, H] -> (grad h [N, H], grad edge_attr [E/2, H])."""
    return h.new_empty(h.shape), edge_attr.new_empty(edge_attr.shape)


def project_sweeps_fake(pos: Tensor, edge_index: Tensor, target: Tensor, step: Tensor,
                        rowptr: Tensor | None, iters: int) -> Tensor:
    """pos: [N, 3], edge_index: [2, E], target: [E], step: [N] -> [N, 3]."""
    torch._check(pos.dim() == 2 and pos.shape[1] == 3, lambda: f"pos must be [N, 3], got {tuple(pos.shape)}")
    torch._check(target.shape[0] == edge_index.shape[1], lambda: "target must be [E]")
    torch._check(step.dim() == 1 and step.shape[0] == pos.shape[0], lambda: "step must be [N]")
    return pos.new_empty(pos.shape)


def register_gine_aggregate_autograd(gine_op, backward_op) -> None:
    """Gradients of out_i = h_i + sum_{e in row i} ReLU(h_dst(e) + a_pair(e)) w.r.t. h and a, by
    the backward kernel (it relies on each pair being used by exactly its two directed edges; see
    csrc/cpu/gine_aggregate_cpu.cpp). First order only: nothing here differentiates twice."""

    def setup_context(ctx, inputs, output):
        h, edge_index, edge_attr, edge_pair, rowptr = inputs
        ctx.save_for_backward(h, edge_index, edge_attr, edge_pair)
        ctx.rowptr = rowptr

    def backward(ctx, grad_out: Tensor):
        h, edge_index, edge_attr, edge_pair = ctx.saved_tensors
        grad_h, grad_a = backward_op(grad_out, h, edge_index, edge_attr, edge_pair, ctx.rowptr)
        return grad_h, None, grad_a, None, None

    torch.library.register_autograd(gine_op, backward, setup_context=setup_context)


def register_pairwise_distance_autograd(pairwise_distance_op, coord_score_op) -> None:
    """d_e = |r_src - r_dst|, so with u_e = (r_src - r_dst) / d_e (0 when d_e = 0) and incoming
    grad g:  dL/dr_i = sum_{e: src=i} g_e u_e  -  sum_{e: dst=i} g_e u_e.

    The first sum is coord_score(pos, edge_index, g). The second, with its sign, is coord_score on
    the transposed edge list (dst, src) (there r_i - r_j = r_dst - r_src = -d_e u_e), sorted by its
    new source with a stable sort so it stays a deterministic segment reduction. (When g is
    symmetric, g_e = g_rev(e), both sums are equal and the gradient is 2 * coord_score(g); the
    general form is kept because a cotangent need not be symmetric.)
    """

    def setup_context(ctx, inputs, output):
        pos, edge_index = inputs
        ctx.save_for_backward(pos, edge_index)

    def backward(ctx, grad_d: Tensor):
        pos, edge_index = ctx.saved_tensors
        grad_out = coord_score_op(pos, edge_index, grad_d, None)
        perm = torch.argsort(edge_index[1], stable=True)
        transposed = torch.stack([edge_index[1][perm], edge_index[0][perm]])
        grad_in = coord_score_op(pos, transposed, grad_d[perm], None)
        return grad_out + grad_in, None

    torch.library.register_autograd(pairwise_distance_op, backward, setup_context=setup_context)
