"""How to pick 2K conformers out of oversampled samples from noise (issue 30, levers 1-2).

Oversampling from noise (ProjectSchedule.oversample) raises recall but farthest-point selection also
favours the off-manifold samples (they are "far" from everything), which costs precision. This
samples OS x 2K conformers per dev molecule once (`quick`, from noise, no RDKit embedding), then
applies several selections to the same samples and evaluates each, paired per molecule against
the ETKDG rows of --paired (e.g. the 3x diverse ETKDGv3 run):

- `fps`: the product's select_conformers (good ones first, farthest-point on heavy atoms);
- `first`: the first 2K samples (no selection: what oversample=1 gives, same samples);
- `mmff<q>`: drop the fraction q of the highest MMFF94 single-point energies (no optimisation,
  RDKit's force field only scores the sampled geometry), then farthest-point;
- `win<x>`: keep the samples within x kcal/mol of the lowest MMFF94 single-point energy (at least
  2K of the lowest), then farthest-point;
- `soft<T>`: farthest-point on (RMSD to the nearest kept) x exp(-(E - E_min) / T), T in kcal/mol,
  starting from the lowest energy: diversity discounted by strain instead of a hard cut;
- `mmffgreedy`: conformers in order of MMFF94 energy, each kept unless within --radius A heavy-atom
  RMSD of one kept before (lowest-energy representatives of distinct basins).

--pools 2,3 applies every selection to the first P x 2K samples of each molecule as well (the
samples are independent draws, so the first P x 2K of an OS x 2K run are a P x 2K run), and
--etkdg-pool P embeds P x 2K ETKDGv3 conformers per molecule and applies the same selections to them
(`etkdg:fps` is the 3x diverse ETKDGv3 baseline when P = 3, `etkdg:first` plain ETKDGv3): an energy
filter that helps our samples is then also given to ETKDG. Without --paired, differences are
against `etkdg:fps`.

    OMP_NUM_THREADS=1 python bench/noise_selection.py --oversample 2 --json bench/results/noise_selection_os2.json \\
        --paired bench/results/dev_full_etkdg_os3.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem

from confgf_fast.chem.diversity import farthest_point_subset, rmsd_to_all, select_conformers
from confgf_fast.config import Runtime, resolve_schedule
from confgf_fast.evaluation.evaluate import evaluate
from confgf_fast.model.checkpoint import load_model
from confgf_fast.pipeline.generate import generate
from confgf_fast.sampling.sampler import num_evaluations

import common

METRICS = ("cov_r", "mat_r", "cov_p", "mat_p")


def mmff_energies(mol: Chem.Mol) -> np.ndarray:
    """[C] MMFF94 single-point energies (kcal/mol) of every conformer, inf where MMFF has no setup."""
    props = AllChem.MMFFGetMoleculeProperties(mol)
    if props is None:
        return np.full(mol.GetNumConformers(), np.inf)
    out = []
    for c in mol.GetConformers():
        ff = AllChem.MMFFGetMoleculeForceField(mol, props, confId=c.GetId())
        out.append(ff.CalcEnergy() if ff is not None else np.inf)
    return np.array(out)


def heavy_index(mol: Chem.Mol) -> torch.Tensor | None:
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    return torch.tensor(heavy) if len(heavy) >= 3 else None


def subset(mol: Chem.Mol, keep: list[int]) -> Chem.Mol:
    m = Chem.Mol(mol)
    m.RemoveAllConformers()
    for k in keep:
        m.AddConformer(Chem.Conformer(mol.GetConformer(k)), assignId=True)
    return m


def select(name: str, mol: Chem.Mol, flags: list[dict], n: int, energies: np.ndarray, radius: float) -> list[int]:
    pos = torch.from_numpy(np.array([c.GetPositions() for c in mol.GetConformers()])).float()
    coords = list(pos)
    if name == "first":
        return list(range(min(n, len(coords))))
    if name == "fps":
        return select_conformers(mol, coords, flags, n)
    order = [int(k) for k in np.argsort(energies, kind="stable")]
    atoms = heavy_index(mol)
    sub = pos if atoms is None else pos[:, atoms]
    if name.startswith("win"):
        finite = energies[np.isfinite(energies)]
        if finite.size == 0:
            return [int(i) for i in farthest_point_subset(pos, n, atoms)]
        ok = set(int(k) for k in np.flatnonzero(energies <= finite.min() + float(name[3:])))
        kept = sorted(ok | set(order[:n]))
        return [kept[int(i)] for i in farthest_point_subset(pos[kept], n, atoms)]
    if name.startswith("soft"):  # farthest-point on min-RMSD x exp(-(E - E_min) / T), T kcal/mol
        finite = np.isfinite(energies)
        if not finite.any():
            return [int(i) for i in farthest_point_subset(pos, n, atoms)]
        rel = np.where(finite, energies - energies[finite].min(), np.inf)
        weight = torch.from_numpy(np.exp(-rel / float(name[4:])))
        return [int(i) for i in farthest_point_subset(pos, n, atoms, weight, int(np.argmin(rel)))]
    if name.startswith("mmff") and name != "mmffgreedy":
        q = float(name[4:])
        kept = sorted(order[: max(n, round(len(order) * (1 - q)))])
        return [kept[int(i)] for i in farthest_point_subset(pos[kept], n, atoms)]
    if name == "mmffgreedy":
        chosen: list[int] = []
        for k in order:
            if len(chosen) == n:
                break
            if not chosen or float(rmsd_to_all(sub[chosen], sub[k]).min()) > radius:
                chosen.append(k)
        for k in order:  # too few distinct basins: fill with the lowest energies left
            if len(chosen) == n:
                break
            if k not in chosen:
                chosen.append(k)
        return chosen
    raise ValueError(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=str(common.DEV_SDF))
    ap.add_argument("--oversample", type=int, default=2)
    ap.add_argument("--sample", type=int, default=None, help="a seeded random subset of molecules")
    ap.add_argument("--selections", default="first,fps,mmff0.25,mmff0.5,mmffgreedy")
    ap.add_argument("--radius", type=float, default=0.25, help="mmffgreedy: distinct-basin RMSD (A)")
    ap.add_argument("--paired", default=None, help="result JSON whose etkdg rows the differences are against")
    ap.add_argument("--pools", default=None, help="also select from the first P x 2K samples, e.g. 2,3")
    ap.add_argument("--etkdg-pool", type=int, default=0, help="ETKDGv3 pool of P x 2K, same selections")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a field of the quick schedule (or the runtime), e.g. --set num_steps=29")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    common.add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    prov = common.provenance("cpu", args.allow_dirty, args.json)  # before the run: the commit that ran

    refs = common.sample_subset(common.load_reference(Path(args.ref)), args.sample, 0)
    counts = common.budget_counts(refs)
    inputs, ref_groups = common.benchmark_inputs(refs)
    sampler, runtime = common.apply_sets(resolve_schedule("quick"), Runtime(), args.set)
    t0 = time.perf_counter()
    res = generate(inputs, [c * args.oversample for c in counts], schedule=sampler, runtime=runtime, seed=args.seed,
                   threads=1)
    t_sample = time.perf_counter() - t0
    flags = [res.flags.get(k, []) for k in range(len(refs))]
    arms = [("", res.mols, flags, args.oversample)]
    for p in sorted({int(x) for x in args.pools.split(",")} if args.pools else set()):
        if p < args.oversample:
            pools = [None if m is None else subset(m, list(range(min(m.GetNumConformers(), p * n))))
                     for m, n in zip(res.mols, counts)]
            arms.append((f"p{p}:", pools, [f[: p * n] for f, n in zip(flags, counts)], p))
    t_etkdg = None
    if args.etkdg_pool:
        t0 = time.perf_counter()
        pool = [common.etkdg(x, args.etkdg_pool * n, args.seed + k) for k, (x, n) in enumerate(zip(inputs, counts))]
        t_etkdg = time.perf_counter() - t0
        arms.append(("etkdg:", [m if m.GetNumConformers() else None for m in pool], [[] for _ in pool],
                     args.etkdg_pool))
    out = {"benchmark": Path(args.ref).name, "n_mols": len(refs), "oversample": args.oversample,
           "network_evaluations_per_sample": num_evaluations(load_model(None, "cpu").noise, sampler),
           "sampler_tag": sampler.describe(), "seconds_sampling": t_sample, "seconds_etkdg_pool": t_etkdg,
           "selections": {}, "per_molecule": {}, "provenance": prov}
    base = None
    if args.paired:
        import json

        base = json.loads(Path(args.paired).read_text())["per_molecule"]["etkdg"]
    names = args.selections.split(",")
    results = {}
    for prefix, mols, fls, _ in arms:
        energies = [mmff_energies(m) if m is not None else None for m in mols]
        for name in names:
            picked = {}
            for (smi, _), m, n, fl, en in zip(refs, mols, counts, fls, energies):
                picked[smi] = [] if m is None else [subset(m, select(name, m, fl, n, en, args.radius))]
            ev = evaluate(picked, ref_groups, threshold=0.5, progress=False)
            results[prefix + name] = (ev.summary(), ev.row_dicts())
    if base is None and "etkdg:fps" in results:
        base = results["etkdg:fps"][1]
    for key, (summary, rows) in results.items():
        out["selections"][key] = summary
        out["per_molecule"][key] = rows
        line = f"{key:<16} COV-R {summary['cov_r_mean']:6.2f} MAT-R {summary['mat_r_mean']:.4f} " \
               f"COV-P {summary['cov_p_mean']:6.2f} MAT-P {summary['mat_p_mean']:.4f}"
        if base is not None:
            diffs = [common.paired(rows, base, k) for k in METRICS]
            out["selections"][key]["paired_vs_etkdg"] = {k: [m, e, c] for k, (m, e, c) in zip(METRICS, diffs)}
            line += "  | paired: " + ", ".join(f"d{k} {m:+.3f} +- {e:.3f}" for k, (m, e, _) in zip(METRICS, diffs))
        print(line, flush=True)
    if args.json:
        common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
