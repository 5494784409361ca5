"""Issue 29's thread table: the default thread budget against --threads 1 and --threads 2, back to
back on the same inputs, through the CLI a user runs.

Each workload runs once per setting per pass, the settings' order rotated between passes so no
setting always runs first (warm page cache, CPU clocks). Conformers/s and seconds come from the
run's own summary line; the `threads:` line records what the default resolved to and why.

    python bench/threads_table.py --out bench/results/threads_idle.json            # idle machine
    python bench/threads_table.py --busy 1 --out bench/results/threads_busy1.json  # + 1 busy process

`--busy N` starts N spinning processes (pure Python loops, niced 0) for the whole measurement:
"one other busy process" of the issue, reproducible. Tables: bench/doc_tables.py `threads`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

SETTINGS = {"default": [], "threads 1": ["--threads", "1"], "threads 2": ["--threads", "2"]}
SUMMARY = re.compile(r"conformers written to .* in ([0-9.]+) s \(([0-9.]+) conformers/s")
THREADS = re.compile(r"threads: (.*)$", re.M)


def _first_smiles(path: Path, n: int) -> list[str]:
    rows = [ln.split(",")[0].strip() for ln in path.read_text().splitlines()[1:] if ln.strip()]
    return rows[:n]


def workloads(tmp: Path, qm9: int, drugs: int, only: str | None = None) -> dict[str, list[str]]:
    """name -> CLI arguments after `generate` (input, counts, options); with `only`, just the workloads
    whose name starts with it (so the quick start needs nothing from ../shared)."""
    def smiles_file(name: str, csv: str, n: int) -> str:
        path = tmp / name
        path.write_text("\n".join(_first_smiles(common.SHARED / "data" / csv, n)) + "\n")
        return str(path)

    def furan() -> str:
        path = tmp / "furan.smi"
        path.write_text("CC(C)C1=CC=CO1\n" * 50)
        return str(path)

    specs = {
        "quick start `examples/input.sdf -n 10 --sampler project` (3 molecules)":
            lambda: [str(common.REPO / "examples" / "input.sdf"), "-n", "10", "--sampler", "project"],
        "furan benchmark, 50 x 20 `CC(C)C1=CC=CO1`": lambda: [furan(), "-n", "20"],
        f"first {qm9} QM9 held-out SMILES x 10": lambda: [smiles_file("qm9.smi", "qm9_heldout_smiles.csv", qm9),
                                                          "-n", "10"],
        f"first {drugs} drug test SMILES x 10 (MMFF relax by default)":
            lambda: [smiles_file("drugs.smi", "drugs_test_smiles.csv", drugs), "-n", "10"],
    }
    return {name: make() for name, make in specs.items() if not only or name.startswith(only)}


def run_one(args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "confgf_fast.cli", "generate", *args, "-o", str(out), "--force"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    text = p.stdout + p.stderr
    m, t = SUMMARY.search(text), THREADS.search(text)
    if m is None:
        raise RuntimeError(f"no summary line in the output of {' '.join(cmd)}")
    return {"seconds": float(m.group(1)), "conformers_per_s": float(m.group(2)), "wall_s": round(wall, 2),
            "threads_line": t.group(1).strip() if t else None}


def _spin() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="spinning processes kept running throughout")
    ap.add_argument("--busy-note", default=None,
                    help="what else ran on the machine (e.g. a background job started by hand), kept in the file")
    ap.add_argument("--only", default=None, help="only the workloads whose name starts with this (e.g. 'quick start')")
    ap.add_argument("--qm9", type=int, default=200, help="QM9 held-out molecules (issue: 200)")
    ap.add_argument("--drugs", type=int, default=40, help="drug test molecules (issue: 200)")
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated subset of the settings (default: all of {', '.join(SETTINGS)})")
    common.add_result_args(ap)
    a = ap.parse_args(argv)
    prov = common.provenance("cpu", a.allow_dirty, a.out)  # before the run: the commit that ran
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(a.busy)]
    for s in spinners:
        s.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_p = Path(tmp)
            names = [n for n in SETTINGS if n in a.settings.split(",")]
            jobs = workloads(tmp_p, a.qm9, a.drugs, a.only)
            for pass_i in range(a.passes):
                order = names[pass_i % len(names):] + names[:pass_i % len(names)]
                for wl, args in jobs.items():
                    for setting in order:
                        r = run_one(args + SETTINGS[setting], tmp_p / "out.sdf")
                        r.update(workload=wl, setting=setting, pass_=pass_i + 1, order=order)
                        rows.append(r)
                        print(f"pass {pass_i + 1} | {wl} | {setting}: {r['conformers_per_s']} conf/s "
                              f"({r['seconds']} s) [{r['threads_line']}]", flush=True)
    finally:
        for s in spinners:
            s.terminate()
    common.write_json(a.out, {"provenance": prov, "busy_processes": a.busy, "busy_note": a.busy_note, "rows": rows})


if __name__ == "__main__":
    main()
