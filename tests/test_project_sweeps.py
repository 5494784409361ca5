"""confgf_fast.ops.project_sweeps: every backend against the float64 reference, the fused op
against the unfused loop it replaces (pairwise_distance + coord_score per sweep), and the math:
sweeps compose, the stress never increases, the result does not depend on the thread count.

The op, per sweep (Jacobi: all atoms read the previous sweep's positions):
    r_i <- r_i + step_i * sum_{(i,j)} (t_ij - d_ij) (r_i - r_j) / d_ij,   0 for d_ij = 0.

Inputs are fresh each run; the seed is in failure messages and can be pinned with
CONFGF_TEST_SEED=<int>.
"""

from __future__ import annotations

import itertools
import os
import zlib

import pytest
import torch

from confgf_fast import ops
from confgf_fast.ops import _registry, reference
from confgf_fast.ops.testing import edges_from_pairs, norm_rel_err, random_graph, replicate, synthetic_molecule

SEED = int(os.environ.get("CONFGF_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
HAS_CUDA = torch.cuda.is_available()

# Norm-relative error allowed against the float64 reference after up to 40 sweeps.
# float32: measured <= 4.1e-7 (cpp; Triton interpreter and float32 reference alike) over these
# cases and 12 seeds; it grows with the sweep count (9.6e-8 at 7 sweeps, 2.6e-6 at 200). 2e-5 leaves
# room for other compilers, FMA contraction and the GPU's sqrt, while a wrong edge or a
# Gauss-Seidel read (O(1e-2)) still fails. float64: measured <= 4.1e-16 at 40 sweeps.
TOL = {torch.float32: 2e-5, torch.float64: 1e-12}

BACKENDS = [
    pytest.param("cpp", "cpu", id="cpp"),
    pytest.param("cuda", "cuda", id="cuda", marks=[pytest.mark.cuda,
                                                  pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")]),
    # Triton runs on a GPU, or in the CPU interpreter (TRITON_INTERPRET=1, set by conftest): slow,
    # so its cases below are the small ones.
    pytest.param("triton", "cuda" if HAS_CUDA else "cpu", id="triton"),
    # The reference in float32, as a control of the tolerance (its float64 run is the truth).
    pytest.param("reference", "cpu", id="reference"),
]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
ITERS = [0, 1, 7, 40]


def _require(backend: str, device: str) -> None:
    why = _registry.why_unavailable(backend, device, "project_sweeps")  # imports Triton where it can run
    if why is not None:
        pytest.skip(f"backend {backend!r} unavailable for project_sweeps on {device}: {why}")


def _gen(salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED * 1000 + salt)


def rowptr(edge_index: torch.Tensor, num_atoms: int) -> torch.Tensor:
    """[N+1] CSR row pointers of the sorted sources: rowptr[i] = first edge with source >= i."""
    return torch.searchsorted(edge_index[0].contiguous(), torch.arange(num_atoms + 1, dtype=torch.int64))


def degree_step(edge_index: torch.Tensor, num_atoms: int) -> torch.Tensor:
    """[N] 0.5 / degree (degree clamped to >= 1), the step project_distances passes."""
    deg = torch.bincount(edge_index[0], minlength=num_atoms).clamp_min(1)
    return 0.5 / deg.to(torch.float64)


def make_case(name: str):
    """-> (edge_index [2, E], pos64 [N, 3], target64 [E], step64 [N]).

    The targets are the edge lengths of another, hidden conformation (an embeddable target, as the
    sampler's Tweedie estimates nearly are) times a random factor near 1 (so not exactly embeddable).
    """
    g = _gen(zlib.crc32(name.encode()) % 997)
    if name == "no_atoms":
        n, ei = 0, torch.zeros(2, 0, dtype=torch.long)
    elif name == "empty_edges":
        n, ei = 6, torch.zeros(2, 0, dtype=torch.long)
    elif name == "isolated_atoms":  # atoms with no edges must stay where they are
        n, ei = 41, random_graph(41, 5.0, num_isolated=7, generator=g)
    elif name == "molecules":  # QM9-like: 6 copies of an 18-atom molecule, ~250 directed edges each
        n1, ei1 = 18, synthetic_molecule(18, 250, tries=50, seed=int(torch.randint(1 << 20, (1,), generator=g)))
        n, ei = 6 * n1, replicate(ei1, n1, 6)
    elif name == "zero_length_edge":  # atoms 0 and 1 (and 2, 3) coincide and share an edge: d = 0 adds 0
        n = 30
        ei = random_graph(n, 6.0, generator=g)
        ei = edges_from_pairs(torch.cat([ei.t(), torch.tensor([[0, 1], [2, 3], [1, 5]])]), n)
    elif name == "small":  # for the Triton interpreter: one partly filled block
        n, ei = 13, random_graph(13, 4.0, generator=g)
    else:
        raise KeyError(name)
    hidden = 1.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    target = (hidden[ei[0]] - hidden[ei[1]]).norm(dim=1)
    target = target * (1 + 0.1 * torch.randn(ei.shape[1], generator=g, dtype=torch.float64)).abs()
    pos = hidden + 0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    if name == "zero_length_edge":
        pos[1] = pos[0]
        pos[3] = pos[2]
    return ei, pos, target, degree_step(ei, n)


CASES = ["no_atoms", "empty_edges", "isolated_atoms", "molecules", "zero_length_edge", "small"]
TRITON_CASES = {"no_atoms", "empty_edges", "zero_length_edge", "small"}


@pytest.mark.parametrize("iters", ITERS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_matches_reference(backend, device, dtype, case, iters):
    _require(backend, device)
    if backend == "triton" and device == "cpu" and (case not in TRITON_CASES or iters > 7):
        pytest.skip("the Triton interpreter is slow: small cases only")
    if backend == "reference" and dtype == torch.float64:
        pytest.skip("the float64 reference is the truth")
    ei, pos64, t64, a64 = make_case(case)
    N = pos64.shape[0]
    want = reference.project_sweeps(pos64, ei, t64, a64, iters)
    assert torch.isfinite(want).all(), f"reference not finite (seed {SEED})"
    pos, t, a = pos64.to(dtype).to(device), t64.to(dtype).to(device), a64.to(dtype).to(device)
    e, rp = ei.to(device), rowptr(ei, N).to(device)
    pos_before = pos.clone()
    for rows in (None, rp):
        got = ops.project_sweeps(pos, e, t, a, iters, backend=backend, rowptr=rows)
        assert got.shape == (N, 3) and got.dtype == dtype and got.device == pos.device
        err = norm_rel_err(got, want)
        assert err <= TOL[dtype], (f"{backend} {case} iters={iters} rowptr={rows is not None}: "
                                   f"norm-rel error {err:.3g} > {TOL[dtype]:.0e} (seed {SEED})")
        if N:
            assert got.data_ptr() != pos.data_ptr()  # always a new tensor, iters = 0 included
    assert torch.equal(pos, pos_before), "the input positions were modified"


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_matches_the_unfused_loop(backend, device):
    """float32, 30 sweeps: the op against the loop it replaces in sampler.project_distances
    (pairwise_distance, then pos + step * coord_score(pos, target - d)) with the same backend's
    kernels. The fused kernels round the same way as the loop (the same kernel_math.h arithmetic,
    the weight formed as (t - d) / d): on the CPU the results are bit-identical (measured on 10
    seeds); the bound leaves room for a compiler contracting the two kernels into FMAs differently."""
    _require(backend, device)
    if backend == "triton" and device == "cpu":
        pytest.skip("covered by test_matches_reference; the interpreter is slow")
    ei, pos64, t64, a64 = make_case("molecules")
    pos, t, a, e = pos64.float().to(device), t64.float().to(device), a64.float().to(device), ei.to(device)
    rp = rowptr(ei, pos.shape[0]).to(device)
    loop = pos
    for _ in range(30):
        d = ops.pairwise_distance(loop, e, backend=backend)
        loop = loop + a.unsqueeze(1) * ops.coord_score(loop, e, t - d, backend=backend, rowptr=rp)
    fused = ops.project_sweeps(pos, e, t, a.unsqueeze(1), 30, backend=backend, rowptr=rp)  # [N, 1] step accepted
    assert norm_rel_err(fused, loop) <= 1e-6, f"seed {SEED}"


@pytest.mark.parametrize("backend,device", [p for p in BACKENDS if p.id in ("cpp", "cuda")])
def test_sweeps_compose_exactly(backend, device):
    """a + b sweeps in one call equal a sweeps then b sweeps, bit for bit: the kernels keep no state
    between sweeps other than the positions (the double buffer hands over exactly)."""
    _require(backend, device)
    ei, pos64, t64, a64 = make_case("molecules")
    for dtype in (torch.float32, torch.float64):
        pos, t, a, e = (x.to(device) for x in (pos64.to(dtype), t64.to(dtype), a64.to(dtype), ei))
        whole = ops.project_sweeps(pos, e, t, a, 9, backend=backend)
        parts = ops.project_sweeps(ops.project_sweeps(pos, e, t, a, 4, backend=backend), e, t, a, 5, backend=backend)
        assert torch.equal(whole, parts), dtype
        ones = pos
        for _ in range(9):
            ones = ops.project_sweeps(ones, e, t, a, 1, backend=backend)
        assert torch.equal(whole, ones), dtype


def _stress(pos: torch.Tensor, ei: torch.Tensor, target: torch.Tensor) -> float:
    """sum over directed edges of (|r_i - r_j| - t_ij)^2, in float64."""
    d = (pos[ei[0]] - pos[ei[1]]).double().norm(dim=1)
    return float(((d - target.double()) ** 2).sum())


@pytest.mark.parametrize("embeddable", [True, False], ids=["embeddable", "random_target"])
@pytest.mark.parametrize("backend,device", [p for p in BACKENDS if p.id != "triton"])
def test_stress_never_increases(backend, device, embeddable):
    """With step = 0.5 / degree every sweep lowers (or keeps) the stress sum (d - t)^2, for any
    target >= 0 (the majorisation argument in ops.project_sweeps' docstring); with an embeddable
    target, from a start 0.5 A off the hidden conformation, 200 sweeps remove most of the stress."""
    _require(backend, device)
    g = _gen(7 + embeddable)
    n1 = 18
    ei1 = synthetic_molecule(n1, 250, tries=50, seed=int(torch.randint(1 << 20, (1,), generator=g)))
    n, ei = 4 * n1, replicate(ei1, n1, 4)
    hidden = 1.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    if embeddable:
        target = (hidden[ei[0]] - hidden[ei[1]]).norm(dim=1)
        pos = hidden + 0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    else:  # symmetric random lengths: no conformation has them
        t_pair = 1 + 2 * torch.rand(n, n, generator=g, dtype=torch.float64)
        target = (t_pair + t_pair.t())[ei[0], ei[1]] / 2
        pos = 1.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    step = degree_step(ei, n)
    pos, target, step, e = pos.to(device), target.to(device), step.to(device), ei.to(device)
    stress = [_stress(pos, e, target)]
    for _ in range(200):
        pos = ops.project_sweeps(pos, e, target, step, 1, backend=backend)
        stress.append(_stress(pos, e, target))
    rises = [(k, b - a) for k, (a, b) in enumerate(itertools.pairwise(stress)) if b > a * (1 + 1e-12) + 1e-12]
    assert not rises, f"stress rose at sweeps {rises[:5]} (seed {SEED})"
    if embeddable:
        assert stress[-1] < 0.05 * stress[0], (stress[0], stress[-1], SEED)


def test_result_does_not_depend_on_thread_count():
    """Enough atoms for several OpenMP chunks: 1 thread and all threads give the same bits."""
    _require("cpp", "cpu")
    n1 = 18
    ei1 = synthetic_molecule(n1, 250, tries=20, seed=3)
    n, ei = 400 * n1, replicate(ei1, n1, 400)  # 7200 atoms > 3 chunks of kAtomGrain
    g = _gen(11)
    pos = 1.5 * torch.randn(n, 3, generator=g)
    target = 1 + torch.rand(ei.shape[1], generator=g)
    step = degree_step(ei, n).float()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.project_sweeps(pos, ei, target, step, 5, backend="cpp")
        torch.set_num_threads(max(2, threads))
        many = ops.project_sweeps(pos, ei, target, step, 5, backend="cpp")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


def test_bad_inputs_are_refused():
    _require("cpp", "cpu")
    ei, pos, t, a = make_case("small")
    N, E = pos.shape[0], ei.shape[1]
    for backend in ("cpp", "reference"):
        with pytest.raises(ValueError, match="iters must be >= 0"):
            ops.project_sweeps(pos, ei, t, a, -1, backend=backend)
        with pytest.raises(TypeError):
            ops.project_sweeps(pos, ei, t, a, 1.5, backend=backend)
    with pytest.raises(RuntimeError, match=r"target must have shape \[E="):
        ops.project_sweeps(pos, ei, t[:-1], a, 1, backend="cpp")
    with pytest.raises(RuntimeError, match=r"step must have shape \[N="):
        ops.project_sweeps(pos, ei, t, a[:-1], 1, backend="cpp")
    with pytest.raises(RuntimeError, match=r"pos must have shape \[N, 3\]"):
        ops.project_sweeps(pos[:, :2], ei, t, a, 1, backend="cpp")
    with pytest.raises(ValueError, match="rowptr"):  # validation's GraphInputError; the kernel's own check
        ops.project_sweeps(pos, ei, t, a, 1, backend="cpp", rowptr=torch.zeros(N + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="rowptr"):
        ops.project_sweeps(pos, ei, t, a, 1, backend="cpp", rowptr=torch.zeros(N + 1, dtype=torch.long),
                           validate=False)
    with pytest.raises(ValueError, match="unknown backend"):
        ops.project_sweeps(pos, ei, t, a, 1, backend="fortran")
    # Validation mode: the same GraphInputError on every backend, before any kernel runs.
    unsorted = ei[:, torch.randperm(E, generator=_gen(5))]
    for backend in ("cpp", "reference"):
        with pytest.raises(ops.GraphInputError, match="not sorted"):
            ops.project_sweeps(pos, unsorted, t, a, 1, backend=backend, validate=True)


def test_auto_picks_the_fused_kernel():
    _require("cpp", "cpu")
    assert _registry.resolve("project_sweeps", "auto", torch.zeros(2, 3)) == "cpp"
    assert _registry.resolve("project_sweeps", "auto", torch.zeros(2, 3, dtype=torch.float16)) == "reference"
    with pytest.raises(RuntimeError, match="unavailable for project_sweeps"):
        _registry.resolve("project_sweeps", "cuda", torch.zeros(2, 3))


def test_opcheck_and_compile():
    """The C++ op's schema, fake kernel and dispatch (torch.library.opcheck), and one
    torch.compile(fullgraph=True) run through the fake kernel, matching eager."""
    _require("cpp", "cpu")
    ei, pos64, t64, a64 = make_case("small")
    pos, t, a = pos64.float(), t64.float(), a64.float()
    rp = rowptr(ei, pos.shape[0])
    for rows in (None, rp):
        torch.library.opcheck(torch.ops.confgf_fast.project_sweeps.default, (pos, ei, t, a, rows, 3))
    meta = torch.ops.confgf_fast.project_sweeps(pos.to("meta"), ei.to("meta"), t.to("meta"), a.to("meta"), None, 3)
    assert meta.shape == pos.shape

    def f(p):
        return ops.project_sweeps(p, ei, t, a, 5, rowptr=rp)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(pos), f(pos), rtol=0, atol=0)
