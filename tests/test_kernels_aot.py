"""`python -m confgf_fast.kernels.aot --arch 90`: every Triton kernel of confgf_fast.kernels compiles
ahead of time to an sm_90 cubin without a GPU, and the report lists registers, spills and shared
memory for each. Skipped where Triton is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton", reason="triton is not installed (pip install triton)")

# At least these; every Triton op of the registry must contribute a kernel (checked below).
KERNELS = ("pairwise_distance_kernel", "coord_score_kernel", "langevin_step_kernel", "project_sweep_kernel")


def test_aot_compiles_every_kernel_for_sm90(tmp_path):
    # The CPU interpreter (set by conftest on machines without a GPU) would replace the compiler.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "aot.json"
    res = subprocess.run([sys.executable, "-m", "confgf_fast.kernels.aot", "--arch", "90", "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=900, check=False, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(out.read_text())
    assert report["failures"] == 0
    rows = report["kernels"]
    from confgf_fast.ops._registry import TRITON_OPS

    kernels = {r["kernel"] for r in rows}
    assert set(KERNELS) <= kernels, kernels
    assert {(r["kernel"], r["dtype"]) for r in rows} == {(k, d) for k in kernels for d in ("fp32", "fp64")}
    assert {r["op"] for r in rows} == set(TRITON_OPS), "a Triton op of the registry without a compiled kernel"
    for r in rows:
        assert r["target"].startswith("sm_90"), r
        assert 0 < r["registers"] <= 255, r
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r  # measured: none spill today
        assert r["cubin_bytes"] > 0, r
        assert f"{r['kernel']:<24} {r['dtype']:<5} {r['target']}" in res.stdout


def test_aot_refuses_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-m", "confgf_fast.kernels.aot", "--arch", "90"], capture_output=True,
                         text=True, env=env, timeout=300, check=False)
    assert res.returncode == 2 and "TRITON_INTERPRET" in res.stderr, res.stdout + res.stderr


def test_kernels_package_is_installed_under_its_name():
    """kernels/ installs as confgf_fast.kernels (package_dir in setup.py), found by the ordinary
    import system: no sys.modules entry planted by confgf_fast."""
    import importlib.util

    spec = importlib.util.find_spec("confgf_fast.kernels")
    assert spec is not None and spec.origin is not None
    assert os.path.basename(os.path.dirname(spec.origin)) == "kernels", spec.origin
    assert importlib.util.find_spec("confgf_fast.kernels.aot") is not None
