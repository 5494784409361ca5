"""Fixtures and options for the kernel benchmarks (bench/bench_ops.py).

Batches are real molecules' extended graphs (RDKit + chem.featurize) when RDKit is installed, else
RDKit-free synthetic molecule-like graphs with the same atom and edge counts (the GPU machines have
no RDKit), so timings are comparable either way.
"""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from common import RESULTS, DirtyTreeError, provenance, write_json


def pytest_addoption(parser):
    group = parser.getgroup("confgf_fast benchmarks")
    group.addoption("--bench-threads", type=int, default=None,
                    help="torch.set_num_threads for CPU benchmarks (default: torch's default)")
    group.addoption("--bench-backends", default=None,
                    help="comma-separated backends to run, e.g. 'reference,cpp' (default: all available)")
    # bench_sampler.py
    group.addoption("--bench-levels", type=int, default=5, help="sampler benchmarks: noise levels visited (default 5)")
    group.addoption("--bench-steps", type=int, default=10, help="sampler benchmarks: steps per level (default 10)")
    group.addoption("--bench-rounds", type=int, default=3, help="sampler benchmarks: timed rounds each (default 3)")
    group.addoption("--bench-real-mols", type=int, default=None,
                    help="sampler benchmarks: the real workloads' first N molecules only (smoke runs; default all)")
    group.addoption("--bench-sampler-device", default="cpu", help="sampler benchmarks: cpu or cuda (default cpu)")
    group.addoption("--bench-json", default=None,
                    help="sampler benchmarks: JSON to write (default bench/results/sampler_<device>_<date>.json)")
    group.addoption("--allow-dirty", action="store_true",
                    help="sampler benchmarks: write the JSON even if tracked files have uncommitted changes (the "
                         "file then records git_dirty and allow_dirty: true); without it a dirty tree is refused")


def pytest_configure(config):
    threads = config.getoption("--bench-threads")
    if threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def selected_backends(request):
    value = request.config.getoption("--bench-backends")
    return None if not value else {b.strip() for b in value.split(",") if b.strip()}


_RESULTS: dict[tuple[str, str, str], dict[str, float]] = {}


@pytest.fixture(scope="session")
def results():
    """(op, size, device) -> {backend: mean seconds}, reported as speed-ups at the end."""
    return _RESULTS


_SAMPLER: dict = {}


@pytest.fixture(scope="session")
def sampler_results(request):
    """bench_sampler.py's measurements: {"results": {size: {method: row}}, "memory": {size: row}}.
    The provenance of the JSON written at the end is taken here, before the first measurement, and a
    dirty tree is refused now (not after the run) unless --allow-dirty."""
    config = request.config
    device = config.getoption("--bench-sampler-device")
    if "provenance" not in _SAMPLER:
        # --benchmark-disable records nothing, so no JSON is written and a dirty tree is no reason to stop
        output = None if config.getoption("benchmark_disable", False) else _sampler_json_path(config)
        try:
            _SAMPLER["provenance"] = provenance(device, config.getoption("--allow-dirty"), output)
        except DirtyTreeError as exc:
            pytest.exit(str(exc), returncode=4)
    return _SAMPLER


