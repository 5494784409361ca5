"""Pure-PyTorch reference of the geometric ops: readable, float64-capable, the truth in tests.

Conventions shared by every backend:
- pos: [N, 3] float; edge_index: [2, E] int64 (src, dst), sorted by src, both directions present.
- d_ij = |r_i - r_j|.
- S_i = sum over edges (i, j) leaving i of s_ij (r_i - r_j) / d_ij. An edge with d_ij == 0 has no
  direction and contributes 0 (instead of NaN).
- clip: S_i <- S_i * min(1, clip / |S_i|) (per-atom L2 norm, as the official clip_norm).
- langevin_step: r_i <- r_i + a * clip(S_i) + sqrt(2 a) * noise_i.
- project_sweeps: `iters` Jacobi sweeps r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def pairwise_distance(pos: Tensor, edge_index: Tensor) -> Tensor:
    """pos: [N, 3], edge_index: [2, E] -> d: [E], d_e = |r_src - r_dst|."""
    src, dst = edge_index
    return (pos[src] - pos[dst]).norm(dim=-1)


def coord_score(pos: Tensor, edge_index: Tensor, edge_score: Tensor) -> Tensor:
    """pos: [N, 3], edge_index: [2, E], edge_score: [E] -> S: [N, 3].

    S_i = sum_{(i,j)} s_ij (r_i - r_j) / d_ij: the chain rule of a distance score into coordinates
    (d d_ij / d r_i = (r_i - r_j) / d_ij), i.e. S = d/dR of sum_e s_e * d_e with s held fixed.
    """
    src, dst = edge_index
    vec = pos[src] - pos[dst]  # [E, 3]
    d = vec.norm(dim=-1, keepdim=True)  # [E, 1]
    inv_d = torch.where(d > 0, 1.0 / d.clamp_min(torch.finfo(pos.dtype).tiny), torch.zeros_like(d))
    contrib = edge_score.to(pos.dtype).unsqueeze(-1) * vec * inv_d  # [E, 3]
    return torch.zeros_like(pos).index_add_(0, src, contrib)


def clip_norm(vec: Tensor, limit: float) -> Tensor:
    """vec: [N, 3] -> rows rescaled to L2 norm at most `limit`."""
    norm = vec.norm(dim=-1, keepdim=True)
    scale = torch.where(norm > limit, limit / norm.clamp_min(torch.finfo(vec.dtype).tiny), torch.ones_like(norm))
    return vec * scale


def langevin_step(pos: Tensor, edge_index: Tensor, edge_score: Tensor, noise: Tensor, step_size: float,
                  clip: float = 1000.0) -> Tensor:
    """pos, noise: [N, 3]; edge_score: [E] -> new pos [N, 3].

    r <- r + a * clip(S(r)) + sqrt(2 a) * noise, with S from coord_score. Returns a new tensor.
    """
    S = clip_norm(coord_score(pos, edge_index, edge_score), clip)
    return pos + step_size * S + math.sqrt(2.0 * step_size) * noise.to(pos.dtype)


def project_sweeps(pos: Tensor, edge_index: Tensor, target: Tensor, step: Tensor, iters: int) -> Tensor:
    """pos: [N, 3], edge_index: [2, E], target: [E], step: [N] -> new pos [N, 3].

    `iters` damped Jacobi sweeps of stress majorisation on sum_e (d_e - t_e)^2: in each sweep,
    from the previous sweep's positions,
        r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij,
    an edge with d_ij == 0 adding 0. This is coord_score with s = t - d, applied `iters` times.
    Returns a new tensor (a copy of pos for iters == 0).
    """
    src, dst = edge_index
    t = target.to(pos.dtype)  # [E]
    a = step.to(pos.dtype).reshape(-1, 1)  # [N, 1]
    pos = pos.clone()
    for _ in range(iters):
        vec = pos[src] - pos[dst]  # [E, 3]
        d = vec.norm(dim=-1)  # [E]
        w = torch.where(d > 0, (t - d) / d.clamp_min(torch.finfo(pos.dtype).tiny), torch.zeros_like(d))  # [E]
        pos = pos + a * torch.zeros_like(pos).index_add_(0, src, w.unsqueeze(-1) * vec)
    return pos


def gine_aggregate(h: Tensor, edge_index: Tensor, edge_attr: Tensor, edge_pair: Tensor) -> Tensor:
    """h: [N, H], edge_index: [2, E], edge_attr: [P, H], edge_pair: [E] in [0, P) -> [N, H].

    out_i = h_i + sum_{(i,j)} ReLU(h_j + a_pair(ij)): the GINE neighbourhood sum of the score
    network, with each directed edge's features read from its undirected pair's row.
    """
    src, dst = edge_index
    msg = torch.relu(h[dst] + edge_attr[edge_pair].to(h.dtype))  # [E, H]
    return h.index_add(0, src, msg)
