"""Validation of confgf_fast.ops (on by default): inconsistent graph input (indices out of range, sources not
sorted, a rowptr that does not match edge_index[0], a broken edge pairing) raises the same
GraphInputError on every backend before dispatch, and valid input passes unchanged.

Runs on CPU (cpp, reference, and Triton under TRITON_INTERPRET=1 where installed); the check is
device-agnostic torch code, so the CUDA and compiled-Triton paths take the same branch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from confgf_fast import ops
from confgf_fast.graph import rowptr_from_sorted
from confgf_fast.ops import GraphInputError, _registry, check_graph, reference, set_validation
from confgf_fast.ops.testing import random_inputs, replicate, reverse_index, synthetic_molecule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP, CLIP = 0.01, 1000.0


def _backends_on_cpu() -> list[str]:
    return [b for b in ("cpp", "triton", "reference") if b in ops.available_backends("cpu")]


BACKENDS = _backends_on_cpu()


def _graph():
    ei = replicate(synthetic_molecule(9, 60, tries=20, seed=3), 9, 3)
    n = 27
    p, s, z = random_inputs(n, ei, torch.float32, generator=torch.Generator().manual_seed(0))
    return n, ei, p, s, z


def _bad_graphs():
    """name -> (edge_index, rowptr or None, expected message fragment, applies to pairwise_distance)."""
    n, ei, *_ = _graph()
    rp = rowptr_from_sorted(ei[0], n)
    neg = ei.clone()
    neg[1, 5] = -1
    big = ei.clone()
    big[1, 7] = n
    big_src = ei.clone()
    big_src[0, -1] = n  # still sorted, but out of range
    unsorted = ei[:, torch.randperm(ei.shape[1], generator=torch.Generator().manual_seed(1))]
    short = rp.clone()
    short[-1] -= 1
    shifted = rp.clone()
    shifted[0] = 1
    wrong_row = rp.clone()
    wrong_row[4] += 1
    return {
        "negative_index": (neg, None, "negative atom index", True),
        "index_ge_N": (big, None, f"atom index >= N={n}", True),
        "source_ge_N": (big_src, None, f"atom index >= N={n}", True),
        "unsorted": (unsorted, None, "not sorted by source", False),
        "rowptr_not_closing": (ei, short, r"rowptr\[N\] must equal the number of edges", False),
        "rowptr_not_starting_at_0": (ei, shifted, r"rowptr\[0\] must be 0", False),
        "rowptr_wrong_row": (ei, wrong_row, r"rowptr does not match edge_index\[0\]", False),
    }


BAD = list(_bad_graphs())


def _call(op: str, backend: str, ei, rowptr, validate=True):
    _n, _, p, s, z = _graph()
    if op == "pairwise_distance":
        return ops.pairwise_distance(p, ei, backend=backend, validate=validate)
    if op == "coord_score":
        return ops.coord_score(p, ei, s, backend=backend, rowptr=rowptr, validate=validate)
    return ops.langevin_step(p, ei, s, z, STEP, CLIP, backend=backend, rowptr=rowptr, validate=validate)


@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize("op", ["pairwise_distance", "coord_score", "langevin_step"])
def test_same_error_on_every_backend(op, case):
    ei, rowptr, fragment, for_distance = _bad_graphs()[case]
    if op == "pairwise_distance" and not for_distance:
        # edges in any order are fine for a per-edge op, and it takes no rowptr
        for backend in BACKENDS:
            _call(op, backend, ei, rowptr)
        return
    messages = set()
    for backend in BACKENDS:
        with pytest.raises(GraphInputError, match=fragment) as info:
            _call(op, backend, ei, rowptr)
        messages.add(str(info.value))
    assert len(messages) == 1, messages  # word for word the same, whichever backend was asked for
    assert issubclass(GraphInputError, ValueError)


def test_valid_graph_passes_unchanged():
    n, ei, p, s, z = _graph()
    rp = rowptr_from_sorted(ei[0], n)
    check_graph(ei, n, rp)
    for backend in BACKENDS:
        torch.testing.assert_close(
            ops.langevin_step(p, ei, s, z, STEP, CLIP, backend=backend, rowptr=rp, validate=True),
            ops.langevin_step(p, ei, s, z, STEP, CLIP, backend=backend, rowptr=rp), rtol=0, atol=0)
    # degenerate graphs are valid too
    check_graph(torch.zeros(2, 0, dtype=torch.long), 0, torch.zeros(1, dtype=torch.long))
    check_graph(torch.zeros(2, 0, dtype=torch.long), 5, torch.zeros(6, dtype=torch.long))


def test_metadata_errors():
    n, ei, *_ = _graph()
    with pytest.raises(GraphInputError, match=r"shape \[2, E\]"):
        check_graph(ei[0], n)
    with pytest.raises(GraphInputError, match="int64"):
        check_graph(ei.int(), n)
    with pytest.raises(GraphInputError, match=r"rowptr must have shape \[N\+1"):
        check_graph(ei, n, torch.zeros(n, dtype=torch.long))


def test_on_by_default_and_process_wide_switch():
    _n, ei, p, s, _z = _graph()
    bad = ei.flip(1)  # sorted descending
    backend = BACKENDS[-1]  # the reference: without validation it computes on any order
    with pytest.raises(GraphInputError, match="not sorted"):
        ops.coord_score(p, bad, s, backend=backend)  # on by default (issue 26)
    ops.coord_score(p, bad, s, backend=backend, validate=False)  # a call can opt out
    previous = set_validation(False)
    try:
        ops.coord_score(p, bad, s, backend=backend)  # off process-wide
    finally:
        set_validation(previous)


def test_environment_variable_turns_it_off():
    code = textwrap.dedent("""
        import torch
        from confgf_fast import ops
        ei = torch.tensor([[1, 0], [0, 1]])
        try:
            ops.coord_score(torch.randn(2, 3), ei, torch.randn(2), backend="reference")
            print("not checked")
        except ops.GraphInputError as exc:
            print("raised:", exc)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    for value, want in (("0", "not checked"), ("1", "raised: edge_index is not sorted by source")):
        env["CONFGF_FAST_VALIDATE"] = value
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=120, check=False)
        assert res.returncode == 0 and want in res.stdout, res.stdout + res.stderr


