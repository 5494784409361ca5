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
import random
import sys
import time
from pathlib import Path

import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem

from confgf_fast.checkpoint import load_models
from confgf_fast.chem import conformer_positions, diverse_subset, etkdg_params, set_conformers
from confgf_fast.config import SCHEDULES, SamplerConfig
from confgf_fast.elements import element_names
from confgf_fast.evaluate import EvalResult, evaluate, format_table, stereo_match_rate
from confgf_fast.pipeline import generate
from confgf_fast.sampler import num_evaluations

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance, write_json
from schedule_table import paired

DEV_SDF = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "qm9_xtb_dev.sdf"


def load_reference(path: Path) -> list[tuple[str, Chem.Mol]]:
    """[(smiles, mol with all K reference conformers)] in file order, grouped by mol_id (.sdf, or
    .sdf.gz as the v2 benchmarks in bench/refs_v2)."""
    from confgf_fast.data.reference_search import read_reference_groups

    groups: dict[str, tuple[str, Chem.Mol]] = {}
    for rec in (m for ms in read_reference_groups(path).values() for m in ms):
        key = rec.GetProp("mol_id")
        if key not in groups:
            m = Chem.Mol(rec)
            groups[key] = (rec.GetProp("smiles"), m)
        else:
            groups[key][1].AddConformer(rec.GetConformer(), assignId=True)
    return list(groups.values())


def budget_counts(refs: list[tuple[str, Chem.Mol]]) -> list[int]:
    """2K conformers to generate per molecule. On a v2 union (bench/refs_v2) K stays the original
    reference count (the records' budget_k), so the extra minima raise the bar, not the budget."""
    return [2 * (int(m.GetProp("budget_k")) if m.HasProp("budget_k") else m.GetNumConformers()) for _, m in refs]


def benchmark_inputs(refs: list[tuple[str, Chem.Mol]]) -> tuple[list[Chem.Mol], dict[str, list[Chem.Mol]]]:
    """(the molecules to generate for, without coordinates; {smiles: [reference Mol]} for evaluate)."""
    inputs = []
    for _, m in refs:
        x = Chem.Mol(m)
        x.RemoveAllConformers()
        inputs.append(x)
    return inputs, {s: [m] for s, m in refs}


def etkdg(mol: Chem.Mol, n: int, seed: int, threads: int = 1, oversample: int = 1) -> Chem.Mol:
    """Copy of `mol` with n RDKit ETKDGv3 conformers (chem.etkdg_params(seed)), embedded with
    `threads` threads (RDKit numThreads; 0: all cores). oversample > 1: embed oversample x n and
    keep a diverse n, with the selection our warm start uses (chem.diverse_subset): the baseline
    with the same trick."""
    m = Chem.Mol(mol)
    m.RemoveAllConformers()
    params = etkdg_params(seed)
    params.numThreads = threads
    AllChem.EmbedMultipleConfs(m, n * oversample, params)
    if m.GetNumConformers() == 0:
        # RDKit's documented fallback for molecules (strained cages) whose eigenvector embedding
        # fails: start from random coordinates. Without it ETKDG returns nothing for 4 of the 190.
        params.useRandomCoords = True
        AllChem.EmbedMultipleConfs(m, n * oversample, params)
    if m.GetNumConformers() > n:
        pos = conformer_positions(m)
        m = set_conformers(m, pos[diverse_subset(m, pos, n)])
    return m


def weights_record(weights: list[str] | None, models: list, per_model: dict[int, int],
                   sampler: SamplerConfig) -> dict:
    """What a result JSON says about the weights and the sampler: `weights` (the paths given, or
    "shipped"); `weights_step`, `trained_elements` and the sampler (`sampler`, `sampler_tag`, with
    the checkpoint's own sampler_defaults applied, SamplerConfig.tuned_for) of the model that
    sampled the most molecules (with the shipped set: the QM9 model on QM9, the drug-like model on
    drugs); `weights_models`: every model's file name, step, sampler tag, relax_default (what
    generate's default relax "auto" does to its molecules) and molecules sampled
    (pipeline.RunStats.per_model)."""
    top = max(range(len(models)), key=lambda i: per_model.get(i, 0))
    model = models[top][0]
    elements = getattr(model, "trained_elements", None)
    tuned = sampler.tuned_for(getattr(model, "sampler_defaults", None))
    return {"weights": ", ".join(weights) if weights else "shipped", "weights_step": model.trained_steps,
            "trained_elements": element_names(elements) if elements else None,
            "schedule": tuned.schedule, "sampler": vars(tuned), "sampler_tag": tuned.describe(),
            "weights_models": [{"name": m.weights_name, "step": m.trained_steps, "molecules": per_model.get(i, 0),
                                "sampler_tag": sampler.tuned_for(getattr(m, "sampler_defaults", None)).describe(),
                                "relax_default": getattr(m, "relax_default", "none")}
                               for i, (m, _) in enumerate(models)]}


