"""Fixtures and options for the kernel benchmarks (bench/bench_ops.py).

Batches are real molecules' extended graphs (RDKit + chem.featurize) when RDKit is installed, else
RDKit-free synthetic molecule-like graphs with the same atom and edge counts (the GPU machines have
no RDKit), so timings are comparable either way.
"""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser):
    group = parser.getgroup("confgf_fast benchmarks")
    group.addoption("--bench-threads", type=int, default=None,
                    help="torch.set_num_threads for CPU benchmarks (default: torch's default)")
    group.addoption("--bench-backends", default=None,
                    help="comma-separated backends to run, e.g. 'reference,cpp' (default: all available)")


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


def pytest_terminal_summary(terminalreporter):
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
