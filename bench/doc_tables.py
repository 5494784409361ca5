"""The result tables of README.md, docs/, bench/README.md and the model card
(confgf_fast/weights/MODEL_CARD.md), generated from the committed result JSON files so that no
figure is copied by hand.

    python bench/doc_tables.py            # rewrite every table region in place
    python bench/doc_tables.py --check    # exit 1 if a committed table differs (tests/test_doc_tables.py)

A table region is the text between `<!-- table:NAME -->` and `<!-- /table:NAME -->` in a document;
TABLES maps NAME to the function that writes it.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from common import describe, paired

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOCS = [REPO / "README.md", REPO / "bench" / "README.md", REPO / "confgf_fast" / "weights" / "MODEL_CARD.md",
        REPO / "bench" / "refs_v2" / "README.md", REPO / "docs" / "benchmarks.md", REPO / "docs" / "history.md",
        REPO / "docs" / "threads.md", REPO / "docs" / "paper_experiments.md", REPO / "docs" / "samplers.md"]
REFS_V2 = REPO / "bench" / "refs_v2"
PAPER = "dev_full_paper_step148250.json"
# The whole-benchmark runs of the sampler table, in row order (missing files are left out).
SAMPLER_RUNS = [PAPER, "dev_full_fast966_step148250.json",
                "dev_full_project_quick_step148250.json", "dev_full_project_k24_step148250.json",
                "dev_full_project_warm_step148250.json"]


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _device(d: dict) -> str:
    prov = d.get("provenance", {})
    return prov.get("machine") or d.get("machine", "?")


def _diff(rows: list[dict], base: list[dict], key: str, fmt: str) -> str:
    m, se, _ = paired(rows, base, key)
    return f"{m:{fmt}} ± {se:{fmt[1:]}}"


def sampler_table() -> str:
    """Whole dev benchmark, shipped weights: every sampler preset with a result file, paired per
    molecule against the paper schedule, plus RDKit ETKDGv3 and ETKDGv3 + MMFF94 (from the files
    rerun after the seed fix, chem.etkdg_seed)."""
    base = _load(PAPER)["per_molecule"]["ours"]
    lines = ["| sampler | schedule | network evaluations / conformer | COV-R % | MAT-R Å | COV-P % | MAT-P Å | "
             "ΔCOV-R vs paper | ΔMAT-R vs paper | ΔCOV-P vs paper | machine |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in SAMPLER_RUNS:
        if not (RESULTS / name).is_file():
            continue
        d = _load(name)
        o, rows = d["ours"], d["per_molecule"]["ours"]
        fam = d["sampler"].get("sampler", "langevin")
        if d["sampler"].get("init", "random") != "random":
            fam += f" (start: {d['sampler']['init'].upper()})"
        sched = d.get("schedule") or "paper"
        diffs = ("—", "—", "—") if name == PAPER else (
            _diff(rows, base, "cov_r", "+.1f"), _diff(rows, base, "mat_r", "+.3f"), _diff(rows, base, "cov_p", "+.1f"))
        lines.append(f"| {fam} | {sched} | {d['network_evaluations']} | {o['cov_r_mean']:.1f} | "
                     f"{o['mat_r_mean']:.3f} | {o['cov_p_mean']:.1f} | {o['mat_p_mean']:.3f} | {' | '.join(diffs)} | "
                     f"{_device(d)} |")
    # The baselines, from their own whole-set files (the ETKDG rows inside older files of ours had
    # the first molecule's ensemble collapsed to one conformer: chem.etkdg_seed).
    for name, key, label in (("dev_full_etkdg.json", "etkdg", "RDKit ETKDGv3"),
                             (RELAX_FULL, "etkdg_mmff", "RDKit ETKDGv3 + MMFF94")):
        if not (RESULTS / name).is_file():
            continue
        d = _load(name)
        m = d["etkdg"] if key == "etkdg" else d["methods"][key]
        rows = d["per_molecule"][key]
        lines.append(f"| {label} | | | {m['cov_r_mean']:.1f} | {m['mat_r_mean']:.3f} | {m['cov_p_mean']:.1f} | "
                     f"{m['mat_p_mean']:.3f} | {_diff(rows, base, 'cov_r', '+.1f')} | "
                     f"{_diff(rows, base, 'mat_r', '+.3f')} | {_diff(rows, base, 'cov_p', '+.1f')} | "
                     f"{_device(d)} |")
    return "\n".join(lines)


def _means_and_deltas(o: dict, rows: list[dict], base: list[dict],
                      deltas: tuple[str, ...] = ("cov_r", "mat_r", "cov_p")) -> str:
    """'COV-R | MAT-R | COV-P | Δ... ' cells of a run: its means, then its paired differences from
    base per key in deltas."""
    fmt = {"cov_r": "+.1f", "mat_r": "+.3f", "cov_p": "+.1f", "mat_p": "+.3f"}
    cells = [f"{o['cov_r_mean']:.1f}", f"{o['mat_r_mean']:.3f}", f"{o['cov_p_mean']:.1f}"]
    return " | ".join(cells + [_diff(rows, base, k, fmt[k]) for k in deltas])


def fewstep_sweep_table() -> str:
    """The 60-molecule sweep of the projected sampler (bench/results/fewstep_sweep), paired
    against the paper schedule's rows for the same molecules."""
    base = _load(PAPER)["per_molecule"]["ours"]
    lines = ["| run | sampler settings | evaluations | COV-R % | MAT-R Å | COV-P % | ΔCOV-R vs paper | "
             "ΔMAT-R vs paper | ΔCOV-P vs paper |", "|---|---|---|---|---|---|---|---|---|"]
    runs = sorted((RESULTS / "fewstep_sweep").glob("*.json"))
    for path in runs:
        d = json.loads(path.read_text())
        o, rows = d["ours"], d["per_molecule"]["ours"]
        lines.append(f"| {path.stem} | {describe(d)} | {d['network_evaluations']} | "
                     f"{_means_and_deltas(o, rows, base)} |")
    return "\n".join(lines)


def drugs_warm_sweep_table() -> str:
    """The warm start on the drug dev benchmark (bench/results/drugs_warm_sweep, eval_dev.py --ref
    drugs_xtb_dev.sdf --threshold 0.75): each run paired per molecule against the plain ETKDGv3
    conformers of the run that has them (the same seeds in every run). File names: weights (ft =
    drug fine-tune, mix = QM9 + drugs), step, raw or averaged (ema) weights, setting."""
    runs = sorted((RESULTS / "drugs_warm_sweep").glob("*.json"))
    base = next((json.loads(p.read_text()) for p in runs if "etkdg" in json.loads(p.read_text())), None)
    if base is None:
        return "(no drug warm-start run with the ETKDG baseline yet)"
    etkdg, e = base["per_molecule"]["etkdg"], base["etkdg"]
    lines = [f"δ {base['threshold']:g} Å, {base['n_mols']} molecules, {_device(base)}", "",
             "| run | step | sampler settings | COV-R % | MAT-R Å | COV-P % | ΔCOV-R vs ETKDG | ΔMAT-R vs ETKDG | "
             "ΔCOV-P vs ETKDG |", "|---|---|---|---|---|---|---|---|---|",
             f"| RDKit ETKDGv3 | | | {e['cov_r_mean']:.1f} | {e['mat_r_mean']:.3f} | {e['cov_p_mean']:.1f} | | | |"]
    for path in runs:
        d = json.loads(path.read_text())
        o, rows = d["ours"], d["per_molecule"]["ours"]
        lines.append(f"| {path.stem} | {d.get('weights_step')} | {describe(d)} | {_means_and_deltas(o, rows, etkdg)} |")
    return "\n".join(lines)


def qm9_candidates_table(pattern: str) -> str:
    """Candidate weights on the whole QM9 dev benchmark at the default schedule (the result files
    bench/results/`pattern`), paired per molecule against the step-220,000 weights (shipped
    2026-12-02 to 2026-12-03) with the same warm starts: QM9 quality must not get worse for a model
    to replace them."""
    # the shipped weights' run with the same warm start (oversampled or not; old files predate the field)
    bases = {1: _load("dev_full_project_warm_step220000.json"), 3: _load("dev_full_project_warm_os3_step220000.json")}
    lines = ["| run | step | init_oversample | device | COV-R % | MAT-R Å | COV-P % | ΔCOV-R vs step 220,000 | "
             "ΔMAT-R vs step 220,000 | ΔCOV-P vs step 220,000 | ΔMAT-P vs step 220,000 | flagged broken "
             "(step 220,000) |", "|---" * 12 + "|"]
    for path in sorted(RESULTS.glob(pattern)):
        d = json.loads(path.read_text())
        o, rows = d["ours"], d["per_molecule"]["ours"]
        base = bases[d["sampler"].get("init_oversample", 1)]
        b = base["per_molecule"]["ours"]
        broken = (f"{100 * o['broken_fraction']:.2f} % ({100 * base['ours']['broken_fraction']:.2f} %)"
                  if "broken_fraction" in o and "broken_fraction" in base["ours"] else "—")
        lines.append(f"| {path.stem} | {d.get('weights_step')} | {d['sampler'].get('init_oversample', 1)} | "
                     f"{_device(d)} | {_means_and_deltas(o, rows, b, ('cov_r', 'mat_r', 'cov_p', 'mat_p'))} | "
                     f"{broken} |")
    return "\n".join(lines)


def mix_qm9_table() -> str:
    """The drug-capable (mixed QM9 + drugs) weights on QM9 (qm9_candidates_table)."""
    return qm9_candidates_table("dev_full_project_warm_mix*.json")


def qm9_anneal_table() -> str:
    """Continuations of the QM9 run (learning-rate anneal, moving average) on QM9 (qm9_candidates_table)."""
    return qm9_candidates_table("dev_full_project_warm_qm9anneal*.json")


# The level-of-theory experiment (issue 17): the same fine-tune of the step-250,000 state on the
# same 6,000 QM9 molecules, once with GFN2-xTB-refined conformers, once with the ETKDG + MMFF94 ones.
QM9_XTB_FT = "dev_full_project_warm_qm9xtbft5000_ema_os3.json"
QM9_MMFF_FT = "dev_full_project_warm_qm9mmffft5000_ema_os3.json"


