"""Drug-size quality: ours (generate's default warm start) vs RDKit ETKDGv3 vs ETKDGv3 + MMFF94.

Two benchmarks (--bench drugs|geom|both):
- drugs: ../shared/benchmarks/drugs_xtb_dev.sdf, 40 GEOM-Drugs test molecules with GFN2-xTB
  reference ensembles (923 conformers; built from ETKDG+MMFF starts, so ETKDG+MMFF is favoured);
- geom: ../shared/fixtures/geom_drugs_10.sdf, 10 real GEOM-Drugs molecules (503 CREST conformers).
For a molecule with K references each method makes 2K conformers of the same input Mol:
- ours: confgf_fast.pipeline.generate.generate with the default sampler (schedule `warm`: ETKDGv3 starts
  noised and refined by the projected sampler), `--set FIELD=VALUE` overrides as in eval_dev.py,
  unrelaxed (relax "none");
- etkdg: RDKit ETKDGv3 (chem.etkdg_params, seed + molecule index, common.etkdg);
- etkdg_mmff: those ETKDG conformers, each MMFF94-optimised (relax.relax_conformers via
  common.relax_all, no pruning, so the count stays 2K); its time includes the embedding;
- ours_mmff: our conformers relaxed by the same call (generate --relax mmff); time includes ours;
  what generate writes by default (relax "auto") where the weights' relax_default is mmff, as the
  shipped drug-like weights' is (weights_models records each model's);
- etkdg_diverse: ETKDGv3 with the warm start's oversampling and diversity selection
  (--etkdg-oversample, default 3 as the warm start's), the baseline with the same trick.
One heavy-atom GetBestRMS matrix per molecule and method (evaluate.evaluate) gives COV-R / MAT-R /
COV-P / MAT-P at both thresholds, 0.75 A (torsional diffusion) and 1.25 A (ConfGF), via
EvalResult.at_threshold; mean and median over molecules. Also: the stereo-kept rate
(evaluate.stereo_match_rate against the `smiles` property, or the input Mol's own stereo where
that property does not parse), molecules without output (e.g. elements the weights were not
trained on: refused, counted here, not a crash), conformers per second (generation wall time
only, thread counts recorded) and paired per-molecule differences ours - etkdg,
ours - etkdg_mmff, ours_mmff - etkdg_mmff and ours_mmff - ours (common.paired: mean and
standard error over the molecules both have).

    OMP_NUM_THREADS=1 python bench/eval_drugs.py --weights data_cache/ft/drugs_ft.pt --threads 1 \\
        --json bench/results/drugs_eval.json
    python bench/eval_drugs.py --weights W.pt --max-mols 2 --quiet    # a smoke run

The `drugs` table of bench/doc_tables.py renders the JSON.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
from rdkit import Chem, RDLogger, rdBase

from confgf_fast.chem.molecule import canonical_smiles, set_conformers
from confgf_fast.chem.relax import DEFAULT_MAX_ITERS, RelaxOptions
from confgf_fast.config import SCHEDULES, Runtime, Schedule, resolve_schedule
from confgf_fast.evaluation.evaluate import EvalResult, evaluate, stereo_match_rate
from confgf_fast.model.checkpoint import load_models
from confgf_fast.pipeline.generate import generate
from confgf_fast.sampling.sampler import num_evaluations

import common

BENCHMARKS = {"drugs": common.SHARED / "benchmarks" / "drugs_xtb_dev.sdf",
              "geom": common.SHARED / "fixtures" / "geom_drugs_10.sdf"}
THRESHOLDS = (0.75, 1.25)  # angstrom: torsional diffusion's and ConfGF's drug thresholds
METRICS = ("cov_r", "mat_r", "cov_p", "mat_p")
PAIRS = (("ours", "etkdg"), ("ours", "etkdg_diverse"), ("ours", "etkdg_mmff"), ("ours_mmff", "etkdg_mmff"),
         ("ours_mmff", "ours"))


def threshold_key(t: float) -> str:
    """The JSON key of a threshold: '0.75', '1.25'."""
    return f"{t:g}"


def select(refs: list, max_mols: int | None, sample: int | None, sample_seed: int) -> list:
    """The first max_mols molecules (all if None), then a seeded random subset of `sample` of them
    in file order (eval_dev.py's --max-mols / --sample)."""
    return common.sample_subset(refs[:max_mols], sample, sample_seed)


def stereo_target(smiles: str, mol: Chem.Mol) -> tuple[str, bool]:
    """(SMILES whose stereo the conformers must keep, whether it is the `smiles` property).
    The property when it parses; else (GEOM writes '_' for '/') the input Mol's canonical
    isomeric SMILES, i.e. the stereo RDKit perceived from the first reference conformer."""
    with rdBase.BlockLogs():
        ok = Chem.MolFromSmiles(smiles) is not None
    return (smiles, True) if ok else (canonical_smiles(mol, stereo=True), False)


def on_input_graph(mol: Chem.Mol, inp: Chem.Mol) -> Chem.Mol:
    """mol's conformers on the input Mol's graph (same atoms in the same order), else mol itself.
    The stereo check reads SMILES from each conformer, and relax.py's MMFF leaves MMFF's
    aromaticity flags on the Mol it returns (e.g. a pyrazolone ring turns non-aromatic), which
    would count as a stereo change; judged on the input's graph only the 3D geometry decides."""
    if [a.GetAtomicNum() for a in mol.GetAtoms()] != [a.GetAtomicNum() for a in inp.GetAtoms()]:
        return mol
    return set_conformers(inp, [c.GetPositions() for c in mol.GetConformers()])


def _n_confs(mols: list[Chem.Mol | None]) -> int:
    return sum(m.GetNumConformers() for m in mols if m is not None)


def score(mols: list[Chem.Mol | None], refs: list[tuple[str, Chem.Mol]], ref_groups: dict, inputs: list[Chem.Mol],
          targets: list[str], seconds: float, workers: int, progress: bool) -> tuple[dict, dict, float]:
    """One method's figures on one benchmark -> (summary, {threshold key: per-molecule rows},
    evaluation seconds).

    summary: by_threshold {key: EvalResult.summary()} from one RMSD matrix per molecule (evaluate
    at THRESHOLDS[0], EvalResult.at_threshold for the others); stereo_match (fraction of all
    conformers, stereo_match_rate on the input's graph: on_input_graph); conformers made,
    generation `seconds` and conformers_per_s = conformers / seconds; n_without_output (molecules
    with no valid conformer: no output, or every conformer with other bonding)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # molecules without output are counted and reported, not warned about
        warnings.filterwarnings("ignore", message=".*no \\(valid\\) generated conformers", category=UserWarning)
        res = evaluate({s: [g] if g is not None and g.GetNumConformers() else [] for (s, _), g in zip(refs, mols)},
                       ref_groups, threshold=THRESHOLDS[0], workers=workers, progress=progress)
    by_t: dict[str, EvalResult] = {threshold_key(t): res.at_threshold(t) for t in THRESHOLDS}
    t_eval = time.perf_counter() - t0
    made = [(on_input_graph(m, x), t) for m, x, t in zip(mols, inputs, targets)
            if m is not None and m.GetNumConformers()]
    n = _n_confs(mols)
    summary = {
        "by_threshold": {k: r.summary() for k, r in by_t.items()},
        "stereo_match": stereo_match_rate([m for m, _ in made], [t for _, t in made]) if made else math.nan,
        "conformers": n, "seconds": seconds, "conformers_per_s": n / seconds if seconds > 0 else math.nan,
        "n_without_output": res.summary()["n_missing"],
        "eval_seconds": t_eval,
    }
    return summary, {k: r.row_dicts() for k, r in by_t.items()}, t_eval


def run_benchmark(path: Path, args: argparse.Namespace, models: list, sampler: Schedule, runtime: Runtime,
                  per_model: Counter) -> dict:
    """Every selected method on one benchmark file -> its JSON block (see the module docstring)."""
    refs = select(common.load_reference(path), args.max_mols, args.sample, args.sample_seed)
    counts = common.budget_counts(refs)  # 2K; on a v2 union K stays the v1 count
    inputs, ref_groups = common.benchmark_inputs(refs)
    if len(ref_groups) != len(refs):
        raise SystemExit(f"{path}: two mol_ids share a `smiles` property; molecules must be told apart by it")
    targets, from_prop = zip(*(stereo_target(s, x) for (s, _), x in zip(refs, inputs)))
    progress = not args.quiet
    out: dict = {"file": path.name, "n_mols": len(refs), "mol_ids": [m.GetProp("mol_id") for _, m in refs],
                 "n_ref_confs": sum(c // 2 for c in counts), "n_gen_confs_per_method": sum(counts),
                 "stereo_targets_from_structure": sum(not f for f in from_prop),
                 "seconds": {}, "methods": {}, "paired": {}, "per_molecule": {}}
    generated: dict[str, tuple[list, float]] = {}
    if not args.no_ours:
        t0 = time.perf_counter()
        # Unrelaxed: ours_mmff below relaxes these with the same call as ETKDG's (where the weights'
        # relax_default is mmff, ours_mmff is what generate's default, relax "auto", writes).
        res = generate(inputs, counts, model=models, schedule=sampler, runtime=runtime, device=args.device,
                       seed=args.seed, progress=progress, relax="none")
        per_model.update(res.stats.per_model)
        out["molecules_per_weights"] = {models[i].meta.weights_name: n for i, n in sorted(res.stats.per_model.items())}
        generated["ours"] = (res.mols, time.perf_counter() - t0)
        out["seconds"]["ours_generate"] = generated["ours"][1]
        flags = [f for fl in res.flags.values() for f in fl]
        out["ours_without_output"] = [
            {"mol_id": m.GetProp("mol_id"), "smiles": s, "reason": res.errors.get(k, "no conformers")}
            for k, ((s, m), g) in enumerate(zip(refs, res.mols)) if g is None or g.GetNumConformers() == 0]
        out["ours_broken_fraction"] = sum(f["quality"] != "ok" for f in flags) / max(1, len(flags))
    if not args.no_ours and not args.no_mmff:
        # generate --relax mmff: the same relax call on our conformers (issue 15's comparison)
        relaxed, t_relax, relax_counts = common.relax_all(generated["ours"][0], RelaxOptions(
            "mmff", max_iters=args.max_iters, threads=args.threads))
        generated["ours_mmff"] = (relaxed, generated["ours"][1] + t_relax)
        out["seconds"]["ours_mmff_relax"] = t_relax
        out["ours_mmff_counts"] = relax_counts
    if not args.no_etkdg or not args.no_mmff:
        t0 = time.perf_counter()
        emb = [common.etkdg(x, n, args.seed + k, threads=args.threads) for k, (x, n) in enumerate(zip(inputs, counts))]
        t_emb = time.perf_counter() - t0
        out["seconds"]["etkdg_embed"] = t_emb
        if not args.no_etkdg:
            generated["etkdg"] = (emb, t_emb)
            if args.etkdg_oversample > 1:
                t0 = time.perf_counter()
                div = [common.etkdg(x, n, args.seed + k, threads=args.threads, oversample=args.etkdg_oversample)
                       for k, (x, n) in enumerate(zip(inputs, counts))]
                generated["etkdg_diverse"] = (div, time.perf_counter() - t0)
                out["seconds"]["etkdg_diverse_embed"] = generated["etkdg_diverse"][1]
        if not args.no_mmff:
            # relax_conformers relaxes a copy: the plain ETKDG conformers above stay as embedded.
            relaxed, t_relax, relax_counts = common.relax_all(emb, RelaxOptions("mmff", max_iters=args.max_iters,
                                                                         threads=args.threads))
            generated["etkdg_mmff"] = (relaxed, t_emb + t_relax)
            out["seconds"]["mmff_relax"] = t_relax
            out["mmff_counts"] = relax_counts
    rows: dict[str, dict] = {}
    for method, (mols, seconds) in generated.items():
        summary, rows[method], t_eval = score(mols, refs, ref_groups, inputs, list(targets), seconds, args.workers,
                                              progress)
        out["methods"][method] = summary
        out["per_molecule"][method] = rows[method]
        out["seconds"][f"eval_{method}"] = t_eval
    for a, b in PAIRS:
        if a in rows and b in rows:
            out["paired"][f"{a} - {b}"] = {
                k: {key: dict(zip(("mean", "se", "n"), common.paired(rows[a][k], rows[b][k], key))) for key in METRICS}
                for k in rows[a]}
    return out


def report(name: str, b: dict) -> None:
    """Print one benchmark's figures: a line per method and threshold, the paired differences and
    the wall time per molecule of each stage."""
    print(f"== {name}: {b['file']}, {b['n_mols']} molecules, {b['n_ref_confs']} reference conformers")
    for method, m in b["methods"].items():
        for k, s in m["by_threshold"].items():
            print(f"{method:11s} d={k:4s}  COV-R {s['cov_r_mean']:5.1f} / {s['cov_r_median']:5.1f} %  "
                  f"MAT-R {s['mat_r_mean']:.3f} / {s['mat_r_median']:.3f} A  "
                  f"COV-P {s['cov_p_mean']:5.1f} / {s['cov_p_median']:5.1f} %  "
                  f"MAT-P {s['mat_p_mean']:.3f} / {s['mat_p_median']:.3f} A  (mean / median)")
        print(f"{'':11s} stereo kept {100 * m['stereo_match']:.1f} %, without output {m['n_without_output']}, "
              f"{m['conformers']} conformers in {m['seconds']:.1f} s = {m['conformers_per_s']:.2f} conf/s")
    for w in b.get("ours_without_output", []):
        print(f"ours: no output for mol_id {w['mol_id']} ({w['smiles']}): {w['reason']}")
    if len({m["n_without_output"] for m in b["methods"].values()}) > 1:
        print("note: each method's means are over its own molecules; the paired differences over the shared ones")
    for pair, by_t in b["paired"].items():
        for k, d in by_t.items():
            print(f"{pair} d={k} (n={d['cov_r']['n']}): " + ", ".join(
                f"d{key} {d[key]['mean']:+.3f} +- {d[key]['se']:.3f}" for key in METRICS))
    n = max(1, b["n_mols"])
    print("seconds per molecule: " + ", ".join(f"{k} {v / n:.2f}" for k, v in b["seconds"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="both", choices=["drugs", "geom", "both"])
    ap.add_argument("--drugs-ref", default=None,
                    help="the drug dev references to use instead of the v1 file, e.g. the v2 union "
                         "bench/refs_v2/drugs_dev_v2.sdf.gz (2K per molecule stays the v1 count)")
    ap.add_argument("--weights", action="append", default=None,
                    help="checkpoint; repeat for several, chosen per molecule as generate does (default: the shipped "
                         "set, QM9 then drug-like)")
    ap.add_argument("--schedule", default=None, choices=list(SCHEDULES),
                    help="the schedule preset for ours (default: generate's, warm; noise = the from-noise mode)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="set a field of the schedule (or the runtime), e.g. --set num_steps=30")
    ap.add_argument("--max-mols", type=int, default=None, help="only the first N molecules of each benchmark")
    ap.add_argument("--sample", type=int, default=None, help="a seeded random subset of N molecules per benchmark")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ours", action="store_true", help="only the RDKit baselines")
    ap.add_argument("--no-etkdg", action="store_true", help="no plain ETKDGv3 rows")
    ap.add_argument("--etkdg-oversample", type=int, default=3,
                    help="also ETKDGv3 with N x oversampling and the warm start's diversity selection (etkdg_diverse; "
                         "1 = not run)")
    ap.add_argument("--no-mmff", action="store_true", help="no MMFF94-relaxed rows (ETKDGv3 + MMFF94, ours + MMFF94)")
    ap.add_argument("--max-iters", type=int, default=DEFAULT_MAX_ITERS, help="MMFF94 iterations per conformer")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for ours, RDKit threads for the ETKDG embedding and MMFF (ours' own ETKDG "
                         "warm start embeds with 1)")
    ap.add_argument("--workers", type=int, default=1, help="processes for the RMSD evaluation (not timed)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(args.threads)
    prov = common.provenance(args.device, args.allow_dirty, args.json)  # before the run: the commit that ran

    models = load_models(args.weights, args.device)
    per_model: Counter = Counter()
    try:
        sampler = resolve_schedule(args.schedule)  # default: generate's, the warm start
        sampler, runtime = common.apply_sets(sampler, Runtime(), args.set)
    except ValueError as exc:
        ap.error(str(exc))
    out = {
        "thresholds": list(THRESHOLDS), **common.weights_record(args.weights, models, {}, sampler, runtime),
        "network_evaluations": num_evaluations(models[0].noise, sampler), "seed": args.seed,
        "max_mols": args.max_mols, "sample": args.sample, "sample_seed": args.sample_seed,
        "threads": {"torch": torch.get_num_threads(), "etkdg_embed": args.threads, "mmff": args.threads,
                    "ours_etkdg_warm_start": 1},
        "max_iters_mmff": args.max_iters, "device": args.device, "provenance": prov, "benchmarks": {},
    }
    names = list(BENCHMARKS) if args.bench == "both" else [args.bench]
    for name in names:
        path = Path(args.drugs_ref) if name == "drugs" and args.drugs_ref else BENCHMARKS[name]
        out["benchmarks"][name] = b = run_benchmark(path, args, models, sampler, runtime, per_model)
        out.update(common.weights_record(args.weights, models, per_model, sampler, runtime))
        report(name, b)
        if args.json:  # written after each benchmark, so a long run keeps what it finished
            common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
