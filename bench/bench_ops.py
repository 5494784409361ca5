"""Benchmarks of the geometric ops (confgf_fast.ops), every backend against the eager reference.

Two batch sizes, both one flat graph of many conformers as the sampler builds them:
- "qm9":   1000 conformers of CC(C)C1=CC=CO1 (18 atoms with H, 168 directed edges each)
- "drugs":  200 conformers of metoprolol (44 atoms, 440 directed edges each)

pytest-benchmark (see bench/README.md):
    pytest bench/bench_ops.py                                  # all backends available here
    pytest bench/bench_ops.py --bench-backends=reference,cpp   # CPU baseline
Groups are "<op>/<size>/<device>", one row per backend. At the end a table of speed-ups over the
eager reference measured in the same run is printed.

GPU timing with CUDA events / triton.testing.do_bench, written to JSON (used by gpu_suite.sh):
    python bench/bench_ops.py --json bench/results/gpu_<date>.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import platform
import sys

import torch

from confgf_fast import ops
from confgf_fast.graph import rowptr_from_sorted
from confgf_fast.ops.testing import replicate, synthetic_molecule

import common

SIZES = {
    # name: (smiles, conformers, atoms per conformer, edges per conformer: the RDKit graph's counts,
    # used to synthesise the same sizes without RDKit)
    "qm9": ("CC(C)C1=CC=CO1", 1000, 18, 168),
    "drugs": ("COCCc1ccc(OCC(O)CNC(C)C)cc1", 200, 44, 440),
}
OPS = ("pairwise_distance", "coord_score", "langevin_step")
STEP, CLIP = 1e-3, 1000.0


@functools.cache
def molecule_graph(size: str) -> tuple[int, torch.Tensor, str]:
    """(atoms, edge_index [2, e]) of one conformer's graph; from RDKit when available."""
    smiles, _, n, e = SIZES[size]
    try:
        from confgf_fast.chem.molecule import featurize, mol_from_smiles

        g = featurize(mol_from_smiles(smiles))
        return g.num_atoms, g.edge_index, "rdkit"
    except ImportError:
        return n, synthetic_molecule(n, e), "synthetic"


