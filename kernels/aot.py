"""Compile every Triton kernel of confgf_fast.kernels ahead of time, without a GPU.

    python -m confgf_fast.kernels.aot --arch 90 [--arch 80 ...] [--dtype fp32 --dtype fp64] [--json out.json]

For each kernel (every ``*_kernel`` JIT function of the op modules, the registry's TRITON_OPS), each float dtype
and each arch, triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", arch,
32)) lowers it to a cubin, and ptxas' report on the same PTX gives registers, spill stores/loads and
shared memory. One line per compiled kernel; exit status 0 when all compile, 1 otherwise (also
when a kernel has no signature below, so a new kernel cannot be skipped silently).

The signatures are the ones the op wrappers launch with: float tensors in the op's dtype, int64
indices, ``N``/``E`` as i32 (what Triton picks for sizes below 2**31), the fp32 (hi, lo) scalar
pairs of segment.split_float, and the BLOCK constexprs of segment.py. Integer arguments are not
specialised for divisibility (no ``attrs``): the cubins are the general ones.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from confgf_fast.ops._registry import TRITON_OPS as MODULES  # the op modules: every Triton op

DTYPES = ("fp32", "fp64")


def _signatures(dtype: str) -> dict[str, tuple[dict[str, str], dict[str, int]]]:
    """kernel name -> (signature, constexprs) for float tensors of `dtype`."""
    from .segment import BLOCK_ATOMS, BLOCK_EDGES

    f, i = f"*{dtype}", "*i64"
    return {
        "pairwise_distance_kernel": (
            {"pos_ptr": f, "src_ptr": i, "dst_ptr": i, "out_ptr": f, "E": "i32", "N": "i32",
             "BLOCK": "constexpr"},
            {"BLOCK": BLOCK_EDGES}),
        "coord_score_kernel": (
            {"pos_ptr": f, "dst_ptr": i, "score_ptr": f, "rowptr_ptr": i, "out_ptr": f, "N": "i32",
             "BLOCK": "constexpr"},
            {"BLOCK": BLOCK_ATOMS}),
        "langevin_step_kernel": (
            {"pos_ptr": f, "dst_ptr": i, "score_ptr": f, "noise_ptr": f, "rowptr_ptr": i, "out_ptr": f, "N": "i32",
             "a_hi": "fp32", "a_lo": "fp32", "ns_hi": "fp32", "ns_lo": "fp32", "clip_hi": "fp32", "clip_lo": "fp32",
             "BLOCK": "constexpr"},
            {"BLOCK": BLOCK_ATOMS}),
        "project_sweep_kernel": (
            {"prev_ptr": f, "dst_ptr": i, "target_ptr": f, "step_ptr": f, "rowptr_ptr": i, "next_ptr": f, "N": "i32",
             "BLOCK": "constexpr"},
            {"BLOCK": BLOCK_ATOMS}),
    }


def discover() -> dict[str, object]:
    """name -> JITFunction for every ``*_kernel`` defined in the op modules."""
    from triton.runtime.jit import JITFunction

    found = {}
    for mod_name in MODULES:
        mod = importlib.import_module(f"{__package__}.{mod_name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, JITFunction) and name.endswith("_kernel") and obj.__module__ == mod.__name__:
                found[name] = obj
    return found


def _ptxas(arch: int) -> str:
    """The ptxas Triton itself uses for `arch` (its bundled ones: one for sm_90 and newer, a
    legacy one below), so the report describes the cubin Triton built."""
    from triton.backends.nvidia.compiler import get_ptxas

    return get_ptxas(arch).path


_PTXAS_RE = {
    "registers": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "smem_static": re.compile(r"(\d+) bytes smem"),
}


def resource_usage(ptx: str, gpu_name: str, arch: int) -> dict[str, int]:
    """ptxas -v on the kernel's PTX for `gpu_name` (e.g. "sm_90a"): registers, spills, static smem."""
    exe = _ptxas(arch)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as fh:
            fh.write(ptx)
        res = subprocess.run([exe, "-v", f"--gpu-name={gpu_name}", src, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"ptxas failed: {res.stderr.strip()[-500:]}")
    out = {}
    for key, rx in _PTXAS_RE.items():
        m = rx.search(res.stderr + res.stdout)
        out[key] = int(m.group(1)) if m else 0
    return out


def compile_one(fn, signature: dict[str, str], constexprs: dict[str, int], arch: int) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t0 = time.perf_counter()
    kernel = triton.compile(ASTSource(fn, signature, constexprs=constexprs), target=GPUTarget("cuda", arch, 32))
    seconds = time.perf_counter() - t0
    target_arch = re.search(r"\.target\s+(sm_\w+)", kernel.asm["ptx"]).group(1)
    usage = resource_usage(kernel.asm["ptx"], target_arch, arch)
    return {
        "target": target_arch,
        "registers": usage["registers"],
        "spill_stores": usage["spill_stores"],
        "spill_loads": usage["spill_loads"],
        # static (from ptxas) + dynamic (Triton's launch-time request) shared memory per block
        "shared_bytes": usage["smem_static"] + int(kernel.metadata.shared),
        "num_warps": int(kernel.metadata.num_warps),
        "cubin_bytes": len(kernel.asm["cubin"]),
        "compile_s": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m confgf_fast.kernels.aot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, action="append", required=True,
                        help="compute capability as an integer, e.g. 90 (H100/H200) or 80 (A100); repeatable")
    parser.add_argument("--dtype", choices=DTYPES, action="append", help="float dtype(s) to compile (default: both)")
    parser.add_argument("--json", help="also write the table as JSON to this path")
    parser.add_argument("--use-cache", action="store_true",
                        help="reuse Triton's kernel cache (default: a fresh one, so every kernel really compiles)")
    args = parser.parse_args(argv)
    # The interpreter replaces compiled kernels; AOT compilation needs the real compiler path.
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("TRITON_INTERPRET=1 is set: unset it for ahead-of-time compilation", file=sys.stderr)
        return 2
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated to silence its warning
    if not args.use_cache:
        cache = tempfile.mkdtemp(prefix="confgf_aot_")
        os.environ["TRITON_CACHE_DIR"] = cache  # read by Triton when it compiles, not at import
    try:
        return _run(args)
    finally:
        if not args.use_cache:
            shutil.rmtree(cache, ignore_errors=True)


def _run(args: argparse.Namespace) -> int:
    try:
        kernels = discover()
    except ImportError as exc:
        print(f"cannot import the Triton kernels: {exc}", file=sys.stderr)
        return 1
    rows, failures = [], 0
    print(f"{'kernel':<24} {'dtype':<5} {'target':<8} {'regs':>5} {'spill st/ld':>12} {'shared B':>9} "
          f"{'warps':>5} {'s':>6}")
    for dtype in args.dtype or DTYPES:
        specs = _signatures(dtype)
        for name in sorted(kernels):
            for arch in args.arch:
                row = {"kernel": name, "op": kernels[name].__module__.rpartition(".")[2], "dtype": dtype,
                       "arch": arch}
                if name not in specs:
                    row["error"] = "no AOT signature in kernels/aot.py"
                else:
                    signature, constexprs = specs[name]
                    try:
                        row.update(compile_one(kernels[name], signature, constexprs, arch))
                    except Exception as exc:  # report every kernel, then fail
                        row["error"] = f"{type(exc).__name__}: {str(exc).strip()[-400:]}"
                rows.append(row)
                if "error" in row:
                    failures += 1
                    print(f"{name:<24} {dtype:<5} sm_{arch:<5} FAILED: {row['error']}")
                else:
                    print(f"{name:<24} {dtype:<5} {row['target']:<8} {row['registers']:>5} "
                          f"{row['spill_stores']:>5}/{row['spill_loads']:<6} {row['shared_bytes']:>9} "
                          f"{row['num_warps']:>5} {row['compile_s']:>6.2f}")
    missing = sorted(set(_signatures(DTYPES[0])) - set(kernels))
    for name in missing:  # a signature for a kernel that no longer exists: the table is stale
        failures += 1
        print(f"{name:<24} FAILED: listed in kernels/aot.py but not found in {MODULES}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"archs": args.arch, "kernels": rows, "failures": failures}, fh, indent=1)
    print(f"{len(rows) - sum('error' in r for r in rows)} compiled, {failures} failed")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
