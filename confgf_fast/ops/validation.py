"""Checks of graph inputs against the ops' contract, the same for every backend.

The fast kernels read each atom's edges as one CSR row of the source-sorted edge list. Inputs that
break that contract would give wrong numbers, or reads out of bounds, in a fast kernel. Two layers
stop them (issue 26, untrusted input):

1. Validation (this module), ON by default for every public op and every backend, reference and
   Triton included: before dispatch, check_graph runs on the tensors' device and raises
   GraphInputError (a ValueError) naming the first bad edge: shapes, dtypes, devices,
   0 <= src, dst < N, sources sorted, rowptr[0] == 0, rowptr non-decreasing, rowptr[N] == E and
   equal to the rows of edge_index[0]. It reads the data, so on a GPU it costs one host sync per
   call. The sampler and the model pass ``validate=False`` for the graphs graph.py builds (correct
   by construction, and checked by the tests); so may any caller that builds its own graphs
   correctly. ``CONFGF_FAST_VALIDATE=0`` in the environment at import, or
   ``set_validation(False)``, turns the default off process-wide. It is skipped while
   torch.compile traces and while a CUDA graph is being captured (a sync is illegal there).
2. The kernels themselves, always, whatever `validate` says, so no input makes a kernel read
   outside its tensors:
   - every backend: shapes, dtypes and devices (host-side metadata, no pass over the data);
   - CPU (csrc/cpu/csr_rows.h, GraphCheck): fused into the row walk, each row's src[e] == i and
     0 <= dst[e] < N (and edge_pair in range), rows inside [0, E] and covering all E edges; a bad
     row is not read and the op raises ValueError. Costs nothing measurable (the indices are
     loaded for the row anyway);
   - CUDA (csrc/cuda/csr_rows.cuh): the same per-row conditions as device-side asserts
     (CUDA_KERNEL_ASSERT, as ATen's indexing kernels), checked before the row is read. An assert
     needs no host sync, so it stays legal inside CUDA graphs, where validation (1) cannot run; an
     error flag would need a sync to be read, which is exactly what a captured graph cannot do. The
     price: a failed assert poisons the CUDA context (the process must restart), which is why (1)
     runs first in eager calls and gives a ValueError instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import torch
from torch import Tensor

from ..graph import rowptr_from_sorted

__all__ = ["GraphInputError", "check_graph", "check_pairing", "set_validation", "validation_enabled"]

_ENABLED = os.environ.get("CONFGF_FAST_VALIDATE", "1").strip().lower() not in ("0", "false", "no", "off")


class GraphInputError(ValueError):
    """A graph input breaks the ops' contract (see confgf_fast.ops)."""


