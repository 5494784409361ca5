"""confgf_fast.ops: every compiled backend (cpp; cuda where a GPU is present) against the float64
reference on fresh random inputs, plus gradients, opcheck, torch.compile, math checks and the
backend dispatch rules. The Triton backend has its own module (test_ops_triton.py).

Inputs are fresh each run; the seed is printed in failure messages and can be pinned with
CONFGF_TEST_SEED=<int>.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib

import pytest
import torch

from confgf_fast import ops
from confgf_fast.graph import rowptr_from_sorted
from confgf_fast.ops import _registry, reference
from confgf_fast.ops.testing import (
    edges_from_pairs,
    extended_graph,
    norm_rel_err,
    random_graph,
    random_inputs,
    replicate,
    reverse_index,
    synthetic_molecule,
)

# Norm-relative error allowed against the float64 reference, per dtype of the backend's inputs.
# float32: measured <= 2e-7 on these cases (rounding of ~10-term sums, sqrt and division);
# 1e-5 leaves room for other compilers/FMA contraction without hiding a wrong edge (which is O(1e-1)).
# float64: measured <= 3e-16.
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}

SEED = int(os.environ.get("CONFGF_TEST_SEED", int.from_bytes(os.urandom(4), "little")))

HAS_CUDA = torch.cuda.is_available()
# (backend, device): the compiled backends, plus the reference run in float32 as a control (its
# float64 run would be compared with itself and is skipped).
BACKENDS = [
    pytest.param("cpp", "cpu", id="cpp"),
    pytest.param("cuda", "cuda", id="cuda", marks=[pytest.mark.cuda,
                                                  pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")]),
    pytest.param("reference", "cpu", id="reference"),
]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def _require(backend: str, device: str) -> None:
    if backend not in ops.available_backends(device):
        why = _registry.why_unavailable(backend, device, load=False)
        pytest.skip(f"backend {backend!r} unavailable on {device}: {why}")


def _gen(salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED * 1000 + salt)


# ----------------------------------------------------------------------------------------------
# Cases: (num_atoms, edge_index) graphs covering the edge cases of the contract.


def _molecule_batch(gen: torch.Generator):
    """Real molecules (RDKit extended graphs via chem.featurize + PackedGraphs.batch), several
    conformers each, every conformer a random ETKDG embedding."""
    pytest.importorskip("rdkit")
    from rdkit.Chem import AllChem

    from confgf_fast.chem.molecule import featurize, mol_from_smiles
    from confgf_fast.graph import PackedGraphs

    smiles = ["CC(C)C1=CC=CO1", "O", "CC(=O)Nc1ccc(O)cc1", "C#CC=O", "c1ccccc1", "N"]
    mols = [mol_from_smiles(s) for s in smiles]
    packed = PackedGraphs([featurize(m) for m in mols])
    mol_ids = torch.tensor([0, 1, 2, 3, 4, 5, 0, 2, 4])
    batch = packed.batch(mol_ids)
    confs = []
    for m in mol_ids.tolist():
        mol = mols[m]
        seed = int(torch.randint(1 << 30, (1,), generator=gen))
        if AllChem.EmbedMolecule(mol, randomSeed=seed) == 0:
            xyz = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float64)
        else:  # embedding can fail; random coordinates keep the case valid
            xyz = torch.randn(mol.GetNumAtoms(), 3, generator=gen, dtype=torch.float64)
        confs.append(xyz)
    return batch.num_atoms, batch.edge_index, torch.cat(confs)


def make_case(name: str, salt: int = 0):
    """-> (num_atoms, edge_index [2, E], pos64 [N, 3] or None (random), score scale)."""
    g = _gen(zlib.crc32(name.encode()) % 997 + salt)
    if name == "no_atoms":
        return 0, torch.zeros(2, 0, dtype=torch.long), None, 1.0
    if name == "one_atom":
        return 1, torch.zeros(2, 0, dtype=torch.long), None, 1.0
    if name == "empty_edges":
        return 7, torch.zeros(2, 0, dtype=torch.long), None, 1.0
    if name == "isolated_atoms":
        return 41, random_graph(41, 5.0, num_isolated=9, generator=g), None, 1.0
    if name == "odd_sizes":  # not a multiple of any block/grain size, more than one Triton block
        return 131, random_graph(131, 7.0, generator=g), None, 1.0
    if name == "molecules":
        n, ei, pos = _molecule_batch(g)
        return n, ei, pos, 1.0
    if name == "clip_active":  # scores large enough that most atoms hit the norm clip
        return 60, random_graph(60, 8.0, generator=g), None, 1e4
    if name == "coincident_atoms":  # some edges have d = 0 exactly: they must contribute 0, not NaN
        n = 30
        ei = random_graph(n, 6.0, generator=g)
        ei = edges_from_pairs(torch.cat([ei.t(), torch.tensor([[0, 1], [2, 3], [2, 4]])]), n)
        pos = 1.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)
        pos[1] = pos[0]
        pos[3] = pos[2]
        pos[4] = pos[2]
        return n, ei, pos, 1.0
    raise KeyError(name)


CASES = ["no_atoms", "one_atom", "empty_edges", "isolated_atoms", "odd_sizes", "molecules", "clip_active",
         "coincident_atoms"]


def case_inputs(name: str, dtype: torch.dtype, device: str, salt: int = 0):
    """(pos, edge_index, edge_score, noise) on device in dtype, and the same in float64 on CPU."""
    n, ei, pos64, scale = make_case(name, salt)
    p, s, z = random_inputs(n, ei, torch.float64, generator=_gen(salt + 7))
    if pos64 is not None:
        p = pos64
    s = s * scale
    ref = (p, ei, s, z)
    fast = (p.to(device, dtype), ei.to(device), s.to(device, dtype), z.to(device, dtype))
    return fast, ref


STEP, CLIP = 0.01, 1000.0


def _check(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype} != {dtype}"
    assert torch.isfinite(got).all(), f"{what}: non-finite values (seed {SEED})"
    err = norm_rel_err(got, want)
    assert err <= TOL[dtype], f"{what}: norm-relative error {err:.3g} > {TOL[dtype]:.0e} (seed {SEED})"


# ----------------------------------------------------------------------------------------------
# Forward: every backend vs the float64 reference.


def test_extension_built():
    """The C++ extension is part of the product: a missing build fails here, once, with the reason
    (the other cpp tests skip)."""
    if os.environ.get("CONFGF_FAST_NO_EXT") == "1":
        pytest.skip("CONFGF_FAST_NO_EXT=1")
    assert _registry.EXTENSION.error is None, _registry.EXTENSION.error
    assert "cpp" in ops.available_backends("cpu")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_forward_matches_reference(backend, device, dtype, case):
    _require(backend, device)
    if backend == "reference" and dtype == torch.float64:
        pytest.skip("the float64 reference is the truth itself: comparing it with itself cannot fail")
    (p, ei, s, z), (p64, ei64, s64, z64) = case_inputs(case, dtype, device)
    n = p.shape[0]
    rp = rowptr_from_sorted(ei[0], n)
    _check(ops.pairwise_distance(p, ei, backend=backend), reference.pairwise_distance(p64, ei64), dtype,
           f"{backend} pairwise_distance {case}")
    want_S = reference.coord_score(p64, ei64, s64)
    _check(ops.coord_score(p, ei, s, backend=backend), want_S, dtype, f"{backend} coord_score {case}")
    _check(ops.coord_score(p, ei, s, backend=backend, rowptr=rp), want_S, dtype,
           f"{backend} coord_score(rowptr) {case}")
    want = reference.langevin_step(p64, ei64, s64, z64, STEP, CLIP)
    _check(ops.langevin_step(p, ei, s, z, STEP, CLIP, backend=backend), want, dtype,
           f"{backend} langevin_step {case}")
    _check(ops.langevin_step(p, ei, s, z, STEP, CLIP, backend=backend, rowptr=rp), want, dtype,
           f"{backend} langevin_step(rowptr) {case}")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_inputs(backend, device):
    _require(backend, device)
    (p, ei, s, z), (p64, ei64, s64, z64) = case_inputs("odd_sizes", torch.float32, device)
    n, E = p.shape[0], ei.shape[1]
    # The same values behind strided views: pos/noise as column slices, edge_index as a
    # transposed [E, 2] buffer, edge_score with stride 2.
    p_nc = torch.zeros(n, 7, device=device)[:, 2:5]
    p_nc.copy_(p)
    z_nc = torch.zeros(3, n, device=device).t()
    z_nc.copy_(z)
    ei_nc = ei.t().contiguous().t()
    s_nc = torch.zeros(2 * E, device=device)[::2]
    s_nc.copy_(s)
    assert not (p_nc.is_contiguous() or z_nc.is_contiguous() or ei_nc.is_contiguous() or s_nc.is_contiguous())
    _check(ops.pairwise_distance(p_nc, ei_nc, backend=backend), reference.pairwise_distance(p64, ei64),
           torch.float32, "pairwise_distance non-contiguous")
    _check(ops.coord_score(p_nc, ei_nc, s_nc, backend=backend), reference.coord_score(p64, ei64, s64),
           torch.float32, "coord_score non-contiguous")
    _check(ops.langevin_step(p_nc, ei_nc, s_nc, z_nc, STEP, CLIP, backend=backend),
           reference.langevin_step(p64, ei64, s64, z64, STEP, CLIP), torch.float32, "langevin_step non-contiguous")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_langevin_step_writes_new_buffer(backend, device):
    _require(backend, device)
    (p, ei, s, z), _ = case_inputs("odd_sizes", torch.float32, device)
    before = p.clone()
    out = ops.langevin_step(p, ei, s, z, STEP, CLIP, backend=backend)
    assert out.data_ptr() != p.data_ptr()
    assert torch.equal(p, before)


def test_mixed_dtypes_are_cast_to_pos_dtype():
    """edge_score / noise in another float dtype are cast to pos' dtype, as the reference does."""
    _require("cpp", "cpu")
    (p, ei, s, z), (p64, ei64, s64, z64) = case_inputs("odd_sizes", torch.float64, "cpu")
    got = ops.langevin_step(p, ei, s.float(), z.float(), STEP, CLIP, backend="cpp")
    want = reference.langevin_step(p64, ei64, s64.float(), z64.float(), STEP, CLIP)
    _check(got, want, torch.float64, "mixed dtypes")


