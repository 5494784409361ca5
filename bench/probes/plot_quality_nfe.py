"""Quality against network evaluations per conformer, one line per sampler family, from the
committed bench/eval_dev.py result files of the whole development benchmark.

    python bench/probes/plot_quality_nfe.py bench/results/dev_full_*.json --out bench/results/quality_vs_nfe.png

Only files with all 190 molecules and the same weights step (--step, default: the most common)
are drawn, so every point is comparable. x: evaluations per conformer (log scale); left: COV-R %,
right: MAT-R A; plain RDKit ETKDGv3 (from a baseline-only file where one is given) is a horizontal line.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

FULL = 190


def family(d: dict) -> str:
    """The sampler, with the ETKDG warm start as a family of its own (it starts from RDKit's
    conformers, not from noise)."""
    s = d.get("sampler", {})
    return "warm start" if s.get("init", "random") != "random" else s.get("sampler", "langevin")


def _normalise(d: dict) -> dict:
    """eval_relax.py files keep each method under `methods` and name the sampler only in its SDF
    tag: give them eval_dev.py's layout (`ours`, `etkdg`, `sampler`)."""
    if "methods" not in d:
        return d
    words = dict(w.split("=", 1) for w in d.get("sampler_tag", "").split() if "=" in w)
    out = {**d, **{k: v for k, v in d["methods"].items() if k in ("ours", "etkdg")}}
    out["sampler"] = {"sampler": words.get("sampler", "langevin"), "init": words.get("init", "random")}
    if "etkdg" in out:
        out["etkdg"] = {**out["etkdg"], "oversample": d.get("etkdg_oversample", 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--step", type=int, default=None, help="weights step to draw (default: the most common)")
    ap.add_argument("--out", default="bench/results/quality_vs_nfe.png")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [_normalise(json.loads(Path(f).read_text())) for f in args.files]
    runs = [d for d in runs if d.get("n_mols") == FULL]
    # Plain ETKDGv3 (no oversampling), preferring a baseline-only run (dev_full_etkdg.json, rerun
    # after the seed fix, chem.etkdg_seed) to the ETKDG rows inside older runs of ours.
    plain = [d for d in runs if "etkdg" in d and d["etkdg"].get("oversample", 1) == 1]
    etkdg = next((d["etkdg"] for d in sorted(plain, key=lambda d: "ours" in d)), None)
    ours = [d for d in runs if "ours" in d and d.get("weights_step") is not None]
    step = args.step or Counter(d["weights_step"] for d in ours).most_common(1)[0][0]
    ours = [d for d in ours if d["weights_step"] == step and d["sampler"].get("precision", "fp32") == "fp32"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "cov_r_mean", "COV-R % (0.5 A)"), (axes[1], "mat_r_mean", "MAT-R (A)")):
        for fam, marker, name in (("langevin", "o", "Langevin, from noise"), ("project", "s", "projected, from noise"),
                                  ("warm start", "^", "projected, ETKDG warm start")):
            pts = sorted((d["network_evaluations"], d["ours"][key]) for d in ours if family(d) == fam)
            if pts:
                ax.plot(*zip(*pts), marker=marker, label=name)
        if etkdg is not None:
            ax.axhline(etkdg[key], color="gray", linestyle="--", label="RDKit ETKDGv3")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per conformer")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"QM9 dev benchmark, {FULL} molecules, weights step {step}")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"written: {args.out} ({len(ours)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
