"""What the maintained benchmarks (bench/README.md lists them) share: result provenance and the
dirty-tree guard, result JSON writing, the benchmark molecules and references, the ETKDG and MMFF94
baselines, paired per-molecule statistics and the --set handling of schedule and runtime fields.

The scripts run as `python bench/<name>.py` (or through pytest from bench/), so Python puts bench/
on sys.path itself and `import common` needs no path set-up; no maintained script imports another.
bench/probes/ holds one-off scripts (not maintained) that reach this module through bench/.

Provenance (DESIGN.md: results you can trace): every result JSON under bench/results carries a
`provenance` block (git commit, dirty flag, command line, machine, date). A result from a tree with
uncommitted changes to tracked files cannot be traced to a commit, so the writers refuse one unless
the script was given --allow-dirty, and then the block says `"allow_dirty": true` next to
`"git_dirty": true`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SHARED = REPO.parent / "shared"
DEV_SDF = SHARED / "benchmarks" / "qm9_xtb_dev.sdf"


# ---- provenance and the dirty-tree guard -------------------------------------------------------------------
class DirtyTreeError(SystemExit):
    """Raised (an exit with this message) when a result would be written from a dirty tree."""


def _git(*args: str) -> str | None:
    """git's stdout (trailing newline dropped), or None where git or the repository is missing (e.g. a
    copied tree on a GPU machine)."""
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return None


def dirty_files() -> list[str] | None:
    """Tracked files that differ from the commit (untracked ones are ignored: results being written
    are untracked); None where git cannot tell."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else [line[3:] for line in status.splitlines() if line.strip()]


def add_result_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every result writer takes: --allow-dirty."""
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write the result even if tracked files have uncommitted changes (the file then records "
                         "git_dirty and allow_dirty: true); without it a dirty tree is refused")
    return ap


def dirty_message(what: str, files: list[str]) -> str:
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return (f"refusing to write {what}: the git tree has uncommitted changes to tracked files ({shown}), so the "
            "result could not be traced to a commit. Commit (or revert) them first and rerun, or pass --allow-dirty "
            "to write it anyway (the file then records git_dirty and allow_dirty: true).")


def provenance(device: str = "cpu", allow_dirty: bool = False, output: str | Path | None = None) -> dict:
    """{git_commit, git_dirty, allow_dirty, command, machine, date}, taken before a run (the commit
    that ran, not one made meanwhile). With `output` (the result file the run will write) a dirty tree
    is refused here, before any work, unless allow_dirty (DirtyTreeError: a SystemExit that says what
    to do). git_dirty is None where git cannot tell (no repository)."""
    import torch

    files = dirty_files()
    if files and output is not None and not allow_dirty:
        raise DirtyTreeError(dirty_message(str(output), files))
    cpu = platform.processor() or platform.machine()
    return {
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_dirty": None if files is None else bool(files),
        "allow_dirty": bool(allow_dirty),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads, device {device}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: str | Path, obj: dict) -> None:
    """Write a result file (parent folders created; non-JSON values as str). The object must carry the
    `provenance` block of its run; one taken from a dirty tree without allow_dirty is refused
    (DirtyTreeError), so no result file claims less than it is."""
    prov = obj.get("provenance")
    if not isinstance(prov, dict):
        raise ValueError(f"{path}: a result file needs its run's provenance block (common.provenance)")
    if prov.get("git_dirty") and not prov.get("allow_dirty"):
        raise DirtyTreeError(dirty_message(str(path), dirty_files() or ["(changed since)"]))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")


# ---- the benchmark molecules -------------------------------------------------------------------------------
def load_reference(path: Path):
    """[(smiles, mol with all K reference conformers)] in file order, grouped by mol_id (.sdf, or
    .sdf.gz as the v2 benchmarks in bench/refs_v2)."""
    from rdkit import Chem

    from confgf_fast.data.reference_search import read_reference_groups

    groups: dict = {}
    for rec in (m for ms in read_reference_groups(path).values() for m in ms):
        key = rec.GetProp("mol_id")
        if key not in groups:
            m = Chem.Mol(rec)
            groups[key] = (rec.GetProp("smiles"), m)
        else:
            groups[key][1].AddConformer(rec.GetConformer(), assignId=True)
    return list(groups.values())


def sample_subset(refs: list, sample: int | None, seed: int = 0) -> list:
    """A seeded random subset of `sample` molecules in file order (all of them when sample is None or
    not smaller): every script's --sample, so the same arguments pick the same molecules."""
    if sample is None or sample >= len(refs):
        return refs
    return [refs[i] for i in sorted(random.Random(seed).sample(range(len(refs)), sample))]


def budget_counts(refs: list) -> list[int]:
    """2K conformers to generate per molecule. On a v2 union (bench/refs_v2) K stays the original
    reference count (the records' budget_k), so the extra minima raise the bar, not the budget."""
    return [2 * (int(m.GetProp("budget_k")) if m.HasProp("budget_k") else m.GetNumConformers()) for _, m in refs]


def benchmark_inputs(refs: list) -> tuple[list, dict]:
    """(the molecules to generate for, without coordinates; {smiles: [reference Mol]} for evaluate)."""
    from rdkit import Chem

    inputs = []
    for _, m in refs:
        x = Chem.Mol(m)
        x.RemoveAllConformers()
        inputs.append(x)
    return inputs, {s: [m] for s, m in refs}


