"""Public geometric ops of ConfGF sampling, with a backend choice.

Contract (all backends): pos [N, 3] float32 (float64 for "reference", "cpp", "cuda", "triton"),
edge_index [2, E] int64 sorted by source atom with both directions present, d_ij = |r_i - r_j|.

- pairwise_distance: d_e = |r_src(e) - r_dst(e)|                                        -> [E]
- coord_score:       S_i = sum_{(i,j)} s_ij (r_i - r_j) / d_ij  (edges with d_ij = 0 add 0) -> [N, 3]
- langevin_step:     r_i + a * clip(S_i) + sqrt(2 a) * noise_i, clip(S) = S * min(1, clip / |S|),
                     in one pass over the edges, into a new buffer                          -> [N, 3]
- project_sweeps:    `iters` damped Jacobi sweeps of stress majorisation towards edge lengths t,
                     r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij     -> [N, 3]

backend: "auto" | "reference" | "cpp" | "cuda" | "triton" (the op registry, _registry.py, holds the
kernels and the one resolver every op below calls).
- "reference": plain PyTorch (reference.py), any device and dtype; the truth in tests.
- "cpp": OpenMP CPU kernels of the extension confgf_fast._C (float32/float64).
- "cuda": CUDA kernels of confgf_fast._C (built only against a CUDA torch).
- "triton": Triton kernels (confgf_fast.kernels) on CUDA tensors; on CPU tensors only under
  TRITON_INTERPRET=1 (the interpreter, for tests). gine_aggregate has none.
- "auto": the first available of cuda > triton (CUDA tensors only) > cpp > reference for the
  tensor's device, float32/float64 only (other dtypes: the reference). If the fast backend for that
  device is missing it warns once and falls back.
Asking explicitly for a backend that is unavailable raises RuntimeError saying why (one line); a
backend the op has no kernel of, or an unknown name, raises ValueError. An extension built before
an op was added (stale) is not used at all: import warns, and the errors say to rebuild it
(`python setup.py build_ext --inplace`, or reinstall).

The fast backends treat each atom's edges as one CSR row (segment reduction: no atomics,
deterministic). They find the rows from edge_index[0]; a caller that already has the row
pointers (GraphBatch.rowptr, [N+1]) can pass `rowptr=` to skip that.

Graph inputs that break the contract (indices out of range, sources not sorted, a rowptr that does
not match edge_index[0]) raise GraphInputError (a ValueError) before dispatch, the same on every
backend: validation is on by default. It costs one pass over the edges (and a host sync on a GPU),
so a caller whose graphs are correct by construction, as the sampler's, passes `validate=False`;
the C++ and CUDA kernels still check every index they read (validation.py says how).

Adding an op `foo` touches the registry and the kernel files, nothing else (availability, the
stale-build check, fake and autograd registration, `available_backends`, the AOT compile check
and the CUDA-build test all read the registry):
1. kernel files: `reference.foo`; its schema in csrc/ops.cpp, csrc/cpu/foo_cpu.cpp,
   csrc/cuda/foo_cuda.cu; kernels/foo.py defining a triton_op named `foo` that takes the schema's
   arguments, with its kernels' signatures in kernels/aot.py; its fake kernel (and autograd
   formula, if differentiable) in _registration.py. Each only for the backends the op has.
2. the registry: one OpSpec in _registry.SPECS (its compiled ops with their fakes, its autograd
   hook, triton=True if kernels/foo.py exists).
3. here: the public function (validate, `b = resolve("foo", backend, x)`, then the reference or
   `run("foo", b, ...)`), with shape comments and its math; its name in __all__.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from . import _backends, _registry, reference  # noqa: F401  (_backends: compatibility names)
from ._registry import BACKENDS, available_backends, resolve, run
from .validation import GraphInputError, check_graph, check_pairing, set_validation, should_validate

__all__ = ["BACKENDS", "GraphInputError", "available_backends", "check_graph", "coord_score", "gine_aggregate",
           "langevin_step", "pairwise_distance", "project_sweeps", "reference", "set_validation"]


# Compatibility names for callers outside confgf_fast.ops (confgf_fast/cli.py, bench/); new code
# calls _registry.resolve / _registry.why_unavailable with the op's name.
def _why_unavailable(backend: str, device: torch.device | str) -> str:
    return _registry.why_unavailable(backend, device, load=False) or f"backend {backend!r} is available"


def _resolve(backend: str, pos: Tensor) -> str:
    """The backend the geometric ops (pairwise_distance, coord_score, langevin_step) run for pos."""
    return resolve("langevin_step", backend, pos)


def _why_no_project(backend: str, device: torch.device | str) -> str:
    return _registry.why_unavailable(backend, device, "project_sweeps") or f"backend {backend!r} is available"


def pairwise_distance(pos: Tensor, edge_index: Tensor, backend: str = "auto", *,
                      validate: bool | None = None) -> Tensor:
    """Edge lengths d_e = |r_src(e) - r_dst(e)|.

    pos: Tensor  # [N, 3] float
    edge_index: Tensor  # [2, E] int64 (src, dst)
    returns: Tensor  # [E], pos' dtype

    Differentiable w.r.t. pos on every backend: dL/dr_i = sum_{e: src=i} g_e u_e - sum_{e: dst=i} g_e u_e
    with u_e = (r_src - r_dst) / d_e (0 where d_e = 0).
    validate: check the indices are in [0, N) first (None: the process-wide setting); any order
    of edges is fine here.
    """
    if should_validate(validate, pos):
        check_graph(edge_index, pos.shape[0], sorted_by_source=False)
    b = resolve("pairwise_distance", backend, pos)
    if b == "reference":
        return reference.pairwise_distance(pos, edge_index)
    return run("pairwise_distance", b, pos, edge_index)


def coord_score(pos: Tensor, edge_index: Tensor, edge_score: Tensor, backend: str = "auto", *,
                rowptr: Tensor | None = None, validate: bool | None = None) -> Tensor:
    """Per-atom score by the chain rule: S_i = sum_{(i,j)} s_ij (r_i - r_j) / d_ij.

    That is dR of sum_e s_e d_e with s held fixed (d d_ij / d r_i = (r_i - r_j) / d_ij). An edge
    with d_ij = 0 has no direction and contributes 0.

    pos: Tensor  # [N, 3] float
    edge_index: Tensor  # [2, E] int64, sorted by source, both directions present
    edge_score: Tensor  # [E] s_ij (cast to pos' dtype)
    rowptr: Tensor | None  # [N+1] int64 CSR row pointers of edge_index[0], optional (fast backends)
    validate: check the graph against the contract first (None: the process-wide setting, on
        unless CONFGF_FAST_VALIDATE=0); False for graphs built correct, as the sampler's
    returns: Tensor  # [N, 3]
    """
    if should_validate(validate, pos):
        check_graph(edge_index, pos.shape[0], rowptr)
    b = resolve("coord_score", backend, pos)
    if b == "reference":
        return reference.coord_score(pos, edge_index, edge_score)
    return run("coord_score", b, pos, edge_index, edge_score, rowptr)


def langevin_step(pos: Tensor, edge_index: Tensor, edge_score: Tensor, noise: Tensor, step_size: float,
                  clip: float = 1000.0, backend: str = "auto", *, rowptr: Tensor | None = None,
                  validate: bool | None = None) -> Tensor:
    """One Langevin update: r_i <- r_i + a * clip(S_i) + sqrt(2 a) * z_i, as a new tensor.

    S_i = sum_{(i,j)} s_ij (r_i - r_j) / d_ij (coord_score), clip(S_i) = S_i * min(1, clip / |S_i|)
    (per-atom L2 norm limit, as the official clip_norm), a = step_size >= 0, z = noise. The fast
    backends do distances, chain rule, clip and update in one pass over the edges.

    pos: Tensor  # [N, 3] float
    edge_index: Tensor  # [2, E] int64, sorted by source, both directions present
    edge_score: Tensor  # [E] s_ij (cast to pos' dtype)
    noise: Tensor  # [N, 3] z ~ N(0, I), an input so the step is deterministic and testable
    rowptr: Tensor | None  # [N+1] int64 CSR row pointers of edge_index[0], optional (fast backends)
    validate: check the graph against the contract first (None: the process-wide setting, on
        unless CONFGF_FAST_VALIDATE=0); False for graphs built correct, as the sampler's
    returns: Tensor  # [N, 3]
    """
    if should_validate(validate, pos):
        check_graph(edge_index, pos.shape[0], rowptr)
    b = resolve("langevin_step", backend, pos)
    if b == "reference":
        return reference.langevin_step(pos, edge_index, edge_score, noise, step_size, clip)
    return run("langevin_step", b, pos, edge_index, edge_score, noise, rowptr, float(step_size), float(clip))


def gine_aggregate(h: Tensor, edge_index: Tensor, edge_attr: Tensor, edge_pair: Tensor, backend: str = "auto", *,
                   rowptr: Tensor | None = None, validate: bool | None = None) -> Tensor:
    """GINE neighbourhood sum of the score network: out_i = h_i + sum_{(i,j)} ReLU(h_j + a_pair(ij)).

    The edge features come one row per undirected atom pair (graph.pair_edges) and are read
    through edge_pair, never copied to [E, H]. Differentiable w.r.t. h and edge_attr.

    h: Tensor  # [N, H] float node states
    edge_index: Tensor  # [2, E] int64, sorted by source, both directions present
    edge_attr: Tensor  # [E/2, H] per-pair edge features (cast to h's dtype)
    edge_pair: Tensor  # [E] int64, the pair of each directed edge; each pair used by its two edges
    rowptr: Tensor | None  # [N+1] int64 CSR row pointers of edge_index[0], optional
    validate: check the graph and the pairing first (None: the process-wide setting)
    returns: Tensor  # [N, H]

    backend: "auto" runs the kernel of h's device (C++ on CPU, CUDA on a GPU) for float32/float64
    and one edge_attr row per pair, and the reference otherwise (silently for per-directed-edge
    features; with a warning when the kernel is missing). There is no Triton kernel: under
    torch.compile the model uses the reference, which inductor fuses. "cpp", "cuda" or "reference"
    ask for one; "triton" is a ValueError.
    """
    paired = 2 * edge_attr.shape[0] == edge_pair.shape[0]
    if should_validate(validate, h):
        check_graph(edge_index, h.shape[0], rowptr)
        if paired:
            check_pairing(edge_index, edge_pair, edge_attr.shape[0])
    # The kernels' backward relies on each pair's two directed edges sharing one edge_attr row.
    unsupported = None if paired else (f"one edge_attr row per pair ([E/2, H] for E={edge_pair.shape[0]} directed "
                                       f"edges), got edge_attr {tuple(edge_attr.shape)}")
    b = resolve("gine_aggregate", backend, h, unsupported)
    if b == "reference":
        return reference.gine_aggregate(h, edge_index, edge_attr, edge_pair)
    return run("gine_aggregate", b, h, edge_index, edge_attr.to(h.dtype), edge_pair, rowptr)


def project_sweeps(pos: Tensor, edge_index: Tensor, target: Tensor, step: Tensor, iters: int,
                   backend: str = "auto", *, rowptr: Tensor | None = None, validate: bool | None = None) -> Tensor:
    """`iters` damped Jacobi sweeps of stress majorisation towards the edge lengths `target`.

    Each sweep, every atom reading the previous sweep's positions (Jacobi):
        r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij,   d_ij = |r_i - r_j|,
    an edge with d_ij = 0 adding 0. That is pos + step * coord_score(pos, edge_index, target - d),
    `iters` times, fused: the fast backends keep two [N, 3] buffers and write nothing E-length.
    With step_i = 1 / (2 deg_i) (the caller passes 0.5 / degree) and t >= 0 a sweep never increases
    the stress sum_e (d_e - t_e)^2: the sweep is a diagonally preconditioned gradient step,
    -D^-1 g / 4, on the SMACOF majoriser at the current positions z,
        tau(r) = sum_pairs |r_i - r_j|^2 - 2 t_ij (r_i - r_j).(z_i - z_j) / |z_i - z_j| + const
    (>= the stress, equal at r = z), and as its Hessian 2L (L the graph Laplacian, D = diag(deg))
    satisfies L <= 2D, the step lowers tau by at least g' D^-1 g / 8, hence the stress too.

    pos: Tensor  # [N, 3] float
    edge_index: Tensor  # [2, E] int64, sorted by source, both directions present
    target: Tensor  # [E] t_ij, wanted edge lengths (cast to pos' dtype)
    step: Tensor  # [N] per-atom step (cast to pos' dtype); a [N, 1] column is accepted
    iters: int  # >= 0 sweeps; 0 returns a copy of pos
    rowptr: Tensor | None  # [N+1] int64 CSR row pointers of edge_index[0], optional (fast backends)
    validate: check the graph against the contract first (None: the process-wide setting, on
        unless CONFGF_FAST_VALIDATE=0); False for graphs built correct, as the sampler's
    returns: Tensor  # [N, 3], a new tensor; not differentiable (the sampler runs it under no_grad)

    backend: as the other ops ("auto": cuda > triton > cpp > reference for the tensor's device and
    float32/float64; a missing fast kernel warns once and falls back to the reference).
    """
    iters = operator.index(iters)
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    if step.dim() == 2 and step.shape[1] == 1:
        step = step.reshape(-1)  # [N, 1] -> [N]: project_distances keeps the degree as a column
    if should_validate(validate, pos):
        check_graph(edge_index, pos.shape[0], rowptr)
    b = resolve("project_sweeps", backend, pos)
    if b == "reference":
        return reference.project_sweeps(pos, edge_index, target, step, iters)
    return run("project_sweeps", b, pos, edge_index, target, step, rowptr, iters)
