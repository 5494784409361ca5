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
import math
from pathlib import Path


def describe(d: dict) -> str:
    if d.get("label"):  # a probe outside the package's samplers names itself (bench/heun_probe.py)
        return d["label"]
    s = d.get("sampler", {})
    if s.get("sampler") == "project":
        start = "ETKDG warm start, " if s.get("init", "random") != "random" else ""
        words = [f"project: {start}{s.get('num_steps')} levels from sigma {s.get('sigma_max', 2.0):g}, "
                 f"rho {s.get('rho')}, noise {s.get('noise_scale')}", f"{s.get('embed_dims', 3)}D"]
        if s.get("eval_scale", 1.0) != 1.0:
            words.append(f"eval x{s['eval_scale']}")
        # settings added later than the first sweep runs: named only where they differ from the default
        for key, default, fmt in (("inner_iters", 60, "{} sweeps"), ("tweedie", 1.0, "Tweedie x{}"),
                                  ("eta", 1.0, "eta {}"), ("quiet_below", 0.1, "noise down to sigma {}"),
                                  ("final_steps", 4, "{} polish steps"), ("init_scale", 1.0, "start scale {}")):
            if s.get(key, default) != default:
                words.append(fmt.format(s[key]))
        if s.get("corrector_steps", 0):
            words.append(f"+ {s['corrector_steps']} Langevin corrector(s) per level, snr {s.get('snr')}")
        if s.get("tail_levels"):
            words.append(f"+ Langevin {s['tail_levels']} x {s.get('tail_steps')} below sigma {s.get('sigma_min')}")
        return ", ".join(words)
    if s.get("bands"):
        return f"bands {s['bands']}, eps {s['eps']:g}"
    levels = s.get("levels") or 50
    return f"{levels} x {s.get('steps_per_level')}, eps {s.get('eps'):g}"


def paired(rows: list[dict], base: list[dict], key: str) -> tuple[float, float, int]:
    """Mean and standard error of the per-molecule difference rows - base over shared molecules."""
    b = {r["key"]: r for r in base if r.get("status") == "ok"}
    diffs = [r[key] - b[r["key"]][key] for r in rows if r.get("status") == "ok" and r["key"] in b]
    n = len(diffs)
    if n < 2:
        return float("nan"), float("nan"), n
    mean = sum(diffs) / n
    var = sum((x - mean) ** 2 for x in diffs) / (n - 1)
    return mean, math.sqrt(var / n), n


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
