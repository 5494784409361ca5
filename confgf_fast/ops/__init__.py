"""Public geometric ops of ConfGF sampling, with a backend choice.

Contract (all backends): pos [N, 3] float32 (float64 for "reference", "cpp", "cuda", "triton"),
edge_index [2, E] int64 sorted by source atom with both directions present, d_ij = |r_i - r_j|.

- pairwise_distance: d_e = |r_src(e) - r_dst(e)|                                        -> [E]
- coord_score:       S_i = sum_{(i,j)} s_ij (r_i - r_j) / d_ij  (edges with d_ij = 0 add 0) -> [N, 3]
- langevin_step:     r_i + a * clip(S_i) + sqrt(2 a) * noise_i, clip(S) = S * min(1, clip / |S|),
                     in one pass over the edges, into a new buffer                          -> [N, 3]
- project_sweeps:    `iters` damped Jacobi sweeps of stress majorisation towards edge lengths t,
                     r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij     -> [N, 3]

backend: "auto" | "reference" | "cpp" | "cuda" | "triton".
- "reference": plain PyTorch (reference.py), any device and dtype; the truth in tests.
- "cpp": OpenMP CPU kernels of the extension confgf_fast._C (float32/float64).
- "cuda": CUDA kernels of confgf_fast._C (built only against a CUDA torch).
- "triton": Triton kernels (confgf_fast.kernels) on CUDA tensors; on CPU tensors only under
  TRITON_INTERPRET=1 (the interpreter, for tests).
- "auto": the first available of cuda > triton (CUDA tensors only) > cpp > reference for the
  tensor's device. If the fast backend for that device is missing it warns once and falls back.
Asking explicitly for a backend that is unavailable raises RuntimeError saying why.

The fast backends treat each atom's edges as one CSR row (segment reduction: no atomics,
deterministic). They find the rows from edge_index[0]; a caller that already has the row
pointers (GraphBatch.rowptr, [N+1]) can pass `rowptr=` to skip that.

Graph inputs that break the contract (indices out of range, sources not sorted, a rowptr that does
not match edge_index[0]) raise GraphInputError (a ValueError) before dispatch, the same on every
backend: validation is on by default. It costs one pass over the edges (and a host sync on a GPU),
so a caller whose graphs are correct by construction, as the sampler's, passes `validate=False`;
the C++ and CUDA kernels still check every index they read (validation.py says how).
"""

from __future__ import annotations

import operator
import warnings

import torch
from torch import Tensor

from . import _backends, reference
from ._registration import register_cpp_fakes, register_gine_aggregate_autograd, register_pairwise_distance_autograd
from .validation import GraphInputError, check_graph, check_pairing, graph_checked, set_validation, should_validate

__all__ = ["BACKENDS", "GraphInputError", "available_backends", "check_graph", "coord_score", "gine_aggregate",
           "langevin_step", "pairwise_distance", "project_sweeps", "reference", "set_validation"]

BACKENDS = ("auto", "reference", "cpp", "cuda", "triton")
_FAST_DTYPES = (torch.float32, torch.float64)

if _backends.EXTENSION_LOADED:
    register_cpp_fakes()
    register_pairwise_distance_autograd(torch.ops.confgf_fast.pairwise_distance.default,
                                        torch.ops.confgf_fast.coord_score.default)
if _backends.GINE_CPU_AVAILABLE or _backends.GINE_CUDA_AVAILABLE:
    register_gine_aggregate_autograd(torch.ops.confgf_fast.gine_aggregate.default,
                                     torch.ops.confgf_fast.gine_aggregate_backward.default)


