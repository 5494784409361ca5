"""How much recall an ETKDG warm start can reach at all: COV-R of the whole oversampled ETKDGv3
pool against the diverse subset the warm start keeps, on the QM9 development benchmark.

The default warm start embeds 3 x 2K ETKDGv3 conformers per molecule (K references), keeps 2K by
farthest-point selection (chem.diverse_subset) and refines them with the score model from
sigma = 0.5 Å, which does not cross torsion barriers. So a reference that no conformer of the pool
comes near is one the default can rarely cover, however it selects or refines. Per molecule this
script reports COV-R (δ 0.5 Å, heavy-atom GetBestRMS, evaluate.rmsd_matrix) of

- pool: all 3 x 2K conformers (the ceiling of any selection from this pool);
- first: the first 2K (plain ETKDGv3); fps: the diverse 2K (the warm start's and the
  `ETKDGv3, 3x diverse` baseline's selection);
- the same three after MMFF94 (each conformer optimised, ≤ 500 iterations): mmff_pool, mmff_fps
  (diverse subset chosen on the MMFF geometries);

and, for every reference the raw pool misses, its distance to the nearest pool conformer (how near
the misses are: a near miss is one better geometry could still cover). The pool is
common.etkdg's embedding (as eval_dev.py's) (seed + molecule index) of 3 x 2K, so `first` and `fps` are exactly
the rerun baselines dev_full_etkdg.json and dev_full_etkdg_os3.json.

    python bench/etkdg_pool.py --json bench/results/etkdg_pool_ceiling.json     # ~6 min, one thread
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import conformer_positions, diverse_subset
from confgf_fast.evaluation.evaluate import rmsd_matrix

import common

MISS_BINS = (0.5, 0.6, 0.75, 1.0, 1.5, float("inf"))  # Å, nearest pool conformer of a missed reference


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=str(common.DEV_SDF))
    ap.add_argument("--oversample", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--max-mols", type=int, default=None)
    ap.add_argument("--json", default=None)
    common.add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    prov = common.provenance("cpu", args.allow_dirty, args.json)  # before the run: the commit that ran

    refs = common.load_reference(Path(args.ref))[: args.max_mols]
    inputs, _ = common.benchmark_inputs(refs)
    rows, misses, t0 = [], [], time.perf_counter()
    for k, ((key, ref), mol) in enumerate(zip(refs, inputs)):
        n = 2 * ref.GetNumConformers()
        pool = common.etkdg(mol, args.oversample * n, args.seed + k)  # all of them: no selection at this count
        C = pool.GetNumConformers()
        if C == 0:
            continue  # the one molecule ETKDG cannot embed; left out, as in dev_full_etkdg.json
        relaxed = Chem.Mol(pool)
        AllChem.MMFFOptimizeMoleculeConfs(relaxed, maxIters=500)
        row = {"key": key, "n_ref": ref.GetNumConformers(), "pool_size": C}
        for tag, m in (("", pool), ("mmff_", relaxed)):
            r = rmsd_matrix(ref, m)  # [K, C]
            fps = diverse_subset(m, conformer_positions(m), n).numpy()
            for name, idx in (("pool", np.arange(C)), ("first", np.arange(min(n, C))), ("fps", fps)):
                row[tag + name] = float((r[:, idx].min(1) < args.threshold).mean() * 100)
            if not tag:
                nearest = r.min(1)
                misses.extend(nearest[nearest >= args.threshold].tolist())
        rows.append(row)
    seconds = time.perf_counter() - t0

    methods = [k for k in rows[0] if k not in ("key", "n_ref", "pool_size")]
    cov = {m: [{"key": r["key"], "status": "ok", "cov_r": r[m]} for r in rows] for m in methods}
    summary = {m: {"cov_r_mean": float(np.mean([r[m] for r in rows])),
                   "minus_fps": dict(zip(("mean", "se", "n"), common.paired(cov[m], cov["fps"], "cov_r")))}
               for m in methods}
    hist = np.histogram(misses, bins=MISS_BINS)[0].tolist()
    n_refs = sum(r["n_ref"] for r in rows)
    out = {"benchmark": Path(args.ref).name, "n_mols": len(rows), "oversample": args.oversample,
           "threshold": args.threshold, "seed": args.seed, "seconds": seconds, "reference_conformers": n_refs,
           "summary": summary,
           "pool_misses": {"references": len(misses), "share_of_references": len(misses) / n_refs,
                           "nearest_rmsd_bins": list(MISS_BINS), "histogram": hist},
           "per_molecule": rows, "provenance": prov}
    for m in methods:
        s = summary[m]
        print(f"{m:11s} COV-R {s['cov_r_mean']:6.2f}   minus fps {s['minus_fps']['mean']:+.2f} "
              f"± {s['minus_fps']['se']:.2f} (n {s['minus_fps']['n']})")
    print(f"references the raw pool misses: {len(misses)} of {n_refs}; nearest pool conformer "
          + ", ".join(f"[{a:g}, {b:g}) Å: {c}" for a, b, c in zip(MISS_BINS, MISS_BINS[1:], hist)))
    if args.json:
        common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
