"""Opt-in checks of graph inputs against the ops' contract, the same for every backend.

The fast kernels read each atom's edges as one CSR row of the source-sorted edge list. Inputs that
break that contract give wrong numbers (or read out of bounds) in a fast kernel while the
reference, a plain index_add, may still be right. What each backend does by default:

- every backend, always: shapes, dtypes and devices (host-side metadata only, no pass over data);
- CPU kernels, always: rowptr[N] == E (one read of host memory);
- CUDA kernels, always: when they build the rows themselves (rowptr=None), a device-side assert on
  unsorted or out-of-range sources, as ATen's indexing kernels do (fatal to the CUDA context, but
  never silent); a caller's rowptr is trusted;
- validation mode (this module), every backend the same: before dispatch, check_graph runs on the
  tensors' device and raises GraphInputError (a ValueError) with the same message whichever
  backend was asked for, reference included.

Validation reads the data, so on a GPU it costs a host sync: it is off by default and turned on
per call (``validate=True`` on any op), per process (``CONFGF_FAST_VALIDATE=1`` in the environment
at import, or ``set_validation(True)``). It is skipped while torch.compile traces and while a CUDA
graph is being captured (a sync is illegal there); the eager warm-up run that capture needs has
checked the same tensors already.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from ..graph import rowptr_from_sorted

__all__ = ["GraphInputError", "check_graph", "check_pairing", "set_validation", "validation_enabled"]

_ENABLED = os.environ.get("CONFGF_FAST_VALIDATE", "0").strip().lower() in ("1", "true", "yes", "on")


class GraphInputError(ValueError):
    """A graph input breaks the ops' contract (see confgf_fast.ops)."""


def set_validation(enabled: bool) -> bool:
    """Turn validation mode on or off for the whole process; returns the previous setting."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(enabled)
    return previous


def validation_enabled() -> bool:
    return _ENABLED


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
