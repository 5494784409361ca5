"""Quality on the development benchmark: ours vs RDKit ETKDGv3, same conformer budget.

For each molecule with K reference conformers (GFN2-xTB ensembles in
../shared/benchmarks/qm9_xtb_dev.sdf), both methods generate 2K conformers; COV/MAT (R and P) are
computed with heavy-atom GetBestRMS at threshold 0.5 A, plus the stereo-match rate.

    python bench/eval_dev.py --schedule paper --sample 20 --json bench/results/dev_paper.json

Molecules are taken in file order (--offset/--max-mols pick a slice, --sample N a seeded random
subset), so runs with the same arguments compare the same molecules. The whole set is 190 molecules
and 4,200 generated conformers (21 M conformer-steps at the paper schedule).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from rdkit import RDLogger

from confgf_fast.config import SCHEDULES, Runtime, resolve_schedule
from confgf_fast.evaluation.evaluate import EvalResult, evaluate, format_table, stereo_match_rate
from confgf_fast.model.checkpoint import load_models
from confgf_fast.pipeline.generate import generate
from confgf_fast.sampling.sampler import num_evaluations

import common


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=str(common.DEV_SDF))
    ap.add_argument("--weights", action="append", default=None,
                    help="checkpoint; repeat for several, chosen per molecule as generate does (default: the shipped "
                         "set)")
    ap.add_argument("--schedule", default=None, choices=list(SCHEDULES),
                    help="a schedule preset (default: the sampler's default; paper for Langevin)")
    ap.add_argument("--levels", type=int, default=None)
    ap.add_argument("--steps-per-level", type=int, default=None)
    ap.add_argument("--eps", type=float, default=None)
    ap.add_argument("--bands", default=None, help="LangevinSchedule.bands spec, e.g. '2:6x20,0.1:21x36,0:6x20'")
    ap.add_argument("--sampler", default=None, choices=["langevin", "project", "dist"])
    ap.add_argument("--init", default=None, choices=["random", "etkdg"],
                    help="etkdg: the warm start from ETKDGv3 conformers (schedule warm by default)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="set any field of the schedule (config.resolve_schedule's overrides) or the runtime, "
                         "e.g. --set num_steps=30 --set noise_scale=0.4")
    ap.add_argument("--paired", default=None,
                    help="a result JSON on the same weights (e.g. the paper schedule on all 190 molecules) to "
                         "print paired per-molecule differences against")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "tf32"])
    ap.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--max-mols", type=int, default=None)
    ap.add_argument("--sample", type=int, default=None,
                    help="evaluate a seeded random subset of this many molecules (after offset/max-mols)")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--no-etkdg", action="store_true")
    ap.add_argument("--etkdg-oversample", type=int, default=1,
                    help="the ETKDG baseline embeds N x as many and keeps a diverse subset, as our warm start does")
    ap.add_argument("--no-ours", action="store_true", help="only the ETKDG baseline")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    common.add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    prov = common.provenance(args.device, args.allow_dirty, args.json)  # before the run: the commit that ran

    refs = common.load_reference(Path(args.ref))
    refs = refs[args.offset: None if args.max_mols is None else args.offset + args.max_mols]
    refs = common.sample_subset(refs, args.sample, args.sample_seed)
    counts = common.budget_counts(refs)
    models = load_models(args.weights, args.device)
    noise = models[0].noise
    given = {"levels": args.levels, "steps_per_level": args.steps_per_level, "eps": args.eps, "bands": args.bands}
    try:
        sampler = resolve_schedule(args.schedule, sampler=args.sampler, init=args.init,
                                   overrides={k: v for k, v in given.items() if v is not None})
        sampler, runtime = common.apply_sets(sampler, Runtime(precision=args.precision, compile=args.compile),
                                             args.set)
    except ValueError as exc:
        ap.error(str(exc))

    inputs, ref_groups = common.benchmark_inputs(refs)
    out = {
        "benchmark": Path(args.ref).name, "n_mols": len(refs), "offset": args.offset, "sample": args.sample,
        "sample_seed": args.sample_seed, "threshold": args.threshold,
        "machine": f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads, "
                   f"device {args.device}",
        **common.weights_record(args.weights, models, {0: len(refs)}, sampler, runtime),  # updated from the run below
        "network_evaluations": num_evaluations(noise, sampler), "per_molecule": {},
        "provenance": prov,
    }
    ours_eval = None
    if not args.no_ours:
        t0 = time.perf_counter()
        res = generate(inputs, counts, model=models, schedule=sampler, runtime=runtime, device=args.device,
                       seed=args.seed, progress=not args.quiet)
        t_ours = time.perf_counter() - t0
        out.update(common.weights_record(args.weights, models, res.stats.per_model, sampler, runtime))
        # a molecule without output (res.mols None) counts as covering nothing
        ours_eval = evaluate({s: [g] if g is not None else [] for (s, _), g in zip(refs, res.mols)}, ref_groups,
                             threshold=args.threshold, progress=False)
        ours = ours_eval.summary()
        flags = [f for fl in res.flags.values() for f in fl]
        made = [(m, s) for m, (s, _) in zip(res.mols, refs) if m is not None]
        out["ours"] = {**ours, "stereo_match": stereo_match_rate([m for m, _ in made], [s for _, s in made]),
                       "broken_fraction": sum(f["quality"] != "ok" for f in flags) / max(1, len(flags)),
                       "seconds": t_ours, "conformers": sum(counts)}
        out["per_molecule"]["ours"] = ours_eval.row_dicts()
        print(f"ours (ConfGF, {sampler.describe()}, {out['network_evaluations']} evaluations)")
        print(format_table(ours))
    if not args.no_etkdg:
        t0 = time.perf_counter()
        emb = [common.etkdg(x, n, args.seed + k, oversample=args.etkdg_oversample)
               for k, (x, n) in enumerate(zip(inputs, counts))]
        t_rd = time.perf_counter() - t0
        rd_eval = evaluate({s: [g] for (s, _), g in zip(refs, emb)}, ref_groups, threshold=args.threshold,
                           progress=False)
        rd = rd_eval.summary()
        out["etkdg"] = {**rd, "stereo_match": stereo_match_rate(emb, [s for s, _ in refs]), "seconds": t_rd,
                        "conformers": sum(counts), "oversample": args.etkdg_oversample}
        out["per_molecule"]["etkdg"] = rd_eval.row_dicts()
        print("RDKit ETKDGv3")
        print(format_table(rd))
        # ETKDG can fail to embed a molecule at all; compare on the molecules both methods have.
        both = {r.key for r in rd_eval.rows if r.status == "ok"}
        if ours_eval is not None and len(both) < len(refs):
            same = EvalResult([r for r in ours_eval.rows if r.key in both], ours_eval.threshold).summary()
            out["ours_on_etkdg_molecules"] = same
            print(f"ours on the {len(both)} molecules ETKDG embedded")
            print(format_table(same))
    if args.paired and "ours" in out:
        base = json.loads(Path(args.paired).read_text())["per_molecule"]
        for method in ("ours", "etkdg"):
            if method in base:
                rows = out["per_molecule"]["ours"]
                diffs = [common.paired(rows, base[method], k) for k in ("cov_r", "mat_r", "cov_p", "mat_p")]
                print(f"paired vs {Path(args.paired).stem} ({method}), n={diffs[0][2]}: " + ", ".join(
                    f"d{k} {m:+.3f} +- {e:.3f}" for k, (m, e, _) in zip(("COV-R", "MAT-R", "COV-P", "MAT-P"), diffs)))
    if args.json:
        common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