@pytest.mark.parametrize("backend,device", BACKENDS[:2])
def test_deterministic(backend, device):
    """Segment reduction, no atomics: identical bits across calls and thread counts."""
    _require(backend, device)
    (p, ei, s, z), _ = case_inputs("odd_sizes", torch.float32, device)
    p, ei, s, z = (replicate(ei, p.shape[0], 40) if t is ei else t.repeat(40, *([1] * (t.dim() - 1)))
                   for t in (p, ei, s, z))
    runs = [ops.langevin_step(p, ei, s, z, STEP, CLIP, backend=backend) for _ in range(2)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        runs.append(ops.langevin_step(p, ei, s, z, STEP, CLIP, backend=backend))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def test_property_random_graphs():
    """Hypothesis: cpp == reference on arbitrary small graphs (any degree pattern, any clip)."""
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    _require("cpp", "cpu")

    @hyp.settings(max_examples=40, deadline=None, database=None)
    @hyp.given(n=st.integers(0, 40), deg=st.floats(0.0, 12.0), clip=st.floats(0.0, 50.0),
               step=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
    def check(n, deg, clip, step, seed):
        g = torch.Generator().manual_seed(seed)
        ei = random_graph(n, deg, generator=g)
        p, s, z = random_inputs(n, ei, torch.float64, generator=g)
        _check(ops.langevin_step(p, ei, s, z, step, clip, backend="cpp"),
               reference.langevin_step(p, ei, s, z, step, clip), torch.float64, "hypothesis langevin_step")

    check()


# ----------------------------------------------------------------------------------------------
# Gradients, opcheck, torch.compile.


@pytest.mark.parametrize("backend,device", BACKENDS[:2])
def test_pairwise_distance_gradcheck(backend, device):
    _require(backend, device)
    (p, ei, _, _), _ = case_inputs("isolated_atoms", torch.float64, device)
    p = p.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.pairwise_distance(x, ei, backend=backend), (p,))


@pytest.mark.parametrize("backend,device", BACKENDS[:2])
def test_pairwise_distance_grad_random_cotangent(backend, device):
    """Backward with a non-symmetric cotangent (both endpoint terms matter) vs reference autograd."""
    _require(backend, device)
    (p, ei, g, _), (p64, ei64, g64, _) = case_inputs("molecules", torch.float64, device)
    p = p.clone().requires_grad_()
    (grad,) = torch.autograd.grad(ops.pairwise_distance(p, ei, backend=backend), p, g)
    p64 = p64.clone().requires_grad_()
    (want,) = torch.autograd.grad(reference.pairwise_distance(p64, ei64), p64, g64)
    _check(grad, want, torch.float64, f"{backend} pairwise_distance backward")


def _opcheck_args(device: str):
    (p, ei, s, z), _ = case_inputs("isolated_atoms", torch.float32, device)
    rp = rowptr_from_sorted(ei[0], p.shape[0])
    return p, ei, s, z, rp


@pytest.mark.parametrize("backend,device", BACKENDS[:2])
def test_opcheck(backend, device):
    _require(backend, device)
    p, ei, s, z, rp = _opcheck_args(device)
    lib = torch.ops.confgf_fast
    torch.library.opcheck(lib.pairwise_distance.default, (p, ei))
    torch.library.opcheck(lib.pairwise_distance.default, (p.double().requires_grad_(), ei))
    for r in (rp, None):
        torch.library.opcheck(lib.coord_score.default, (p, ei, s, r))
        torch.library.opcheck(lib.langevin_step.default, (p, ei, s, z, r, STEP, CLIP))


def _inductor_works() -> str | None:
    try:
        torch.compile(lambda x: x.sin() + 1, backend="inductor", fullgraph=True)(torch.ones(4))
    except Exception as exc:
        return f"inductor cannot compile on this machine: {type(exc).__name__}: {str(exc)[:200]}"
    return None


@pytest.mark.parametrize("backend,device", BACKENDS[:2])
def test_torch_compile_fullgraph(backend, device):
    _require(backend, device)
    reason = _inductor_works()
    if reason:
        pytest.skip(reason)
    (p, ei, s, z), _ = case_inputs("odd_sizes", torch.float32, device)

    def step(pos, edge_index, score, noise):
        d = ops.pairwise_distance(pos, edge_index, backend=backend)
        return ops.langevin_step(pos, edge_index, score * d, noise, STEP, CLIP, backend=backend)

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(p, ei, s, z), step(p, ei, s, z), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# Math checks (float64): properties of the true S, not only agreement with the reference.


def _synthetic_batch(gen: torch.Generator):
    """A few different molecule-like graphs (no RDKit) batched: (N, edge_index, graph id per atom)."""
    parts, node_graph, offset = [], [], 0
    for k, (n, e) in enumerate([(9, 60), (18, 168), (5, 20), (23, 230)]):
        ei = synthetic_molecule(n, e, tries=20, seed=int(torch.randint(1 << 20, (1,), generator=gen)))
        parts.append(ei + offset)
        node_graph.append(torch.full((n,), k))
        offset += n
    return offset, torch.cat(parts, 1), torch.cat(node_graph)


MATH_BACKENDS = [pytest.param("cpp", id="cpp"), pytest.param("reference", id="reference")]


@pytest.mark.parametrize("backend", MATH_BACKENDS)
def test_score_sums_to_zero_per_molecule(backend):
    """With symmetric scores (s_ij = s_ji, as the network gives) every pair adds +v and -v."""
    _require(backend, "cpu")
    g = _gen(11)
    n, ei, graph = _synthetic_batch(g)
    p, s, _ = random_inputs(n, ei, torch.float64, generator=g)
    s = 0.5 * (s + s[reverse_index(ei, n)])
    S = ops.coord_score(p, ei, s, backend=backend)
    per_mol = torch.zeros(int(graph.max()) + 1, 3, dtype=torch.float64).index_add_(0, graph, S)
    assert per_mol.abs().max() <= 1e-12 * S.abs().max().clamp_min(1.0), per_mol


@pytest.mark.parametrize("backend", MATH_BACKENDS)
def test_rotation_translation_equivariance(backend):
    """S(R r + t) = R S(r); step(R r + t, R z) = R step(r, z) + t (the clip is a norm: invariant)."""
    _require(backend, "cpu")
    g = _gen(12)
    n, ei, _ = _synthetic_batch(g)
    p, s, z = random_inputs(n, ei, torch.float64, generator=g)
    s = s * 30.0  # so that some atoms are clipped
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    R = q * torch.sign(torch.diagonal(r))
    t = 10.0 * torch.randn(3, generator=g, dtype=torch.float64)
    S = ops.coord_score(p, ei, s, backend=backend)
    S_rot = ops.coord_score(p @ R.T + t, ei, s, backend=backend)
    torch.testing.assert_close(S_rot, S @ R.T, rtol=1e-10, atol=1e-10)
    out = ops.langevin_step(p, ei, s, z, 0.05, 5.0, backend=backend)
    out_rot = ops.langevin_step(p @ R.T + t, ei, s, z @ R.T, 0.05, 5.0, backend=backend)
    torch.testing.assert_close(out_rot, out @ R.T + t, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ops.pairwise_distance(p @ R.T + t, ei, backend=backend),
                               ops.pairwise_distance(p, ei, backend=backend), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", MATH_BACKENDS)
def test_score_is_autograd_of_weighted_distances(backend):
    """S_i = d/dr_i of sum_e s_e d_e through each edge's source end (s held fixed); for symmetric
    s that is the gradient of sum over undirected pairs, i.e. of (1/2) sum_e s_e d_e."""
    _require(backend, "cpu")
    g = _gen(13)
    n, ei, _ = _synthetic_batch(g)
    p, s, _ = random_inputs(n, ei, torch.float64, generator=g)
    S = ops.coord_score(p, ei, s, backend=backend)
    x = p.clone().requires_grad_()
    src_end = (x[ei[0]] - x[ei[1]].detach()).norm(dim=-1)
    (grad,) = torch.autograd.grad((s * src_end).sum(), x)
    torch.testing.assert_close(S, grad, rtol=1e-12, atol=1e-12)
    s_sym = 0.5 * (s + s[reverse_index(ei, n)])
    (grad_sym,) = torch.autograd.grad(0.5 * (s_sym * reference.pairwise_distance(x, ei)).sum(), x)
    torch.testing.assert_close(ops.coord_score(p, ei, s_sym, backend=backend), grad_sym, rtol=1e-12, atol=1e-12)


def test_extended_graph_matches_featurize():
    """The bond-list form (used by the op tests and the GPU benchmarks, no RDKit needed) gives the
    pairs within 3 bonds by RDKit's own topological distances, sorted by (src, dst), as the graph
    chem.featurize builds; at order 1 only the bonds."""
    pytest.importorskip("rdkit")
    from rdkit import Chem

    from confgf_fast.chem.molecule import featurize, mol_from_smiles

    mol = mol_from_smiles("CC(C)C1=CC=CO1")
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    n = mol.GetNumAtoms()
    dm = Chem.GetDistanceMatrix(mol)
    for order in (1, 3):
        want = [(i, j) for i in range(n) for j in range(n) if 1 <= dm[i, j] <= order]
        ei = extended_graph(bonds, n, order)
        assert list(zip(*ei.tolist())) == want, order
        assert torch.equal(ei[:, reverse_index(ei, n)], ei.flip(0))
    assert torch.equal(extended_graph(bonds, n), featurize(mol).edge_index)


# ----------------------------------------------------------------------------------------------
# Backend choice.


def test_backend_choice():
    p = torch.zeros(3, 3)
    assert ops.available_backends("cpu")[-1] == "reference"
    if "cpp" in ops.available_backends("cpu"):
        assert _registry.resolve("coord_score", "auto", p) == "cpp"
    assert _registry.resolve("coord_score", "auto", p.half()) == "reference"  # kernels are float32/float64 only
    with pytest.raises(ValueError, match="unknown backend"):
        ops.pairwise_distance(p, torch.zeros(2, 0, dtype=torch.long), backend="fortran")
    with pytest.raises(RuntimeError, match="backend 'cuda' is unavailable"):
        ops.pairwise_distance(p, torch.zeros(2, 0, dtype=torch.long), backend="cuda")


def _stale(drop: str):
    """registered_kernels() of a full CPU+CUDA build, less what `drop` names: "schema:<op>" (the
    op did not exist), "CPU:<op>" or "CUDA:<op>" (its kernel was not compiled)."""
    kind, op = drop.split(":")
    have = {name: frozenset({"CPU", "CUDA"}) for name in _registry.compiled_ops()}
    if kind == "schema":
        del have[op]
    else:
        have[op] = have[op] - {kind}
    return have


@pytest.mark.parametrize("drop", ["schema:project_sweeps", "CPU:gine_aggregate_backward", "CUDA:coord_score"])
def test_stale_build_is_refused_with_rebuild(monkeypatch, drop):
    """An extension that loads but lacks a kernel the registry expects (built before an op was
    added) is not used at all: asking for cpp raises one line naming the rebuild, for every op, not
    only the missing one; auto warns the same and runs the reference."""
    monkeypatch.setattr(_registry, "_LOAD_ERROR", None)
    monkeypatch.setattr(_registry, "registered_kernels", lambda: _stale(drop))
    ext = _registry.probe_extension()
    assert ext.stale and not ext.backends, ext
    assert "rebuild" in ext.error and "python setup.py build_ext --inplace" in ext.error, ext.error
    assert drop.split(":")[1] in ext.error and "\n" not in ext.error, ext.error
    monkeypatch.setattr(_registry, "EXTENSION", ext)
    monkeypatch.setattr(_registry, "_warned", set())
    assert "cpp" not in ops.available_backends("cpu")
    assert not _registry.has_backend("coord_score", "cpp")
    ei = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]])
    p, s, z = torch.randn(3, 3), torch.randn(4), torch.randn(3, 3)
    for call in (lambda b: ops.coord_score(p, ei, s, backend=b),
                 lambda b: ops.project_sweeps(p, ei, s.abs(), torch.full((3,), 0.25), 2, backend=b)):
        with pytest.raises(RuntimeError, match="rebuild") as info:
            call("cpp")
        assert "\n" not in str(info.value)
    with pytest.warns(RuntimeWarning, match="rebuild"):
        got = ops.langevin_step(p, ei, s, z, 0.1)
    torch.testing.assert_close(got, reference.langevin_step(p, ei, s, z, 0.1), rtol=0, atol=0)