def qm9_xtb_table() -> str:
    """Both fine-tunes against step 220,000 (qm9_candidates_table), then xTB minus MMFF per molecule."""
    a, b = (_load(n)["per_molecule"]["ours"] for n in (QM9_XTB_FT, QM9_MMFF_FT))
    cells = " | ".join(_diff(a, b, k, f) for k, f in (("cov_r", "+.1f"), ("mat_r", "+.3f"), ("cov_p", "+.1f"),
                                                         ("mat_p", "+.3f")))
    return (qm9_candidates_table("dev_full_project_warm_qm9*ft5000*.json") + "\n\n"
            "| GFN2-xTB data minus ETKDG + MMFF94 data | n | ΔCOV-R | ΔMAT-R Å | ΔCOV-P | ΔMAT-P Å |\n"
            f"|---|---|---|---|---|---|\n| `{QM9_XTB_FT}` \N{MINUS SIGN} `{QM9_MMFF_FT}` | "
            f"{paired(a, b, 'cov_r')[2]} | {cells} |")


def sampler_speed_table() -> str:
    """Conformers per second of the newest bench_sampler.py result that timed the projected
    sampler: every method of its QM9 workload, measured in the same run."""
    files = [p for p in sorted(RESULTS.glob("sampler_cpu_*.json"))
             if "project_quick_compiled" in json.loads(p.read_text()).get("results", {}).get("qm9", {})]
    if not files:
        return "(no bench_sampler.py result with the projected sampler yet)"
    d = json.loads(files[-1].read_text())
    rows, work = d["results"]["qm9"], d["workloads"]["qm9"]
    lines = [f"`{files[-1].name}`: {work['molecules']} x {work['conformers_per_molecule']} conformers of "
             f"`{work['smiles']}`, {d['machine']['cpu_model']}, {d['machine']['torch_threads']} thread(s), "
             f"commit {str(d.get('provenance', {}).get('git_commit'))[:7]}", "",
             "| method | network evaluations / conformer | conformers/s | how |", "|---|---|---|---|"]
    for name, row in rows.items():
        if "conformers_per_s" in row:
            evals = row.get("network_evaluations_per_conformer", "—")
            how = ("measured, whole schedule" if name.startswith("project")
                   else f"measured, {row['includes']} + whole schedule" if name.startswith("warm") and "includes" in row
                   else "measured, ETKDG embedding + whole schedule" if name.startswith("warm") else "RDKit, measured")
            lines.append(f"| {name} | {evals} | {row['conformers_per_s']:.1f} | {how} |")
        else:
            lines.append(f"| {name}, `fast` | {d['schedule']['fast_evaluations']} | "
                         f"{row['fast_schedule_conformers_per_s']:.2f} | extrapolated from "
                         f"{row['network_evaluations_per_conformer']} timed evaluations |")
            lines.append(f"| {name}, `paper` | {d['schedule']['paper_evaluations']} | "
                         f"{row['paper_schedule_conformers_per_s']:.3f} | extrapolated |")
    return "\n".join(lines)


def sampler_real_table() -> str:
    """Conformers per second on the benchmarks' own molecules (bench_sampler.py test_real), every
    method of the newest result that has them, measured in the same run on one thread."""
    files = [p for p in sorted(RESULTS.glob("sampler_cpu_*.json"))
             if "qm9_dev" in json.loads(p.read_text()).get("results", {})]
    if not files:
        return "(no bench_sampler.py result with the real workloads yet)"
    d = json.loads(files[-1].read_text())
    labels = {"noise": "from noise (`--init random`, `noise`)", "quick": "from noise, `quick`",
              "warm": "the default (`warm`: ETKDG 3x + selection)", "etkdg": "RDKit ETKDGv3"}
    lines = [f"`{files[-1].name}`: {d['machine']['cpu_model']}, {d['machine']['torch_threads']} thread(s), "
             f"commit {str(d.get('provenance', {}).get('git_commit'))[:7]}, unrelaxed, one round each", "",
             "| molecules | method | network evaluations / conformer | network GFLOP / conformer | conformers/s "
             "| vs ETKDGv3 | network GFLOP/s (share of a matmul's) |", "|---|---|---|---|---|---|---|"]
    for name, rows in d["results"].items():
        if name not in d.get("workloads", {}) or "reference" not in d["workloads"][name]:
            continue
        w = d["workloads"][name]
        what = f"{w['reference']}: {w['molecules']} x {w['conformers_per_molecule']}"
        base = rows.get("etkdg", {}).get("conformers_per_s")
        for method in ("noise", "quick", "warm", "etkdg"):
            row = rows.get(method)
            if row is None:
                continue
            ratio = f"{row['conformers_per_s'] / base:.2f}x" if base else "—"
            if "network_gflop_per_conformer" in row:
                net = (row["network_evaluations_per_conformer"], f"{row['network_gflop_per_conformer']:.2f}",
                       f"{row['network_gflops']:.1f} ({100 * row['network_fraction_of_ceiling']:.0f} %)")
            else:
                net = ("—", "—", "—")
            lines.append(f"| {what} | {labels[method]} | {net[0]} | {net[1]} | {row['conformers_per_s']:.1f} "
                         f"| {ratio} | {net[2]} |")
    return "\n".join(lines)


# ---- model card ---------------------------------------------------------------------------------
# Rows of the model card's quality tables: (result file, label). The labels say which weights and
# which schedule a file holds (its step is in the file name, not always in the file); every figure
# of a row comes from the file. "{evals}", "{bands}", "{levels}", "{spl}" and "{precision}" in a label
# are filled from the file; "{times}" is the multiplication sign.
CARD_FULL_RUNS = [
    (QM9_XTB_FT, "**ours, the GFN2-xTB fine-tune (shipped 2026-12-03), warm schedule with 3x diverse ETKDG starts, "
                 "the default** ({evals} evaluations)"),
    ("dev_full_project_warm_os3_step220000.json",
     "ours, step 220,000, warm schedule with 3x diverse ETKDG starts ({evals} evaluations)"),
    ("dev_full_project_warm_step220000.json",
     "ours, step 220,000 (shipped 2026-12-02 to 2026-12-03), warm schedule without oversampling ({evals} evaluations)"),
    ("dev_full_project_warm_step148250.json",
     "ours, step 148,250 (shipped before), warm schedule: ETKDG warm start + projected sampler "
     "({evals} evaluations)"),
    ("dev_full_project_quick_step148250.json",
     "ours, step 148,250 (shipped before), quick schedule: projected sampler from noise ({evals} evaluations)"),
    ("dev_full_paper_step148250.json", "**ours, step 148,250 (shipped before), paper schedule** ({evals} evaluations)"),
    ("dev_full_fast966_step148250.json",
     "**ours, step 148,250 (shipped before), fast schedule** ({evals} evaluations, bands `{bands}`)"),
    ("dev_full_bands966_step97500.json", "ours, step 97,500 (shipped before), fast schedule ({evals})"),
    ("dev_full_bands816_step97500.json", "ours, step 97,500, banded {evals} evaluations (`{bands}`)"),
    ("dev_full_step72000_fast_bf16.json",
     "ours, step 72,000, previous fast preset ({levels} {times} {spl} = {evals} evaluations), {precision}"),
    ("dev_full_step32750_fast.json", "ours, step 32,750 (shipped before), previous fast preset"),
    ("dev_full_step10250_fast.json", "ours, step 10,250, previous fast preset"),
]
CARD_FULL_ETKDG = "dev_full_etkdg.json"
# (file, label, the file of the same weights' paper schedule on the same molecules, for ΔCOV-R)
CARD_S60_RUNS = [
    ("dev_s60_paper_step97500.json", "**step 97,500, paper schedule** ({evals} evaluations)",
     "dev_s60_paper_step97500.json"),
    ("schedule_sweep/K97500_bands966.json", "step 97,500, fast schedule ({evals}, bands)",
     "dev_s60_paper_step97500.json"),
    ("dev_s60_bands816_step97500.json", "step 97,500, banded {evals}", "dev_s60_paper_step97500.json"),
    ("dev_s60_step32750_paper.json", "step 32,750, paper schedule", "dev_s60_step32750_paper.json"),
    ("schedule_sweep/H_bands816.json", "step 32,750, banded {evals}", "dev_s60_step32750_paper.json"),
    ("dev_s60_step32750_fast.json",
     "step 32,750, previous fast preset ({levels} {times} {spl} = {evals}), {precision}",
     "dev_s60_step32750_paper.json"),
    ("dev_s60_step32750_fast_bf16.json", "step 32,750, previous fast preset, bf16 autocast",
     "dev_s60_step32750_paper.json"),
]
CARD_S60_ETKDG = "dev_s60_step32750_paper.json"  # the 60-molecule run that also timed ETKDG


def _pct(x: float) -> str:
    """A percentage as the card writes it: 100 % whole, else one decimal."""
    return "100 %" if round(x, 1) == 100.0 else f"{x:.1f} %"


def _label(template: str, d: dict) -> str:
    s = d.get("sampler", {})
    return template.format(evals=d.get("network_evaluations"), bands=s.get("bands"), levels=s.get("levels") or 50,
                           spl=s.get("steps_per_level"), precision=s.get("precision", "fp32"),
                           times="\N{MULTIPLICATION SIGN}")


def _seconds(m: dict, d: dict | None) -> str:
    compiled = d is not None and d.get("sampler", {}).get("compile") == "on"
    return f"{m['seconds']:,.0f} s" + (" (compiled)" if compiled else "")


def _quality_cells(m: dict) -> list[str]:
    return [f"{_pct(m['cov_r_mean'])} / {_pct(m['cov_r_median'])}", f"{m['mat_r_mean']:.3f} / {m['mat_r_median']:.3f}",
            f"{_pct(m['cov_p_mean'])} / {_pct(m['cov_p_median'])}", f"{m['mat_p_mean']:.3f} / {m['mat_p_median']:.3f}"]