# ---- baselines ---------------------------------------------------------------------------------------------
def etkdg(mol, n: int, seed: int, threads: int = 1, oversample: int = 1):
    """Copy of `mol` with n RDKit ETKDGv3 conformers (chem.etkdg_params(seed)), embedded with
    `threads` threads (RDKit numThreads; 0: all cores). oversample > 1: embed oversample x n and
    keep a diverse n, with the selection our warm start uses (chem.diverse_subset): the baseline
    with the same trick."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from confgf_fast.chem.molecule import conformer_positions, diverse_subset, etkdg_params, set_conformers

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


def relax_all(mols: list, opts) -> tuple[list, float, dict]:
    """relax_conformers on every Mol -> (relaxed Mols, seconds, counts of methods / drops)."""
    from confgf_fast.chem.relax import relax_conformers

    out, counts = [], {"methods": {}, "dropped": {}}
    t0 = time.perf_counter()
    for m in mols:
        if m is None or m.GetNumConformers() == 0:
            out.append(m)
            continue
        r = relax_conformers(m, opts)
        for name in r.methods:
            counts["methods"][name] = counts["methods"].get(name, 0) + 1
        for k, v in r.dropped.items():
            counts["dropped"][k] = counts["dropped"].get(k, 0) + v
        out.append(r.mol)
    return out, time.perf_counter() - t0, counts


# ---- statistics and table cells ----------------------------------------------------------------------------
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


def describe(d: dict) -> str:
    """A result file's sampler settings in words (the `sampler` record eval_dev.py writes), for tables."""
    if d.get("label"):  # a probe outside the package's samplers names itself (bench/probes/heun_probe.py)
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


# ---- the sampler record and --set --------------------------------------------------------------------------
def sampler_record(schedule, runtime) -> dict:
    """A result JSON's `sampler` entry: the sampler family, the schedule's preset name and every field
    of the schedule (config.Schedule) and of the runtime (config.Runtime), under the keys the
    result files have always used: those of the flat config the schedule types replaced)."""
    return {"sampler": schedule.sampler, "schedule": schedule.name, **asdict(runtime),
            **{f: getattr(schedule, f) for f in schedule.field_names()}}


def weights_record(weights: list[str] | None, models: list, per_model: dict[int, int], schedule, runtime) -> dict:
    """What a result JSON says about the weights and the sampler: `weights` (the paths given, or
    "shipped"); `weights_step`, `trained_elements` and the sampler (`sampler`, `sampler_tag`, with
    the checkpoint's own sampler_defaults applied where the schedule's caller set nothing,
    pipeline.tuned_schedule) of the model that sampled the most molecules (with the shipped set: the
    QM9 model on QM9, the drug-like model on drugs); `weights_models`: every model's file name,
    step, sampler tag, relax_default (what generate's default relax "auto" does to its molecules)
    and molecules sampled (pipeline.RunStats.per_model). models: checkpoint.load_models's LoadedModels."""
    from confgf_fast.model.elements import element_names
    from confgf_fast.pipeline.generate import tuned_schedule

    top = max(range(len(models)), key=lambda i: per_model.get(i, 0))
    meta = models[top].meta
    tuned = tuned_schedule(schedule, models[top])
    return {"weights": ", ".join(weights) if weights else "shipped", "weights_step": meta.trained_steps,
            "trained_elements": element_names(meta.trained_elements) if meta.trained_elements else None,
            "schedule": tuned.name, "sampler": sampler_record(tuned, runtime), "sampler_tag": tuned.describe(),
            "weights_models": [{"name": m.meta.weights_name, "step": m.meta.trained_steps,
                                "molecules": per_model.get(i, 0),
                                "sampler_tag": tuned_schedule(schedule, m).describe(),
                                "relax_default": m.meta.relax_default}
                               for i, m in enumerate(models)]}


def apply_sets(schedule, runtime, items: list[str]):
    """(schedule, runtime) with --set FIELD=VALUE strings applied, in order: a schedule field
    through config.resolve_schedule's overrides, a runtime field (backend, compile, precision,
    cuda_graphs) to the Runtime. A value takes the type of the field's current value (booleans by
    name: 1/true/yes/on are True); ValueError for an unknown field (naming the family's fields) or a
    value of the wrong type."""
    from confgf_fast.config import resolve_schedule

    runtime_fields = {f.name for f in fields(runtime)}
    for item in items:
        key, _, value = item.partition("=")
        if key in runtime_fields:
            runtime = replace(runtime, **{key: _typed(getattr(runtime, key), value)})
            continue
        if key not in schedule.field_names():
            raise ValueError(f"--set: {key!r} is not a setting of the {schedule.sampler} sampler; its settings: "
                             f"{', '.join(schedule.field_names())}, or the runtime's "
                             f"{', '.join(sorted(runtime_fields))}")
        schedule = resolve_schedule(schedule, overrides={key: _typed(getattr(schedule, key), value)})
    return schedule, runtime


def _typed(old, value: str):
    """`value` (a --set string) as the type of the field's current value `old`."""
    if isinstance(old, bool):  # bool("False") is True: read booleans by name
        return value.lower() in ("1", "true", "yes", "on")
    if old is None:  # an optional field (e.g. select_window): a number if it reads as one
        try:
            return int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            return value
    return type(old)(value)
