"""Benchmark of the fused ops.project_sweeps against the per-sweep torch loop it replaces.

The work: `SWEEPS` = 60 damped Jacobi sweeps of stress majorisation (sampler.project_distances'
inner loop), on flat QM9-like batches of 64 and 512 molecules of 18 atoms and ~250 directed edges
each (one synthetic molecule-like graph replicated, so no RDKit is needed; see
confgf_fast.ops.testing.synthetic_molecule):
    r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij,   step_i = 0.5 / deg_i.

Rows of each group project_sweeps/<size>/cpu (one call = all 60 sweeps):
- fused-cpp:      ops.project_sweeps(..., backend="cpp"): one call, two [N, 3] buffers.
- loop-cpp:       what project_distances does today: per sweep ops.pairwise_distance, t - d,
                  ops.coord_score (C++ kernels, rowptr passed) and pos + step * S.
- loop-reference: the same loop on the pure-torch reference ops (gather, norm, index_add_).
- loop-compiled:  the reference sweep under torch.compile (one compiled sweep called 60 times),
                  the strong baseline DESIGN.md asks for.
At the end the ratios of every loop to fused-cpp, measured in the same run, are printed and stored
in the fused row's extra_info (vs_<row>); those are the figures to quote.

Per sweep, E directed edges and N atoms (QM9: E ~ 14 N), float32, int64 indices:
- flops, fused: per edge 3 sub + 3 mul + 2 add (|r_i - r_j|^2) + sqrt + sub (t - d) + div
  + 3 mul + 3 add (accumulate) = 18 (sqrt and div counted as one each); per atom 3 mul + 3 add:
  18 E + 6 N. 64 molecules (N = 1152, E ~ 16,000): ~0.3 MFLOP per sweep, 18 MFLOP per call.
  The loop computes every distance twice (pairwise_distance, then again inside coord_score):
  ~27 E + 12 N.
- bytes, fused (each array once; neighbours' positions re-read from cache): dst 8 E + target 4 E
  + rowptr 8 N + step 4 N + pos read 12 N + new pos written 12 N = 12 E + 36 N
  (64 molecules: ~0.23 MB per sweep: the whole working set lives in L2).
- bytes, loop: pairwise_distance 16 E + 12 N in, 4 E out; t - d 8 E in, 4 E out; coord_score
  (rowptr given) 8 N + 8 E + 4 E + 12 N in, 12 N out; step * S 16 N in, 12 N out; pos + 24 N in,
  12 N out: 44 E + 108 N (~0.83 MB per sweep at 64 molecules), plus four allocations and five op
  dispatches per sweep.

    pytest bench/bench_project_sweeps.py                      # 1 thread unless --bench-threads
    pytest bench/bench_project_sweeps.py --benchmark-only -q
"""

from __future__ import annotations

import functools

import pytest
import torch

from confgf_fast import ops
from confgf_fast.ops import reference
from confgf_fast.ops.testing import replicate, synthetic_molecule

SWEEPS = 60
ATOMS, EDGES = 18, 250  # one QM9-sized molecule: atoms with H, directed order-3 edges
SIZES = {"qm9x64": 64, "qm9x512": 512}
METHODS = ("loop-reference", "loop-compiled", "loop-cpp", "fused-cpp")  # fused last: its ratios need the others

_MEANS: dict[str, dict[str, float]] = {}


@functools.cache
def workload(size: str):
    """(pos [N, 3], edge_index [2, E], target [E], step [N], rowptr [N+1]) for `size`, float32."""
    ei1 = synthetic_molecule(ATOMS, EDGES, seed=0)
    copies = SIZES[size]
    N = ATOMS * copies
    ei = replicate(ei1, ATOMS, copies)
    g = torch.Generator().manual_seed(0)
    hidden = 1.5 * torch.randn(N, 3, generator=g)
    # Targets as the sampler makes them: edge lengths of a conformation, perturbed (Tweedie
    # estimates), and a start some way off it.
    target = ((hidden[ei[0]] - hidden[ei[1]]).norm(dim=1) * (1 + 0.05 * torch.randn(ei.shape[1], generator=g)))
    target = target.clamp_min(0.5)
    pos = hidden + 0.5 * torch.randn(N, 3, generator=g)
    deg = torch.bincount(ei[0], minlength=N).clamp_min(1).float()
    rowptr = torch.searchsorted(ei[0].contiguous(), torch.arange(N + 1))
    return pos, ei, target, 0.5 / deg, rowptr


