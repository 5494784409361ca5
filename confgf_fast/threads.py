"""One CPU thread budget for everything a run starts: torch's intra-op threads, the OpenMP of the
C++ kernels (at::parallel_for, the same OpenMP runtime as torch), RDKit's thread pools (MMFF's
numThreads, ETKDG's numThreads) and the relax / evaluate worker pools.

Why: the kernels and the score network run on batches of ~1000 atoms, so each OpenMP region is a
few microseconds of work between barriers. When a region has more threads than there are free
cores, one thread waits for a timeslice while the others spin at the barrier, and every step takes
a scheduler quantum instead of microseconds. torch's default is one thread per core, whatever else
runs there: next to one busy process on a 2-core machine the default ran 10-25x slower than
`--threads 1` (docs/threads.md). So the default counts the cores this process may run on
(`os.sched_getaffinity`, which honours taskset / cgroup cpusets) and takes away the cores other
processes keep busy (/proc/stat read at import and again at the first resolve, >= 0.1 s
apart); every pool of the run gets that one number, and
the stages run one after another, so no more threads are busy at once than the budget.

`--threads N` (or CONFGF_THREADS=N, or OMP_NUM_THREADS=N as for any OpenMP program) replaces the
automatic choice; under torchrun the ranks of one machine share its free cores.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

ENV_VAR = "CONFGF_THREADS"
PROBE_S = 0.1
# A core counts as taken when other processes use more than this share of it: a barrier-synchronised
# OpenMP region is as slow as its slowest thread, so even a partly busy core is not a free one.
BUSY_SHARE = 0.25


@dataclass(frozen=True)
class ThreadBudget:
    """threads: CPU threads any one stage of the run may keep busy (torch / OpenMP, RDKit, workers);
    cores: cores in the process's affinity mask; busy: cores other processes kept busy at the probe
    (None: not probed, e.g. an explicit --threads); source: where `threads` came from."""

    threads: int
    cores: int
    busy: float | None
    source: str

    def describe(self) -> str:
        """One line for the run's log: how many threads and why."""
        if self.source == "auto":
            return (f"{self.threads} thread(s): {self.cores} core(s) available, {self.busy:.1f} busy with other "
                    "processes (--threads N to choose)")
        return f"{self.threads} thread(s) ({self.source})"


def available_cores() -> int:
    """Cores this process may run on: the affinity mask where the OS has one (taskset, cgroup
    cpusets, a container's CPU set), else os.cpu_count()."""
    cpus = _affinity()
    return max(1, len(cpus)) if cpus is not None else max(1, os.cpu_count() or 1)