def available_backends(device: torch.device | str) -> list[str]:
    """Backends usable for tensors on `device`, in the order "auto" prefers them.

    "triton" is listed for a CPU device only under TRITON_INTERPRET=1 (auto never picks it there),
    and is listed when Triton is installed even if its kernels have not been imported yet.
    """
    device = torch.device(device)
    out = []
    if device.type == "cuda" and torch.cuda.is_available():
        if _backends.CUDA_KERNELS_AVAILABLE:
            out.append("cuda")
        if _backends.TRITON_INSTALLED and _backends.TRITON_ERROR is None:
            out.append("triton")
    elif device.type == "cpu":
        if _backends.CPP_AVAILABLE:
            out.append("cpp")
        if _backends.TRITON_INSTALLED and _backends.TRITON_ERROR is None and _backends.triton_interpret():
            out.append("triton")
    out.append("reference")
    return out


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _why_unavailable(backend: str, device: torch.device) -> str:
    if backend in ("cpp", "cuda"):
        if not _backends.EXTENSION_LOADED:
            return _backends.EXTENSION_ERROR or "confgf_fast._C is not loaded"
        if backend == "cpp":
            return "confgf_fast._C has no CPU kernels" if device.type == "cpu" else (
                f"the cpp backend runs on CPU tensors, got a tensor on {device}")
        if device.type != "cuda":
            return f"the cuda backend runs on CUDA tensors, got a tensor on {device}"
        return "confgf_fast._C was built without CUDA kernels (rebuild with a CUDA torch, or FORCE_CUDA=1)"
    if backend == "triton":
        if _backends.TRITON_ERROR is not None:
            return _backends.TRITON_ERROR
        if device.type == "cpu":
            return "the triton backend runs on CUDA tensors (on CPU only with TRITON_INTERPRET=1 set before import)"
        return f"the triton backend does not run on {device}"
    return f"unknown backend {backend!r}"


def _resolve(backend: str, pos: Tensor) -> str:
    """The backend to run for `pos`' device and dtype."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    device = pos.device
    if backend == "auto":
        if pos.dtype not in _FAST_DTYPES:
            return "reference"  # the kernels are float32/float64 only
        if device.type == "cuda":
            if _backends.CUDA_KERNELS_AVAILABLE:
                return "cuda"
            if _backends.TRITON_INSTALLED and _backends.triton_ops() is not None:
                _warn_once("cuda", f"confgf_fast.ops: CUDA kernels unavailable ({_why_unavailable('cuda', device)}); "
                                   "using the Triton kernels")
                return "triton"
            _warn_once("cuda", "confgf_fast.ops: no fast CUDA backend ("
                               f"cuda: {_why_unavailable('cuda', device)}; triton: {_why_unavailable('triton', device)}"
                               "); falling back to the pure-PyTorch reference")
            return "reference"
        if device.type == "cpu":
            if _backends.CPP_AVAILABLE:
                return "cpp"
            _warn_once("cpu", f"confgf_fast.ops: C++ kernels unavailable ({_why_unavailable('cpp', device)}); "
                              "falling back to the pure-PyTorch reference")
        return "reference"
    if backend == "reference":
        return backend
    # Device check first, so that asking for Triton on a CPU tensor does not import Triton.
    if backend not in available_backends(device) or (backend == "triton" and _backends.triton_ops() is None):
        raise RuntimeError(f"confgf_fast.ops: backend {backend!r} is unavailable for a tensor on {device}: "
                           f"{_why_unavailable(backend, device)}. Available: {available_backends(device)}")
    return backend


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
    b = _resolve(backend, pos)
    if b == "reference":
        return reference.pairwise_distance(pos, edge_index)
    if b == "triton":
        with graph_checked():  # checked above, or the caller vouched for it (validate=False)
            return _backends.triton_ops()["pairwise_distance"](pos, edge_index)
    return torch.ops.confgf_fast.pairwise_distance(pos, edge_index)


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
    b = _resolve(backend, pos)
    if b == "reference":
        return reference.coord_score(pos, edge_index, edge_score)
    if b == "triton":
        with graph_checked():  # checked above, or the caller vouched for it (validate=False)
            return _backends.triton_ops()["coord_score"](pos, edge_index, edge_score, rowptr)
    return torch.ops.confgf_fast.coord_score(pos, edge_index, edge_score, rowptr)


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
    b = _resolve(backend, pos)
    if b == "reference":
        return reference.langevin_step(pos, edge_index, edge_score, noise, step_size, clip)
    if b == "triton":
        with graph_checked():  # checked above, or the caller vouched for it (validate=False)
            return _backends.triton_ops()["langevin_step"](pos, edge_index, edge_score, noise, rowptr,
                                                           float(step_size), float(clip))
    return torch.ops.confgf_fast.langevin_step(pos, edge_index, edge_score, noise, rowptr,
                                               float(step_size), float(clip))


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
    and one edge_attr row per pair, and the reference otherwise (there is no Triton kernel: under
    torch.compile the model uses the reference, which inductor fuses); "cpp", "cuda" or
    "reference" ask for one.
    """
    if backend not in ("auto", "cpp", "cuda", "reference"):
        raise ValueError(f"gine_aggregate: backend must be 'auto', 'cpp', 'cuda' or 'reference', got {backend!r}")
    paired = 2 * edge_attr.shape[0] == edge_pair.shape[0]
    if should_validate(validate, h):
        check_graph(edge_index, h.shape[0], rowptr)
        if paired:
            check_pairing(edge_index, edge_pair, edge_attr.shape[0])
    kernel = {"cpu": ("cpp", _backends.GINE_CPU_AVAILABLE),
              "cuda": ("cuda", _backends.GINE_CUDA_AVAILABLE)}.get(h.device.type, (None, False))
    fast = kernel[1] and h.dtype in _FAST_DTYPES and paired
    if backend in ("cpp", "cuda") and not (fast and kernel[0] == backend):
        raise RuntimeError(f"confgf_fast.ops: the {backend} gine_aggregate needs the extension built with it, "
                           f"float32/64 {'CPU' if backend == 'cpp' else 'CUDA'} tensors and one edge_attr row per "
                           f"pair; got h {h.dtype} on {h.device}, edge_attr {tuple(edge_attr.shape)}, "
                           f"E={edge_pair.shape[0]}, extension "
                           f"{'loaded' if _backends.EXTENSION_LOADED else _backends.EXTENSION_ERROR}")
    if backend == "reference" or not fast:
        return reference.gine_aggregate(h, edge_index, edge_attr, edge_pair)
    return torch.ops.confgf_fast.gine_aggregate(h, edge_index, edge_attr.to(h.dtype), edge_pair, rowptr)