def apply_sets(sampler: SamplerConfig, items: list[str]) -> None:
    """Set SamplerConfig fields from --set FIELD=VALUE strings, in order. A value takes the type of
    the field's current value (booleans by name: 1/true/yes/on are True); ValueError for an unknown
    field or a value of the wrong type."""
    for item in items:
        key, _, value = item.partition("=")
        if not hasattr(sampler, key):
            raise ValueError(f"--set: SamplerConfig has no field {key!r}")
        old = getattr(sampler, key)
        if isinstance(old, bool):  # bool("False") is True: read booleans by name
            value = value.lower() in ("1", "true", "yes", "on")
        if old is None:  # an optional field (e.g. select_window): a number if it reads as one
            try:
                value = int(value) if value.lstrip("-").isdigit() else float(value)
            except ValueError:
                pass
            setattr(sampler, key, value)
        else:
            setattr(sampler, key, type(old)(value))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=str(DEV_SDF))
    ap.add_argument("--weights", action="append", default=None,
                    help="checkpoint; repeat for several, chosen per molecule as generate does (default: the shipped "
                         "set)")
    ap.add_argument("--schedule", default=None, choices=list(SCHEDULES),
                    help="a schedule preset (default: the sampler's default; paper for Langevin)")
    ap.add_argument("--levels", type=int, default=None)
    ap.add_argument("--steps-per-level", type=int, default=None)
    ap.add_argument("--eps", type=float, default=None)
    ap.add_argument("--bands", default=None, help="SamplerConfig.bands spec, e.g. '2:6x20,0.1:21x36,0:6x20'")
    ap.add_argument("--sampler", default=None, choices=["langevin", "project", "dist"])
    ap.add_argument("--init", default=None, choices=["random", "etkdg"],
                    help="etkdg: the warm start from ETKDGv3 conformers (schedule warm by default)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="set any SamplerConfig field, e.g. --set num_steps=30 --set noise_scale=0.4")
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
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")

    refs = load_reference(Path(args.ref))
    refs = refs[args.offset: None if args.max_mols is None else args.offset + args.max_mols]
    if args.sample is not None and args.sample < len(refs):
        pick = sorted(random.Random(args.sample_seed).sample(range(len(refs)), args.sample))
        refs = [refs[i] for i in pick]
    counts = budget_counts(refs)
    models = load_models(args.weights, args.device)
    noise = models[0][1]
    sampler = SamplerConfig.resolve(args.sampler, args.schedule, args.init)
    sampler.precision, sampler.compile = args.precision, args.compile
    sampler.override(args.levels, args.steps_per_level, args.eps, args.bands)
    try:
        apply_sets(sampler, args.set)
    except ValueError as exc:
        ap.error(str(exc))

    inputs, ref_groups = benchmark_inputs(refs)
    out = {
        "benchmark": Path(args.ref).name, "n_mols": len(refs), "offset": args.offset, "sample": args.sample,
        "sample_seed": args.sample_seed, "threshold": args.threshold,
        "machine": f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads, "
                   f"device {args.device}",
        **weights_record(args.weights, models, {0: len(refs)}, sampler),  # updated from the run below
        "network_evaluations": num_evaluations(noise, sampler), "per_molecule": {},
        "provenance": provenance(args.device),
    }
    ours_eval = None
    if not args.no_ours:
        t0 = time.perf_counter()
        res = generate(inputs, counts, model=[m for m, _ in models], noise=[n for _, n in models], sampler=sampler,
                       device=args.device, seed=args.seed, progress=not args.quiet)
        t_ours = time.perf_counter() - t0
        out.update(weights_record(args.weights, models, res.stats.per_model, sampler))
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
        emb = [etkdg(x, n, args.seed + k, oversample=args.etkdg_oversample)
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
                diffs = [paired(rows, base[method], k) for k in ("cov_r", "mat_r", "cov_p", "mat_p")]
                print(f"paired vs {Path(args.paired).stem} ({method}), n={diffs[0][2]}: " + ", ".join(
                    f"d{k} {m:+.3f} +- {e:.3f}" for k, (m, e, _) in zip(("COV-R", "MAT-R", "COV-P", "MAT-P"), diffs)))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