def card_full_table() -> str:
    """The model card's whole-benchmark table: every listed run, then RDKit ETKDGv3."""
    lines = ["| method | COV-R mean / median | MAT-R mean / median (Å) | COV-P mean / median | "
             "MAT-P mean / median (Å) | stereo kept | time, conformers |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, label in CARD_FULL_RUNS:
        d = _load(name)
        o = d["ours"]
        lines.append(f"| {_label(label, d)} | {' | '.join(_quality_cells(o))} | {_pct(100 * o['stereo_match'])} | "
                     f"{_seconds(o, d)}, {o['conformers']:,} |")
    d = _load(CARD_FULL_ETKDG)
    e = d["etkdg"]
    lines.append(f"| RDKit ETKDGv3 ({e['n_mols']} molecules: it embeds nothing for {e['n_missing']}) | "
                 f"{' | '.join(_quality_cells(e))} | {_pct(100 * e['stereo_match'])} | {_seconds(e, None)}, "
                 f"{e['conformers']:,} |")
    return "\n".join(lines)


def card_sample_table() -> str:
    """The model card's 60-molecule table: each run with its paired ΔCOV-R against the paper
    schedule of the same weights, then RDKit ETKDGv3 on the same molecules."""
    lines = ["| method | COV-R mean / median | MAT-R mean / median (Å) | COV-P mean / median | "
             "MAT-P mean / median (Å) | ΔCOV-R vs paper | time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, label, paper in CARD_S60_RUNS:
        d = _load(name)
        o = d["ours"]
        delta = "0" if name == paper else _diff(d["per_molecule"]["ours"], _load(paper)["per_molecule"]["ours"],
                                                "cov_r", "+.1f")
        lines.append(f"| {_label(label, d)} | {' | '.join(_quality_cells(o))} | {delta} | {o['seconds']:,.0f} s |")
    e = _load(CARD_S60_ETKDG)["etkdg"]
    lines.append(f"| RDKit ETKDGv3 | {' | '.join(_quality_cells(e))} | | {e['seconds']:,.0f} s |")
    return "\n".join(lines)


# The learning-curve table of the model card: (result file, evaluation label, bold). The weights'
# training step is in the file name (schedule_sweep/H_bands816.json: the step-32,750 weights
# shipped then, as in CARD_S60_RUNS); every figure of a row comes from the file. Bold: the
# whole-benchmark runs of each shipped snapshot at its shipped preset, and step 148,250's paper schedule.
CARD_CURVE_RUNS = [
    ("dev_s10_step8500_fast.json", "10-mol sample, first fast preset", False),
    ("dev_s10_step10250_paper.json", "10-mol sample, paper", False),
    ("dev_full_step10250_fast.json", "all 190, fast", True),
    ("dev_s10_step18500_paper.json", "10-mol sample, paper", False),
    ("dev_full_step32750_fast.json", "all 190, fast", True),
    ("dev_s60_step32750_paper.json", "60-mol sample, paper", False),
    ("schedule_sweep/H_bands816.json", "60-mol sample, banded {evals}", False),
    ("dev_full_step72000_fast_bf16.json", "all 190, old fast, {precision}", False),
    ("dev_full_bands966_step97500.json", "all 190, fast (bands, {evals})", True),
    ("dev_full_bands816_step97500.json", "all 190, banded {evals}", False),
    ("schedule_sweep/K97500_bands966.json", "60-mol sample, fast (bands, {evals})", False),
    ("dev_s60_bands816_step97500.json", "60-mol sample, banded {evals}", False),
    ("dev_s60_paper_step97500.json", "60-mol sample, paper", False),
    ("dev_s60_fast966_step137750.json", "60-mol sample, fast ({evals}), not shipped (training state)", False),
    ("dev_full_fast966_step148250.json", "all 190, fast (bands, {evals})", True),
    ("dev_full_paper_step148250.json", "all 190, paper", True),
]
CARD_CURVE_LOG = "learning_curve_qm9_small.jsonl"


def _step(name: str) -> int:
    """The training step of a result file's weights, from its name (K97500_..., ..._step97500...);
    H_bands816.json, the one sweep file without it, ran the step-32,750 weights."""
    m = re.search(r"(?:step|^K)(\d+)", Path(name).name)
    if m:
        return int(m.group(1))
    if Path(name).name == "H_bands816.json":
        return 32750
    raise ValueError(f"no training step in {name}")


def _val_loss(log: list[dict], step: int) -> dict:
    """The learning-curve record at step, or else the nearest one before it (the log has one
    record every 500 steps, so step 10,250 shows the validation loss at 10,000)."""
    before = [r for r in log if "val_loss" in r and r["step"] <= step]
    if not before:
        raise ValueError(f"no validation loss at or before step {step}")
    return max(before, key=lambda r: r["step"])


def card_curve_table() -> str:
    """The model card's learning curve: each listed dev-benchmark run at its training step, with
    the validation loss of bench/results/learning_curve_qm9_small.jsonl at that step (or the
    nearest record before it: see _val_loss). The log's event lines (data switches) are skipped."""
    log = [json.loads(line) for line in (RESULTS / CARD_CURVE_LOG).read_text().splitlines() if line.strip()]
    log = [r for r in log if "step" in r]
    lines = ["| step | validation loss | evaluation | COV-R | MAT-R (Å) | COV-P | MAT-P (Å) |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for name, label, bold in CARD_CURVE_RUNS:
        d = _load(name)
        o, step = d["ours"], _step(name)
        cells = [_label(label, d), _pct(o["cov_r_mean"]), f"{o['mat_r_mean']:.3f}", _pct(o["cov_p_mean"]),
                 f"{o['mat_p_mean']:.3f}"]
        if bold:
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {step:,} | {_val_loss(log, step)['val_loss']:.1f} | {' | '.join(cells)} |")
    return "\n".join(lines)


WARM = "dev_full_project_warm_step148250.json"
RELAX_FULL = "relax_dev_full_warm_mmff.json"
RELAX_XTB_FULL = "relax_dev_full_warm_os3_mmff_xtb.json"  # eval_relax.py --relax mmff xtb, all 190 molecules
# Rows of warm_vs_etkdg: (file with our rows, their per_molecule key, what ours is, file with the
# ETKDG rows, their key, what they are); paired per molecule (the same 190 molecules and
# conformer counts in every file). Plain ETKDGv3 comes from dev_full_etkdg.json, rerun after the
# seed fix (chem.etkdg_seed), not from the ETKDG rows inside older files of ours.
WARM_VS_ETKDG = [
    (QM9_XTB_FT, "ours",
     "**the default**: warm start, 3x diverse ETKDG starts, the GFN2-xTB fine-tune (shipped 2026-12-03)",
     "dev_full_etkdg.json", "etkdg", "ETKDGv3"),
    (QM9_XTB_FT, "ours", "**the default**",
     "dev_full_etkdg_os3.json", "etkdg", "ETKDGv3, 3x oversampled with the same diversity selection"),
    ("dev_full_project_warm_os3_step220000.json", "ours",
     "the same start with step 220,000 (shipped 2026-12-02 to 2026-12-03)", "dev_full_etkdg.json", "etkdg", "ETKDGv3"),
    ("relax_dev_full_warm_os3_mmff.json", "ours_mmff", "the default + MMFF94 (`--relax mmff`)",
     RELAX_FULL, "etkdg_mmff", "ETKDGv3 + MMFF94"),
    ("relax_dev_full_warm_os3_mmff.json", "ours_mmff", "the default + MMFF94 (`--relax mmff`)",
     "relax_dev_full_warm_os3_mmff.json", "etkdg_mmff", "ETKDGv3, 3x diverse, + MMFF94"),
    ("relax_dev_full_warm_os3_mmff.json", "ours_mmff", "the default + MMFF94 (`--relax mmff`)",
     "relax_dev_full_warm_os3_mmff.json", "ours", "the default, unrelaxed"),
    (WARM, "ours", "warm start without oversampling, step 148,250", "dev_full_etkdg.json", "etkdg", "ETKDGv3"),
    # GFN2-xTB, whole benchmark (eval_relax.py --relax mmff xtb; ~0.3 s per QM9 conformer per core).
    (RELAX_XTB_FULL, "ours_xtb", "the default + GFN2-xTB (`--relax xtb`)",
     RELAX_XTB_FULL, "etkdg_xtb", "ETKDGv3, 3x diverse, + GFN2-xTB"),
    (RELAX_XTB_FULL, "ours_xtb", "the default + GFN2-xTB (`--relax xtb`)", RELAX_XTB_FULL, "ours",
     "the default, unrelaxed"),
    (RELAX_XTB_FULL, "ours_xtb", "the default + GFN2-xTB (`--relax xtb`)", RELAX_XTB_FULL, "ours_mmff",
     "the default + MMFF94"),
]


def warm_vs_etkdg_table() -> str:
    """The ETKDG warm start against ETKDGv3, paired per molecule (the same 190 molecules and
    conformer counts; ETKDG's own seeds differ from the warm start's)."""
    lines = ["| ours | minus | n | ΔCOV-R | ΔMAT-R Å | ΔCOV-P | ΔMAT-P Å | result files, machine |",
             "|---|---|---|---|---|---|---|---|"]
    for name, key, ours_label, base_name, base_key, base_label in WARM_VS_ETKDG:
        d = _load(name)
        ours, rd = d["per_molecule"][key], _load(base_name)["per_molecule"][base_key]
        cells = [_diff(ours, rd, k, f) for k, f in (("cov_r", "+.1f"), ("mat_r", "+.3f"), ("cov_p", "+.1f"),
                                                       ("mat_p", "+.3f"))]
        files = f"`{name}`" if base_name == name else f"`{name}` and `{base_name}`"
        lines.append(f"| {ours_label} | {base_label} | {paired(ours, rd, 'cov_r')[2]} | {' | '.join(cells)} | "
                     f"{files}, {_device(d)} |")
    return "\n".join(lines)


RELAX_METHOD_LABELS = {"ours": "ours, the default (`--relax auto` = none for QM9)", "etkdg": "ETKDGv3, 3x diverse",
                       "ours_mmff": "ours + MMFF94 (`--relax mmff`)", "etkdg_mmff": "ETKDGv3, 3x diverse, + MMFF94",
                       "ours_xtb": "ours + GFN2-xTB (`--relax xtb`)", "etkdg_xtb": "ETKDGv3, 3x diverse, + GFN2-xTB"}


def relax_methods_table() -> str:
    """Every method of the whole-benchmark relax run (RELAX_XTB_FULL) in absolute figures: COV/MAT
    (mean over molecules), broken and stereo-kept shares after relaxing, and conformers per second
    with sampling or embedding and the relax included (one thread each)."""
    d = _load(RELAX_XTB_FULL)
    prov = d.get("provenance", {})
    lines = [f"`{RELAX_XTB_FULL}`: {d['n_mols']} molecules, δ {d['threshold']} Å, commit "
             f"{str(prov.get('git_commit'))[:7]}{' (dirty)' if prov.get('git_dirty') else ''}, {_device(d)}", "",
             "| method | COV-R % | MAT-R Å | COV-P % | MAT-P Å | broken | stereo kept | conformers | "
             "conformers/s (relax included) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, m in d["methods"].items():
        lines.append(f"| {RELAX_METHOD_LABELS.get(key, key)} | {m['cov_r_mean']:.1f} | {m['mat_r_mean']:.3f} | "
                     f"{m['cov_p_mean']:.1f} | {m['mat_p_mean']:.3f} | {_pct(100 * m['broken_fraction'])} | "
                     f"{_pct(100 * m['stereo_ok_fraction'])} | {m['conformers']} | {m['conformers_per_s']:.2f} |")
    return "\n".join(lines)


# ---- drug benchmark (bench/eval_drugs.py) --------------------------------------------------------
DRUGS_RESULT = "drugs_eval.json"  # the eval_drugs.py result the `drugs` table renders
DRUGS_BENCH_LABELS = {"drugs": "drug dev set (GFN2-xTB)", "geom": "GEOM-Drugs, 10 molecules"}
DRUGS_METHOD_LABELS = {"ours": "ours (warm start)", "etkdg": "RDKit ETKDGv3", "etkdg_mmff": "ETKDGv3 + MMFF94",
                       "ours_mmff": "ours + MMFF94", "etkdg_diverse": "ETKDGv3, 3x diverse subset"}


def _num(x: float, fmt: str) -> str:
    """x formatted, or an em dash where it is NaN (no molecule, or fewer than 2 for a paired SE)."""
    return "—" if x != x else f"{x:{fmt}}"


def _mean_median(s: dict, key: str, pct: bool) -> str:
    mean, median = s[f"{key}_mean"], s[f"{key}_median"]
    if mean != mean:
        return "—"
    return f"{_pct(mean)} / {_pct(median)}" if pct else f"{mean:.3f} / {median:.3f}"


def drugs_method_labels(d: dict) -> dict[str, str]:
    """DRUGS_METHOD_LABELS for one eval_drugs.py result, saying which row is what generate writes by
    default: where every model that sampled molecules was exported with relax_default mmff
    (weights_models), "auto" relaxes, so ours + MMFF94 is the default and ours is `--relax none`."""
    labels = dict(DRUGS_METHOD_LABELS)
    used = [m for m in d.get("weights_models") or [] if m.get("molecules")]
    if used and all(m.get("relax_default") == "mmff" for m in used):
        labels["ours_mmff"] = "**ours, the default** (+ MMFF94)"
        labels["ours"] = "ours unrelaxed (`--relax none`)"
    return labels


def drugs_table_from(d: dict, name: str) -> str:
    """One eval_drugs.py result as markdown: a line naming the run, a table with a row per
    benchmark x method (COV-R and COV-P at each threshold of the file, MAT-R and MAT-P, which do
    not depend on the threshold, each as mean / median over the molecules the method has output
    for; stereo kept; molecules without output; conformers per second), then a table of the paired
    per-molecule differences (mean ± standard error over the molecules both methods have), and
    the molecules ours made nothing for, with the reason."""
    keys = [f"{t:g}" for t in d["thresholds"]]
    labels = drugs_method_labels(d)
    prov = d.get("provenance", {})
    commit = str(prov.get("git_commit"))[:7] + (" (dirty)" if prov.get("git_dirty") else "")
    th = d["threads"]
    rdkit = th["etkdg_embed"] if th["etkdg_embed"] == th["mmff"] else f"{th['etkdg_embed']} / {th['mmff']}"
    used = d.get("weights_models")  # files written before several weights per run have none
    per = ("; molecules per weights: " + ", ".join(f"`{m['name']}` (step {m['step']:,}) {m['molecules']}"
                                                   for m in used)) if used and len(used) > 1 else ""
    head = (f"`{name}`: weights `{d['weights']}` (step {d['weights_step']:,}, elements {d['trained_elements']}{per}), "
            f"`{d['sampler_tag']}` ({d['network_evaluations']} network evaluations), commit {commit}, "
            f"{prov.get('machine', '?')}; threads: torch {th['torch']}, RDKit {rdkit}. 2K conformers for K "
            "references; COV and MAT as mean / median over the molecules a method has output for; MAT does not "
            "depend on δ.")
    cols = ["benchmark", "method", *(f"COV-R δ {k} Å" for k in keys), "MAT-R Å", *(f"COV-P δ {k} Å" for k in keys),
            "MAT-P Å", "stereo kept", "without output", "conf/s"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for bench, b in d["benchmarks"].items():
        label = f"{DRUGS_BENCH_LABELS.get(bench, bench)} ({b['n_mols']} mol., {b['n_ref_confs']} ref.)"
        for method, m in b["methods"].items():
            by_t = m["by_threshold"]
            first = by_t[keys[0]]
            cells = [label, labels.get(method, method),
                     *(_mean_median(by_t[k], "cov_r", True) for k in keys), _mean_median(first, "mat_r", False),
                     *(_mean_median(by_t[k], "cov_p", True) for k in keys), _mean_median(first, "mat_p", False),
                     "—" if m["stereo_match"] != m["stereo_match"] else _pct(100 * m["stereo_match"]),
                     str(m["n_without_output"]),
                     _num(m["conformers_per_s"], ".2f")]
            lines.append("| " + " | ".join(cells) + " |")
    dcols = ["benchmark", "difference", "molecules", *(f"ΔCOV-R δ {k}" for k in keys), "ΔMAT-R Å",
             *(f"ΔCOV-P δ {k}" for k in keys), "ΔMAT-P Å"]
    lines += ["", "| " + " | ".join(dcols) + " |", "|" + "---|" * len(dcols)]

    def cell(p: dict, fmt: str) -> str:
        return "—" if p["mean"] != p["mean"] else f"{p['mean']:+{fmt}} ± {_num(p['se'], fmt)}"

    for bench, b in d["benchmarks"].items():
        for pair, by_t in b["paired"].items():
            a, base = (labels.get(x, x) for x in pair.split(" - "))
            first = by_t[keys[0]]
            cells = [DRUGS_BENCH_LABELS.get(bench, bench), f"{a} \N{MINUS SIGN} {base}", str(first["cov_r"]["n"]),
                     *(cell(by_t[k]["cov_r"], ".1f") for k in keys), cell(first["mat_r"], ".3f"),
                     *(cell(by_t[k]["cov_p"], ".1f") for k in keys), cell(first["mat_p"], ".3f")]
            lines.append("| " + " | ".join(cells) + " |")
    refused = [f"{DRUGS_BENCH_LABELS.get(bench, bench)} mol_id {w['mol_id']} ({w['reason'].split(';')[0]})"
               for bench, b in d["benchmarks"].items() for w in b.get("ours_without_output", [])]
    if refused:
        lines += ["", "Ours made no conformers for: " + "; ".join(refused) + "."]
    return "\n".join(lines)


def drugs_eval_sweep_table() -> str:
    """Warm-start settings of the drug-like weights on the drug dev benchmark
    (bench/results/drugs_eval_sweep: eval_drugs.py --bench drugs, one file per setting), each paired
    per molecule against plain and diversely selected ETKDGv3 of the same seeds, at both thresholds."""
    runs = sorted((RESULTS / "drugs_eval_sweep").glob("*.json"))
    if not runs:
        return "(no bench/results/drugs_eval_sweep run yet)"

    def cell(p: dict, fmt: str) -> str:
        return f"{p['mean']:+{fmt}} ± {_num(p['se'], fmt)}"

    first = json.loads(runs[0].read_text())
    lines = [f"drug dev set, {first['benchmarks']['drugs']['n_mols']} molecules, {_device(first)}", "",
             "| run | step | sampler settings | COV-R δ 0.75 % | ΔCOV-R δ 0.75 vs ETKDG | ΔCOV-R δ 1.25 vs ETKDG | "
             "ΔMAT-R Å vs ETKDG | ΔCOV-P δ 0.75 vs ETKDG | ΔCOV-R δ 0.75 vs diverse ETKDG |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in runs:
        d = json.loads(path.read_text())
        b = d["benchmarks"]["drugs"]
        pe, pd = b["paired"]["ours - etkdg"], b["paired"].get("ours - etkdg_diverse")
        lines.append(f"| {path.stem} | {d['weights_step']:,} | `{d['sampler_tag']}` | "
                     f"{b['methods']['ours']['by_threshold']['0.75']['cov_r_mean']:.1f} | "
                     f"{cell(pe['0.75']['cov_r'], '.1f')} | {cell(pe['1.25']['cov_r'], '.1f')} | "
                     f"{cell(pe['0.75']['mat_r'], '.3f')} | {cell(pe['0.75']['cov_p'], '.1f')} | "
                     f"{cell(pd['0.75']['cov_r'], '.1f') if pd else '—'} |")
    return "\n".join(lines)


# Successive shipped drugs_small.pt versions (files of bench/results/drugs_eval_sweep, each run as
# the shipped set with the same seeds): (newer, older) pairs, compared per molecule.
DRUGS_VERSIONS = [("mix64000_ema_sigma0.15_annealed.json", "shipped22400_sigma0.15.json")]


def drugs_versions_table() -> str:
    """Each new drugs_small.pt against the one it replaced: paired per-molecule differences (same
    warm starts) for every method both runs have (unrelaxed and MMFF94-relaxed) on each benchmark,
    at δ 0.75 Å."""
    lines = ["| newer \N{MINUS SIGN} older | benchmark | conformers | n | ΔCOV-R | ΔMAT-R Å | ΔCOV-P | ΔMAT-P Å |",
             "|---|---|---|---|---|---|---|---|"]
    for new_name, old_name in DRUGS_VERSIONS:
        new, old = (json.loads((RESULTS / "drugs_eval_sweep" / n).read_text()) for n in (new_name, old_name))
        for bench, b in new["benchmarks"].items():
            ob = old["benchmarks"].get(bench)
            if ob is None:
                continue
            for method in ("ours", "ours_mmff"):
                rows = b["per_molecule"].get(method, {}).get("0.75")
                base = ob["per_molecule"].get(method, {}).get("0.75")
                if rows is None or base is None:
                    continue
                cells = [_diff(rows, base, k, f) for k, f in (("cov_r", "+.1f"), ("mat_r", "+.3f"), ("cov_p", "+.1f"),
                                                              ("mat_p", "+.3f"))]
                what = drugs_method_labels(new).get(method, method)
                lines.append(f"| step {new['weights_step']:,} \N{MINUS SIGN} step {old['weights_step']:,} | "
                             f"{DRUGS_BENCH_LABELS.get(bench, bench)} | {what} | "
                             f"{paired(rows, base, 'cov_r')[2]} | {' | '.join(cells)} |")
    return "\n".join(lines)


def drugs_table() -> str:
    """The `drugs` table: bench/results/DRUGS_RESULT rendered by drugs_table_from, or a note that
    the file does not exist yet."""
    if not (RESULTS / DRUGS_RESULT).is_file():
        return f"(no bench/eval_drugs.py result bench/results/{DRUGS_RESULT} yet)"
    return drugs_table_from(_load(DRUGS_RESULT), DRUGS_RESULT)


def far_conformers_table() -> str:
    """The `far_conformers` table: classes of the far conformers, ours vs ETKDGv3, on the
    40-molecule dev sample (bench/far_conformers.py's markdown_table of its result file)."""
    from far_conformers import markdown_table

    return markdown_table(_load("far_conformers_s40.json"))


ETKDG_POOL = "etkdg_pool_ceiling.json"
ETKDG_POOL_LABELS = {"pool": "the whole 3x pool", "first": "its first 2K (plain ETKDGv3)",
                     "fps": "its diverse 2K (the warm start's selection)", "mmff_pool": "the whole pool + MMFF94",
                     "mmff_first": "the first 2K + MMFF94", "mmff_fps": "a diverse 2K of the pool + MMFF94"}


def etkdg_pool_table() -> str:
    """COV-R of the ETKDGv3 pool the warm start selects from (bench/etkdg_pool.py), paired against
    the diverse 2K, and how near the references the raw pool misses are."""
    d = _load(ETKDG_POOL)
    lines = ["| ETKDGv3 conformers | COV-R % | minus the diverse 2K | n |", "|---|---|---|---|"]
    for key, label in ETKDG_POOL_LABELS.items():
        m = d["summary"][key]
        diff = "—" if key == "fps" else f"{m['minus_fps']['mean']:+.2f} ± {m['minus_fps']['se']:.2f}"
        lines.append(f"| {label} | {m['cov_r_mean']:.2f} | {diff} | {m['minus_fps']['n']} |")
    miss = d["pool_misses"]
    bins = miss["nearest_rmsd_bins"]
    spans = ", ".join(f"{a:g}\N{EN DASH}{b:g} Å: {c}" if b != float("inf") else f"≥ {a:g} Å: {c}"
                      for a, b, c in zip(bins, bins[1:], miss["histogram"]))
    lines.append("")
    lines.append(f"References the raw pool misses: {miss['references']} of {d['reference_conformers']}; their "
                 f"nearest pool conformer: {spans}. `{ETKDG_POOL}`, {_device(d)}, δ {d['threshold']} Å.")
    return "\n".join(lines)


def _refs_v2_summaries() -> list[tuple[str, dict]]:
    """(benchmark name, build-refs summary) for each v2 union built so far, QM9 first."""
    out = []
    for name in ("qm9_dev_v2", "drugs_dev_v2"):
        path = REFS_V2 / f"{name}.json"
        if path.is_file():
            out.append((name, json.loads(path.read_text())))
    return out


def refs_v2_totals_table() -> str:
    """One row per v2 benchmark: the recipe's settings and what the independent search added."""
    lines = ["| benchmark | molecules | starts / molecule | v1 references | minima found | new (> 0.5 Å) | "
             "new (> 0.25 Å) | molecules with new | molecules with a lower minimum | union | core-seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, d in _refs_v2_summaries():
        t, st = d["totals"], d["settings"]
        lines.append(f"| `{name}.sdf.gz` | {t['molecules']} | {st['starts']} | {t['references']} | {t['minima']} | "
                     f"{t['unmatched_0p5']} ({_pct(100 * t['unmatched_0p5'] / max(1, t['minima']))} of the minima) | "
                     f"{t['unmatched_0p25']} | {t['molecules_with_unmatched_0p5']} | "
                     f"{t['molecules_with_lower_minimum']} | {t['union']} | {t['seconds']:.0f} |")
    return "\n".join(lines)


def refs_v2_molecules_table() -> str:
    """Per molecule of each v2 benchmark: references, torsions, minima found, new minima and how far
    below the lowest reference the search went (molecules with at least one new minimum or a lower
    minimum; the others are counted in the last line)."""
    lines = ["| benchmark | mol_id | SMILES | torsions | v1 references | minima found | new (> 0.5 Å) | "
             "new (> 0.25 Å) | lowest found below the references, kcal/mol |",
             "|---|---|---|---|---|---|---|---|---|"]
    quiet = []
    for name, d in _refs_v2_summaries():
        rest = 0
        for r in d["molecules"]:
            if r["unmatched_0p5"] == 0 and r["unmatched_0p25"] == 0 and r["lower_than_references_kcal"] <= 0.1:
                rest += 1
                continue
            lines.append(f"| {name} | {r['mol_id']} | `{r['smiles']}` | {r['torsions']} | {r['references']} | "
                         f"{r['minima']} | {r['unmatched_0p5']} | {r['unmatched_0p25']} | "
                         f"{r['lower_than_references_kcal']:.2f} |")
        quiet.append(f"{name}: {rest} more molecules with no new minimum")
    lines.append("")
    lines.append("; ".join(quiet) + ".")
    return "\n".join(lines)


# ---- the v2 QM9 dev benchmark (bench/refs_v2, bench/v2_suite.sh) ---------------------------------
V2 = "v2"  # bench/results/v2
# The whole-benchmark runs of what generate does by default (the warm start, planar 1.0 since
# 2026-12-07), QM9 (eval_relax: ours, ours_mmff, etkdg, etkdg_mmff) and drugs (eval_drugs, both
# benchmarks); BEFORE_PLANAR: the same run of the default before planar.
DEFAULT_QM9 = "qm9_warm_planar_vs_etkdg.json"
BEFORE_PLANAR_QM9 = "qm9_warm_vs_etkdg.json"
DEFAULT_DRUGS = "sweeps/drugs_v2_warm_planar1.json"
# (file, per_molecule key, label, network evaluations per conformer or None)
V2_METHODS = [
    (DEFAULT_QM9, "ours", "**the default**: warm start from 3x diverse ETKDGv3 (`warm`)", 24),
    (DEFAULT_QM9, "ours_mmff", "the default + MMFF94 (`--relax mmff`)", 24),
    ("qm9_noise.json", "ours", "**from noise** (`--init random`, schedule `noise`: 4 x 24, energy-weighted diverse)",
     None),
    ("qm9_quick_vs_etkdg3.json", "ours", "from noise, `quick` (44, one sample per conformer)", 44),
    ("qm9_quick_vs_etkdg3.json", "ours_mmff", "`quick` + MMFF94", 44),
    ("qm9_fast.json", "ours", "from noise, Langevin `fast`", 966),
    (DEFAULT_QM9, "etkdg", "RDKit ETKDGv3", None),
    (DEFAULT_QM9, "etkdg_mmff", "ETKDGv3 + MMFF94", None),
    ("qm9_quick_vs_etkdg3.json", "etkdg", "ETKDGv3, 3x oversampled, diverse 2K", None),
    ("qm9_quick_vs_etkdg3.json", "etkdg_mmff", "ETKDGv3, 3x diverse, + MMFF94", None),
]
# (ours file, key, label, baseline file, key, label)
V2_PAIRS = [
    (DEFAULT_QM9, "ours", "the default", DEFAULT_QM9, "etkdg", "ETKDGv3"),
    (DEFAULT_QM9, "ours", "the default", "qm9_quick_vs_etkdg3.json", "etkdg",
     "ETKDGv3, 3x diverse (the same selection)"),
    (DEFAULT_QM9, "ours_mmff", "the default + MMFF94", DEFAULT_QM9, "etkdg_mmff",
     "ETKDGv3 + MMFF94"),
    (DEFAULT_QM9, "ours_mmff", "the default + MMFF94", "qm9_quick_vs_etkdg3.json", "etkdg_mmff",
     "ETKDGv3, 3x diverse, + MMFF94"),
    (DEFAULT_QM9, "ours_mmff", "the default + MMFF94", DEFAULT_QM9, "ours", "the default"),
    (DEFAULT_QM9, "ours", "the default", BEFORE_PLANAR_QM9, "ours", "the default before `planar` 1.0 (2026-12-07)"),
    (DEFAULT_QM9, "ours_mmff", "the default + MMFF94", BEFORE_PLANAR_QM9, "ours_mmff",
     "the default before `planar` 1.0, + MMFF94"),
    (BEFORE_PLANAR_QM9, "ours", "the default before `planar`", "sweeps/qm9_warm_vs_etkdg_repel0.json", "ours",
     "the default before `repel` 0.8 (2026-12-07)"),
    ("qm9_noise.json", "ours", "**from noise** (`noise`)", "qm9_quick_vs_etkdg3.json", "etkdg",
     "ETKDGv3, 3x diverse (issue 30's bar)"),
    ("qm9_noise.json", "ours", "**from noise** (`noise`)", "qm9_noise_selection_os4_full.json", "etkdg:soft5",
     "ETKDGv3, 3x pool, energy-weighted selection (T = 5 kcal/mol; probe file)"),
    ("qm9_noise.json", "ours", "**from noise** (`noise`)", DEFAULT_QM9, "etkdg", "ETKDGv3"),
    ("qm9_noise.json", "ours", "**from noise** (`noise`)", DEFAULT_QM9, "ours", "the default"),
    ("qm9_quick_vs_etkdg3.json", "ours", "`quick`", "qm9_quick_vs_etkdg3.json", "etkdg", "ETKDGv3, 3x diverse"),
    ("qm9_fast.json", "ours", "Langevin `fast`", "qm9_quick_vs_etkdg3.json", "etkdg", "ETKDGv3, 3x diverse"),
]


def _v2(name: str) -> dict | None:
    path = RESULTS / V2 / name
    return json.loads(path.read_text()) if path.is_file() else None


def v2_methods_table() -> str:
    """Every headline method on the whole v2 QM9 dev benchmark, absolute figures (mean over the 190
    molecules, 2K conformers each with K the v1 reference count, δ 0.5 Å)."""
    lines = ["| method | network evaluations / conformer | COV-R % | MAT-R Å | COV-P % | MAT-P Å | result file |",
             "|---|---|---|---|---|---|---|"]
    machines = set()
    for name, key, label, nfe in V2_METHODS:
        d = _v2(name)
        if d is None:
            continue
        m = d["methods"][key] if "methods" in d else d[key]
        if nfe is None and key.startswith("ours"):
            nfe = d.get("network_evaluations")
        machines.add(_device(d))
        lines.append(f"| {label} | {nfe if nfe is not None else '—'} | {m['cov_r_mean']:.1f} | {m['mat_r_mean']:.3f} | "
                     f"{m['cov_p_mean']:.1f} | {m['mat_p_mean']:.3f} | `v2/{name}` |")
    lines.append("")
    lines.append("Machine: " + "; ".join(sorted(machines)) + ".")
    return "\n".join(lines)


def v2_paired_table() -> str:
    """Paired per-molecule differences on the whole v2 QM9 dev benchmark (mean ± standard error)."""
    lines = ["| ours | minus | n | ΔCOV-R | ΔMAT-R Å | ΔCOV-P | ΔMAT-P Å |", "|---|---|---|---|---|---|---|"]
    for name, key, label, base_name, base_key, base_label in V2_PAIRS:
        d, b = _v2(name), _v2(base_name)
        if d is None or b is None:
            continue
        ours, rd = d["per_molecule"][key], b["per_molecule"][base_key]
        cells = [_diff(ours, rd, k, f) for k, f in (("cov_r", "+.1f"), ("mat_r", "+.3f"), ("cov_p", "+.1f"),
                                                       ("mat_p", "+.3f"))]
        lines.append(f"| {label} | {base_label} | {paired(ours, rd, 'cov_r')[2]} | {' | '.join(cells)} |")
    return "\n".join(lines)


V2_SWEEPS = ["qm9_s60_quick44_os3.json", "qm9_s60_quick33_os3.json", "qm9_s60_quick33_os3_windows.json",
             "qm9_s60_quick24_os4.json", "qm9_s60_quick20_os5.json"]


def v2_noise_sweep_table() -> str:
    """The from-noise selection sweep (bench/noise_selection.py) on 60 molecules of the v2 QM9 dev
    set: per sampling run and selection, evaluations per output conformer (per sample x pool),
    absolute figures and paired differences against the 3x diverse ETKDGv3 of the same run."""
    lines = ["| run | selection | evaluations / output conformer | COV-R % | MAT-R Å | COV-P % | MAT-P Å | "
             "ΔCOV-R | ΔMAT-R Å | ΔCOV-P | ΔMAT-P Å |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    machine = None
    for name in V2_SWEEPS:
        path = RESULTS / V2 / "sweeps" / name
        if not path.is_file():
            continue
        d = json.loads(path.read_text())
        machine = _device(d)
        per = d["network_evaluations_per_sample"]
        for key, m in d["selections"].items():
            if key.startswith("etkdg:") and key != "etkdg:fps" and name != V2_SWEEPS[0]:
                continue  # the ETKDG arm is the same in every run (same seeds): once is enough
            pool = d["oversample"]
            if key.startswith("p") and ":" in key and not key.startswith("etkdg"):
                pool = int(key[1:key.index(":")])
            nfe = "—" if key.startswith("etkdg") else str(per * pool)
            pd = m.get("paired_vs_etkdg", {})
            cells = [f"{pd[k][0]:{f}} ± {pd[k][1]:{f[1:]}}" if k in pd else "" for k, f in
                     (("cov_r", "+.1f"), ("mat_r", "+.3f"), ("cov_p", "+.1f"), ("mat_p", "+.3f"))]
            lines.append(f"| `{name}` | {key} | {nfe} | {m['cov_r_mean']:.1f} | {m['mat_r_mean']:.3f} | "
                         f"{m['cov_p_mean']:.1f} | {m['mat_p_mean']:.3f} | {' | '.join(cells)} |")
    lines.append("")
    lines.append(f"Machine: {machine}. `fps`: farthest-point only; `win<x>`: MMFF94 single-point cut at x kcal/mol "
                 "above the lowest sample, then farthest-point; `mmff<q>`: the fraction q of highest energies "
                 "dropped; `p<P>:`: the first P x 2K samples of the run; `etkdg:`: the 3x ETKDGv3 pool given "
                 "the same selection (`etkdg:fps` is the baseline of the differences).")
    return "\n".join(lines)


# eval_drugs.py runs with the v2 drug dev references (and the GEOM-Drugs fixture): (file under
# bench/results/v2, what ran). The from-noise settings (sigma_max 4, repel 1.0) are the drug-like
# weights' sampler_defaults for schedule noise, so `--schedule noise` alone now runs the same.
V2_DRUGS = [(DEFAULT_DRUGS, "the default (warm start)"),
            ("drugs_dev_v2_noise_repel.json", "from noise (`noise`)"),
            ("drugs_geom10_noise_repel.json", "from noise (`noise`)")]
V2_DRUG_DIFFS = ("ours - etkdg", "ours - etkdg_diverse", "ours_mmff - etkdg_mmff")


def v2_drugs_table() -> str:
    """The drug-like weights on the v2 drug dev set and GEOM-Drugs-10 (δ 0.75 Å): per run and
    benchmark, each method's means (unrelaxed and MMFF94-relaxed rows of ours and of ETKDGv3),
    then the paired per-molecule differences of ours against the baseline relaxed the same way."""
    keep = ("ours", "ours_mmff", "etkdg", "etkdg_diverse", "etkdg_mmff")
    lines = ["| benchmark | run | method | COV-R % | MAT-R Å | COV-P % | MAT-P Å | conf/s |",
             "|---|---|---|---|---|---|---|---|"]
    diffs = ["| benchmark | run | difference | n | ΔCOV-R | ΔMAT-R Å | ΔCOV-P | ΔMAT-P Å |",
             "|---|---|---|---|---|---|---|---|"]
    machines, seen_base = set(), set()
    for name, run in V2_DRUGS:
        d = _v2(name)
        if d is None:
            continue
        machines.add(_device(d))
        labels = {**drugs_method_labels(d), "ours": "ours unrelaxed (`--relax none`)",
                  "ours_mmff": "ours + MMFF94 (what `--relax auto` writes)"}
        for bench, b in d["benchmarks"].items():
            blabel = f"{DRUGS_BENCH_LABELS.get(bench, bench)}{' v2' if bench == 'drugs' else ''} ({b['n_mols']} mol.)"
            for method in keep:
                m = b["methods"].get(method)
                if m is None or (not method.startswith("ours") and (bench, method) in seen_base):
                    continue  # the ETKDG rows are the same in every run (same seeds): once per benchmark
                if not method.startswith("ours"):
                    seen_base.add((bench, method))
                t = m["by_threshold"]["0.75"]
                who = run if method.startswith("ours") else "—"
                lines.append(f"| {blabel} | {who} | {labels.get(method, method)} | {t['cov_r_mean']:.1f} | "
                             f"{t['mat_r_mean']:.3f} | {t['cov_p_mean']:.1f} | {t['mat_p_mean']:.3f} | "
                             f"{_num(m['conformers_per_s'], '.2f')} |")
            for pair in V2_DRUG_DIFFS:
                by_t = b["paired"].get(pair)
                if by_t is None:
                    continue
                p = by_t["0.75"]
                a, base = (labels.get(x, x) for x in pair.split(" - "))
                cells = [f"{p[k]['mean']:+{f}} ± {_num(p[k]['se'], f)}" for k, f in
                         (("cov_r", ".1f"), ("mat_r", ".3f"), ("cov_p", ".1f"), ("mat_p", ".3f"))]
                diffs.append(f"| {blabel} | {run} | {a} \N{MINUS SIGN} {base} | {p['cov_r']['n']} | "
                             f"{' | '.join(cells)} |")
    return "\n".join([*lines, "", *diffs, "", "Machine: " + "; ".join(sorted(machines)) + "; δ 0.75 Å; 2K conformers "
                      "for K references (the v1 count on the drug dev set)."])


# bench/threads_table.py runs (file, the machine's state while it ran), in row order.
THREADS_RUNS = [("threads_idle.json", "idle"),
                ("threads_busy1.json", "one other busy process"),
                ("threads_busy1_quickstart.json", "one other busy process, probe read at import")]


def threads_table() -> str:
    """Issue 29: conformers/s of the default thread budget, --threads 1 and --threads 2 on the same
    inputs back to back, per machine state and pass, with what the default resolved to."""
    lines = ["| machine | input | pass | default (resolved to) | `--threads 1` | `--threads 2` | default / 1 thread |",
             "|---|---|---|---|---|---|---|"]
    machines, notes = set(), []
    for name, state in THREADS_RUNS:
        path = RESULTS / name
        if not path.is_file():
            continue
        d = json.loads(path.read_text())
        machines.add(_device(d))
        if d.get("busy_note"):
            notes.append(f"{state}: {d['busy_note']}")
        cells: dict[tuple[str, int], dict[str, dict]] = {}
        for r in d["rows"]:
            cells.setdefault((r["workload"], r["pass_"]), {})[r["setting"]] = r
        for (wl, pass_i), by in cells.items():
            dflt = by.get("default", {})
            m = re.match(r"(\d+) thread", dflt.get("threads_line") or "")
            resolved = f" ({m.group(1)})" if m else ""
            ratio = (f"{dflt['conformers_per_s'] / by['threads 1']['conformers_per_s']:.2f}"
                     if dflt and "threads 1" in by else "")
            lines.append(f"| {state} | {wl} | {pass_i} | {dflt.get('conformers_per_s', '')}{resolved} | "
                         f"{by.get('threads 1', {}).get('conformers_per_s', '')} | "
                         f"{by.get('threads 2', {}).get('conformers_per_s', '')} | {ratio} |")
    tail = "Machine: " + "; ".join(sorted(machines)) + ". Conformers/s from each run's summary line."
    return "\n".join([*lines, "", tail + ("" if not notes else " " + " ".join(notes))])


# The headline tables (README, model card): a few rows of the v2 QM9 and v2 drug results, with the
# speed each run measured. (result file under bench/results/v2, benchmark key or None for a QM9 file,
# method key, label).
HEADLINE_ROWS = {
    "qm9": [(DEFAULT_QM9, None, "ours", "**the default**: warm start from ETKDGv3 (24 evaluations)"),
            ("qm9_noise.json", None, "ours", "from noise (`--init random`, 96 evaluations)"),
            (DEFAULT_QM9, None, "etkdg", "RDKit ETKDGv3"),
            ("qm9_quick_vs_etkdg3.json", None, "etkdg", "ETKDGv3, 3x oversampled, diverse subset")],
    "drugs": [(DEFAULT_DRUGS, "drugs", "ours_mmff", "**the default**: warm start + MMFF94 (`--relax auto`)"),
              (DEFAULT_DRUGS, "drugs", "ours", "warm start unrelaxed (`--relax none`)"),
              ("drugs_dev_v2_noise_repel.json", "drugs", "ours_mmff", "from noise + MMFF94"),
              (DEFAULT_DRUGS, "drugs", "etkdg", "RDKit ETKDGv3"),
              (DEFAULT_DRUGS, "drugs", "etkdg_diverse", "ETKDGv3, 3x oversampled, diverse subset"),
              (DEFAULT_DRUGS, "drugs", "etkdg_mmff", "ETKDGv3 + MMFF94"),
              (DEFAULT_DRUGS, "geom", "ours_mmff", "**the default**: warm start + MMFF94 (`--relax auto`)"),
              (DEFAULT_DRUGS, "geom", "ours", "warm start unrelaxed (`--relax none`)"),
              ("drugs_geom10_noise_repel.json", "geom", "ours_mmff", "from noise + MMFF94"),
              (DEFAULT_DRUGS, "geom", "etkdg", "RDKit ETKDGv3"),
              (DEFAULT_DRUGS, "geom", "etkdg_mmff", "ETKDGv3 + MMFF94")],
}
HEADLINE_README = {"qm9": [0, 1, 2, 3], "drugs": [0, 1, 3, 5, 6, 9, 10]}  # the README's rows of each list


def headline_table(parts: tuple[str, ...] = ("qm9", "drugs"), readme: bool = False) -> str:
    """Means over the molecules of a few headline methods on the v2 benchmarks (QM9 dev at δ 0.5 Å,
    drug dev set and GEOM-Drugs-10 at δ 0.75 Å), with each run's conformers/s and its file."""
    lines = ["| benchmark | method | COV-R % | MAT-R Å | COV-P % | MAT-P Å | conformers/s | result file |",
             "|---|---|---|---|---|---|---|---|"]
    machines = set()
    for part in parts:
        rows = HEADLINE_ROWS[part]
        for i, (name, bench, key, label) in enumerate(rows):
            if readme and i not in HEADLINE_README[part]:
                continue
            d = _v2(name)
            if d is None:
                continue
            machines.add(_device(d))
            if bench is None:
                m = d["methods"][key] if "methods" in d else d[key]
                t, blabel = m, f"QM9 dev v2 ({m['n_mols']} mol., δ 0.5 Å)"
            else:
                b = d["benchmarks"][bench]
                m = b["methods"][key]
                v2 = " v2" if bench == "drugs" else ""
                blabel = f"{DRUGS_BENCH_LABELS.get(bench, bench)}{v2} ({b['n_mols']} mol., δ 0.75 Å)"
                t = m["by_threshold"]["0.75"]
            per_s = m.get("conformers_per_s") or m["conformers"] / m["seconds"]
            lines.append(f"| {blabel} | {label} | {t['cov_r_mean']:.1f} | {t['mat_r_mean']:.3f} | "
                         f"{t['cov_p_mean']:.1f} | {t['mat_p_mean']:.3f} | {per_s:.1f} | `v2/{name}` |")
    lines.append("")
    lines.append("Machine: " + "; ".join(sorted(machines)) + " (a shared machine: conformers/s timed inside each "
                 "benchmark run, ETKDG embedding and relax included, indicative). 2K conformers for K references.")
    return "\n".join(lines)


# ProjectSchedule.planar (planarity.py) against the same run without it, same seeds, whole benchmarks:
# (benchmark label, run, baseline file, planar file, benchmark key or None for eval_dev's QM9 files)
PLANAR_RUNS = [
    ("QM9 dev v2 (190 mol.)", "from noise (`noise`)", "qm9_noise.json", "sweeps/qm9_noise_planar1.json", None),
    ("QM9 dev v2 (190 mol.)", "the default (warm start)", "sweeps/qm9_warm_repel0.8.json",
     "sweeps/qm9_warm_planar1.json", None),
    ("drug dev set v2 (40 mol.)", "from noise (`noise`)", "drugs_dev_v2_noise_repel.json",
     "sweeps/drugs_v2_noise_planar1.json", "drugs"),
    ("GEOM-Drugs, 10 molecules", "from noise (`noise`)", "drugs_geom10_noise_repel.json",
     "sweeps/drugs_v2_noise_planar1.json", "geom"),
    ("drug dev set v2 (40 mol.)", "the default (warm start)", "drugs_v2.json", "sweeps/drugs_v2_warm_planar1.json",
     "drugs"),
    ("GEOM-Drugs, 10 molecules", "the default (warm start)", "drugs_v2.json", "sweeps/drugs_v2_warm_planar1.json",
     "geom"),
]


def _rows_and_means(d: dict, bench: str | None, method: str) -> tuple[list[dict], dict] | None:
    """Per-molecule rows and means of one method: eval_dev files (bench None, threshold 0.5 A)
    or one benchmark of an eval_drugs file (0.75 A)."""
    if bench is None:
        return (d["per_molecule"][method], d[method]) if method in d.get("per_molecule", {}) else None
    b = d["benchmarks"].get(bench)
    if b is None or method not in b["methods"]:
        return None
    return b["per_molecule"][method]["0.75"], b["methods"][method]["by_threshold"]["0.75"]


def _paired_runs_table(runs: list[tuple[str, str, str, str, str | None]], legend: str) -> str:
    """One row per (benchmark, run, relaxation) of `runs` ((label, run, baseline file, new file,
    benchmark key or None)): means baseline -> new and the paired per-molecule difference new - baseline."""
    lines = ["| benchmark | run | relax | COV-R % | MAT-R Å | COV-P % | MAT-P Å | n | ΔCOV-R | ΔMAT-R Å | ΔCOV-P | "
             "ΔMAT-P Å |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    machines = set()
    for label, run, base_name, new_name, bench in runs:
        base, new = _v2(base_name), _v2(new_name)
        if base is None or new is None:
            continue
        machines.add(_device(new))
        for method, relax in (("ours", "none"), ("ours_mmff", "MMFF94")):
            a, b = _rows_and_means(new, bench, method), _rows_and_means(base, bench, method)
            if a is None or b is None:
                continue
            means = [f"{b[1][k + '_mean']:{f}} → {a[1][k + '_mean']:{f}}" for k, f in
                     (("cov_r", ".1f"), ("mat_r", ".3f"), ("cov_p", ".1f"), ("mat_p", ".3f"))]
            diffs = [paired(a[0], b[0], k) for k in ("cov_r", "mat_r", "cov_p", "mat_p")]
            cells = [f"{m:+{f}} ± {e:{f}}" for (m, e, _), f in zip(diffs, (".1f", ".3f", ".1f", ".3f"))]
            lines.append(f"| {label} | {run} | {relax} | {' | '.join(means)} | {diffs[0][2]} | {' | '.join(cells)} |")
    return "\n".join([*lines, "", "Machine: " + "; ".join(sorted(machines)) + ". QM9 at δ 0.5 Å, drugs at 0.75 Å; "
                       + legend])


def planar_table() -> str:
    """Planar groups held flat (ProjectSchedule.planar = 1) against the same run without, per
    benchmark, run and relaxation: means off -> on and the paired per-molecule difference."""
    return _paired_runs_table(PLANAR_RUNS, "off → on are the means without and with `planar` 1.0, Δ the paired on "
                                           "minus off.")


# The drug-like weights fine-tuned on GFN2-xTB-level drug data (issue 30, lever 4: 3,000 steps from
# drugs_small.pt on 2,050 MOSES molecules / 8,391 xTB-optimised conformers, lr 1e-4 cosine to 0, EMA
# 0.999; not shipped) against the shipped drugs_small.pt, same seeds and settings.
XTB_FT_RUNS = [
    ("drug dev set v2 (40 mol.)", "from noise (`noise`)", "drugs_dev_v2_noise_repel.json",
     "sweeps/drugs_dev_v2_noise_xtbft.json", "drugs"),
    ("GEOM-Drugs, 10 molecules", "from noise (`noise`)", "drugs_geom10_noise_repel.json",
     "sweeps/geom10_noise_xtbft.json", "geom"),
    ("drug dev set v2 (40 mol.)", "the default (warm start)", "sweeps/drugs_v2_warm_planar1.json",
     "sweeps/drugs_v2_warm_xtbft.json", "drugs"),
    ("GEOM-Drugs, 10 molecules", "the default (warm start)", "sweeps/drugs_v2_warm_planar1.json",
     "sweeps/drugs_v2_warm_xtbft.json", "geom"),
]


# Graphs of order 6 for the drug-like weights (issue 30, drugs: ModelConfig.graph_order 6, messages
# on the order-3 pairs; 6,000 steps from drugs_small.pt on the xTB drug data of XTB_FT_RUNS, lr 2e-4
# cosine to 0, EMA 0.999; not shipped) against the shipped weights and against the order-3
# fine-tune on the same data.
GRAPH_ORDER_RUNS = [
    ("drug dev set v2 (40 mol.)", "order 6 vs shipped", "drugs_dev_v2_noise_repel.json",
     "sweeps/drugs_dev_v2_noise_k6.json", "drugs"),
    ("drug dev set v2 (40 mol.)", "order 6 vs order 3, same data", "sweeps/drugs_dev_v2_noise_xtbft.json",
     "sweeps/drugs_dev_v2_noise_k6.json", "drugs"),
    ("GEOM-Drugs, 10 molecules", "order 6 vs shipped", "drugs_geom10_noise_repel.json",
     "sweeps/geom10_noise_k6.json", "geom"),
    ("GEOM-Drugs, 10 molecules", "order 6 vs order 3, same data", "sweeps/geom10_noise_xtbft.json",
     "sweeps/geom10_noise_k6.json", "geom"),
]


def drugs_graph_order_table() -> str:
    """The order-6 drug-like weights from noise against the shipped ones and the order-3 fine-tune."""
    return _paired_runs_table(GRAPH_ORDER_RUNS, "from noise (`noise`, repel 1.0, sigma_max 4 Å); baseline → order 6 "
                                                "are the means, Δ the paired order 6 minus baseline.")


def drugs_xtb_ft_table() -> str:
    """The xTB drug-data fine-tune against the shipped drug-like weights (XTB_FT_RUNS)."""
    return _paired_runs_table(XTB_FT_RUNS, "shipped → fine-tuned are the means of `drugs_small.pt` and of its "
                                           "GFN2-xTB drug-data fine-tune, Δ the paired fine-tuned minus shipped.")


# The paper's ConfGFDist ablation (issue 28): the same weights, 5,000 evaluations each, one seeded
# 30-molecule sample of the v2 QM9 dev set (bench/v2_suite.sh).
DIST_RUNS = [("sweeps/qm9_s30_paper.json", "ours", "ConfGF (`paper`: Langevin on coordinates)"),
             ("sweeps/qm9_s30_dist.json", "ours", "ConfGFDist (`dist`: Langevin on distances, then embedded)"),
             ("sweeps/qm9_s30_paper.json", "etkdg", "RDKit ETKDGv3")]


def dist_ablation_table() -> str:
    """ConfGF against ConfGFDist (and ETKDGv3) on the same molecules: means, then the paired
    per-molecule difference of each against ConfGF."""
    lines = ["| method | n | COV-R % | MAT-R Å | COV-P % | MAT-P Å | ΔCOV-R vs ConfGF | ΔMAT-R Å | ΔCOV-P | ΔMAT-P Å |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = _v2(DIST_RUNS[0][0])
    if base is None:
        return "\n".join(lines)
    machines = set()
    for name, method, label in DIST_RUNS:
        d = _v2(name)
        if d is None or method not in d:
            continue
        machines.add(_device(d))
        m, rows = d[method], d["per_molecule"][method]
        cells = [""] * 4 if (name, method) == DIST_RUNS[0][:2] else [
            f"{x:+{f}} ± {e:{f}}" for (x, e, _), f in zip(
                (paired(rows, base["per_molecule"]["ours"], k) for k in ("cov_r", "mat_r", "cov_p", "mat_p")),
                (".1f", ".3f", ".1f", ".3f"))]
        lines.append(f"| {label} | {m['n_mols']} | {m['cov_r_mean']:.1f} | {m['mat_r_mean']:.3f} | "
                     f"{m['cov_p_mean']:.1f} | {m['mat_p_mean']:.3f} | {' | '.join(cells)} |")
    return "\n".join([*lines, "", "Machine: " + "; ".join(sorted(machines)) + "; δ 0.5 Å, 2K conformers for K "
                       "references, unrelaxed."])


PROPERTIES_RESULT = "properties_qm9_s30.json"  # bench/eval_properties.py, under bench/results/v2
PROPERTIES_LABELS = {"ours_warm": "ours, the default (warm start)", "ours_noise": "ours, from noise (`noise`)",
                     "etkdg": "RDKit ETKDGv3", "etkdg3": "ETKDGv3, 3x diverse"}
PROPERTIES_STATS = (("e_mean", "Ē"), ("e_min", "E_min"), ("gap_mean", "Δε̄"), ("gap_min", "Δε_min"),
                    ("gap_max", "Δε_max"))


def properties_table() -> str:
    """Ensemble property prediction (bench/eval_properties.py, issue 28): per method, the MAE (eV)
    over molecules of the five ensemble statistics of GFN2-xTB single points against the v2 QM9 dev
    references, the generated outliers, and paired differences of the absolute errors (ours minus
    an ETKDGv3 baseline, mean ± standard error over molecules)."""
    d = _v2(PROPERTIES_RESULT)
    if d is None:
        return f"(no result file yet: `python bench/eval_properties.py --json bench/results/v2/{PROPERTIES_RESULT}`)"
    head = " | ".join(label for _, label in PROPERTIES_STATS)
    lines = [f"| method | MMFF94 | {head} | outliers E_min / Δε_max | E_min / Δε_max without them |",
             "|---|---|" + "---|" * len(PROPERTIES_STATS) + "---|---|"]
    for name, m in d["methods"].items():
        base = name.removesuffix("_mmff")
        o = m["outliers"]["gen"]
        cells = " | ".join(f"{m['mae'][k]:.3f}" for k, _ in PROPERTIES_STATS)
        lines.append(f"| {PROPERTIES_LABELS.get(base, base)} | {'yes' if name.endswith('_mmff') else 'no'} | {cells} | "
                     f"{o['e_min']} / {o['gap_max']} | {m['mae_no_outliers']['e_min']:.3f} / "
                     f"{m['mae_no_outliers']['gap_max']:.3f} |")
    lines += ["", f"| ours | minus | n | {head} |", "|---|---|---|" + "---|" * len(PROPERTIES_STATS)]
    for label, p in d["paired"].items():
        a, b = (x.strip() for x in label.split(" - "))
        mmff = " + MMFF94" if a.endswith("_mmff") else ""
        cells = " | ".join(f"{p[k]['mean']:+.3f} ± {p[k]['se']:.3f}" for k, _ in PROPERTIES_STATS)
        lines.append(f"| {PROPERTIES_LABELS[a.removesuffix('_mmff')]}{mmff} | "
                     f"{PROPERTIES_LABELS[b.removesuffix('_mmff')]}{mmff} | {p['e_min']['n']} | {cells} |")
    ref = next(iter(d["methods"].values()))
    r = ref["outliers"]["ref"]
    cost = d["seconds"].get("total")
    took = f"; the whole run (sampling, MMFF94, every single point) took {cost:.0f} s" if cost else ""
    lines += ["", f"{ref['n_mols']} molecules of `{d['benchmark']}` (sample seed {d['sample_seed']}), "
              f"{ref['n_ref_confs']} reference conformers, {d['conformers_per_molecule']}; outlier margin "
              f"{d['margin_ev']:g} eV (the references themselves have {r['e_min']} E_min and {r['gap_max']} Δε_max "
              f"outliers). Machine: {_device(d)}{took}. File: `v2/{PROPERTIES_RESULT}`."]
    return "\n".join(lines)


ISO17_FILE = "iso17_mmd.json"  # bench/eval_iso17.py on the ISO17-style GFN2-xTB MD set
ISO17_LABELS = {"paper": "ConfGF (`paper`)", "noise": "from noise (`noise`)", "etkdg": "RDKit ETKDGv3",
                "md_split": "MD: first half of each trajectory against the second (the floor)"}


def iso17_table() -> str:
    """Distance-distribution MMD of each method's samples against the MD snapshots (issue 28):
    per heavy-atom pair (single), per pair of distances (two) and of all heavy-atom distances
    jointly, mean and median over pairs / isomers."""
    lines = ["| method | conformers | single mean | single median | two mean | two median | joint mean | "
             "joint median |", "|---|---|---|---|---|---|---|---|"]
    d = _v2(ISO17_FILE)
    if d is None:
        return "\n".join(lines)
    for method, m in d["methods"].items():
        lines.append(f"| {ISO17_LABELS.get(method, method)} | {m['conformers']} | {m['single_mean']:.4f} | "
                     f"{m['single_median']:.4f} | {m['two_mean']:.4f} | {m['two_median']:.4f} | "
                     f"{m['joint_mean']:.4f} | {m['joint_median']:.4f} |")
    md = d.get("md") or {}
    return "\n".join([*lines, "", f"Machine: {_device(d)}; {d['isomers']} C7O2H10 isomers, {d['num_confs']} samples "
                       f"each, unrelaxed; MD {md.get('production_fs', '?')} fs per isomer at "
                       f"{md.get('temperature', '?')} K (mean {d.get('mean_md_temperature') or 0:.0f} K); "
                       f"kernel: {d['kernel']}. File: `v2/{ISO17_FILE}`."])


TABLES = {"samplers": sampler_table, "fewstep_sweep": fewstep_sweep_table,
          "drugs_warm_sweep": drugs_warm_sweep_table, "mix_qm9": mix_qm9_table, "sampler_speed": sampler_speed_table,
          "sampler_real": sampler_real_table,
          "card_dev_full": card_full_table, "card_dev_s60": card_sample_table, "warm_vs_etkdg": warm_vs_etkdg_table,
          "card_learning_curve": card_curve_table, "drugs": drugs_table, "drugs_eval_sweep": drugs_eval_sweep_table,
          "far_conformers": far_conformers_table, "relax_methods": relax_methods_table,
          "drugs_versions": drugs_versions_table, "qm9_anneal": qm9_anneal_table, "qm9_xtb": qm9_xtb_table,
          "etkdg_pool": etkdg_pool_table, "refs_v2_totals": refs_v2_totals_table,
          "refs_v2_molecules": refs_v2_molecules_table, "v2_methods": v2_methods_table,
          "v2_paired": v2_paired_table, "v2_noise_sweep": v2_noise_sweep_table, "v2_drugs": v2_drugs_table,
          "threads": threads_table, "planar": planar_table, "drugs_xtb_ft": drugs_xtb_ft_table,
          "drugs_graph_order": drugs_graph_order_table,
          "dist_ablation": dist_ablation_table,
          "iso17": iso17_table,
          "headline": lambda: headline_table(readme=True),
          "headline_drugs": lambda: headline_table(("drugs",)), "properties": properties_table}


def render(text: str) -> str:
    """text with every known table region replaced by its generated table."""
    def fill(m: re.Match) -> str:
        name = m.group(1)
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r} (known: {', '.join(TABLES)})")
        return f"<!-- table:{name} -->\n{TABLES[name]()}\n<!-- /table:{name} -->"

    return re.sub(r"<!-- table:(\w+) -->.*?<!-- /table:\1 -->", fill, text, flags=re.S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if a document is out of date")
    args = ap.parse_args(argv)
    stale = []
    for doc in DOCS:
        old = doc.read_text()
        new = render(old)
        if new != old:
            stale.append(doc)
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print("out of date (run python bench/doc_tables.py): " + ", ".join(str(p.relative_to(REPO)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
