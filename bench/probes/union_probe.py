"""Probe: split each molecule's 2K conformers between two samplers and evaluate the union.

The ETKDG warm start keeps ETKDG's rotamers (bench/far_conformers.py: it cannot cross torsion
barriers from sigma 0.5 A), while the projected sampler from noise (`quick`) finds its own. If the
two miss different reference conformers, K of each may cover more references (COV-R) than 2K of
either, at some cost in precision. This measures that on the QM9 dev benchmark:

    OMP_NUM_THREADS=1 python bench/probes/union_probe.py --json bench/results/union_warm_quick_half.json \
        --paired bench/results/dev_full_project_warm_step220000.json --etkdg bench/results/dev_full_etkdg.json

--share F gives the warm start round(F * 2K) conformers (at least 1) and the other sampler the rest.
Paired per-molecule differences are printed against --paired (ours rows) and --etkdg (etkdg rows).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from rdkit import Chem, RDLogger

from confgf_fast.model.checkpoint import load_model
from confgf_fast.config import Runtime, resolve_schedule
from confgf_fast.evaluation.evaluate import evaluate, format_table
from confgf_fast.pipeline.generate import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: common.py
from common import DEV_SDF, add_result_args, apply_sets, benchmark_inputs, load_reference, paired, provenance, write_json

METRICS = ("cov_r", "mat_r", "cov_p", "mat_p")


def merge(a: Chem.Mol | None, b: Chem.Mol | None) -> Chem.Mol | None:
    """One Mol holding the conformers of a and then those of b (same molecule, same atom order)."""
    if a is None or b is None:
        return a if b is None else b
    out = Chem.Mol(a)
    for conf in b.GetConformers():
        out.AddConformer(Chem.Conformer(conf), assignId=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=str(DEV_SDF))
    ap.add_argument("--weights", default=None)
    ap.add_argument("--other", default="quick", help="schedule of the second sampler (from noise)")
    ap.add_argument("--share", type=float, default=0.5, help="share of the 2K conformers from the warm start")
    ap.add_argument("--set-other", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--sample", type=int, default=None)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--paired", default=None)
    ap.add_argument("--etkdg", default=None)
    ap.add_argument("--json", default=None)
    add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    prov = provenance("cpu", args.allow_dirty, args.json)
    torch.set_num_threads(1)

    refs = load_reference(Path(args.ref))
    if args.sample is not None and args.sample < len(refs):
        pick = sorted(random.Random(args.sample_seed).sample(range(len(refs)), args.sample))
        refs = [refs[i] for i in pick]
    total = [2 * m.GetNumConformers() for _, m in refs]
    n_warm = [min(n, max(1, round(args.share * n))) for n in total]
    n_other = [n - w for n, w in zip(total, n_warm)]
    loaded = load_model(args.weights)
    warm, runtime = resolve_schedule("warm"), Runtime(compile="off")
    other = resolve_schedule(args.other, sampler="project" if args.other in ("quick", "warm") else "langevin")
    other, other_runtime = apply_sets(other, runtime, args.set_other)
    inputs, ref_groups = benchmark_inputs(refs)
    t0 = time.perf_counter()
    a = generate(inputs, n_warm, model=loaded, schedule=warm, runtime=runtime, seed=args.seed, progress=False)
    t_warm = time.perf_counter() - t0
    # any zero count (share 1) leaves that molecule to the warm start alone
    keep = [k for k, n in enumerate(n_other) if n > 0]
    b_mols: list[Chem.Mol | None] = [None] * len(refs)
    t0 = time.perf_counter()
    if keep:
        b = generate([inputs[k] for k in keep], [n_other[k] for k in keep], model=loaded, schedule=other,
                     runtime=other_runtime, seed=args.seed + 1, progress=False)
        for k, m in zip(keep, b.mols):
            b_mols[k] = m
    t_other = time.perf_counter() - t0
    union = [merge(x, y) for x, y in zip(a.mols, b_mols)]
    res = evaluate({s: [g] if g is not None else [] for (s, _), g in zip(refs, union)}, ref_groups,
                   threshold=args.threshold, progress=False)
    summ = res.summary()
    print(f"union: warm start {sum(n_warm)} + {other.describe()} {sum(n_other)} conformers")
    print(format_table(summ))
    out = {"benchmark": Path(args.ref).name, "n_mols": len(refs), "sample": args.sample, "threshold": args.threshold,
           "weights": args.weights or "shipped", "weights_step": loaded.meta.trained_steps, "share_warm": args.share,
           "warm": warm.describe(), "other": other.describe(),
           "conformers": {"warm": sum(n_warm), "other": sum(n_other)},
           "seconds": {"warm": t_warm, "other": t_other}, "ours": summ,
           "per_molecule": {"ours": res.row_dicts()}, "paired": {}, "provenance": prov}
    for path, side in ((args.paired, "ours"), (args.etkdg, "etkdg")):
        if path:
            base = json.loads(Path(path).read_text())["per_molecule"][side]
            diffs = {k: dict(zip(("mean", "se", "n"), paired(out["per_molecule"]["ours"], base, k))) for k in METRICS}
            out["paired"][f"union - {Path(path).stem} ({side})"] = diffs
            print(f"union - {Path(path).stem} ({side}): " + ", ".join(
                f"d{k} {v['mean']:+.3f} +- {v['se']:.3f}" for k, v in diffs.items()))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
