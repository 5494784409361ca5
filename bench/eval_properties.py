"""Ensemble property prediction on the v2 QM9 dev set (issue 28 item 1; the ConfGF paper's table).

For a seeded random subset of molecules (default 30, sample seed 0: the molecules of
`eval_relax.py --sample 30`) of bench/refs_v2/qm9_dev_v2.sdf.gz, each method makes 2K conformers
(K: the molecule's budget_k, as every dev benchmark here) and every generated and reference
conformer gets a GFN2-xTB single point (confgf_fast.evaluation.properties). Per method: the MAE (eV) against
the reference ensemble of mean energy, lowest energy, mean / lowest / highest HOMO-LUMO gap, the
median absolute errors, the outlier counts (conformers whose removal moves E_min or the highest
gap by more than --margin eV) and paired per-molecule differences against the ETKDG baselines.

Methods, each without and with MMFF94 (relax.relax_conformers, 1000 iterations, no pruning):
  ours_warm   the default: ETKDG warm start, schedule `warm` (shipped weights)
  ours_noise  the from-noise mode: schedule `noise`
  etkdg       RDKit ETKDGv3, 2K conformers (common.etkdg)
  etkdg3      ETKDGv3 embedding 3 x 2K and keeping a diverse 2K (the warm start's own selection)

    OMP_NUM_THREADS=1 python bench/eval_properties.py --json bench/results/v2/properties_qm9_s30.json

One thread throughout (torch, RDKit, tblite). --max-confs caps the conformers per ensemble that get
a single point (a seeded random subset; the paper used 50).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from rdkit import Chem, RDLogger

from confgf_fast.chem.relax import RelaxOptions
from confgf_fast.config import resolve_schedule
from confgf_fast.evaluation.properties import (
    DEFAULT_MARGIN,
    STAT_KEYS,
    compare_properties,
    compositions,
    ensemble_properties,
    format_properties_table,
)
from confgf_fast.model.checkpoint import load_models
from confgf_fast.pipeline.generate import generate
from confgf_fast.sampling.sampler import num_evaluations

import common

V2_REF = common.REPO / "bench" / "refs_v2" / "qm9_dev_v2.sdf.gz"
OURS = ("ours_warm", "ours_noise")
BASELINES = ("etkdg", "etkdg3")


def flat_rows(per_molecule: list[dict]) -> list[dict]:
    """Per-molecule rows with the absolute errors as top-level keys, for common.paired."""
    return [{"key": r["key"], "status": r["status"], **r.get("abs_err", {})} for r in per_molecule]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=str(V2_REF))
    ap.add_argument("--sample", type=int, default=30, help="seeded random subset of this many molecules")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--max-mols", type=int, default=None, help="only the first N of the sample (cost estimates)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="outlier margin, eV")
    ap.add_argument("--max-confs", type=int, default=None,
                    help="at most this many conformers per ensemble get a single point (default: all)")
    ap.add_argument("--max-iters", type=int, default=1000, help="MMFF iterations")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(1)
    prov = common.provenance("cpu", args.allow_dirty, args.json)  # before the run: the commit that ran
    t_start = time.perf_counter()

    refs = common.sample_subset(common.load_reference(Path(args.ref)), args.sample, args.sample_seed)
    if args.max_mols is not None:
        refs = refs[:args.max_mols]
    counts = common.budget_counts(refs)
    inputs, ref_groups = common.benchmark_inputs(refs)
    keys = [s for s, _ in refs]
    models = load_models(None, "cpu")
    seconds: dict[str, float] = {}
    sets: dict[str, list[Chem.Mol | None]] = {}
    samplers = {"ours_warm": resolve_schedule("warm"), "ours_noise": resolve_schedule("noise")}
    for name, sampler in samplers.items():
        t0 = time.perf_counter()
        res = generate(inputs, counts, model=models, schedule=sampler, seed=args.seed, relax="none", threads=1,
                       progress=not args.quiet)
        seconds[f"{name}_sampling"] = time.perf_counter() - t0
        sets[name] = res.mols
        print(f"{name} ({sampler.describe()}): {seconds[name + '_sampling']:.1f} s", flush=True)
    for name, oversample in (("etkdg", 1), ("etkdg3", 3)):
        t0 = time.perf_counter()
        sets[name] = [common.etkdg(x, n, args.seed + k, oversample=oversample)
                      for k, (x, n) in enumerate(zip(inputs, counts))]
        seconds[f"{name}_embedding"] = time.perf_counter() - t0
    mmff = RelaxOptions("mmff", max_iters=args.max_iters, threads=1)
    for name in (*OURS, *BASELINES):
        relaxed, t_relax, _ = common.relax_all(sets[name], mmff)
        sets[f"{name}_mmff"] = relaxed
        seconds[f"{name}_mmff_relax"] = t_relax

    t0 = time.perf_counter()
    ref_props = ensemble_properties(ref_groups, max_confs=args.max_confs, seed=args.seed, progress=not args.quiet,
                                    desc="xTB reference")
    seconds["xtb_reference"] = time.perf_counter() - t0
    expect = compositions(ref_groups)
    out = {
        "benchmark": Path(args.ref).name, "n_mols": len(refs), "sample": args.sample,
        "sample_seed": args.sample_seed, "max_mols": args.max_mols, "seed": args.seed,
        "margin_ev": args.margin, "max_confs": args.max_confs, "units": "eV",
        "level": "GFN2-xTB single points (tblite), one thread",
        "conformers_per_molecule": "2K (budget_k), every one evaluated" if args.max_confs is None
        else f"2K, at most {args.max_confs} per ensemble evaluated",
        "machine": f"{platform.processor() or platform.machine()}, 1 thread",
        "weights": "shipped", "weights_step": models[0].meta.trained_steps,
        "samplers": {k: {"tag": s.describe(), "network_evaluations": num_evaluations(models[0].noise, s)}
                     for k, s in samplers.items()},
        "mmff_max_iters": args.max_iters, "provenance": prov,
        "methods": {}, "paired": {}, "per_molecule": {}, "seconds": seconds,
    }
    order = [n for base in (*OURS, *BASELINES) for n in (base, f"{base}_mmff")]
    for name in order:
        groups = {k: [m] for k, m in zip(keys, sets[name]) if m is not None and m.GetNumConformers()}
        t0 = time.perf_counter()
        gen_props = ensemble_properties(groups, max_confs=args.max_confs, seed=args.seed + 1,
                                        progress=not args.quiet, desc=f"xTB {name}", expect=expect)
        seconds[f"xtb_{name}"] = time.perf_counter() - t0
        s = compare_properties(gen_props, ref_props, args.margin, args.max_confs).summary(per_molecule=True)
        out["per_molecule"][name] = s.pop("per_molecule")
        out["methods"][name] = s
        print(f"== {name}", flush=True)
        print(format_properties_table(s), flush=True)
    for relax in ("", "_mmff"):
        for a in OURS:
            for b in BASELINES:
                label = f"{a}{relax} - {b}{relax}"
                ra, rb = flat_rows(out["per_molecule"][a + relax]), flat_rows(out["per_molecule"][b + relax])
                out["paired"][label] = {}
                for k in STAT_KEYS:
                    mean, se, n = common.paired(ra, rb, k)
                    out["paired"][label][k] = {"mean": mean, "se": se, "n": n}
                print(f"{label} (abs. error, eV): " + ", ".join(
                    f"{k} {v['mean']:+.3f} +- {v['se']:.3f}" for k, v in out["paired"][label].items()), flush=True)
    seconds["total"] = time.perf_counter() - t_start
    print(f"total {seconds['total']:.0f} s", flush=True)
    if args.json:
        common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