@pytest.mark.skipif(not _registry.has_backend("gine_aggregate", "cpp"), reason="C++ gine_aggregate not built")
def test_gine_aggregate_graph_and_pairing():
    from confgf_fast.graph import pair_edges

    n, ei, *_ = _graph()
    half, pair = pair_edges(ei, reverse_index(ei, n))
    h = torch.randn(n, 8)
    a = torch.randn(half.numel(), 8)
    messages = set()
    for backend in ("cpp", "reference"):
        ops.gine_aggregate(h, ei, a, pair, backend=backend, validate=True)  # valid
        with pytest.raises(GraphInputError, match="not sorted by source") as info:
            ops.gine_aggregate(h, ei.flip(1), a, pair.flip(0), backend=backend, validate=True)
        messages.add(str(info.value))
        triple = pair.clone()
        triple[0] = triple[1] if triple[1] != triple[0] else triple[2]
        with pytest.raises(GraphInputError, match="exactly two directed edges"):
            ops.gine_aggregate(h, ei, a, triple, backend=backend, validate=True)
        # pairs swapped between two edges of different pairs: counts stay 2, the reverses break
        swapped = pair.clone()
        e0 = 0
        e1 = int(torch.nonzero(pair != pair[0])[0, 0])
        swapped[e0], swapped[e1] = pair[e1], pair[e0]
        with pytest.raises(GraphInputError, match=r"not \(u, v\) and \(v, u\)"):
            ops.gine_aggregate(h, ei, a, swapped, backend=backend, validate=True)
    assert len(messages) == 1


def test_without_validation_the_cpu_kernel_still_refuses_a_short_rowptr():
    """rowptr[N] != E costs the CPU kernels one read, so they check it always (ValueError)."""
    if "cpp" not in BACKENDS:
        pytest.skip("cpp backend unavailable")
    n, ei, p, s, _z = _graph()
    rp = rowptr_from_sorted(ei[0], n)
    rp[-1] -= 1
    with pytest.raises(ValueError, match=r"rowptr\[N\] must equal"):
        ops.coord_score(p, ei, s, backend="cpp", rowptr=rp, validate=False)


def test_skipped_inside_torch_compile():
    """Validation reads data (a host sync): torch.compile traces past it instead of breaking the graph."""
    _n, ei, p, s, z = _graph()

    def step(pos):
        return ops.langevin_step(pos, ei, s, z, STEP, CLIP, backend="reference", validate=True)

    try:
        compiled = torch.compile(step, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(p), reference.langevin_step(p, ei, s, z, STEP, CLIP))
    finally:
        torch._dynamo.reset()
