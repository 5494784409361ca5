"""Which backends exist in this process, and loading them.

- "cpp" / "cuda": kernels of the torch extension confgf_fast._C (csrc/), loaded with
  torch.ops.load_library when the package is imported. A missing or broken build is not an error
  here: the reason is kept and reported by a warning (auto) or a RuntimeError (explicit request).
- "triton": confgf_fast.kernels, imported on first use only. Triton must not be imported when
  confgf_fast is, because TRITON_INTERPRET (the CPU interpreter used in tests) is read when Triton
  is imported.
- "reference": plain PyTorch, always there.

Set CONFGF_FAST_NO_EXT=1 to ignore a built extension (to test or debug the fallback path).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading

import torch

OPS = ("pairwise_distance", "coord_score", "langevin_step")
NAMESPACE = "confgf_fast"


def _load_extension() -> str | None:
    """Load confgf_fast._C into torch.ops; return None on success, else why it is unavailable."""
    if os.environ.get("CONFGF_FAST_NO_EXT", "0") == "1":
        return "disabled by CONFGF_FAST_NO_EXT=1"
    try:
        spec = importlib.util.find_spec("confgf_fast._C")
    except (ImportError, ValueError) as exc:  # pragma: no cover - odd import setups
        return f"cannot look up confgf_fast._C ({exc})"
    if spec is None or not spec.origin:
        return ("confgf_fast._C is not built; build it with "
                "`pip install --no-build-isolation -e .` (see setup.py)")
    try:
        # The library only registers ops (TORCH_LIBRARY); it is not a Python module, so it is
        # dlopen'ed by torch rather than imported.
        torch.ops.load_library(spec.origin)
    except (OSError, RuntimeError) as exc:
        return f"confgf_fast._C failed to load ({exc}); rebuild it against the installed torch"
    return None


EXTENSION_ERROR: str | None = _load_extension()
EXTENSION_LOADED = EXTENSION_ERROR is None


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether confgf_fast::<op> has a kernel for dispatch_key ("CPU" or "CUDA") in this process."""
    if not EXTENSION_LOADED:
        return False
    return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", dispatch_key))


# Computed once: the dispatcher's kernel table does not change after import, and a constant lookup
# keeps the public functions traceable by torch.compile.
CPP_AVAILABLE = all(has_kernel(op, "CPU") for op in OPS)
CUDA_KERNELS_AVAILABLE = all(has_kernel(op, "CUDA") for op in OPS)
# The score network's GINE aggregation, forward and backward, per device. Checked separately so an
# extension built before the op existed still serves the geometric ops.
GINE_OPS = ("gine_aggregate", "gine_aggregate_backward")
_HAS_GINE = EXTENSION_LOADED and hasattr(torch.ops.confgf_fast, "gine_aggregate")
GINE_CPU_AVAILABLE = _HAS_GINE and all(has_kernel(op, "CPU") for op in GINE_OPS)
GINE_CUDA_AVAILABLE = _HAS_GINE and all(has_kernel(op, "CUDA") for op in GINE_OPS)
# project_sweeps, per device, checked on its own for the same reason: an extension built before the
# op still serves the others, and ops.project_sweeps falls back to the reference (with a warning).
_HAS_PROJECT = EXTENSION_LOADED and hasattr(torch.ops.confgf_fast, "project_sweeps")
PROJECT_CPU_AVAILABLE = _HAS_PROJECT and has_kernel("project_sweeps", "CPU")
PROJECT_CUDA_AVAILABLE = _HAS_PROJECT and has_kernel("project_sweeps", "CUDA")


def triton_installed() -> bool:
    """Triton is importable (checked without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # pragma: no cover
        return False


TRITON_INSTALLED = triton_installed()


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_triton_lock = threading.Lock()
_triton_ops: dict[str, object] | None = None
TRITON_ERROR: str | None = None if TRITON_INSTALLED else "triton is not installed (pip install triton)"


def triton_ops() -> dict[str, object] | None:
    """{op name: triton_op} (imports Triton and registers the ops on first call), or None with
    TRITON_ERROR set when that fails."""
    global _triton_ops, TRITON_ERROR
    if _triton_ops is not None or not TRITON_INSTALLED:
        return _triton_ops
    with _triton_lock:
        if _triton_ops is None and TRITON_ERROR is None:
            try:
                # confgf_fast.kernels is the top-level kernels/ installed under that name
                # (package_dir in setup.py; an editable install maps it the same way).
                mods = {op: importlib.import_module(f"confgf_fast.kernels.{op}") for op in OPS}
                ops = {op: getattr(mods[op], op) for op in OPS}
                from ._registration import register_pairwise_distance_autograd

                register_pairwise_distance_autograd(ops["pairwise_distance"], ops["coord_score"])
                _triton_ops = ops
            except Exception as exc:
                TRITON_ERROR = f"the Triton kernels failed to load ({type(exc).__name__}: {exc})"
    return _triton_ops


_project_triton = None
PROJECT_TRITON_ERROR: str | None = None


def triton_project_sweeps():
    """The Triton project_sweeps op (confgf_fast.kernels.project_sweeps, imported on first call
    like the other Triton kernels), or None with PROJECT_TRITON_ERROR set when that fails. Kept
    apart from triton_ops(): that set is the three ops every Triton build must have."""
    global _project_triton, PROJECT_TRITON_ERROR
    if _project_triton is not None or not TRITON_INSTALLED:
        return _project_triton
    with _triton_lock:
        if _project_triton is None and PROJECT_TRITON_ERROR is None:
            try:
                _project_triton = importlib.import_module("confgf_fast.kernels.project_sweeps").project_sweeps
            except Exception as exc:
                PROJECT_TRITON_ERROR = f"the Triton project_sweeps kernel failed to load ({type(exc).__name__}: {exc})"
    return _project_triton
