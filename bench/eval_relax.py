"""Relaxed conformers on the development benchmark: ours (+ MMFF) vs ETKDGv3 (+ MMFF), same counts.

For each molecule with K GFN2-xTB reference conformers (../shared/benchmarks/qm9_xtb_dev.sdf),
ours (shipped weights, `--schedule` preset) and ETKDGv3 each make 2K conformers; then every
conformer of both is relaxed with the same relax.relax_conformers call (MMFF94, the same
iteration limit, no pruning, so the counts stay 2K). COV/MAT (R and P) at 0.5 A, heavy-atom
GetBestRMS, mean over molecules, and paired per-molecule differences with standard errors:
ours+MMFF vs ETKDG+MMFF and ours vs ETKDG. Also: quality flags (broken) and stereo_ok before and
after relaxing, and conformers per second with the relax included.

    nice -n 10 python bench/eval_relax.py --schedule fast --sample 30 --threads 1 \\
        --json bench/results/relax_dev_s30_fast_mmff.json

--relax mmff xtb relaxes the same sampled conformers both ways (xtb: GFN2-xTB with tblite,
~1-3 s per QM9 conformer per core); the paired differences are printed for each.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from rdkit import Chem, RDLogger

from confgf_fast.chem.relax import RelaxOptions, check_conformers
from confgf_fast.config import SCHEDULES, Runtime, resolve_schedule
from confgf_fast.evaluation.evaluate import evaluate, format_table
from confgf_fast.model.checkpoint import load_model
from confgf_fast.pipeline.generate import generate
from confgf_fast.sampling.sampler import num_evaluations

import common

METRICS = ("cov_r", "mat_r", "cov_p", "mat_p")


def flags_summary(mols: list[Chem.Mol]) -> dict:
    """Fraction of conformers flagged broken (quality.py) and with stereo_ok, from their coordinates."""
    n = broken = stereo = 0
    for m in mols:
        if m is None or m.GetNumConformers() == 0:
            continue
        ok, defects = check_conformers(m)
        n += len(ok)
        stereo += sum(ok)
        broken += sum(bool(d) for d in defects)
    return {"conformers": n, "broken_fraction": broken / max(1, n), "stereo_ok_fraction": stereo / max(1, n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=str(common.DEV_SDF))
    ap.add_argument("--weights", default=None)
    ap.add_argument("--schedule", default="fast", choices=list(SCHEDULES),
                    help="a generate schedule preset (warm: the ETKDG warm start, generate's default)")
    ap.add_argument("--relax", nargs="+", default=["mmff"], choices=["mmff", "mmff94s", "xtb"])
    ap.add_argument("--max-iters", type=int, default=1000, help="MMFF iterations, both methods")
    ap.add_argument("--sample", type=int, default=30, help="seeded random subset of this many molecules")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--etkdg-oversample", type=int, default=1,
                    help="the ETKDG baseline embeds N x as many and keeps a diverse subset, as our warm start does")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes for the RMSD evaluation (not timed; with six methods most of a whole-set run)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="set a schedule (or runtime) field of ours, e.g. --set oversample=2")
    ap.add_argument("--json", default=None)
    common.add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(args.threads)
    prov = common.provenance("cpu", args.allow_dirty, args.json)  # before the run: the commit that ran

    refs = common.sample_subset(common.load_reference(Path(args.ref)), args.sample, args.sample_seed)
    counts = common.budget_counts(refs)
    inputs, ref_groups = common.benchmark_inputs(refs)
    loaded = load_model(args.weights, "cpu")
    try:
        sampler, runtime = common.apply_sets(resolve_schedule(args.schedule), Runtime(), args.set)
    except ValueError as exc:
        ap.error(str(exc))
    opts = {m: RelaxOptions(m, max_iters=args.max_iters, threads=args.threads) for m in args.relax}

    def ev(mols: list[Chem.Mol]):
        # a molecule without output covers nothing
        return evaluate({s: [g] if g is not None else [] for (s, _), g in zip(refs, mols)}, ref_groups,
                        threshold=args.threshold, progress=False, workers=args.workers)

    t0 = time.perf_counter()
    res = generate(inputs, counts, model=loaded, schedule=sampler, runtime=runtime, seed=args.seed, progress=True)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = [common.etkdg(x, n, args.seed + k, oversample=args.etkdg_oversample)
           for k, (x, n) in enumerate(zip(inputs, counts))]
    t_rd = time.perf_counter() - t0
    runs = {"ours": (res.mols, t_ours, None), "etkdg": (emb, t_rd, None)}
    seconds = {"ours_sampling": t_ours, "etkdg_embedding": t_rd}
    for m, o in opts.items():
        ours_relaxed, t_ours_relax, ours_counts = common.relax_all(res.mols, o)
        rd_relaxed, t_rd_relax, rd_counts = common.relax_all(emb, o)
        runs[f"ours_{m}"] = (ours_relaxed, t_ours + t_ours_relax, ours_counts)
        runs[f"etkdg_{m}"] = (rd_relaxed, t_rd + t_rd_relax, rd_counts)
        seconds.update({f"ours_relax_{m}": t_ours_relax, f"etkdg_relax_{m}": t_rd_relax})
    out = {
        "benchmark": Path(args.ref).name, "n_mols": len(refs), "sample": args.sample, "sample_seed": args.sample_seed,
        "threshold": args.threshold, "weights": args.weights or "shipped", "weights_step": loaded.meta.trained_steps,
        "schedule": args.schedule, "network_evaluations": num_evaluations(loaded.noise, sampler),
        "relax": {"methods": args.relax, "max_iters": args.max_iters}, "seconds": seconds,
        "etkdg_oversample": args.etkdg_oversample, "sampler_tag": sampler.describe(),
        "provenance": prov, "methods": {}, "paired": {}, "per_molecule": {},
    }
    rows = {}
    for name, (mols, seconds, extra) in runs.items():
        e = ev(mols)
        n_confs = sum(m.GetNumConformers() for m in mols if m is not None)
        out["methods"][name] = {**e.summary(), **flags_summary(mols), "seconds": seconds,
                                "conformers_per_s": n_confs / seconds if seconds else math.nan,
                                **({"relax_counts": extra} if extra else {})}
        rows[name] = out["per_molecule"][name] = e.row_dicts()
        # flushed: under nohup stdout is a file, and a 90-minute run should show how far it is
        print(f"{name}: {n_confs} conformers in {seconds:.1f} s", flush=True)
        print(format_table(e.summary()), flush=True)
    pairs = [("ours", "etkdg")] + [p for m in args.relax for p in ((f"ours_{m}", f"etkdg_{m}"), (f"ours_{m}", "ours"))]
    for a, b in pairs:
        out["paired"][f"{a} - {b}"] = {}
        for key in METRICS:
            mean, se, n = common.paired(rows[a], rows[b], key)
            out["paired"][f"{a} - {b}"][key] = {"mean": mean, "se": se, "n": n}
            print(f"{a} - {b}: {key} {mean:+.3f} +- {se:.3f} (n={n})")
    if args.json:
        common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