def test_a_build_without_cuda_kernels_is_not_stale(monkeypatch):
    """No CUDA kernel at all (a CPU torch, BUILD_NO_CUDA=1) is a whole build: it serves cpp."""
    monkeypatch.setattr(_registry, "_LOAD_ERROR", None)
    monkeypatch.setattr(_registry, "registered_kernels",
                        lambda: {name: frozenset({"CPU"}) for name in _registry.compiled_ops()})
    assert _registry.probe_extension() == _registry.Extension(None, ("cpp",))


def test_every_triton_module_is_registered():
    """The registry's TRITON_OPS is the one list of Triton ops: it names exactly the op modules of
    kernels/ (a new kernel file without triton=True in its OpSpec fails here), and the registry
    offers the Triton backend for exactly those ops."""
    import pathlib

    import confgf_fast.kernels

    helpers = {"__init__", "aot", "segment"}  # the package, the AOT compiler, shared device code
    modules = {p.stem for p in pathlib.Path(confgf_fast.kernels.__file__).parent.glob("*.py")} - helpers
    assert modules == set(_registry.TRITON_OPS), modules
    assert {op for op in _registry.SPECS if "triton" in _registry.op_backends(op)} == set(_registry.TRITON_OPS)
    assert "triton" not in _registry.op_backends("gine_aggregate")


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "CONFGF_FAST_NO_EXT")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False,
                          env=full_env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=120)


