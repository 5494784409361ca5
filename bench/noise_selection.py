"""Probe (issue 30, levers 1-2): how to pick 2K conformers out of oversampled samples from noise.

Oversampling from noise (SamplerConfig.oversample) raises recall but farthest-point selection also
favours the off-manifold samples (they are "far" from everything), which costs precision. This
samples OS x 2K conformers per dev molecule once (`quick`, from noise, no RDKit embedding), then
applies several selections to the same samples and evaluates each, paired per molecule against
the ETKDG rows of --paired (e.g. the 3x diverse ETKDGv3 run):

- `fps`: the product's select_conformers (good ones first, farthest-point on heavy atoms);
- `first`: the first 2K samples (no selection: what oversample=1 gives, same samples);
- `mmff<q>`: drop the fraction q of the highest MMFF94 single-point energies (no optimisation,
  RDKit's force field only scores the sampled geometry), then farthest-point;
- `mmffgreedy`: conformers in order of MMFF94 energy, each kept unless within --radius A heavy-atom
  RMSD of one kept before (lowest-energy representatives of distinct basins).

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

from confgf_fast.config import SamplerConfig
from confgf_fast.diversity import farthest_point_subset, rmsd_to_all, select_conformers
from confgf_fast.evaluate import evaluate, format_table
from confgf_fast.pipeline import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_dev import DEV_SDF, benchmark_inputs, budget_counts, load_reference
from provenance import provenance, write_json
from schedule_table import paired

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
    ap.add_argument("--ref", default=str(DEV_SDF))
    ap.add_argument("--oversample", type=int, default=2)
    ap.add_argument("--sample", type=int, default=None, help="a seeded random subset of molecules")
    ap.add_argument("--selections", default="first,fps,mmff0.25,mmff0.5,mmffgreedy")
    ap.add_argument("--radius", type=float, default=0.25, help="mmffgreedy: distinct-basin RMSD (A)")
    ap.add_argument("--paired", default=None, help="result JSON whose etkdg rows the differences are against")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")

    refs = load_reference(Path(args.ref))
    if args.sample is not None and args.sample < len(refs):
        import random

        pick = sorted(random.Random(0).sample(range(len(refs)), args.sample))
        refs = [refs[i] for i in pick]
    counts = budget_counts(refs)
    inputs, ref_groups = benchmark_inputs(refs)
    sampler = SamplerConfig.resolve(None, "quick", None)
    t0 = time.perf_counter()
    res = generate(inputs, [c * args.oversample for c in counts], sampler=sampler, seed=args.seed, threads=1)
    t_sample = time.perf_counter() - t0
    base = None
    if args.paired:
        import json

        base = json.loads(Path(args.paired).read_text())["per_molecule"]["etkdg"]
    out = {"benchmark": Path(args.ref).name, "n_mols": len(refs), "oversample": args.oversample,
           "sampler_tag": sampler.describe(), "seconds_sampling": t_sample, "selections": {},
           "per_molecule": {}, "provenance": provenance("cpu")}
    energies = [mmff_energies(m) if m is not None else None for m in res.mols]
    for name in args.selections.split(","):
        picked = {}
        for (smi, _), m, n, fl, en in zip(refs, res.mols, counts, [res.flags.get(k, []) for k in range(len(refs))],
                                          energies):
            picked[smi] = [] if m is None else [subset(m, select(name, m, fl, n, en, args.radius))]
        ev = evaluate(picked, ref_groups, threshold=0.5, progress=False)
        rows = ev.row_dicts()
        out["selections"][name] = ev.summary()
        out["per_molecule"][name] = rows
        print(name)
        print(format_table(ev.summary()))
        if base is not None:
            diffs = [paired(rows, base, k) for k in METRICS]
            out["selections"][name]["paired_vs_etkdg"] = {k: [m, e, c] for k, (m, e, c) in zip(METRICS, diffs)}
            print("  paired vs etkdg: " + ", ".join(f"d{k} {m:+.3f} +- {e:.3f}"
                                                    for k, (m, e, _) in zip(METRICS, diffs)))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