def pytest_terminal_summary(terminalreporter, config):
    if _SAMPLER:
        _sampler_summary(terminalreporter, config)
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("confgf_fast: speed-up over the eager reference (mean times, same run)")
    for (op, size, device), by_backend in sorted(_RESULTS.items()):
        ref = by_backend.get("reference")
        for backend, mean in sorted(by_backend.items()):
            speedup = f"{ref / mean:6.1f}x" if ref else ""
            ratio = "   1.0x" if backend == "reference" else speedup
            tr.write_line(f"{op:18s} {size:6s} {device:5s} {backend:10s} {mean * 1e3:10.3f} ms  {ratio}")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Saved baselines say what they were measured on, since absolute times mean little elsewhere."""
    import os

    machine_info["confgf_fast"] = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "note": os.environ.get("CONFGF_BENCH_NOTE", ""),
    }


# ---- bench_sampler.py: summary table and JSON ---------------------------------------------------------
PAPER_EVALS = 5000


def _fast_evals() -> int:
    from confgf_fast.config import NoiseConfig, resolve_schedule
    from confgf_fast.sampling.sampler import num_evaluations

    return num_evaluations(NoiseConfig(), resolve_schedule("fast"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _sampler_line(size: str, method: str, row: dict) -> str:
    if "conformer_steps_per_s" in row:
        rate = row["paper_schedule_conformers_per_s"]
        return (f"{size:6s} {method:20s} {row['median_s']:8.2f} s {row['conformer_steps_per_s']:9.0f} conf-steps/s"
                f"  paper schedule: {rate:7.3f} conf/s = {1 / rate:6.2f} s/conf")
    return f"{size:6s} {method:20s} {row['median_s']:8.2f} s {row['conformers_per_s']:9.1f} conf/s"


def _speedups(rows: dict) -> dict:
    """Ratios of every `ours*` row to the baselines measured in the same run (> 1: ours faster)."""
    out = {}
    for name, row in rows.items():  # whole-schedule runs (conformers/s measured, not extrapolated)
        if not name.startswith("project"):
            continue
        for m in ("etkdg_1thread", "etkdg_allcores"):
            if m in rows:
                out[f"{name}_vs_{m}"] = row["conformers_per_s"] / rows[m]["conformers_per_s"]
        for m in ("ours_compiled", "ours_eager"):
            if m in rows:
                fast = rows[m]["fast_schedule_conformers_per_s"]
                out[f"{name}_vs_{m}_fast_schedule"] = row["conformers_per_s"] / fast
                out[f"{name}_vs_{m}_paper_schedule"] = (row["conformers_per_s"]
                                                        / rows[m]["paper_schedule_conformers_per_s"])
    for name in ("noise", "quick", "warm"):  # the real workloads (test_real): same molecules, same thread
        if name in rows and "etkdg" in rows:
            out[f"{name}_vs_etkdg"] = rows[name]["conformers_per_s"] / rows["etkdg"]["conformers_per_s"]
    for name, ours in rows.items():
        if not name.startswith("ours"):
            continue
        if "eager_official" in rows:
            out[f"{name}_vs_eager_official"] = (ours["conformer_steps_per_s"]
                                                / rows["eager_official"]["conformer_steps_per_s"])
        for m in ("etkdg_1thread", "etkdg_allcores"):
            if m in rows:
                base = rows[m]["conformers_per_s"]
                out[f"{name}_paper_schedule_vs_{m}"] = ours["paper_schedule_conformers_per_s"] / base
                out[f"{name}_fast_schedule_vs_{m}"] = ours["fast_schedule_conformers_per_s"] / base
    return out


def _sampler_json_path(config) -> str:
    device = config.getoption("--bench-sampler-device")
    return config.getoption("--bench-json") or str(
        RESULTS / f"sampler_{device.split(':')[0]}_{dt.date.today():%Y-%m-%d}.json")


def _sampler_summary(tr, config) -> None:
    """Print bench_sampler.py's table and write its JSON (machine, schedule, results, memory)."""
    import os
    import platform

    device = config.getoption("--bench-sampler-device")
    levels, steps = config.getoption("--bench-levels"), config.getoption("--bench-steps")
    tr.section(f"confgf_fast sampler throughput ({levels} levels x {steps} steps timed, "
               f"extrapolated to the paper schedule of {PAPER_EVALS} steps)")
    results = _SAMPLER.get("results", {})
    for size, rows in results.items():
        for method, row in rows.items():
            tr.write_line(_sampler_line(size, method, row))
        for name, ratio in _speedups(rows).items():
            tr.write_line(f"{size:6s}   {name}: {ratio:.4g}x")
    for size, row in _SAMPLER.get("memory", {}).items():
        tr.write_line(f"{size:6s} bytes/atom: ours step peak {row['ours_step_peak_bytes_per_atom'] / 1e3:.1f} KB"
                      f" + state {row['ours_state_bytes_per_atom'] / 1e3:.2f} KB; eager step peak "
                      f"{row['eager_step_peak_bytes_per_atom'] / 1e3:.1f} KB + trajectory 12 B per step "
                      f"({12 * PAPER_EVALS / 1e3:.0f} KB at {PAPER_EVALS} steps)")
    if not results:
        return
    from rdkit import rdBase

    now = dt.datetime.now()
    out = {
        "provenance": _SAMPLER["provenance"],
        "date": now.isoformat(timespec="seconds"),
        "machine": {
            "cpu_model": _cpu_model(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "rdkit": rdBase.rdkitVersion,
            "note": os.environ.get("CONFGF_BENCH_NOTE", ""),
        },
        "schedule": {"levels": levels, "steps_per_level": steps, "evaluations_per_conformer": levels * steps,
                     "paper_evaluations": PAPER_EVALS, "fast_evaluations": _fast_evals(),
                     "extrapolation": "conformers/s at S evaluations = conformer-steps/s / S; the timed short runs "
                                      "include set-up (featurisation, batching), so this is slightly pessimistic"},
        "workloads": _SAMPLER.get("workloads", {}),
        "results": results,
        "speedups": {size: _speedups(rows) for size, rows in results.items()},
        "memory": _SAMPLER.get("memory", {}),
    }
    path = _sampler_json_path(config)
    write_json(path, out)
    tr.write_line(f"written: {path}")
