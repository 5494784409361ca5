"""Public geometric ops with a backend choice. (Fast backends land with the fused-kernel work.)"""

from __future__ import annotations

from torch import Tensor

from . import reference

BACKENDS = ("auto", "reference")


def _check_backend(backend: str) -> None:
    if backend not in ("auto", "reference", "cpp", "cuda", "triton"):
        raise ValueError(f"unknown backend {backend!r}")


def pairwise_distance(pos: Tensor, edge_index: Tensor, backend: str = "auto") -> Tensor:
    """pos: [N, 3], edge_index: [2, E] -> d: [E]."""
    _check_backend(backend)
    return reference.pairwise_distance(pos, edge_index)


def coord_score(pos: Tensor, edge_index: Tensor, edge_score: Tensor, backend: str = "auto") -> Tensor:
    """S_i = sum_{(i,j)} s_ij (r_i - r_j) / d_ij -> [N, 3]."""
    _check_backend(backend)
    return reference.coord_score(pos, edge_index, edge_score)


def langevin_step(pos: Tensor, edge_index: Tensor, edge_score: Tensor, noise: Tensor, step_size: float,
                  clip: float = 1000.0, backend: str = "auto") -> Tensor:
    """r + a * clip(S) + sqrt(2a) * noise -> new [N, 3]."""
    _check_backend(backend)
    return reference.langevin_step(pos, edge_index, edge_score, noise, step_size, clip)
