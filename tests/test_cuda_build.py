"""The CUDA build of confgf_fast._C, checked without a GPU.

Runs where the installed torch is a CUDA build (CI's second venv, .venv-cuda, with the extension
built by FORCE_CUDA=1; see .ci/run) and skips cleanly on a CPU torch. What it can check with no GPU:
every op of the confgf_fast namespace has a CUDA kernel registered (so "auto" on a CUDA tensor
takes the fused path, nothing falls back silently), importing the package works and warns nothing
with no device visible, the CPU kernels compiled into the same library still match the
reference, and the fake kernels give CUDA-tensor shapes for torch.compile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from confgf_fast.ops import _registry

pytestmark = pytest.mark.skipif(torch.version.cuda is None,
                                reason=f"torch {torch.__version__} is a CPU build (the CUDA build runs in .venv-cuda)")

NAMESPACE = "confgf_fast::"
# Every op of csrc/ops.cpp, as the op registry expects them; the test also compares against what
# the dispatcher knows, so an op in csrc/ without a registry entry, or without a CUDA kernel, fails.
OPS = _registry.compiled_ops()


def _namespace_ops() -> list[str]:
    """confgf_fast::<op> names registered in C++ (csrc/ops.cpp); the Triton ops (triton_*) are
    Python-side torch.library ops with no per-device kernels and are left out."""
    names = {n.split(".")[0] for n in torch._C._dispatch_get_all_op_names() if n.startswith(NAMESPACE)}
    return sorted(n for n in names if not n[len(NAMESPACE):].startswith("triton_"))


def test_extension_is_the_cuda_build():
    import confgf_fast

    # A source tree on sys.path (python -m pytest from the repo root) would shadow the installed
    # CUDA build with the CPU venv's extension: run pytest's script, or from another directory.
    ext = _registry.EXTENSION
    assert ext.error is None, f"{ext.error} (confgf_fast from {confgf_fast.__file__})"
    assert set(ext.backends) == {"cpp", "cuda"}, ext
    assert all(_registry.has_backend(op, "cuda") for op, spec in _registry.SPECS.items() if spec.compiled)


def test_every_op_has_a_cuda_kernel():
    import confgf_fast.ops  # noqa: F401  (loads confgf_fast._C)

    names = _namespace_ops()
    assert names == sorted(NAMESPACE + op for op in OPS), names
    missing = [n for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
    assert not missing, f"no CUDA kernel registered for {missing}"
    missing_cpu = [n for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CPU")]
    assert not missing_cpu, f"no CPU kernel registered for {missing_cpu}"


def test_import_without_a_gpu():
    """No visible device: import works, warns nothing, the CPU path runs, CUDA reports why not."""
    code = textwrap.dedent("""
        import warnings
        import torch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import confgf_fast
            from confgf_fast import ops
            assert not torch.cuda.is_available()
            assert all(ops._registry.has_backend(op, "cuda") for op in ops._registry.SPECS)
            assert ops.available_backends("cpu")[0] == "cpp", ops.available_backends("cpu")
            ei = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]])
            p, s = torch.randn(3, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
            z = torch.randn(3, 3, dtype=torch.float64)
            got = ops.langevin_step(p, ei, s, z, 0.1)  # auto: the C++ kernel of the same library
            want = ops.reference.langevin_step(p, ei, s, z, 0.1)
            assert (got - want).abs().max() < 1e-12
            try:
                ops.langevin_step(p, ei, s, z, 0.1, backend="cuda")
            except RuntimeError as exc:
                assert "unavailable" in str(exc), exc
            else:
                raise AssertionError("cuda backend on a CPU tensor should raise")
        ours = [str(w.message) for w in caught if "confgf_fast" in w.filename or "confgf_fast" in str(w.message)]
        assert not ours, ours
        print("OK")
    """)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("CONFGF_FAST_NO_EXT", None)
    # cwd: tests/, so that the installed package is imported, not a source tree beside it
    res = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, timeout=300, check=False, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr


def test_fake_kernels_on_meta_tensors():
    """The shapes torch.compile sees for each op (its fake kernels), on the meta device."""
    import confgf_fast.ops  # noqa: F401

    lib = torch.ops.confgf_fast
    N, E, H = 5, 8, 4
    pos = torch.empty(N, 3, device="meta")
    ei = torch.empty(2, E, dtype=torch.long, device="meta")
    s = torch.empty(E, device="meta")
    assert lib.pairwise_distance(pos, ei).shape == (E,)
    assert lib.coord_score(pos, ei, s, None).shape == (N, 3)
    assert lib.langevin_step(pos, ei, s, pos, None, 0.1, 10.0).shape == (N, 3)
    h = torch.empty(N, H, device="meta")
    a = torch.empty(E // 2, H, device="meta")
    pair = torch.empty(E, dtype=torch.long, device="meta")
    assert lib.gine_aggregate(h, ei, a, pair, None).shape == (N, H)
    gh, ga = lib.gine_aggregate_backward(h, h, ei, a, pair, None)
    assert gh.shape == (N, H) and ga.shape == (E // 2, H)
    assert lib.project_sweeps(pos, ei, s, torch.empty(N, device="meta"), None, 3).shape == (N, 3)
