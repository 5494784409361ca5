"""Malformed graphs with validation OFF (validate=False): the kernels' own always-on checks.

Validation (test_ops_validation.py) is the first line; a caller may turn it off for graphs it built
itself. Then no input may make a kernel read outside its tensors: the C++ kernels refuse every bad
row with a ValueError (csrc/cpu/csr_rows.h, GraphCheck), the Triton kernels mask every index they
read, and the Triton wrappers, called directly, run check_graph themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confgf_fast import ops
from confgf_fast.graph import pair_edges, rowptr_from_sorted
from confgf_fast.ops import GraphInputError, _registry
from confgf_fast.ops.testing import random_inputs, replicate, reverse_index, synthetic_molecule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_cpp = pytest.mark.skipif(not _registry.has_backend("coord_score", "cpp"), reason="C++ extension not built")


def _graph():
    ei = replicate(synthetic_molecule(9, 60, tries=20, seed=3), 9, 3)
    n = 27
    p, s, z = random_inputs(n, ei, torch.float32, generator=torch.Generator().manual_seed(0))
    return n, ei, p, s, z


def _bad():
    """name -> (edge_index, rowptr or None): every way a graph can break the contract."""
    n, ei, *_ = _graph()
    rp = rowptr_from_sorted(ei[0], n)
    out = {}
    for name, (row, col, value) in {"dst_huge": (1, 7, 400_000), "dst_negative": (1, 5, -1), "dst_N": (1, 3, n),
                                    "src_N_last": (0, -1, n), "src_negative_first": (0, 0, -1),
                                    "src_huge_middle": (0, 10, 1 << 40)}.items():
        e = ei.clone()
        e[row, col] = value
        out[name] = (e, None)
    out["unsorted"] = (ei[:, torch.randperm(ei.shape[1], generator=torch.Generator().manual_seed(1))], None)
    out["reversed"] = (ei.flip(1), None)
    for name, (k, delta) in {"rowptr_stale_row": (4, 1), "rowptr_decreasing": (5, -3)}.items():
        r = rp.clone()
        r[k] += delta
        out[name] = (ei, r)
    huge = rp.clone()
    huge[3:-1] = 10**9  # rows far past E (rowptr[N] still E)
    out["rowptr_past_E"] = (ei, huge)
    neg = rp.clone()
    neg[1:3] = -5
    out["rowptr_negative"] = (ei, neg)
    return out


BAD = _bad()
SEGMENT_OPS = ["coord_score", "langevin_step", "project_sweeps", "gine_aggregate", "gine_aggregate_backward"]


def _run_cpp(op: str, ei, rowptr):
    n, good, p, s, z = _graph()
    if op == "coord_score":
        return ops.coord_score(p, ei, s, backend="cpp", rowptr=rowptr, validate=False)
    if op == "langevin_step":
        return ops.langevin_step(p, ei, s, z, 0.01, 1000.0, backend="cpp", rowptr=rowptr, validate=False)
    if op == "project_sweeps":
        step = torch.full((n,), 0.1)
        return ops.project_sweeps(p, ei, s.abs(), step, 3, backend="cpp", rowptr=rowptr, validate=False)
    half, pair = pair_edges(good, reverse_index(good, n))
    h, a = torch.randn(n, 8), torch.randn(half.numel(), 8)
    if op == "gine_aggregate":
        return torch.ops.confgf_fast.gine_aggregate(h, ei, a, pair, rowptr)
    return torch.ops.confgf_fast.gine_aggregate_backward(torch.randn(n, 8), h, ei, a, pair, rowptr)


@needs_cpp
@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("op", SEGMENT_OPS)
def test_cpp_segment_kernels_refuse_without_validation(op, case):
    ei, rowptr = BAD[case]
    with pytest.raises(ValueError, match=r"malformed graph|rowptr\[0\] must be 0|rowptr\[N\] must equal"):
        _run_cpp(op, ei, rowptr)


@needs_cpp
@pytest.mark.parametrize("case", [c for c in BAD if c.startswith(("dst", "src"))])
def test_cpp_pairwise_distance_refuses_out_of_range(case):
    _n, _, p, _s, _z = _graph()
    ei, _ = BAD[case]
    with pytest.raises(ValueError, match="outside \\[0, N\\)"):
        ops.pairwise_distance(p, ei, backend="cpp", validate=False)


@needs_cpp
def test_cpp_edge_pair_out_of_range():
    n, ei, *_ = _graph()
    half, pair = pair_edges(ei, reverse_index(ei, n))
    h, a = torch.randn(n, 8), torch.randn(half.numel(), 8)
    for bad in (-1, half.numel(), 10**12):
        pr = pair.clone()
        pr[3] = bad
        with pytest.raises(ValueError, match="edge_pair has an index outside"):
            torch.ops.confgf_fast.gine_aggregate(h, ei, a, pr, None)
        with pytest.raises(ValueError, match="edge_pair has an index outside"):
            torch.ops.confgf_fast.gine_aggregate_backward(torch.randn(n, 8), h, ei, a, pr, None)


@needs_cpp
def test_cpp_checks_leave_valid_results_unchanged():
    """Unsorted-but-grouped input is an error; valid input gives the reference's numbers."""
    n, ei, p, s, _z = _graph()
    rp = rowptr_from_sorted(ei[0], n)
    for rowptr in (None, rp):
        torch.testing.assert_close(ops.coord_score(p, ei, s, backend="cpp", rowptr=rowptr, validate=False),
                                   ops.reference.coord_score(p, ei, s), rtol=1e-5, atol=1e-5)
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert ops.coord_score(torch.randn(3, 3), empty, torch.zeros(0), backend="cpp").abs().sum() == 0
    assert ops.coord_score(torch.zeros(0, 3), empty, torch.zeros(0), backend="cpp").shape == (0, 3)
    with pytest.raises(ValueError, match="malformed graph"):  # edges but no atoms
        ops.coord_score(torch.zeros(0, 3), torch.zeros(2, 1, dtype=torch.long), torch.zeros(1), backend="cpp",
                        validate=False)


