"""The op registry: every public op of confgf_fast.ops, the kernel each backend has for it in this
process, and the one resolver every public op calls to pick among them.

    registry() -> {op: {backend: kernel}}        e.g. {"coord_score": {"reference": ..., "cpp": ...}}

Where the kernels come from:
- "reference": reference.<op>, plain PyTorch; always there, any device and dtype.
- "cpp" / "cuda": torch.ops.confgf_fast.<op> of the compiled extension confgf_fast._C (schemas in
  csrc/ops.cpp, kernels in csrc/cpu/<op>_cpu.cpp and csrc/cuda/<op>_cuda.cu), loaded with
  torch.ops.load_library at import. One op object serves both; the dispatcher picks the kernel by
  the tensors' device. Which backends the extension serves is read from the dispatcher's kernel
  table (registered_kernels) and checked against SPECS (probe_extension), once, at import.
- "triton": the triton_op `<op>` of confgf_fast.kernels.<op>, for the ops whose OpSpec says
  triton=True (TRITON_OPS: the one list of Triton ops, also read by kernels/aot.py), imported on
  first use only: Triton reads TRITON_INTERPRET (its CPU interpreter, for tests) when it is
  imported, so importing confgf_fast must not import it, nor confgf_fast.kernels (an install
  without it still serves the other backends). All of them load together, or none (TRITON_ERROR
  says why).

Availability is derived from that, per op: nothing else keeps flags (_backends.py's old flag names
are computed from here, for callers outside confgf_fast.ops).

Policy (resolve):
- a backend not in BACKENDS, or one the op has no kernel of (gine_aggregate has no Triton kernel):
  ValueError.
- "reference": always.
- "auto": the reference, silently, for dtypes other than float32/float64 and for inputs the
  kernels do not take (`unsupported`, e.g. gine_aggregate's per-directed-edge features): that is a
  property of the call, not of the install. Otherwise the first usable of AUTO_ORDER[device type]
  (CUDA tensors: cuda, then triton; CPU tensors: cpp; any other device: none), i.e. cuda > triton >
  cpp > reference. Passing over a missing fast backend warns (RuntimeWarning) once per distinct
  reason, and the reason names the fix.
- explicit "cpp" / "cuda" / "triton": that kernel, or a one-line RuntimeError saying why not (no
  extension, stale extension, wrong device, built without CUDA, Triton missing or failed to load,
  dtype not float32/float64, inputs the kernel does not take).

A stale build is refused, not worked around: an extension that loads but lacks a schema, a CPU
kernel, or (when it has CUDA kernels at all) a CUDA kernel that SPECS expects was built before an op
was added. Mixing kernels of two builds op by op would make "auto" silently run different code per
op, so the whole extension is treated as unavailable: importing warns once with the fix
(`python setup.py build_ext --inplace`, or reinstall), "auto" falls back to the reference with a
warning saying the same, and asking for "cpp"/"cuda" raises it. An extension built without any CUDA
kernel (a CPU torch, BUILD_NO_CUDA=1) is not stale: it serves "cpp" only.

Adding an op: see the checklist in confgf_fast/ops/__init__.py (one OpSpec here, the kernel files,
the public function).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import _registration as fakes
from . import reference
from ._registration import register_gine_aggregate_autograd, register_pairwise_distance_autograd
from .validation import graph_checked

NAMESPACE = "confgf_fast"
BACKENDS = ("auto", "reference", "cpp", "cuda", "triton")
FAST_DTYPES = (torch.float32, torch.float64)
# What "auto" tries, per device type, before the reference.
AUTO_ORDER = {"cuda": ("cuda", "triton"), "cpu": ("cpp",)}
# available_backends' order: auto's preference across devices.
_LISTED = ("cuda", "cpp", "triton")
_NAMES = {"cpp": "C++ kernels", "cuda": "CUDA kernels", "triton": "Triton kernels"}
REBUILD = "rebuild it: `python setup.py build_ext --inplace`, or reinstall: `pip install --no-build-isolation -e .`"


@dataclass(frozen=True)
class OpSpec:
    """One public op: its reference, the compiled ops its cpp/cuda backends need, and how to
    register them, and whether confgf_fast.kernels has a Triton kernel of it."""

    reference: Callable[..., Tensor]
    # confgf_fast::<name> schemas (csrc/ops.cpp) this op's cpp/cuda backends call, the op itself
    # first, then helpers such as its backward, each with its fake (meta) kernel; empty: no
    # compiled kernel.
    compiled: Mapping[str, Callable[..., object]] = field(default_factory=dict)
    # Registers autograd on one backend family's ops, given {name: op} of that family (the compiled
    # ops by schema name, or the Triton ops by op name); None: not differentiable there.
    autograd: Callable[[Mapping[str, Callable[..., object]]], None] | None = None
    # kernels/<op>.py defines a triton_op named <op> taking the schema's arguments.
    triton: bool = False


def _distance_autograd(k: Mapping[str, Callable[..., object]]) -> None:
    register_pairwise_distance_autograd(k["pairwise_distance"], k["coord_score"])


def _gine_autograd(k: Mapping[str, Callable[..., object]]) -> None:
    register_gine_aggregate_autograd(k["gine_aggregate"], k["gine_aggregate_backward"])


# The registry proper: one entry per public op of confgf_fast.ops.
SPECS: dict[str, OpSpec] = {
    "pairwise_distance": OpSpec(reference.pairwise_distance, {"pairwise_distance": fakes.pairwise_distance_fake},
                                autograd=_distance_autograd, triton=True),
    "coord_score": OpSpec(reference.coord_score, {"coord_score": fakes.coord_score_fake}, triton=True),
    "langevin_step": OpSpec(reference.langevin_step, {"langevin_step": fakes.langevin_step_fake}, triton=True),
    # No Triton kernel: under torch.compile the model runs the reference, which inductor fuses.
    "gine_aggregate": OpSpec(reference.gine_aggregate,
                             {"gine_aggregate": fakes.gine_aggregate_fake,
                              "gine_aggregate_backward": fakes.gine_aggregate_backward_fake},
                             autograd=_gine_autograd),
    "project_sweeps": OpSpec(reference.project_sweeps, {"project_sweeps": fakes.project_sweeps_fake}, triton=True),
}
# The Triton ops, in SPECS' order: the modules confgf_fast.kernels holds, one per op.
TRITON_OPS: tuple[str, ...] = tuple(op for op, spec in SPECS.items() if spec.triton)
TRITON_PACKAGE = "confgf_fast.kernels"  # kernels/, installed under that name (package_dir in setup.py)


def _own_backends(spec: OpSpec) -> tuple[str, ...]:
    return ("reference",) + (("cpp", "cuda") if spec.compiled else ()) + (("triton",) if spec.triton else ())


# Looked up on every call of a public op, so computed once.
_OWN: dict[str, tuple[str, ...]] = {op: _own_backends(spec) for op, spec in SPECS.items()}


def op_backends(op: str) -> tuple[str, ...]:
    """The backends `op` has kernels for in the source tree (whether or not built or installed here)."""
    return _OWN[op]


def compiled_ops() -> tuple[str, ...]:
    """Every confgf_fast::<name> schema the registry expects csrc/ to define."""
    return tuple(name for spec in SPECS.values() for name in spec.compiled)


# ---- the compiled extension ---------------------------------------------------------------------


def _load_extension() -> str | None:
    """Load confgf_fast._C into torch.ops; None on success, else why it is unavailable.
    CONFGF_FAST_NO_EXT=1 ignores a built extension (to test or debug the fallback path)."""
    if os.environ.get("CONFGF_FAST_NO_EXT", "0") == "1":
        return "disabled by CONFGF_FAST_NO_EXT=1"
    try:
        spec = importlib.util.find_spec("confgf_fast._C")
    except (ImportError, ValueError) as exc:  # pragma: no cover - odd import setups
        return f"cannot look up confgf_fast._C ({exc})"
    if spec is None or not spec.origin:
        return "confgf_fast._C is not built; build it with `pip install --no-build-isolation -e .` (see setup.py)"
    try:
        # The library only registers ops (TORCH_LIBRARY); it is not a Python module, so it is
        # dlopen'ed by torch rather than imported.
        torch.ops.load_library(spec.origin)
    except (OSError, RuntimeError) as exc:
        return f"confgf_fast._C failed to load ({exc}); rebuild it against the installed torch"
    return None


_LOAD_ERROR: str | None = _load_extension()


def registered_kernels() -> dict[str, frozenset[str]]:
    """{schema name: dispatch keys with a kernel, of "CPU" and "CUDA"} for every confgf_fast::<name>
    of compiled_ops() the dispatcher knows (a missing name: no schema). The Triton ops (Python
    torch.library ops of the same namespace) are not asked about."""
    known = {n.split(".")[0] for n in torch._C._dispatch_get_all_op_names() if n.startswith(NAMESPACE + "::")}
    out = {}
    for name in compiled_ops():
        qualified = f"{NAMESPACE}::{name}"
        if qualified in known:
            out[name] = frozenset(k for k in ("CPU", "CUDA")
                                  if torch._C._dispatch_has_kernel_for_dispatch_key(qualified, k))
    return out


@dataclass(frozen=True)
class Extension:
    """What the compiled extension serves in this process."""

    error: str | None  # why it cannot be used (not built, failed to load, stale), or None
    backends: tuple[str, ...]  # ("cpp",) or ("cpp", "cuda") when usable, else (); a tuple for torch.compile
    stale: bool = False


def probe_extension() -> Extension:
    """Check the loaded extension against SPECS (see the module docstring: a partial one is stale)."""
    if _LOAD_ERROR is not None:
        return Extension(_LOAD_ERROR, ())
    have = registered_kernels()
    expected = compiled_ops()
    with_cuda = [n for n in expected if "CUDA" in have.get(n, ())]
    gaps = {"no op": [n for n in expected if n not in have],
            "no CPU kernel of": [n for n in expected if n in have and "CPU" not in have[n]],
            # CUDA kernels for some ops but not all: a CUDA build older than an op
            "no CUDA kernel of": [n for n in expected if n in have and n not in with_cuda] if with_cuda else []}
    missing = "; ".join(f"{what} {', '.join(names)}" for what, names in gaps.items() if names)
    if missing:
        return Extension(f"confgf_fast._C is stale ({missing}: built before the op was added); {REBUILD}", (),
                         stale=True)
    return Extension(None, ("cpp", "cuda") if with_cuda else ("cpp",))


# Computed once: the dispatcher's kernel table does not change after import, and reading a constant
# keeps the public functions traceable by torch.compile.
EXTENSION: Extension = probe_extension()
# The compiled op objects, {name: OpOverloadPacket}, for every name of compiled_ops().
_COMPILED: dict[str, Callable[..., object]] = {}
if EXTENSION.error is None:
    _lib = getattr(torch.ops, NAMESPACE)
    _COMPILED = {name: getattr(_lib, name) for name in compiled_ops()}
    for _spec in SPECS.values():
        for _name, _fake in _spec.compiled.items():
            torch.library.register_fake(f"{NAMESPACE}::{_name}")(_fake)
    _defaults = {name: op.default for name, op in _COMPILED.items()}
    for _spec in SPECS.values():
        if _spec.compiled and _spec.autograd is not None:
            _spec.autograd(_defaults)
elif EXTENSION.stale:
    warnings.warn(f"confgf_fast.ops: not using {EXTENSION.error}", RuntimeWarning, stacklevel=2)


# ---- Triton -----------------------------------------------------------------------------------------


def triton_installed() -> bool:
    """Triton is importable (checked without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # pragma: no cover
        return False


TRITON_INSTALLED = triton_installed()
TRITON_ERROR: str | None = None if TRITON_INSTALLED else "triton is not installed (pip install triton)"
_triton_lock = threading.Lock()
_triton: dict[str, Callable[..., Tensor]] | None = None


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_kernels() -> dict[str, Callable[..., Tensor]] | None:
    """{op: triton_op} for every op of TRITON_OPS (imports Triton and registers the ops' autograd on
    first call), or None with TRITON_ERROR set when that fails."""
    global _triton, TRITON_ERROR
    if _triton is not None or TRITON_ERROR is not None:
        return _triton
    with _triton_lock:
        if _triton is None and TRITON_ERROR is None:
            try:
                # confgf_fast.kernels is the top-level kernels/ installed under that name
                # (package_dir in setup.py; an editable install maps it the same way).
                ops = {op: getattr(importlib.import_module(f"{TRITON_PACKAGE}.{op}"), op) for op in TRITON_OPS}
                for op in TRITON_OPS:
                    if SPECS[op].autograd is not None:
                        SPECS[op].autograd(ops)
                _triton = ops
            except Exception as exc:
                TRITON_ERROR = f"the Triton kernels failed to load ({type(exc).__name__}: {exc})"
    return _triton


# ---- availability -----------------------------------------------------------------------------------


def registry() -> dict[str, dict[str, Callable[..., object]]]:
    """{op: {backend: kernel}} for the kernels present in this process. The reference takes the
    reference's arguments; the others take the schema's (csrc/ops.cpp; rowptr included). A Triton
    entry is listed when Triton is installed and its kernels have not failed to load; calling it
    imports Triton. The public ops do not call through this dict: resolve() decides from the same
    facts (EXTENSION, the Triton state) and run() calls the op objects directly."""
    out = {}
    for op, spec in SPECS.items():
        row: dict[str, Callable[..., object]] = {"reference": spec.reference}
        if spec.compiled and op in _COMPILED:
            row.update({b: _COMPILED[op] for b in ("cpp", "cuda") if b in EXTENSION.backends})
        if spec.triton and TRITON_INSTALLED and TRITON_ERROR is None:
            row["triton"] = _TritonKernel(op)
        out[op] = row
    return out


class _TritonKernel:
    """registry()'s Triton entry: loads the Triton kernels when called."""

    def __init__(self, op: str):
        self.op = op

    def __call__(self, *args):
        kernels = triton_kernels()
        if kernels is None:
            raise RuntimeError(f"confgf_fast.ops: {TRITON_ERROR}")
        return kernels[self.op](*args)


def has_backend(op: str, backend: str) -> bool:
    """Whether this process has a kernel of `op` for `backend`, whatever the device (the CUDA
    kernels can be registered with no GPU visible). Does not import Triton."""
    return backend in registry()[op]


def why_unavailable(backend: str, device: torch.device | str, op: str | None = None, *,
                    load: bool = True) -> str | None:
    """Why `backend` cannot run `op` (None: any op that has that backend) on tensors on `device`,
    or None when it can. `load=False` does not import Triton (its kernels count as loadable)."""
    # On every call of a public op: the usable path formats no string.
    if not isinstance(device, torch.device):
        device = torch.device(device)
    if backend == "reference":
        return None
    if backend not in BACKENDS[2:]:
        return f"unknown backend {backend!r}"
    if op is not None and backend not in _OWN[op]:
        return f"{op} has no {backend} kernel"
    what = op or "backend"  # "the cpp coord_score needs ..." / "the cpp backend needs ..."
    if backend in ("cpp", "cuda"):
        if EXTENSION.error is not None:
            return EXTENSION.error
        kind = "cpu" if backend == "cpp" else "cuda"
        if device.type != kind:
            return f"the {backend} {what} needs {kind.upper()} tensors, got a tensor on {device}"
        if backend not in EXTENSION.backends:
            return "confgf_fast._C was built without CUDA kernels (rebuild with a CUDA torch, or FORCE_CUDA=1)"
        if backend == "cuda" and not torch.cuda.is_available():
            return "no CUDA device is visible"
        return None
    # triton
    if TRITON_ERROR is not None:
        return TRITON_ERROR
    if device.type == "cpu":
        if not triton_interpret():
            return f"the {backend} {what} needs CUDA tensors (on CPU only with TRITON_INTERPRET=1 set before import)"
    elif device.type != "cuda":
        return f"the {backend} {what} does not run on {device}"
    elif not torch.cuda.is_available():
        return "no CUDA device is visible"
    if load and triton_kernels() is None:
        return TRITON_ERROR
    return None


def available_backends(device: torch.device | str, op: str | None = None) -> list[str]:
    """Backends usable for tensors on `device`, in the order "auto" prefers them, for `op` (None:
    the backends usable by every op that has them; each op's own list is a subset).

    "triton" is listed for a CPU device only under TRITON_INTERPRET=1 (auto never picks it there),
    and is listed when Triton is installed even if its kernels have not been imported yet.
    """
    return [b for b in _LISTED if why_unavailable(b, device, op, load=False) is None] + ["reference"]


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    # Keyed by the text, which names no op unless the op's own choice differs: one missing
    # extension gives one warning, not one per op.
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def resolve(op: str, backend: str, t: Tensor, unsupported: str | None = None) -> str:
    """The backend that runs `op` for the call whose main tensor is `t` (device and dtype), under
    the policy of the module docstring. `unsupported`: why the kernels cannot take this call's
    inputs (None: they can); "auto" then runs the reference silently, an explicit fast backend
    raises it."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    own = _OWN[op]
    if backend != "auto" and backend not in own:
        raise ValueError(f"confgf_fast.ops.{op}: backend must be one of {('auto', *own)} (there is no {backend} "
                         f"kernel of {op}), got {backend!r}")
    if backend == "reference":
        return backend
    device = t.device
    if backend == "auto":
        if t.dtype not in FAST_DTYPES or unsupported is not None:
            return "reference"  # the kernels are float32/float64 only, and take only what they can
        # Plain loops, no generators: torch.compile(fullgraph=True) traces this function.
        order = AUTO_ORDER.get(device.type, ())
        # Prefix with the op only where its candidates differ from the device's, so that one cause
        # gives one warning for all ops that share it.
        where = "confgf_fast.ops"
        for b in order:
            if b not in own:
                where = f"confgf_fast.ops.{op}"
        tried = []
        for b in order:
            if b not in own:
                continue
            why = why_unavailable(b, device, op)
            if why is None:
                if tried:
                    _warn_once(f"{where}: {_NAMES[tried[0][0]]} unavailable ({tried[0][1]}); using the {_NAMES[b]}")
                return b
            tried.append((b, why))
        if len(tried) == 1:
            _warn_once(f"{where}: {_NAMES[tried[0][0]]} unavailable ({tried[0][1]}); "
                       "falling back to the pure-PyTorch reference")
        elif tried:
            reasons = "; ".join([f"{b}: {why}" for b, why in tried])
            _warn_once(f"{where}: no fast {device.type.upper()} backend ({reasons}); "
                       "falling back to the pure-PyTorch reference")
        return "reference"
    why = why_unavailable(backend, device, op)
    if why is not None:
        raise RuntimeError(f"confgf_fast.ops: backend {backend!r} is unavailable for {op} on {device}: {why}. "
                           f"Available: {available_backends(device, op)}")
    if t.dtype not in FAST_DTYPES:
        raise RuntimeError(f"confgf_fast.ops: the {backend} {op} needs float32 or float64 tensors, got {t.dtype}")
    if unsupported is not None:
        raise RuntimeError(f"confgf_fast.ops: the {backend} {op} needs {unsupported}")
    return backend


def run(op: str, backend: str, *args):
    """Call `op`'s kernel of a fast backend chosen by resolve, with the schema's arguments
    (csrc/ops.cpp). The Triton wrappers skip their own graph check here: the public op checked the
    graph already, or its caller vouched for it (validate=False)."""
    if backend == "triton":
        kernels = triton_kernels()  # loaded by resolve
        with graph_checked():
            return kernels[op](*args)
    return _COMPILED[op](*args)
