"""Backward-compatible names of the availability flags that the op registry (_registry.py)
replaced, for code outside confgf_fast.ops that still reads them (bench/bench_project_sweeps.py
reads PROJECT_CPU_AVAILABLE). Everything here is derived from the registry at import; new code
asks the registry: ops.available_backends(device, op), _registry.has_backend(op, backend),
_registry.EXTENSION, _registry.triton_kernels().

Set CONFGF_FAST_NO_EXT=1 to ignore a built extension (to test or debug the fallback path).
"""

from __future__ import annotations

from ._registry import EXTENSION, TRITON_INSTALLED, has_backend, triton_interpret, triton_kernels

__all__ = ["CPP_AVAILABLE", "CUDA_KERNELS_AVAILABLE", "EXTENSION_ERROR", "EXTENSION_LOADED", "GINE_CPU_AVAILABLE",
           "GINE_CUDA_AVAILABLE", "PROJECT_CPU_AVAILABLE", "PROJECT_CUDA_AVAILABLE", "TRITON_INSTALLED",
           "triton_interpret", "triton_ops", "triton_project_sweeps"]

EXTENSION_ERROR: str | None = EXTENSION.error
EXTENSION_LOADED = EXTENSION.error is None
# The extension serves all of its ops or none (a partial one is stale), so one op stands for all.
CPP_AVAILABLE = has_backend("coord_score", "cpp")
CUDA_KERNELS_AVAILABLE = has_backend("coord_score", "cuda")
GINE_CPU_AVAILABLE = has_backend("gine_aggregate", "cpp")
GINE_CUDA_AVAILABLE = has_backend("gine_aggregate", "cuda")
PROJECT_CPU_AVAILABLE = has_backend("project_sweeps", "cpp")
PROJECT_CUDA_AVAILABLE = has_backend("project_sweeps", "cuda")


def triton_ops():
    """{op: triton_op} of every Triton op, or None (_registry.triton_kernels)."""
    return triton_kernels()


def triton_project_sweeps():
    """The Triton project_sweeps op, or None."""
    kernels = triton_kernels()
    return None if kernels is None else kernels["project_sweeps"]
