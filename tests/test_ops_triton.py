"""confgf_fast.ops, Triton backend, against the float64 reference.

On a machine with a CUDA GPU the kernels run compiled on the GPU; elsewhere they run in Triton's
CPU interpreter (TRITON_INTERPRET=1), which is slow, so shapes here are tiny. The variable must be
set before Triton is imported: tests/conftest.py sets it first thing, and this module sets it again
for runs that bypass the conftest; confgf_fast itself only imports Triton on first use.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from confgf_fast import ops
from confgf_fast.graph import rowptr_from_sorted
from confgf_fast.ops import reference
from confgf_fast.ops.testing import (
    edges_from_pairs,
    norm_rel_err,
    random_graph,
    random_inputs,
)

# Norm-relative error allowed against the float64 reference, per dtype. Triton's fp32 sqrt and
# division may be approximate on GPUs (~2 ulp); measured <= 2e-7 in the interpreter.
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
SEED = int(os.environ.get("CONFGF_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
STEP, CLIP = 0.01, 1000.0

pytestmark = pytest.mark.skipif("triton" not in ops.available_backends(DEVICE),
                                reason=f"triton backend unavailable on {DEVICE} "
                                       "(needs triton, and TRITON_INTERPRET=1 set before import on CPU)")


def _case(name: str):
    g = torch.Generator().manual_seed(SEED + len(name))
    if name == "no_atoms":
        n, ei = 0, torch.zeros(2, 0, dtype=torch.long)
    elif name == "one_atom":
        n, ei = 1, torch.zeros(2, 0, dtype=torch.long)
    elif name == "empty_edges":
        n, ei = 5, torch.zeros(2, 0, dtype=torch.long)
    elif name == "isolated_atoms":
        n, ei = 21, random_graph(21, 4.0, num_isolated=5, generator=g)
    elif name == "two_blocks":  # 130 atoms: a full block of 128 lanes and a 2-lane tail
        n, ei = 130, random_graph(130, 3.0, generator=g)
    elif name == "coincident_atoms":
        n, ei = 12, random_graph(12, 5.0, generator=g)
    else:
        raise KeyError(name)
    if name == "coincident_atoms":  # atoms 0 and 1 share a position and an edge: d = 0 must add 0
        ei = edges_from_pairs(torch.cat([ei.t(), torch.tensor([[0, 1]])]), n)
    p, s, z = random_inputs(n, ei, torch.float64, generator=g)
    if name == "coincident_atoms":
        p[1] = p[0]
    return p, ei, s, z


CASES = ["no_atoms", "one_atom", "empty_edges", "isolated_atoms", "two_blocks", "coincident_atoms"]


def _check(got, want, dtype, what):
    assert got.shape == want.shape and got.dtype == dtype, (what, got.shape, got.dtype)
    assert torch.isfinite(got).all(), what
    err = norm_rel_err(got, want)
    assert err <= TOL[dtype], f"{what}: norm-relative error {err:.3g} > {TOL[dtype]:.0e} (seed {SEED})"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_forward_matches_reference(case, dtype):
    p64, ei, s64, z64 = _case(case)
    p, s, z, e = p64.to(DEVICE, dtype), s64.to(DEVICE, dtype), z64.to(DEVICE, dtype), ei.to(DEVICE)
    rp = rowptr_from_sorted(e[0], p.shape[0])
    _check(ops.pairwise_distance(p, e, backend="triton"), reference.pairwise_distance(p64, ei), dtype, "distance")
    want_S = reference.coord_score(p64, ei, s64)
    _check(ops.coord_score(p, e, s, backend="triton"), want_S, dtype, "coord_score")
    _check(ops.coord_score(p, e, s, backend="triton", rowptr=rp), want_S, dtype, "coord_score(rowptr)")
    for clip in (CLIP, 0.5):  # 0.5: the clip is active for most atoms
        want = reference.langevin_step(p64, ei, s64, z64, STEP, clip)
        _check(ops.langevin_step(p, e, s, z, STEP, clip, backend="triton"), want, dtype, f"langevin_step {clip}")
        _check(ops.langevin_step(p, e, s, z, STEP, clip, backend="triton", rowptr=rp), want, dtype,
               f"langevin_step(rowptr) {clip}")


def test_non_contiguous_inputs():
    p64, ei, s64, z64 = _case("isolated_atoms")
    n, E = p64.shape[0], ei.shape[1]
    p = torch.zeros(n, 6, device=DEVICE)[:, 1:4]
    p.copy_(p64)
    z = torch.zeros(3, n, device=DEVICE).t()
    z.copy_(z64)
    s = torch.zeros(2 * E, device=DEVICE)[::2]
    s.copy_(s64)
    e = ei.t().contiguous().t().to(DEVICE)
    _check(ops.langevin_step(p, e, s, z, STEP, CLIP, backend="triton"),
           reference.langevin_step(p64, ei, s64, z64, STEP, CLIP), torch.float32, "non-contiguous")


def test_pairwise_distance_gradcheck():
    p64, ei, _, _ = _case("isolated_atoms")
    p = p64.to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.pairwise_distance(x, ei.to(DEVICE), backend="triton"), (p,))


def test_opcheck():
    """Schema, fake kernel and autograd registration of the triton_op wrappers."""
    from confgf_fast.ops import _registry

    tops = _registry.triton_kernels()
    p64, ei, s64, z64 = _case("isolated_atoms")
    p, s, z, e = p64.float().to(DEVICE), s64.float().to(DEVICE), z64.float().to(DEVICE), ei.to(DEVICE)
    # test_aot_dispatch_dynamic traces the kernels themselves, which needs compiled (GPU) Triton.
    tests = ("test_schema", "test_autograd_registration", "test_faketensor")
    if DEVICE == "cuda":
        tests += ("test_aot_dispatch_dynamic",)
    torch.library.opcheck(tops["pairwise_distance"], (p.double().requires_grad_(), e), test_utils=tests)
    torch.library.opcheck(tops["coord_score"], (p, e, s, None), test_utils=tests)
    torch.library.opcheck(tops["langevin_step"], (p, e, s, z, rowptr_from_sorted(e[0], p.shape[0]), STEP, CLIP),
                          test_utils=tests)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile of Triton kernels needs a GPU")
def test_torch_compile_fullgraph():
    p64, ei, s64, z64 = _case("two_blocks")
    p, s, z, e = p64.float().cuda(), s64.float().cuda(), z64.float().cuda(), ei.cuda()

    def step(pos, edge_index, score, noise):
        return ops.langevin_step(pos, edge_index, score, noise, STEP, CLIP, backend="triton")

    torch.testing.assert_close(torch.compile(step, fullgraph=True)(p, e, s, z), step(p, e, s, z))