@functools.cache
def batch(size: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """(pos [N, 3], edge_index [2, E], edge_score [E], noise [N, 3], rowptr [N+1], source)."""
    _, copies, _, _ = SIZES[size]
    n, ei1, source = molecule_graph(size)
    ei = replicate(ei1, n, copies)
    N, E = n * copies, ei.shape[1]
    g = torch.Generator().manual_seed(0)
    pos = 1.5 * torch.randn(N, 3, generator=g)
    score = torch.randn(E, generator=g)
    noise = torch.randn(N, 3, generator=g)
    t = [x.to(device=device, dtype=dtype) for x in (pos, score, noise)]
    ei = ei.to(device)
    return t[0], ei, t[1], t[2], rowptr_from_sorted(ei[0], N), source


def langevin_bytes(N: int, E: int, dtype: torch.dtype = torch.float32, index_bytes: int = 8) -> int:
    """Bytes langevin_step must move at least once: pos read, edge_index read (2 x int64 per edge),
    edge_score read, noise read, new pos written. (The kernels read only edge_index[1] plus the
    sources or rowptr, and re-read neighbours' positions from cache; this is the usual model count.)"""
    f = torch.finfo(dtype).bits // 8
    return 3 * N * f + 2 * E * index_bytes + E * f + 3 * N * f + 3 * N * f


def op_call(op: str, backend: str, inputs):
    pos, ei, s, z, _, _ = inputs
    if op == "pairwise_distance":
        return lambda: ops.pairwise_distance(pos, ei, backend=backend)
    if op == "coord_score":
        return lambda: ops.coord_score(pos, ei, s, backend=backend)
    return lambda: ops.langevin_step(pos, ei, s, z, STEP, CLIP, backend=backend)


# ------------------------------------------------------------------------------------------------
# pytest-benchmark suite

try:
    import pytest
except ImportError:  # pragma: no cover - only the --json mode is used without pytest
    pytest = None

if pytest is not None:
    _HAS_CUDA = torch.cuda.is_available()
    BACKEND_PARAMS = [
        pytest.param("reference", "cpu", id="reference-cpu"),
        pytest.param("cpp", "cpu", id="cpp"),
        pytest.param("reference", "cuda", id="reference-cuda",
                     marks=pytest.mark.skipif(not _HAS_CUDA, reason="no CUDA GPU")),
        pytest.param("cuda", "cuda", id="cuda", marks=pytest.mark.skipif(not _HAS_CUDA, reason="no CUDA GPU")),
        pytest.param("triton", "cuda", id="triton", marks=pytest.mark.skipif(not _HAS_CUDA, reason="no CUDA GPU")),
    ]

    @pytest.mark.parametrize("backend,device", BACKEND_PARAMS)
    @pytest.mark.parametrize("size", list(SIZES))
    @pytest.mark.parametrize("op", OPS)
    def test_op(benchmark, results, selected_backends, op, size, backend, device):
        if selected_backends is not None and backend not in selected_backends:
            pytest.skip(f"backend {backend} not selected (--bench-backends)")
        if backend not in ops.available_backends(device):
            pytest.skip(f"backend {backend} unavailable on {device}")
        inputs = batch(size, device)
        pos, ei = inputs[0], inputs[1]
        call = op_call(op, backend, inputs)

        def fn():
            call()
            if device == "cuda":  # wall time of a GPU op only means something once it has finished
                torch.cuda.synchronize()

        for _ in range(3):  # warm-up: Triton JIT, caching allocator, first-touch pages
            fn()
        benchmark.group = f"{op}/{size}/{device}"
        benchmark.extra_info.update(N=pos.shape[0], E=ei.shape[1], graphs=inputs[5], threads=torch.get_num_threads())
        benchmark(fn)
        if benchmark.disabled:  # --benchmark-disable (the CI smoke run): fn ran once, untimed
            return
        mean = benchmark.stats.stats.mean
        results.setdefault((op, size, device), {})[backend] = mean
        if op == "langevin_step":
            benchmark.extra_info["GBps"] = langevin_bytes(pos.shape[0], ei.shape[1]) / mean / 1e9


# ------------------------------------------------------------------------------------------------
# GPU timing to JSON (CUDA events), for bench/gpu_suite.sh


def _time_cuda(fn, warmup: int = 10, reps: int = 200) -> float:
    """Mean milliseconds of fn() on the current stream after warm-up."""
    try:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100, return_mode="mean"))
    except Exception as exc:
        print(f"do_bench unavailable ({type(exc).__name__}); timing with CUDA events", file=sys.stderr)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def _graph_replay(fn):
    """fn captured once in a CUDA graph: the replay time is the kernels' time without launch
    overhead, and the capture itself checks that the op is graph-safe (no sync, no host alloc)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def gpu_json(path: str, prov: dict) -> dict:
    dev = torch.device("cuda")
    out = {
        "provenance": prov,
        "device": torch.cuda.get_device_name(dev),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "available_backends": ops.available_backends(dev),
        "results": [],
    }
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    for size in SIZES:
        inputs = batch(size, "cuda")
        pos, ei, s, z, rp, source = inputs
        N, E = pos.shape[0], ei.shape[1]
        for op in OPS:
            ref_ms = None
            variants = [(b, False) for b in ("reference", "cuda", "triton")]
            variants += [("cuda", True), ("triton", True)]  # with rowptr= (the sampler's path)
            for backend, with_rowptr in variants:
                row = {"op": op, "size": size, "backend": backend + ("+rowptr" if with_rowptr else ""),
                       "N": N, "E": E, "graphs": source}
                if backend not in ops.available_backends(dev) or (with_rowptr and op == "pairwise_distance"):
                    continue
                try:
                    if with_rowptr and op == "coord_score":
                        def fn(b=backend, pos=pos, ei=ei, s=s, rp=rp):
                            return ops.coord_score(pos, ei, s, backend=b, rowptr=rp)
                    elif with_rowptr:
                        def fn(b=backend, pos=pos, ei=ei, s=s, z=z, rp=rp):
                            return ops.langevin_step(pos, ei, s, z, STEP, CLIP, backend=b, rowptr=rp)
                    else:
                        fn = op_call(op, backend, inputs)
                    ms = _time_cuda(fn)
                    row["ms"] = ms
                    if backend == "reference":
                        ref_ms = ms
                    if ref_ms:
                        row["speedup_vs_reference"] = ref_ms / ms
                    if op == "langevin_step":
                        row["GBps"] = langevin_bytes(N, E) / (ms * 1e-3) / 1e9
                    if backend != "reference":
                        try:
                            row["ms_cuda_graph"] = _time_cuda(_graph_replay(fn))
                            if op == "langevin_step":
                                row["GBps_cuda_graph"] = langevin_bytes(N, E) / (row["ms_cuda_graph"] * 1e-3) / 1e9
                        except Exception as exc:
                            row["cuda_graph_error"] = f"{type(exc).__name__}: {exc}"[:300]
                    # correctness next to the number: max relative error vs reference on this batch
                    want = op_call(op, "reference", inputs)()
                    got = fn()
                    row["max_rel_err_vs_reference"] = float((got - want).norm() / want.norm().clamp_min(1e-30))
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"[:500]
                out["results"].append(row)
                print(json.dumps(row), flush=True)
    peak = _peak_bandwidth()
    if peak:
        out["device_copy_GBps"] = peak
    common.write_json(path, out)
    return out


def _peak_bandwidth() -> float | None:
    """Device-to-device copy rate (bytes read + written per second), as a yardstick for GB/s."""
    try:
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
        y = torch.empty_like(x)
        ms = _time_cuda(lambda: y.copy_(x))
        return 2 * x.numel() / (ms * 1e-3) / 1e9
    except Exception:
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="write GPU timings (CUDA events) to this JSON file")
    common.add_result_args(parser)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("--json times the GPU backends and needs a CUDA GPU")
    prov = common.provenance("cuda", args.allow_dirty, args.json)  # before the run: the commit that ran
    out = gpu_json(args.json, prov)
    failed = [r for r in out["results"] if "error" in r]
    print(f"wrote {args.json}: {len(out['results'])} rows, {len(failed)} errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