def test_import_without_extension_warns_once_and_falls_back():
    """No _C: importing works, auto warns once and gives the reference result, an explicit request
    for cpp raises a clear RuntimeError, and Triton is never imported by the package."""
    res = _run_python("""
        import sys, warnings
        import torch
        import confgf_fast
        from confgf_fast import ops
        assert "triton" not in sys.modules, "importing confgf_fast imported triton"
        assert ops.available_backends("cpu") == ["reference"], ops.available_backends("cpu")
        ei = torch.tensor([[0, 1], [1, 0]])
        p, s, z = torch.randn(2, 3), torch.randn(2), torch.randn(2, 3)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            a = ops.langevin_step(p, ei, s, z, 0.1)
            b = ops.coord_score(p, ei, s)
            c = ops.pairwise_distance(p, ei)
        msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
        assert len(msgs) == 1 and "CONFGF_FAST_NO_EXT" in msgs[0], msgs
        assert torch.equal(a, ops.reference.langevin_step(p, ei, s, z, 0.1))
        for backend in ("cpp", "triton"):
            try:
                ops.langevin_step(p, ei, s, z, 0.1, backend=backend)
            except RuntimeError as exc:
                assert "unavailable" in str(exc), exc
            else:
                raise AssertionError(backend + " should raise")
        assert "triton" not in sys.modules
        print("OK")
    """, CONFGF_FAST_NO_EXT="1")
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr


def test_import_does_not_import_triton():
    res = _run_python("""
        import sys
        import torch
        import confgf_fast
        from confgf_fast import ops
        ops.langevin_step(torch.randn(2, 3), torch.tensor([[0, 1], [1, 0]]), torch.randn(2), torch.randn(2, 3), 0.1)
        assert "triton" not in sys.modules, "triton was imported"
        print("OK")
    """)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
