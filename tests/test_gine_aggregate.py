"""ops.gine_aggregate (the score network's GINE neighbourhood sum with per-pair edge features):
the C++ kernel, and the CUDA kernel where a GPU is present, against the float64 reference on fresh
random graphs, forward and both gradients, with and without rowptr, plus opcheck and the argument
checks.

Seeded by CONFGF_TEST_SEED like test_ops_backends.py (printed on failure).
"""

from __future__ import annotations

import os

import pytest
import torch

from confgf_fast import ops
from confgf_fast.graph import pair_edges, rowptr_from_sorted
from confgf_fast.ops import _registry, reference
from confgf_fast.ops.testing import norm_rel_err, replicate, reverse_index, synthetic_molecule

SEED = int(os.environ.get("CONFGF_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
# Norm-relative error vs the float64 reference. float32: sums of ~10 messages per feature, measured
# <= 1e-7; float64 measured <= 1e-16.
TOL = {torch.float32: 1e-6, torch.float64: 1e-13}

HAS_CUDA = torch.cuda.is_available()
GINE_CPU = _registry.has_backend("gine_aggregate", "cpp")
GINE_CUDA = _registry.has_backend("gine_aggregate", "cuda")  # registered, GPU or not
# (backend, device) of the kernels under test; each skips cleanly where it cannot run.
KERNELS = [
    pytest.param("cpp", "cpu", id="cpp", marks=pytest.mark.skipif(
        not GINE_CPU, reason=f"C++ gine_aggregate not built: {_registry.EXTENSION.error}")),
    pytest.param("cuda", "cuda", id="cuda", marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU"),
        pytest.mark.skipif(not GINE_CUDA,
                           reason="confgf_fast._C has no CUDA gine_aggregate (built without CUDA)")]),
]
needs_cpp = pytest.mark.skipif(not GINE_CPU, reason=f"C++ gine_aggregate not built: {_registry.EXTENSION.error}")


def _graph(num_atoms: int, edges: int, copies: int, salt: int):
    ei = replicate(synthetic_molecule(num_atoms, edges, seed=SEED % 10_000 + salt), num_atoms, copies)
    n = num_atoms * copies
    half, pair = pair_edges(ei, reverse_index(ei, n))
    return n, ei, half, pair


def _inputs(n: int, pairs: int, hidden: int, dtype: torch.dtype, salt: int):
    g = torch.Generator().manual_seed(SEED * 100 + salt)
    # zero-mean features of equal scale, so about half of the ReLUs are active
    h = torch.randn(n, hidden, generator=g, dtype=torch.float64)
    a = torch.randn(pairs, hidden, generator=g, dtype=torch.float64)
    cot = torch.randn(n, hidden, generator=g, dtype=torch.float64)
    return h.to(dtype), a.to(dtype), cot.to(dtype)


CASES = [pytest.param(9, 24, 3, 8, id="small"), pytest.param(23, 90, 5, 33, id="odd_hidden"),
         pytest.param(17, 60, 40, 128, id="model_width")]


@pytest.mark.parametrize("atoms,edges,copies,hidden", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_rowptr", [False, True], ids=["scan", "rowptr"])
@pytest.mark.parametrize("backend,device", KERNELS)
def test_forward_and_gradients_match_reference(backend, device, atoms, edges, copies, hidden, dtype, with_rowptr):
    n, ei, half, pair = _graph(atoms, edges, copies, salt=atoms)
    h, a, cot = _inputs(n, half.numel(), hidden, dtype, salt=hidden)
    rp = rowptr_from_sorted(ei[0], n).to(device) if with_rowptr else None
    h1, a1 = h.to(device).requires_grad_(), a.to(device).requires_grad_()
    out = ops.gine_aggregate(h1, ei.to(device), a1, pair.to(device), backend=backend, rowptr=rp)
    gh, ga = torch.autograd.grad(out, (h1, a1), cot.to(device))
    h2, a2 = h.double().requires_grad_(), a.double().requires_grad_()
    want = reference.gine_aggregate(h2, ei, a2, pair)
    wh, wa = torch.autograd.grad(want, (h2, a2), cot.double())
    msg = f"seed {SEED}, {dtype}, {backend}"
    assert out.device.type == device and gh.device.type == device and ga.device.type == device
    assert out.dtype == dtype and gh.dtype == dtype and ga.dtype == dtype
    assert norm_rel_err(out, want) <= TOL[dtype], msg
    assert norm_rel_err(gh, wh) <= TOL[dtype], msg
    assert norm_rel_err(ga, wa) <= TOL[dtype], msg


@pytest.mark.parametrize("backend,device", KERNELS)
def test_gradcheck(backend, device):
    n, ei, half, pair = _graph(7, 16, 2, salt=1)
    h, a, _ = _inputs(n, half.numel(), 4, torch.float64, salt=2)
    h, a, ei, pair = h.to(device).requires_grad_(), a.to(device).requires_grad_(), ei.to(device), pair.to(device)
    assert torch.autograd.gradcheck(lambda x, y: ops.gine_aggregate(x, ei, y, pair, backend=backend), (h, a))


@pytest.mark.parametrize("backend,device", KERNELS)
def test_isolated_atoms_and_empty_graph(backend, device):
    """Atoms without edges keep h_i; a graph without edges returns h."""
    n, ei, half, pair = _graph(8, 14, 2, salt=3)
    ei = ei + 2  # atoms 0 and 1 have no edges now
    h, a, _ = _inputs(n + 2, half.numel(), 5, torch.float64, salt=4)
    want = reference.gine_aggregate(h, ei, a, pair)
    h, a, ei, pair = h.to(device), a.to(device), ei.to(device), pair.to(device)
    out = ops.gine_aggregate(h, ei, a, pair, backend=backend)
    torch.testing.assert_close(out[:2], h[:2], rtol=0, atol=0)
    torch.testing.assert_close(out.cpu(), want, rtol=1e-13, atol=1e-13)
    empty = torch.zeros(2, 0, dtype=torch.long, device=device)
    torch.testing.assert_close(
        ops.gine_aggregate(h, empty, a[:0], torch.zeros(0, dtype=torch.long, device=device), backend=backend), h,
        rtol=0, atol=0)


@pytest.mark.parametrize("backend,device", KERNELS)
def test_opcheck(backend, device):
    n, ei, half, pair = _graph(9, 24, 3, salt=5)
    h, a, g = (t.to(device) for t in _inputs(n, half.numel(), 6, torch.float32, salt=6))
    ei, pair = ei.to(device), pair.to(device)
    lib = torch.ops.confgf_fast
    for rp in (rowptr_from_sorted(ei[0], n), None):
        torch.library.opcheck(lib.gine_aggregate.default, (h, ei, a, pair, rp))
        torch.library.opcheck(lib.gine_aggregate.default, (h.double().requires_grad_(), ei,
                                                           a.double().requires_grad_(), pair, rp))
        torch.library.opcheck(lib.gine_aggregate_backward.default, (g, h, ei, a, pair, rp))


@pytest.mark.cuda
@pytest.mark.skipif(not (HAS_CUDA and GINE_CUDA and GINE_CPU),
                    reason="needs both the CUDA and the C++ gine_aggregate")
def test_cuda_matches_cpu_bitwise():
    """The two kernels add the same terms in the same order (kernel_math.h): identical bits."""
    n, ei, half, pair = _graph(17, 60, 40, salt=11)
    h, a, cot = _inputs(n, half.numel(), 128, torch.float32, salt=12)
    h1, a1 = h.clone().requires_grad_(), a.clone().requires_grad_()
    out = ops.gine_aggregate(h1, ei, a1, pair, backend="cpp")
    gh, ga = torch.autograd.grad(out, (h1, a1), cot)
    h2, a2 = h.cuda().requires_grad_(), a.cuda().requires_grad_()
    out2 = ops.gine_aggregate(h2, ei.cuda(), a2, pair.cuda(), backend="cuda")
    gh2, ga2 = torch.autograd.grad(out2, (h2, a2), cot.cuda())
    for x, y in ((out, out2), (gh, gh2), (ga, ga2)):
        assert torch.equal(x, y.cpu())


@needs_cpp
def test_argument_checks():
    n, ei, half, pair = _graph(9, 24, 2, salt=7)
    h, a, _ = _inputs(n, half.numel(), 6, torch.float32, salt=8)
    with pytest.raises(RuntimeError, match="one edge_attr row per pair"):
        ops.gine_aggregate(h, ei, torch.cat([a, a]), torch.arange(ei.shape[1]), backend="cpp")
    with pytest.raises(RuntimeError, match="edge_attr must have shape"):
        torch.ops.confgf_fast.gine_aggregate(h, ei, a[:, :3], pair, None)
    with pytest.raises(RuntimeError, match="edge_pair must be int64"):
        torch.ops.confgf_fast.gine_aggregate(h, ei, a, pair.int(), None)
    with pytest.raises(RuntimeError, match="rowptr"):
        torch.ops.confgf_fast.gine_aggregate(h, ei, a, pair, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="backend"):
        ops.gine_aggregate(h, ei, a, pair, backend="triton")
    with pytest.raises(RuntimeError, match="cuda gine_aggregate needs"):
        ops.gine_aggregate(h, ei, a, pair, backend="cuda")  # CPU tensors
    # per-directed-edge features (no pairing) go to the reference under "auto", whose autograd
    # does not assume the pairing
    a_dir = torch.randn(ei.shape[1], 6)
    torch.testing.assert_close(ops.gine_aggregate(h, ei, a_dir, torch.arange(ei.shape[1])),
                               reference.gine_aggregate(h, ei, a_dir, torch.arange(ei.shape[1])))


@needs_cpp
def test_lower_precision_edge_features_are_cast():
    """Under bf16 autocast the edge MLP's output is bfloat16 while h is float32: the op computes in
    h's dtype, as h[dst] + e would by type promotion, and returns the edge gradient in bfloat16."""
    n, ei, half, pair = _graph(9, 24, 2, salt=9)
    h, a, cot = _inputs(n, half.numel(), 8, torch.float32, salt=10)
    a16 = a.bfloat16().requires_grad_()
    out = ops.gine_aggregate(h, ei, a16, pair)
    torch.testing.assert_close(out, reference.gine_aggregate(h, ei, a16.float(), pair), rtol=1e-6, atol=1e-6)
    (ga,) = torch.autograd.grad(out, a16, cot)
    assert ga.dtype == torch.bfloat16