def set_validation(enabled: bool) -> bool:
    """Turn validation mode on or off for the whole process; returns the previous setting."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    return previous


def validation_enabled() -> bool:
    return _ENABLED


_local = threading.local()


@contextlib.contextmanager
def graph_checked() -> Iterator[None]:
    """Inside: the graph of the current call has been checked (or its caller vouched for it with
    validate=False), so the Triton wrappers skip their own check_graph. confgf_fast.ops enters it
    around each Triton call; a direct call of a wrapper in confgf_fast.kernels checks."""
    previous = getattr(_local, "checked", False)
    _local.checked = True
    try:
        yield
    finally:
        _local.checked = previous


def check_graph_unless_checked(edge_index: Tensor, num_atoms: int, rowptr: Tensor | None = None, *,
                               sorted_by_source: bool = True) -> None:
    """check_graph for the Triton wrappers: skipped inside graph_checked(), while torch.compile
    traces, and during CUDA graph capture (as should_validate)."""
    if getattr(_local, "checked", False) or torch.compiler.is_compiling():
        return
    if edge_index.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    check_graph(edge_index, num_atoms, rowptr, sorted_by_source=sorted_by_source)


def should_validate(validate: bool | None, t: Tensor) -> bool:
    """Whether an op called with `validate` on tensor `t` checks its graph now."""
    if not (_ENABLED if validate is None else validate):
        return False
    if torch.compiler.is_compiling():
        return False
    return not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def check_graph(edge_index: Tensor, num_atoms: int, rowptr: Tensor | None = None, *,
                sorted_by_source: bool = True) -> None:
    """Raise GraphInputError unless the graph satisfies the ops' contract.

    edge_index: Tensor  # [2, E] int64, every index in [0, num_atoms)
    rowptr: Tensor | None  # [N+1] int64: rowptr[i] = first edge whose source is >= i (so rowptr[0] = 0,
                           # rowptr[N] = E); only with sorted_by_source
    sorted_by_source: also require edge_index[0] non-decreasing (the segment-reduction ops; not
        pairwise_distance, which treats each edge on its own)

    Runs on edge_index's device; on a GPU the one host sync happens at the end (all checks are
    reduced on the device first).
    """
    if not (isinstance(edge_index, Tensor) and edge_index.dim() == 2 and edge_index.shape[0] == 2):
        raise GraphInputError(f"edge_index must have shape [2, E], got {tuple(getattr(edge_index, 'shape', ()))}")
    if edge_index.dtype != torch.int64:
        raise GraphInputError(f"edge_index must be int64, got {edge_index.dtype}")
    N, E = int(num_atoms), edge_index.shape[1]
    if rowptr is not None:
        if rowptr.dim() != 1 or rowptr.shape[0] != N + 1:
            raise GraphInputError(f"rowptr must have shape [N+1={N + 1}], got {tuple(rowptr.shape)}")
        if rowptr.dtype != torch.int64:
            raise GraphInputError(f"rowptr must be int64, got {rowptr.dtype}")
        if rowptr.device != edge_index.device:
            raise GraphInputError(f"rowptr is on {rowptr.device} but edge_index is on {edge_index.device}")
    src = edge_index[0]
    checks: list[Tensor] = []  # each a 0-dim bool on the device: True = ok
    if E:
        checks.append(edge_index.min() >= 0)
        checks.append(edge_index.max() < N)
    sorted_check = sorted_by_source and E > 1
    if sorted_check:
        checks.append((src[1:] >= src[:-1]).all())
    if rowptr is not None:
        # rowptr[N] == E and rowptr[0] == 0 are implied by equality with the rows of the sorted
        # sources, but are checked on their own for a clearer message.
        checks.append(rowptr[-1] == E)
        checks.append(rowptr[0] == 0)
        want = rowptr_from_sorted(src, N)
        checks.append((rowptr == want).all())
    if not checks:
        return
    ok = torch.stack(checks).tolist()  # the one host sync
    if all(ok):
        return
    k = 0
    if E:
        if not ok[0]:
            bad = int(torch.nonzero(edge_index < 0)[0, 1])
            raise GraphInputError(f"edge_index has a negative atom index (edge {bad}: "
                                  f"{edge_index[0, bad].item()} -> {edge_index[1, bad].item()})")
        if not ok[1]:
            bad = int(torch.nonzero(edge_index >= N)[0, 1])
            raise GraphInputError(f"edge_index has an atom index >= N={N} (edge {bad}: "
                                  f"{edge_index[0, bad].item()} -> {edge_index[1, bad].item()})")
        k = 2
    if sorted_check:
        if not ok[k]:
            bad = int(torch.nonzero(src[1:] < src[:-1])[0, 0]) + 1
            raise GraphInputError(f"edge_index is not sorted by source atom (edge {bad} has source "
                                  f"{src[bad].item()} after {src[bad - 1].item()}); sort it, e.g. "
                                  "perm = torch.argsort(edge_index[0] * N + edge_index[1])")
        k += 1
    if rowptr is not None:
        if not ok[k]:
            raise GraphInputError(f"rowptr[N] must equal the number of edges E={E}, got {rowptr[-1].item()}")
        if not ok[k + 1]:
            raise GraphInputError(f"rowptr[0] must be 0, got {rowptr[0].item()}")
        bad = int(torch.nonzero(rowptr != want)[0, 0])
        raise GraphInputError(f"rowptr does not match edge_index[0]: rowptr[{bad}] = {rowptr[bad].item()}, "
                              f"but the first edge with source >= {bad} is {want[bad].item()}")


def check_pairing(edge_index: Tensor, edge_pair: Tensor, num_pairs: int) -> None:
    """Raise GraphInputError unless edge_pair maps the E directed edges onto num_pairs undirected
    pairs with each pair used by exactly two edges that are each other's reverse (the pairing the
    gine_aggregate backward kernels rely on).

    edge_index: Tensor  # [2, E] int64
    edge_pair: Tensor  # [E] int64 in [0, num_pairs)
    """
    E = edge_index.shape[1]
    if edge_pair.dim() != 1 or edge_pair.shape[0] != E:
        raise GraphInputError(f"edge_pair must have shape [E={E}], got {tuple(edge_pair.shape)}")
    if edge_pair.dtype != torch.int64:
        raise GraphInputError(f"edge_pair must be int64, got {edge_pair.dtype}")
    if E == 0:
        return
    in_range = (edge_pair.min() >= 0) & (edge_pair.max() < num_pairs)
    if not bool(in_range):
        raise GraphInputError(f"edge_pair has an index outside [0, {num_pairs})")
    counts = torch.bincount(edge_pair, minlength=num_pairs)
    # The two edges of a pair have the same endpoint multiset in both columns ({u, v} as sources and
    # as destinations) iff they are (u, v) and (v, u) (or two self loops): equal sums and equal sums
    # of squares.
    src, dst = edge_index

    def per_pair(x: Tensor) -> Tensor:
        return torch.zeros(num_pairs, dtype=torch.int64, device=x.device).index_add_(0, edge_pair, x)

    reverse = (per_pair(src) == per_pair(dst)) & (per_pair(src * src) == per_pair(dst * dst))
    ok = torch.stack([(counts == 2).all(), reverse.all()]).tolist()
    if not ok[0]:
        bad = int(torch.nonzero(counts != 2)[0, 0])
        raise GraphInputError(f"every pair must be used by exactly two directed edges; pair {bad} is used by "
                              f"{counts[bad].item()}")
    if not ok[1]:
        bad = int(torch.nonzero(~reverse)[0, 0])
        raise GraphInputError(f"the two edges of pair {bad} are not (u, v) and (v, u)")
