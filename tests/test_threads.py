"""The thread budget (threads.py): one number for torch / OpenMP, RDKit and worker pools, from the
cores the process may use minus those others keep busy, and never exceeded by any of them."""

import os

import pytest
import torch

from confgf_fast import threads
from confgf_fast.cli import main


@pytest.fixture
def restore_threads(monkeypatch):
    """torch's thread count and the probe cache as they were, after the test."""
    before = torch.get_num_threads()
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads, "_probe_cache", None)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores, busy, expected", [
    (1, 0.0, 1), (1, 1.0, 1), (1, 3.0, 1),     # one core: always one thread, never zero
    (2, 0.0, 2), (2, 0.2, 2),                  # idle (a little noise is no busy core)
    (2, 0.5, 1), (2, 1.0, 1), (2, 2.0, 1),     # the machine: one busy process -> 1
    (16, 3.1, 13), (16, 3.3, 12), (16, 40.0, 1),
])
def test_auto_threads_leaves_busy_cores_alone(cores, busy, expected):
    n = threads.auto_threads(cores, busy)
    assert n == expected
    assert 1 <= n <= cores


@pytest.mark.parametrize("cores", [1, 2])
def test_budget_never_exceeds_affinity(monkeypatch, restore_threads, cores):
    """With a fake affinity of 1 or 2 cores and an idle machine, the automatic budget is at most
    that, and applying it gives torch exactly that many threads."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(threads, "busy_other_cores", lambda interval=threads.PROBE_S: 0.0)
    assert threads.available_cores() == cores
    budget = threads.resolve()
    assert budget.source == "auto" and budget.cores == cores and budget.threads == cores
    assert threads.apply(budget) == cores
    assert torch.get_num_threads() == cores


def test_explicit_and_environment_override(monkeypatch, restore_threads):
    assert threads.resolve(3, cores=2).threads == 3  # the user's explicit choice is kept
    monkeypatch.setenv(threads.ENV_VAR, "1")
    assert threads.resolve(cores=8, busy=0.0).threads == 1
    assert threads.resolve(2, cores=8, busy=0.0).threads == 2  # --threads wins over the variable
    monkeypatch.setenv(threads.ENV_VAR, "zero")
    with pytest.raises(ValueError, match=threads.ENV_VAR):
        threads.resolve(cores=8, busy=0.0)
    with pytest.raises(ValueError):
        threads.resolve(0)


def test_omp_num_threads_and_torchrun_ranks(monkeypatch, restore_threads):
    """OMP_NUM_THREADS (docs/cli.md's torchrun line sets it) is kept; without it, torchrun's ranks on one
    machine split its free cores instead of each taking all of them."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.resolve(cores=16, busy=0.0).threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.resolve(cores=16, busy=0.0).threads == 4
    assert threads.resolve(cores=2, busy=0.0).threads == 1


def test_probe_sees_a_busy_core_of_this_machine():
    """busy_other_cores measures others only: this process sleeping, the result is within
    [0, cores] (the background jobs of a shared machine show up; our own CPU time does not)."""
    busy = threads.busy_other_cores(0.05)
    assert 0.0 <= busy <= threads.available_cores() + 0.5


def test_use_restores_torch_threads(restore_threads):
    torch.set_num_threads(2)
    with threads.use(threads.ThreadBudget(1, 2, None, "--threads")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_cli_budget_reaches_torch_rdkit_and_workers(tiny_ckpt, tmp_path, monkeypatch, restore_threads):
    """One budget for the whole run: with a fake 1-core affinity and an idle probe, torch runs on
    1 thread during sampling and RDKit's MMFF (relax) is handed numThreads=1, not 0 (= every core)."""
    import confgf_fast.chem.relax as relax
    import confgf_fast.sampling.batch as batch_sampling

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(threads, "busy_other_cores", lambda interval=threads.PROBE_S: 0.0)
    torch.set_num_threads(2)
    seen_torch, seen_rdkit = [], []
    real_sample, real_ff = batch_sampling.sample, relax._force_field

    def spy_sample(*a, **k):
        seen_torch.append(torch.get_num_threads())
        return real_sample(*a, **k)

    def spy_ff(mol, method, max_iters, n_threads, *a, **k):
        seen_rdkit.append(n_threads)
        return real_ff(mol, method, max_iters, n_threads, *a, **k)

    monkeypatch.setattr(batch_sampling, "sample", spy_sample)
    monkeypatch.setattr(relax, "_force_field", spy_ff)
    out = tmp_path / "out.sdf"
    rc = main(["generate", "CCO", "-n", "2", "--out", str(out), "--weights", str(tiny_ckpt), "--relax", "mmff",
               "--levels", "3", "--steps-per-level", "3", "-q"])
    assert rc in (0, 3)
    assert seen_torch and set(seen_torch) == {1}
    assert seen_rdkit and set(seen_rdkit) == {1}


def test_generate_iter_budget_is_scoped(tiny_ckpt, restore_threads):
    """The library call runs on its budget and leaves the caller's torch setting as it was."""
    from confgf_fast.config import resolve_schedule
    from confgf_fast.model.checkpoint import load_model
    from confgf_fast.pipeline.generate import generate_iter

    loaded = load_model(str(tiny_ckpt))
    model, noise = loaded.model, loaded.noise
    torch.set_num_threads(2)
    seen = []
    for out in generate_iter(["CCO", "CC"], 1, model=model, noise=noise, threads=1,
                             schedule=resolve_schedule("paper", overrides={"levels": 2, "steps_per_level": 2})):
        seen.append(torch.get_num_threads())
        assert out.mol is not None
    assert seen == [1, 1]
    assert torch.get_num_threads() == 2


def test_library_default_keeps_a_lower_torch_setting(monkeypatch, restore_threads):
    """generate(threads=None) lowers torch's one-per-core default to the budget, but a caller that
    set fewer threads (a benchmark at 1 thread) keeps them."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "busy_other_cores", lambda interval=threads.PROBE_S: 0.0)
    torch.set_num_threads(1)
    assert threads.resolve_for_call().threads == 1
    torch.set_num_threads(2)
    assert threads.resolve_for_call().threads == 2
    monkeypatch.setattr(threads, "busy_other_cores", lambda interval=threads.PROBE_S: 1.0)
    monkeypatch.setattr(threads, "_probe_cache", None)
    assert threads.resolve_for_call().threads == 1  # one core busy elsewhere: lowered
    assert threads.resolve_for_call(2).threads == 2  # an explicit count is the caller's


def test_first_probe_reuses_the_import_reading_without_sleeping(monkeypatch):
    """The package takes the probe's first reading at import; the first busy_other_cores call
    starts from it and sleeps only what is left of the interval, so the CLI (which resolves its
    budget ~1.5 s after starting) waits nothing. A reading older than READING_MAX_AGE_S is not used."""
    import time

    t, own, ticks = threads._reading(threads._affinity())
    monkeypatch.setattr(threads, "_import_reading", (t - 1.0, own, ticks))  # taken 1 s ago
    t0 = time.perf_counter()
    busy = threads.busy_other_cores(0.5)
    assert time.perf_counter() - t0 < 0.1
    assert 0.0 <= busy <= threads.available_cores() + 0.5
    assert threads._import_reading is None  # used once
    monkeypatch.setattr(threads, "_import_reading", (t - threads.READING_MAX_AGE_S - 1, own, ticks))
    t0 = time.perf_counter()
    threads.busy_other_cores(0.2)
    assert time.perf_counter() - t0 >= 0.2  # stale: a fresh probe of its own