def _cpu_ticks(cpus: set[int] | None) -> int | None:
    """Busy clock ticks (user, nice, system, irq, softirq, steal) summed over `cpus` from
    /proc/stat; None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, *vals = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in vals[:8]] + [0] * (8 - len(vals[:8]))
        total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return total


def _reading(cpus: set[int] | None) -> tuple[float, float, int | None]:
    """(time.perf_counter(), this process's CPU seconds, busy ticks of `cpus`): one end of a probe."""
    return time.perf_counter(), _own_cpu_s(), _cpu_ticks(cpus)


def _affinity() -> set[int] | None:
    """The CPUs of this process's affinity mask; None where the OS has none (macOS, Windows)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def busy_other_cores(interval: float = PROBE_S) -> float:
    """Cores of this process's affinity set that other processes kept busy over at least `interval`
    seconds: busy ticks on those cores minus this process's own CPU time. 0.0 where /proc/stat
    cannot be read.

    The first call starts from the reading taken when this module was imported (the package
    imports it before torch) if that is at most READING_MAX_AGE_S old, and sleeps only what is left
    of `interval`: the CLI resolves its budget ~1.5 s after starting, so its probe costs no wait,
    where the 0.1 s sleep was a sixth of a 0.6 s quick-start run (bench/results/threads_busy1.json)."""
    global _import_reading
    cpus = _affinity()
    start, _import_reading = _import_reading, None
    if start is None or start[2] is None or time.perf_counter() - start[0] > READING_MAX_AGE_S:
        start = _reading(cpus)
    if start[2] is None:
        return 0.0
    left = interval - (time.perf_counter() - start[0])
    if left > 0:
        time.sleep(left)
    end = _reading(cpus)
    if end[2] is None:
        return 0.0
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy_s = (end[2] - start[2]) / hz - (end[1] - start[1])
    return max(0.0, busy_s / max(end[0] - start[0], 1e-6))


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


# The probe's first reading, taken at import (busy_other_cores); older than READING_MAX_AGE_S (a
# library imported long before its first call) it is not used: the load it saw may be gone.
READING_MAX_AGE_S = 10.0
_import_reading: tuple[float, float, int | None] | None = _reading(_affinity())


def auto_threads(cores: int, busy: float) -> int:
    """Threads for `cores` available cores of which others keep `busy` busy: one per core left
    free, at least 1 (a core used more than BUSY_SHARE by others counts as taken)."""
    import math

    taken = max(0, math.ceil(busy - BUSY_SHARE))
    return max(1, min(cores, cores - taken))


_probe_cache: tuple[float, float] | None = None  # (time.monotonic() of the probe, busy cores)
PROBE_TTL_S = 30.0


def resolve(threads: int | None = None, *, cores: int | None = None, busy: float | None = None) -> ThreadBudget:
    """The run's budget: `threads` if given (>= 1), else the CONFGF_THREADS environment variable,
    else OMP_NUM_THREADS where set, else auto_threads(available_cores(), busy_other_cores()),
    divided among torchrun's LOCAL_WORLD_SIZE ranks of this machine. cores / busy replace the measured
    values (tests). The probe is cached for PROBE_TTL_S, so library calls in a loop do not each
    sleep 0.1 s."""
    global _probe_cache
    n_cores = cores if cores is not None else available_cores()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        return ThreadBudget(threads, n_cores, None, "--threads")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{ENV_VAR}={env!r}: expected a whole number >= 1")
        return ThreadBudget(n, n_cores, None, ENV_VAR)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:  # the user's (or a launcher's) standing choice for OpenMP
        return ThreadBudget(int(omp), n_cores, None, "OMP_NUM_THREADS")
    if busy is None:
        now = time.monotonic()
        if _probe_cache is None or now - _probe_cache[0] > PROBE_TTL_S:
            _probe_cache = (now, busy_other_cores())
        busy = _probe_cache[1]
    # torchrun starts LOCAL_WORLD_SIZE ranks on this machine at once; each probes the same idle
    # cores, so each takes its share of them, not all.
    ranks = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    share = int(ranks) if ranks.isdigit() and int(ranks) > 1 else 1
    return ThreadBudget(max(1, auto_threads(n_cores, busy) // share), n_cores, busy, "auto")


def resolve_for_call(threads: int | None = None) -> ThreadBudget:
    """resolve() for a library call (generate, generate_iter, generate_tensors): with threads=None
    the automatic budget, but never more than torch.get_num_threads(), so a caller (a benchmark
    script, a worker process) that already lowered torch's thread count keeps it; torch's own
    default, one per core, is what gets lowered."""
    import torch

    budget = resolve(threads)
    if threads is None and budget.threads > torch.get_num_threads():
        return ThreadBudget(torch.get_num_threads(), budget.cores, budget.busy, "torch.get_num_threads()")
    return budget


def apply(budget: ThreadBudget) -> int:
    """Give torch (and with it the OpenMP of the C++ kernels and MKL) `budget.threads` intra-op
    threads; returns the count to hand RDKit and worker pools (the same number)."""
    import torch

    if torch.get_num_threads() != budget.threads:
        torch.set_num_threads(budget.threads)
    return budget.threads


class use:
    """Context manager: torch runs with budget.threads inside, the previous count is restored
    after (library calls must not leave the caller's process changed)."""

    def __init__(self, budget: ThreadBudget):
        self.budget = budget
        self.before: int | None = None

    def __enter__(self) -> ThreadBudget:
        import torch

        self.before = torch.get_num_threads()
        apply(self.budget)
        return self.budget

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.before is not None and torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)


__all__ = ["ENV_VAR", "ThreadBudget", "apply", "auto_threads", "available_cores", "busy_other_cores", "resolve",
           "resolve_for_call", "use"]
