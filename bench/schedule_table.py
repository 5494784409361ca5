"""Quality against network evaluations: a table of bench/eval_dev.py result files (one per
schedule, same molecules), with each schedule's per-molecule COV-R / MAT-R difference from a
baseline file (usually the paper schedule) and its standard error, so that a difference can be
told from sampling noise.

    python bench/schedule_table.py bench/results/dev_s60_step32750_paper.json \\
        bench/results/schedule_sweep/*.json [--baseline bench/results/dev_s60_step32750_paper.json]

Without --baseline the first file is the baseline. --baseline-method etkdg takes the baseline
file's RDKit ETKDG rows instead of its ConfGF rows (ours vs ETKDG on the same molecules).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import describe, paired


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--baseline-method", default="ours", choices=["ours", "etkdg"])
    args = ap.parse_args(argv)
    runs = [(Path(f).stem, json.loads(Path(f).read_text())) for f in args.files]
    base_path = args.baseline or args.files[0]
    base = json.loads(Path(base_path).read_text())["per_molecule"][args.baseline_method]
    runs.sort(key=lambda r: r[1].get("network_evaluations", 0))
    print(f"baseline for the differences: {Path(base_path).stem} ({args.baseline_method})")
    print("| run | schedule | evaluations | precision | COV-R % | MAT-R A | COV-P % | MAT-P A | "
          "dCOV-R vs baseline | dMAT-R vs baseline | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, d in runs:
        if "ours" not in d:  # an ETKDG-only file (--no-ours): baseline material, no row
            continue
        o = d["ours"]
        rows = d.get("per_molecule", {}).get("ours", [])  # older files have no per-molecule rows
        dc, sc, _ = paired(rows, base, "cov_r")
        dm, sm, _ = paired(rows, base, "mat_r")
        print(f"| {name} | {describe(d)} | {d['network_evaluations']} | {d['sampler'].get('precision', 'fp32')} | "
              f"{o['cov_r_mean']:.1f} | {o['mat_r_mean']:.3f} | {o['cov_p_mean']:.1f} | {o['mat_p_mean']:.3f} | "
              f"{dc:+.1f} +- {sc:.1f} | {dm:+.3f} +- {sm:.3f} | {o.get('seconds', float('nan')):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
