"""bench/gpu_suite.sh, its CPU-side logic: argument handling, stage selection, the time budget and
the summary it writes, run in --dry-run / --summary-only mode (no GPU, nothing built)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_suite.sh"
STAGES = ["env", "build", "tests", "ops", "sampler"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _run(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env}
    full_env.pop("TORCH_CUDA_ARCH_LIST", None)
    full_env.pop("MAX_JOBS", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=120,
                          check=False, cwd=ROOT)


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_dry_run_writes_every_stage_and_a_summary(tmp_path):
    res = _run(tmp_path, "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    summary = _summary(tmp_path)
    assert list(summary["stages"]) == STAGES
    assert all(s["status"] == "dry-run" for s in summary["stages"].values())
    assert summary["ok"] and summary["dry_run"]
    # the build the brief asks for: one arch, 16 jobs, CUDA forced
    log = (tmp_path / "suite.log").read_text()
    assert "arch=9.0 jobs=16" in log
    assert "FORCE_CUDA=1" in summary["stages"]["build"]["command"]
    tests_cmd = summary["stages"]["tests"]["command"]
    for module in ("test_ops_backends", "test_gine_aggregate", "test_ops_triton", "test_cuda_build",
                   "test_kernels_aot"):
        assert module in tests_cmd
    assert "bench/bench_ops.py" in summary["stages"]["ops"]["command"]
    assert "--bench-sampler-device=cuda" in summary["stages"]["sampler"]["command"]
    # stage caps fit the budget: no stage may be allowed more than the whole call
    assert all(s["cap_s"] <= 450 for s in summary["stages"].values())
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# GPU suite (dry run)") and "| sampler | dry-run |" in md


def test_stage_selection(tmp_path):
    res = _run(tmp_path, "--dry-run", "--stages", "tests,ops", "--skip-build")
    assert res.returncode == 0, res.stderr
    assert list(_summary(tmp_path)["stages"]) == ["tests", "ops"]
    out2 = tmp_path / "b"
    assert _run(out2, "--dry-run", "--skip-build").returncode == 0
    assert "build" not in _summary(out2)["stages"]


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unknown argument"),
    (["--stages", "tests,fly"], "unknown stage 'fly'"),
    (["--budget", "soon"], "--budget must be a whole number"),
    (["--budget"], "--budget needs a value"),
])
def test_bad_arguments_exit_2(tmp_path, args, message):
    res = _run(tmp_path, *args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "summary.json").exists()


def test_help(tmp_path):
    res = _run(tmp_path, "--help")
    assert res.returncode == 0 and "--dry-run" in res.stderr and "Usage" in res.stderr


def test_spent_budget_skips_stages_and_fails(tmp_path):
    """With no time left a stage is not started; the suite then reports failure, not success."""
    res = _run(tmp_path, "--stages", "tests", "--budget", "10")
    assert res.returncode == 1, res.stdout + res.stderr
    summary = _summary(tmp_path)
    assert summary["stages"]["tests"]["status"] == "skipped-budget" and not summary["ok"]


def test_summary_from_stage_results(tmp_path):
    """--summary-only turns stage records, the pytest log and the benchmark JSONs into the summary."""
    stages = tmp_path / "stages"
    stages.mkdir()
    for name, status in (("build", "ok"), ("tests", "failed"), ("ops", "ok"), ("sampler", "timeout")):
        (stages / f"{name}.json").write_text(json.dumps({"stage": name, "status": status, "rc": 0, "seconds": 12,
                                                          "cap_s": 100, "command": "x"}))
    (stages / "tests.log").write_text(
        "....F.s\nFAILED tests/test_gine_aggregate.py::test_opcheck[cuda] - AssertionError\n"
        "=========== 1 failed, 40 passed, 3 skipped in 21.50s ===========\n")
    (tmp_path / "ops.json").write_text(json.dumps({"device": "NVIDIA H200", "results": [
        {"op": "langevin_step", "size": "large", "backend": "cuda", "ms": 0.0421, "ms_cuda_graph": 0.0301,
         "speedup_vs_reference": 31.5, "GBps": 2900.0},
        {"op": "coord_score", "size": "large", "backend": "triton", "error": "CompilationError: boom"}]}))
    (tmp_path / "sampler.json").write_text(json.dumps({"schedule": {"levels": 5}, "results": {"qm9": {
        "ours_compiled": {"conformer_steps_per_s": 123456.0}, "etkdg_1thread": {"conformers_per_s": 80.0}}}}))
    res = _run(tmp_path, "--summary-only")
    assert res.returncode == 0, res.stderr
    summary = _summary(tmp_path)
    assert not summary["ok"] and not summary["dry_run"]
    assert summary["tests"]["failed"] == 1 and summary["tests"]["passed"] == 40 and summary["tests"]["skipped"] == 3
    assert summary["tests_failed"] == ["tests/test_gine_aggregate.py::test_opcheck[cuda] - AssertionError"]
    assert summary["ops"]["device"] == "NVIDIA H200" and len(summary["ops"]["rows"]) == 2
    assert summary["sampler"]["rates"]["qm9"] == {"ours_compiled": 123456.0, "etkdg_1thread": 80.0}
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# GPU suite — FAILED")
    assert "| sampler | timeout | 12 |" in md
    assert "langevin_step large cuda: 0.0421 / 0.0301 ms  31.5x" in md
    assert "coord_score large triton: ERROR CompilationError: boom" in md
    assert "qm9 ours_compiled: 1.235e+05" in md