@needs_cpp
def test_the_reported_segfault_is_a_python_error():
    """Issue 26's report: one dst of 400,000 on a 4-atom graph killed the process (segfault)."""
    code = textwrap.dedent("""
        import torch
        from confgf_fast import ops
        ei = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3], [1, 2, 0, 3, 0, 3, 1, 400000]])
        for validate in (True, False):
            try:
                ops.coord_score(torch.randn(4, 3), ei, torch.randn(8), backend="cpp", validate=validate)
            except ValueError as exc:
                print(type(exc).__name__, str(exc).splitlines()[0])
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("GraphInputError edge_index has an atom index >= N=4"), lines
    assert lines[1].startswith("ValueError coord_score: malformed graph"), lines


def _triton():
    if "triton" not in ops.available_backends("cpu"):
        pytest.skip("Triton interpreter unavailable (TRITON_INTERPRET=1 and triton installed)")
    tops = _registry.triton_kernels()
    return tops, tops["project_sweeps"]


@pytest.mark.parametrize("case", list(BAD))
def test_triton_wrappers_called_directly_check_the_graph(case):
    tops, project = _triton()
    n, _, p, s, z = _graph()
    ei, rowptr = BAD[case]
    with pytest.raises(GraphInputError):
        tops["coord_score"](p, ei, s, rowptr)
    with pytest.raises(GraphInputError):
        tops["langevin_step"](p, ei, s, z, rowptr, 0.01, 1000.0)
    with pytest.raises(GraphInputError):
        project(p, ei, s.abs(), torch.full((n,), 0.1), rowptr, 2)
    if rowptr is None and case.startswith(("dst", "src")):
        with pytest.raises(GraphInputError):
            tops["pairwise_distance"](p, ei)


def test_triton_without_validation_never_reads_out_of_bounds():
    """validate=False skips the check; the kernels mask every dst outside [0, N), so an out-of-range
    index gives a finite (wrong) result instead of an out-of-bounds read."""
    _triton()
    _n, _, p, s, _z = _graph()
    ei, _ = BAD["dst_huge"]
    out = ops.coord_score(p, ei, s, backend="triton", validate=False)
    assert torch.isfinite(out).all()
    d = ops.pairwise_distance(p, ei, backend="triton", validate=False)
    assert torch.isfinite(d).all()


# ---- hypothesis: random malformed graphs never crash a kernel ---------------------------------------


@st.composite
def mangled_graphs(draw):
    """A valid random graph, then zero or more corruptions: an index set out of range (negative, N,
    huge), two edges swapped (unsorted), a rowptr entry moved (stale), or a rowptr for other edges."""
    n = draw(st.integers(0, 12))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    if n >= 2:
        mask = torch.rand(n, n, generator=gen) < 0.4
        mask = (mask | mask.T) & ~torch.eye(n, dtype=torch.bool)
        ei = torch.nonzero(mask).T.contiguous()  # row-major: sorted by source
    else:
        ei = torch.zeros(2, 0, dtype=torch.long)
    E = ei.shape[1]
    rowptr = rowptr_from_sorted(ei[0], n) if draw(st.booleans()) else None
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["index", "swap", "rowptr", "rowptr_len"]))
        if kind == "index" and E:
            ei = ei.clone()
            ei[draw(st.integers(0, 1)), draw(st.integers(0, E - 1))] = draw(
                st.sampled_from([-1, -(2**40), n, n + 1, 2**40, 400_000]))
        elif kind == "swap" and E >= 2:
            a, b = draw(st.integers(0, E - 1)), draw(st.integers(0, E - 1))
            ei = ei.clone()
            ei[:, [a, b]] = ei[:, [b, a]]
        elif kind == "rowptr" and rowptr is not None and rowptr.numel():
            rowptr = rowptr.clone()
            rowptr[draw(st.integers(0, rowptr.numel() - 1))] += draw(st.sampled_from([-3, -1, 1, 2, 10**6]))
        elif kind == "rowptr_len" and rowptr is not None:
            rowptr = rowptr[:-1] if draw(st.booleans()) else torch.cat([rowptr, rowptr[-1:]])
    return n, ei, rowptr


@needs_cpp
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled_graphs())
def test_fuzz_mangled_graphs_cpp(graph):
    """With validation off, each op either raises ValueError/RuntimeError (metadata) or, when the
    graph is still valid, matches the reference. Under .ci/run's asan phase this runs with
    AddressSanitizer + UBSan: an out-of-bounds read there aborts the run."""
    n, ei, rowptr = graph
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    s = torch.randn(ei.shape[1], generator=gen, dtype=torch.float64)
    try:
        ops.check_graph(ei, n, rowptr)
        valid = True
    except GraphInputError:
        valid = False
    calls = {
        "coord_score": lambda: ops.coord_score(pos, ei, s, backend="cpp", rowptr=rowptr, validate=False),
        "project_sweeps": lambda: ops.project_sweeps(pos, ei, s.abs(), torch.full((n,), 0.1, dtype=torch.float64), 2,
                                                     backend="cpp", rowptr=rowptr, validate=False),
    }
    for name, call in calls.items():
        if valid:
            out = call()
            ref = (ops.reference.coord_score(pos, ei, s) if name == "coord_score" else
                   ops.reference.project_sweeps(pos, ei, s.abs(), torch.full((n,), 0.1, dtype=torch.float64), 2))
            torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
        else:
            with pytest.raises((ValueError, RuntimeError)):
                call()
    try:
        ops.check_graph(ei, n, sorted_by_source=False)
        in_range = True
    except GraphInputError:
        in_range = False
    if in_range:
        torch.testing.assert_close(ops.pairwise_distance(pos, ei, backend="cpp", validate=False),
                                   ops.reference.pairwise_distance(pos, ei))
    else:
        with pytest.raises(ValueError):
            ops.pairwise_distance(pos, ei, backend="cpp", validate=False)


@needs_cpp
def test_a_million_edges_with_one_bad_index():
    """Large inputs take the multi-chunk path of the row walk (several OpenMP chunks)."""
    n = 200_000
    src = torch.arange(n).repeat_interleave(5)
    dst = (src + torch.tensor([1, 2, 3, 4, 5]).repeat(n)) % n
    ei = torch.stack([src, dst])  # 1,000,000 edges, sorted by source
    pos = torch.randn(n, 3)
    s = torch.randn(ei.shape[1])
    ok = ops.coord_score(pos, ei, s, backend="cpp", validate=False)
    torch.testing.assert_close(ok, ops.reference.coord_score(pos, ei, s), rtol=1e-4, atol=1e-4)
    for value in (n, -1):
        bad = ei.clone()
        bad[1, 777_777] = value
        with pytest.raises(ValueError, match="edge_index\\[1\\] has an atom index outside"):
            ops.coord_score(pos, bad, s, backend="cpp", validate=False)
    bad = ei.clone()
    bad[0, 500_000], bad[0, 500_001] = bad[0, 500_001].item() + 1, bad[0, 500_000].item()
    with pytest.raises(ValueError, match="malformed graph"):
        ops.coord_score(pos, bad, s, backend="cpp", validate=False)