def _why_no_project(backend: str, device: torch.device) -> str:
    """Why the project_sweeps kernel of `backend` cannot run on `device`."""
    if backend in ("cpp", "cuda") and _backends.EXTENSION_LOADED and not hasattr(torch.ops.confgf_fast,
                                                                               "project_sweeps"):
        return ("confgf_fast._C was built before project_sweeps existed; rebuild it "
                "(pip install --no-build-isolation -e .)")
    if backend == "triton" and device.type == "cuda" and _backends.PROJECT_TRITON_ERROR is not None:
        return _backends.PROJECT_TRITON_ERROR
    return _why_unavailable(backend, device)


def _resolve_project(backend: str, pos: Tensor) -> str:
    """The backend project_sweeps runs for `pos`: the rules of _resolve, with its own kernel table
    (an extension built before the op still serves the other ops)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    device = pos.device
    cpu_ok = device.type == "cpu" and _backends.PROJECT_CPU_AVAILABLE
    cuda_ok = device.type == "cuda" and _backends.PROJECT_CUDA_AVAILABLE

    def triton_ok() -> bool:  # imports Triton: only asked once the C++/CUDA kernels are ruled out
        return "triton" in available_backends(device) and _backends.triton_project_sweeps() is not None

    if backend == "auto":
        if pos.dtype not in _FAST_DTYPES:
            return "reference"
        if cuda_ok:
            return "cuda"
        if cpu_ok:
            return "cpp"
        if device.type == "cuda":
            if triton_ok():
                _warn_once("project_sweeps-cuda", "confgf_fast.ops.project_sweeps: CUDA kernel unavailable ("
                           f"{_why_no_project('cuda', device)}); using the Triton kernel")
                return "triton"
            _warn_once("project_sweeps-cuda", "confgf_fast.ops.project_sweeps: no fast CUDA kernel ("
                       f"cuda: {_why_no_project('cuda', device)}; triton: {_why_no_project('triton', device)}); "
                       "falling back to the pure-PyTorch reference")
        elif device.type == "cpu":
            _warn_once("project_sweeps-cpu", "confgf_fast.ops.project_sweeps: C++ kernel unavailable ("
                       f"{_why_no_project('cpp', device)}); falling back to the pure-PyTorch reference")
        return "reference"
    if backend == "reference" or (backend == "cpp" and cpu_ok) or (backend == "cuda" and cuda_ok):
        return backend
    if backend == "triton" and triton_ok():
        return backend
    raise RuntimeError(f"confgf_fast.ops: backend {backend!r} is unavailable for project_sweeps on {device}: "
                       f"{_why_no_project(backend, device)}")


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
    b = _resolve_project(backend, pos)
    if b == "reference":
        return reference.project_sweeps(pos, edge_index, target, step, iters)
    if b == "triton":
        with graph_checked():  # checked above, or the caller vouched for it (validate=False)
            return _backends.triton_project_sweeps()(pos, edge_index, target, step, rowptr, iters)
    return torch.ops.confgf_fast.project_sweeps(pos, edge_index, target, step, rowptr, iters)
