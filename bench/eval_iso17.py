"""Distance-distribution MMD on the ISO17-style set (data/iso17.py): MD snapshots vs generated conformers.

As the ConfGF paper's ISO17 experiment (section 5.3): for each isomer, the MD snapshots at 500 K are
the reference distribution; each method generates the same number of conformers; the MMD of every
heavy-atom pair distance (distance_mmd.py, the official Gaussian kernel mixture) is pooled over
isomers (mean, median), and the joint MMD of all heavy-atom distances is averaged per isomer.
Methods: `paper` (annealed Langevin from noise, 5,000 network evaluations), the from-noise mode
(schedule `noise`), RDKit ETKDGv3 (bench/common.etkdg), all without relaxation. `md_split` is the
floor the estimator gives at this sample size: the first half of each trajectory as the reference
and --num-confs evenly spaced snapshots of the second half as the "generated" set (the MMD is
biased upwards at small sample sizes, and the two halves of one 500 K trajectory are not
independent, so it is a rough lower bound, not an exact zero).

    python bench/eval_iso17.py --build 10 --data bench/train_data/iso17_xtb/iso17_xtb_n10_2ps.npz \\
        --num-confs 50 --json bench/results/v2/iso17_mmd.json

--build N first runs (or resumes, per isomer, in --cache) the GFN2-xTB MD of the first N
non-held-out C7O2H10 isomers of QM9 and packs them into --data; without it --data must exist.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from rdkit import Chem, RDLogger

from confgf_fast.data import iso17
from confgf_fast.evaluation.distance_mmd import distance_mmd, summarize

import common

HELDOUT = common.SHARED / "data" / "qm9_heldout_smiles.csv"
METHODS = ("md_split", "paper", "noise", "etkdg")


def sample(method: str, mols: list[Chem.Mol], n: int, seed: int) -> list[np.ndarray]:
    """Per molecule, [C, n_atoms, 3] conformers (all H, its atom order) by `method`, no relaxation.
    The score-model methods sample all molecules in one generate call (one batch)."""
    bare = []
    for mol in mols:
        m = Chem.Mol(mol)
        m.RemoveAllConformers()
        bare.append(m)
    if method == "etkdg":
        outs = [common.etkdg(m, n, seed + k) for k, m in enumerate(bare)]
    else:
        from confgf_fast.pipeline.generate import generate

        outs = generate(bare, n, schedule=method, relax="none", seed=seed).mols
    result = []
    for mol, out in zip(mols, outs):
        if out is None or out.GetNumConformers() == 0:
            result.append(np.zeros((0, mol.GetNumAtoms(), 3)))
            continue
        if [a.GetAtomicNum() for a in out.GetAtoms()] != [a.GetAtomicNum() for a in mol.GetAtoms()]:
            raise RuntimeError(f"{method}: the output's atom order differs from the input's")
        result.append(np.stack([c.GetPositions() for c in out.GetConformers()]))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="packed set (.npz, iso17.write_set)")
    ap.add_argument("--build", type=int, default=None, metavar="N", help="build N isomers first (resumable)")
    ap.add_argument("--cache", default="bench/train_data/iso17_xtb/cache", help="per-isomer MD files (--build)")
    ap.add_argument("--production-fs", type=float, default=2000.0)
    ap.add_argument("--equil-fs", type=float, default=500.0)
    ap.add_argument("--heldout", default=str(HELDOUT))
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--num-confs", type=int, default=50, help="conformers generated per isomer and method")
    ap.add_argument("--max-isomers", type=int, default=None)
    ap.add_argument("--max-hops", type=int, default=None, help="only heavy-atom pairs within this many bonds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    common.add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    prov = common.provenance("cpu", args.allow_dirty, args.json)  # before the run (and the build): the commit that ran

    build = None
    if args.build:
        cfg = iso17.ISO17Config(production_fs=args.production_fs, equil_fs=args.equil_fs)
        t0 = time.perf_counter()
        paths = iso17.build_iso17(args.cache, args.build, args.heldout, cfg)
        build = {**iso17.write_set(paths, args.data), "wall_seconds": time.perf_counter() - t0}
        print(f"set {args.data}: {build}")
        if args.build_only:
            return 0

    items = iso17.load_set(args.data)[: args.max_isomers]
    out = {"data": str(args.data), "isomers": len(items), "num_confs": args.num_confs, "max_hops": args.max_hops,
           "md": items[0]["config"] if items else None, "build": build,
           "md_seconds": sum(it["seconds"] for it in items),
           "snapshots": {str(it["qm9_index"]): int(it["intact"].sum()) for it in items},
           "mean_md_temperature": float(np.mean([it["temperature"].mean() for it in items])) if items else None,
           "kernel": "sum of 5 Gaussians, widths w/4..4w, w = mean pooled squared distance (official compute_mmd)",
           "methods": {}, "per_isomer": {}, "provenance": prov,
           "threads": torch.get_num_threads()}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        refs = [it["pos"][it["intact"]] for it in items]
        if method == "md_split":
            halves = [len(r) // 2 for r in refs]
            gens = [r[h:][np.linspace(0, len(r) - h - 1, min(args.num_confs, len(r) - h)).round().astype(int)]
                    for r, h in zip(refs, halves)]
            refs = [r[:h] for r, h in zip(refs, halves)]
        else:
            gens = sample(method, [it["mol"] for it in items], args.num_confs, args.seed)
        t_gen = time.perf_counter() - t0
        results, rows = [], []
        for it, ref, gen in zip(items, refs, gens):
            if len(gen) == 0:
                rows.append({"qm9_index": it["qm9_index"], "smiles": it["smiles"], "generated": 0})
                continue
            r = distance_mmd(ref, gen, it["z"], it["mol"], args.max_hops, two=True)
            results.append(r)
            rows.append({"qm9_index": it["qm9_index"], "smiles": it["smiles"], "generated": len(gen),
                         **{key: v for key, v in r.as_dict().items() if key not in ("pairs",)}})
        seconds = time.perf_counter() - t0
        out["methods"][method] = {**summarize(results), "generate_seconds": t_gen, "seconds": seconds,
                                  "conformers": sum(len(g) for g in gens)}
        out["per_isomer"][method] = rows
        s = out["methods"][method]
        print(f"{method:6s} single MMD mean {s['single_mean']:.4f} median {s['single_median']:.4f} | "
              f"two {s['two_mean']:.4f} / {s['two_median']:.4f} | joint mean {s['joint_mean']:.4f} "
              f"median {s['joint_median']:.4f} | generate {t_gen:.0f} s", flush=True)
        if args.json:  # after every method, so a run cut short keeps what it has
            common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