def loop(pos, ei, target, step, rowptr, backend: str):
    """project_distances' loop as it is today: per sweep an E-length d, t - d and an [N, 3] S."""
    step = step.unsqueeze(1)  # [N, 1]
    for _ in range(SWEEPS):
        d = ops.pairwise_distance(pos, ei, backend=backend)
        pos = pos + step * ops.coord_score(pos, ei, target - d, backend=backend, rowptr=rowptr)
    return pos


def _reference_sweep(pos, src, dst, target, step):
    """One sweep of the reference loop (for torch.compile): pos [N, 3], step [N, 1]."""
    vec = pos[src] - pos[dst]
    d = vec.norm(dim=1)
    w = torch.where(d > 0, (target - d) / d.clamp_min(1e-30), torch.zeros_like(d))
    return pos + step * torch.zeros_like(pos).index_add_(0, src, w.unsqueeze(1) * vec)


@functools.cache
def _compiled_sweep():
    return torch.compile(_reference_sweep, dynamic=False)


def method_call(method: str, size: str):
    pos, ei, target, step, rowptr = workload(size)
    if method == "fused-cpp":
        return lambda: ops.project_sweeps(pos, ei, target, step, SWEEPS, backend="cpp", rowptr=rowptr)
    if method == "loop-cpp":
        return lambda: loop(pos, ei, target, step, rowptr, "cpp")
    if method == "loop-reference":
        return lambda: loop(pos, ei, target, step, rowptr, "reference")
    sweep, src, dst, col = _compiled_sweep(), ei[0], ei[1], step.unsqueeze(1)

    def compiled():
        p = pos
        for _ in range(SWEEPS):
            p = sweep(p, src, dst, target, col)
        return p

    return compiled


class _RatioReport:
    """A plugin registered by the fixture below: prints loop time / fused time at the end of the
    run (the summary hook runs outside output capture, unlike a fixture's teardown)."""

    def __init__(self, threads: int):
        self.threads = threads

    def pytest_terminal_summary(self, terminalreporter):
        if not _MEANS:
            return
        tr = terminalreporter
        tr.section(f"project_sweeps: {SWEEPS} sweeps, {self.threads} thread(s); time / fused-cpp time, same run")
        for size, means in _MEANS.items():
            fused = means.get("fused-cpp")
            for m, t in means.items():
                ratio = f"{t / fused:6.2f}x" if fused else ""
                tr.write_line(f"{size:8s} {m:15s} {t * 1e3:9.3f} ms  {ratio}")


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    """1 thread unless --bench-threads says otherwise (see bench/README.md: on a shared machine
    OpenMP fork/join waits for time slices)."""
    before = torch.get_num_threads()
    threads = request.config.getoption("--bench-threads") or 1
    torch.set_num_threads(threads)
    request.config.pluginmanager.register(_RatioReport(threads), "confgf_fast_project_sweeps_report")
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("method", METHODS)
def test_project_sweeps(benchmark, selected_backends, method, size):
    if method.endswith("cpp") and not ops._backends.PROJECT_CPU_AVAILABLE:
        pytest.skip(ops._why_no_project("cpp", torch.device("cpu")))
    backend = method.split("-")[1]
    if selected_backends is not None and backend not in selected_backends | {"compiled"}:
        pytest.skip(f"backend {backend} not selected (--bench-backends)")
    call = method_call(method, size)
    want = reference.project_sweeps(*workload(size)[:4], SWEEPS)
    got = call()  # warm-up (compiles loop-compiled), and the result is checked next to the time
    err = float((got - want).norm() / want.norm())
    assert err < 1e-4, f"{method} {size}: norm-relative error {err:.3g} vs the reference"
    pos, ei = workload(size)[:2]
    benchmark.group = f"project_sweeps/{size}/cpu"
    benchmark.extra_info.update(N=pos.shape[0], E=ei.shape[1], sweeps=SWEEPS, threads=torch.get_num_threads(),
                                rel_err_vs_reference=err,
                                fused_flops_per_sweep=18 * ei.shape[1] + 6 * pos.shape[0],
                                fused_bytes_per_sweep=12 * ei.shape[1] + 36 * pos.shape[0],
                                loop_bytes_per_sweep=44 * ei.shape[1] + 108 * pos.shape[0])
    benchmark(call)
    if benchmark.disabled:  # --benchmark-disable (the CI smoke run): one untimed call
        return
    means = _MEANS.setdefault(size, {})
    means[method] = benchmark.stats.stats.mean
    if method == "fused-cpp":
        for m, t in means.items():
            if m != method:
                benchmark.extra_info[f"vs_{m}"] = t / means[method]
