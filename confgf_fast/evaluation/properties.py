"""Ensemble property prediction: GFN2-xTB energies and HOMO-LUMO gaps of conformer ensembles.

The ConfGF paper (Shi et al., ICML 2021, "ensemble property prediction"; the protocol of its
authors' later GeoDiff code, eval_prop.py) asks whether a generated ensemble predicts the
properties of the reference ensemble of the same molecule. Every conformer c gets a single-point
energy E_c and HOMO-LUMO gap Δε_c; an ensemble S of conformers has five statistics

    Ē = mean_{c in S} E_c      E_min = min_{c in S} E_c
    Δε̄ = mean_{c in S} Δε_c    Δε_min = min_{c in S} Δε_c    Δε_max = max_{c in S} Δε_c

and for each statistic X the per-molecule error is |X(generated) - X(reference)|. Over molecules
we report the mean (MAE, the paper's figure) and the median of those errors, and the mean signed
error X(generated) - X(reference) (positive Ē: the generated conformers sit higher in energy).

Units: eV for all five, as the paper. The paper computed the properties with Psi4 (DFT); here they
are GFN2-xTB single points (tblite, xtb.py), the level of theory of our reference ensembles.
Absolute values therefore differ from the paper's; comparisons between methods on the same
references are what this measures.

Outliers (the paper notes that a few bad conformers hurt these figures). For a statistic X of an
ensemble S with |S| >= 2, conformer c's leverage is |X(S) - X(S without c)|; a conformer is an
outlier for X when its leverage exceeds a margin (default 0.1 eV). For E_min (Δε_max) only the
unique lowest-energy (largest-gap) conformer can have non-zero leverage, which is E_min(S \\ c) -
E_min(S) (Δε_max(S) - Δε_max(S \\ c)): the gap to the second best. So each molecule has at most
one E_min outlier and one Δε_max outlier: a conformer that alone sets that statistic more than
the margin away from every other conformer. We count them per molecule and in total (generated and
reference ensembles alike), and report the E_min / Δε_max MAEs with the generated outliers removed.
(No count for Ē: its leave-one-out shift |E_c - Ē(S \\ c)| / |S| depends on the ensemble size and
in a small ensemble is large for ordinary conformers too: with three conformers at -10 eV and one
at -8 eV, removing any of the four moves Ē by more than 0.1 eV.)

A conformer whose SCF fails is left out of its ensemble and counted. Records of one molecule must
have the same composition (elements with explicit hydrogens, total charge) on both sides; xTB of a
hydrogen-free record would be a different molecule, so that is an error (PropertyInputError).
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from rdkit import Chem
from tqdm.auto import tqdm

from ..chem.xtb import HARTREE_EV, xtb_singlepoints
from .evaluate import EvalInputError, group_by_molecule, read_sdf

STAT_KEYS = ("e_mean", "e_min", "gap_mean", "gap_min", "gap_max")
STAT_LABELS = {"e_mean": "E_mean", "e_min": "E_min", "gap_mean": "gap_mean", "gap_min": "gap_min",
               "gap_max": "gap_max"}
OUTLIER_KEYS = ("e_min", "gap_max")
DEFAULT_MARGIN = 0.1  # eV


class PropertyInputError(EvalInputError):
    """The records of a molecule cannot be compared by xTB single points: generated and reference
    records of one molecule differ in composition or charge, or a record lacks explicit hydrogens.
    The message names the molecule (the CLI prints it as one line)."""


def tblite_problem() -> str | None:
    """None when tblite can be imported, else the one-line reason (with the install command)."""
    try:
        import tblite.interface  # noqa: F401
    except ImportError:
        return "ensemble properties need GFN2-xTB from the tblite package: pip install tblite"
    return None


# ---- statistics on numbers ---------------------------------------------------------------------

def ensemble_statistics(energy: np.ndarray, gap: np.ndarray) -> dict[str, float]:
    """The five statistics of one ensemble. energy, gap: [C] eV; NaN entries (failed single
    points) are left out, each array on its own. All NaN when nothing is left."""
    e = np.asarray(energy, dtype=np.float64)
    g = np.asarray(gap, dtype=np.float64)
    e, g = e[np.isfinite(e)], g[np.isfinite(g)]
    nan = math.nan
    return {"e_mean": float(e.mean()) if e.size else nan, "e_min": float(e.min()) if e.size else nan,
            "gap_mean": float(g.mean()) if g.size else nan, "gap_min": float(g.min()) if g.size else nan,
            "gap_max": float(g.max()) if g.size else nan}


def leave_one_out_shift(values: np.ndarray, stat: str) -> np.ndarray:
    """[C] -> [C]: |stat(values) - stat(values without c)| for every c (finite values only; NaN
    entries get 0 and are ignored). stat: 'min', 'max' or 'mean'. All 0 with fewer than 2 values.

    min: only the unique minimum moves it, by (second smallest - smallest); a tied minimum gives 0.
    max: likewise with the largest. mean: |v_c - mean(others)| / C."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    out = np.zeros(v.shape, dtype=np.float64)
    x = v[ok]
    if x.size < 2:
        return out
    idx = np.flatnonzero(ok)
    if stat == "mean":
        others = (x.sum() - x) / (x.size - 1)
        out[idx] = np.abs(x - others) / x.size
        return out
    if stat not in ("min", "max"):
        raise ValueError(f"stat must be 'min', 'max' or 'mean', not {stat!r}")
    y = x if stat == "min" else -x
    order = np.argsort(y, kind="stable")
    out[idx[order[0]]] = y[order[1]] - y[order[0]]
    return out


def outlier_masks(energy: np.ndarray, gap: np.ndarray, margin: float = DEFAULT_MARGIN) -> dict[str, np.ndarray]:
    """{'e_min', 'gap_max': bool [C]}: conformers whose removal changes that statistic by more
    than `margin` eV (module docstring)."""
    return {"e_min": leave_one_out_shift(energy, "min") > margin,
            "gap_max": leave_one_out_shift(gap, "max") > margin}


# ---- one molecule ------------------------------------------------------------------------------

@dataclass
class EnsembleProperties:
    """Per-conformer single points of one ensemble, eV; NaN where the SCF failed."""

    energy: np.ndarray  # [C]
    gap: np.ndarray  # [C]

    @property
    def n(self) -> int:
        return int(np.isfinite(self.energy).sum())

    @property
    def n_failed(self) -> int:
        return int(self.energy.size - self.n)


@dataclass
class MolProperties:
    """One molecule's figures. status: 'ok' (in the means), 'missing' (no generated conformer),
    'no_valid_gen' / 'no_valid_ref' (every single point of that side failed)."""

    key: str
    status: str
    n_ref: int = 0  # conformers with a single point
    n_gen: int = 0
    n_failed_ref: int = 0  # SCF failures, left out
    n_failed_gen: int = 0
    ref: dict = field(default_factory=dict)  # the five statistics, eV
    gen: dict = field(default_factory=dict)
    abs_err: dict = field(default_factory=dict)  # |gen - ref| per statistic, eV
    outliers_gen: dict = field(default_factory=dict)  # {e_min, gap_max: count, any: either}
    outliers_ref: dict = field(default_factory=dict)
    abs_err_no_outliers: dict = field(default_factory=dict)  # e_min, gap_max with generated outliers removed


def _outlier_counts(masks: dict[str, np.ndarray]) -> dict[str, int]:
    counts = {k: int(m.sum()) for k, m in masks.items()}
    counts["any"] = int(np.logical_or.reduce([masks["e_min"], masks["gap_max"]]).sum())
    return counts


def compare_ensembles(key: str, ref: EnsembleProperties | None, gen: EnsembleProperties | None,
                      margin: float = DEFAULT_MARGIN) -> MolProperties:
    """The figures of one molecule from its reference and generated single points (eV)."""
    row = MolProperties(key=key, status="ok")
    if ref is not None:
        row.n_ref, row.n_failed_ref = ref.n, ref.n_failed
    if gen is not None:
        row.n_gen, row.n_failed_gen = gen.n, gen.n_failed
    if gen is None or gen.energy.size == 0:
        row.status = "missing"
    elif row.n_ref == 0:
        row.status = "no_valid_ref"
    elif row.n_gen == 0:
        row.status = "no_valid_gen"
    if row.status != "ok":
        return row
    row.ref = ensemble_statistics(ref.energy, ref.gap)
    row.gen = ensemble_statistics(gen.energy, gen.gap)
    row.abs_err = {k: abs(row.gen[k] - row.ref[k]) for k in STAT_KEYS}
    gm = outlier_masks(gen.energy, gen.gap, margin)
    row.outliers_gen = _outlier_counts(gm)
    row.outliers_ref = _outlier_counts(outlier_masks(ref.energy, ref.gap, margin))
    clean = ensemble_statistics(np.where(gm["e_min"], np.nan, gen.energy), np.where(gm["gap_max"], np.nan, gen.gap))
    row.abs_err_no_outliers = {k: abs(clean[k] - row.ref[k]) for k in ("e_min", "gap_max")}
    return row


# ---- many molecules ----------------------------------------------------------------------------

@dataclass
class PropertyResult:
    rows: list[MolProperties]  # one per reference molecule, in reference order
    margin: float
    max_confs: int | None = None
    extra_keys: list[str] = field(default_factory=list)  # generated molecules absent from the reference

    def summary(self, per_molecule: bool = False) -> dict:
        """Plain JSON-able figures: over the 'ok' molecules, per statistic, `mae` (mean absolute
        error), `median_ae`, `mean_signed` (gen - ref); outlier counts; counts of molecules and
        conformers. per_molecule adds the rows."""
        ok = [r for r in self.rows if r.status == "ok"]

        def over(get) -> dict[str, float]:
            vals = {k: np.array([get(r, k) for r in ok], dtype=np.float64) for k in STAT_KEYS}
            return {k: float(np.mean(v)) if v.size else math.nan for k, v in vals.items()}

        def median(get) -> dict[str, float]:
            return {k: float(np.median([get(r, k) for r in ok])) if ok else math.nan for k in STAT_KEYS}

        out: dict = {
            "units": "eV", "level": "GFN2-xTB single points (tblite)", "margin_ev": float(self.margin),
            "max_confs": self.max_confs,
            "mae": over(lambda r, k: r.abs_err[k]), "median_ae": median(lambda r, k: r.abs_err[k]),
            "mean_signed": over(lambda r, k: r.gen[k] - r.ref[k]),
            "mae_no_outliers": {k: float(np.mean([r.abs_err_no_outliers[k] for r in ok])) if ok else math.nan
                                for k in ("e_min", "gap_max")},
            "outliers": {
                side: {**{k: sum(getattr(r, f"outliers_{side}")[k] for r in ok) for k in (*OUTLIER_KEYS, "any")},
                       "molecules": sum(getattr(r, f"outliers_{side}")["any"] > 0 for r in ok)}
                for side in ("gen", "ref")},
            "n_mols": len(ok), "n_ref_mols": len(self.rows),
            "n_missing": sum(r.status in ("missing", "no_valid_gen") for r in self.rows),
            "n_no_valid_ref": sum(r.status == "no_valid_ref" for r in self.rows),
            "n_extra": len(self.extra_keys),
            "n_ref_confs": sum(r.n_ref for r in ok), "n_gen_confs": sum(r.n_gen for r in ok),
            "n_failed_ref_confs": sum(r.n_failed_ref for r in self.rows),
            "n_failed_gen_confs": sum(r.n_failed_gen for r in self.rows),
        }
        if per_molecule:
            out["per_molecule"] = [asdict(r) for r in self.rows]
        return out


def _composition(mol: Chem.Mol) -> tuple[str, int]:
    """(formula with explicit atoms, e.g. 'C3H8O1', total formal charge). PropertyInputError-free:
    implicit hydrogens are reported by the caller."""
    counts = Counter(a.GetSymbol() for a in mol.GetAtoms())
    return "".join(f"{s}{counts[s]}" for s in sorted(counts)), sum(a.GetFormalCharge() for a in mol.GetAtoms())


def _records(key: str, mols: Sequence[Chem.Mol], side: str, expect: tuple[str, int] | None
             ) -> tuple[list[tuple[np.ndarray, int, np.ndarray]], tuple[str, int]]:
    """[(z [n], charge, positions [C, n, 3])] of a molecule's records, after the checks."""
    out = []
    for m in mols:
        if m.GetNumConformers() == 0:
            continue
        if any(a.GetNumImplicitHs() for a in m.GetAtoms()):
            raise PropertyInputError(
                f"molecule {key!r}: a {side} record has implicit hydrogens; xTB single points need every "
                "hydrogen as an atom with coordinates (write the SDF with hydrogens)")
        comp = _composition(m)
        if expect is None:
            expect = comp
        elif comp != expect:
            raise PropertyInputError(
                f"molecule {key!r}: a {side} record is {comp[0]} (charge {comp[1]:+d}) but the reference is "
                f"{expect[0]} (charge {expect[1]:+d}): the generated and reference sets do not match")
        z = np.array([a.GetAtomicNum() for a in m.GetAtoms()])
        pos = np.stack([c.GetPositions() for c in m.GetConformers()])
        out.append((z, comp[1], pos))
    return out, expect


def _subset(records: list[tuple[np.ndarray, int, np.ndarray]], max_confs: int | None, seed: int
            ) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """At most max_confs conformers over all records: a seeded random subset, in input order (the
    paper's protocol takes 50 random conformers per ensemble)."""
    total = sum(len(p) for _, _, p in records)
    if max_confs is None or total <= max_confs:
        return records
    keep = np.zeros(total, dtype=bool)
    keep[np.random.default_rng(seed).choice(total, size=max_confs, replace=False)] = True
    out, start = [], 0
    for z, q, p in records:
        k = keep[start:start + len(p)]
        start += len(p)
        if k.any():
            out.append((z, q, p[k]))
    return out


def _single_points(records: list[tuple[np.ndarray, int, np.ndarray]]) -> EnsembleProperties:
    energy, gap = [], []
    for z, q, pos in records:
        for sp in xtb_singlepoints(z, pos, charge=q):
            energy.append(sp.energy * HARTREE_EV if sp is not None else math.nan)
            gap.append(sp.gap * HARTREE_EV if sp is not None else math.nan)
    return EnsembleProperties(np.array(energy, dtype=np.float64), np.array(gap, dtype=np.float64))


def _work(task: tuple) -> tuple[str, list[EnsembleProperties]]:
    key, sides = task
    return key, [_single_points(recs) for recs in sides]


def compositions(groups: Mapping[str, Sequence[Chem.Mol]]) -> dict[str, tuple[str, int]]:
    """{key: (formula, total charge)} of each molecule's first record with conformers, for
    ensemble_properties(expect=...)."""
    out = {}
    for key, mols in groups.items():
        for m in mols:
            if m.GetNumConformers():
                out[key] = _composition(m)
                break
    return out


def ensemble_properties(groups: Mapping[str, Sequence[Chem.Mol]], *, max_confs: int | None = None,
                        seed: int = 0, workers: int = 1, progress: bool = True, desc: str = "xTB",
                        expect: Mapping[str, tuple[str, int]] | None = None) -> dict[str, EnsembleProperties]:
    """{key: [Mols]} -> {key: EnsembleProperties}: a GFN2-xTB single point of every conformer
    (at most max_confs per molecule, a seeded random subset). workers > 1 spreads molecules over
    processes; progress shows a tqdm bar (conformers). `expect` {key: (formula, charge)}, e.g.
    compositions(reference groups), checks each molecule's records against it
    (PropertyInputError on a mismatch)."""
    tasks, n_total = [], 0
    for i, (key, mols) in enumerate(groups.items()):
        recs, _ = _records(key, mols, "generated" if expect is not None else "input",
                           None if expect is None else expect.get(key))
        recs = _subset(recs, max_confs, seed + i)
        n_total += sum(len(p) for _, _, p in recs)
        tasks.append((key, [recs]))
    return {k: sides[0] for k, sides in _run(tasks, n_total, workers, progress, desc).items()}


def _run(tasks: list[tuple], n_total: int, workers: int, progress: bool, desc: str
         ) -> dict[str, list[EnsembleProperties]]:
    """Single points of (key, [records per side]) tasks -> {key: [EnsembleProperties per side]}."""
    bar = tqdm(total=n_total, disable=not progress, file=sys.stderr, desc=desc, unit="conf")
    out: dict[str, list[EnsembleProperties]] = {}
    if workers > 1 and len(tasks) > 1:
        with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
            for key, props in pool.imap(_work, tasks, chunksize=1):  # task order kept
                out[key] = props
                bar.update(sum(p.energy.size for p in props))
    else:
        for task in tasks:
            key, props = _work(task)
            out[key] = props
            bar.update(sum(p.energy.size for p in props))
    bar.close()
    return out


def compare_properties(gen: Mapping[str, EnsembleProperties], ref: Mapping[str, EnsembleProperties],
                       margin: float = DEFAULT_MARGIN, max_confs: int | None = None) -> PropertyResult:
    """Per-molecule figures for every reference molecule (compare_ensembles); a reference
    molecule without generated single points is 'missing'."""
    rows = [compare_ensembles(k, r, gen.get(k), margin) for k, r in ref.items()]
    return PropertyResult(rows=rows, margin=margin, max_confs=max_confs, extra_keys=[k for k in gen if k not in ref])


def evaluate_properties(gen: Mapping[str, Sequence[Chem.Mol]] | Iterable[Chem.Mol],
                        ref: Mapping[str, Sequence[Chem.Mol]] | Iterable[Chem.Mol], *,
                        margin: float = DEFAULT_MARGIN, max_confs: int | None = None, seed: int = 0,
                        workers: int = 1, progress: bool = True) -> PropertyResult:
    """Ensemble properties of generated vs reference conformers, molecule by molecule.

    gen, ref: records (grouped with evaluate.group_by_molecule) or ready groups {key: [Mols]}.
    Every conformer (with all hydrogens) of both sides of the shared molecules gets a GFN2-xTB
    single point (at most max_confs per ensemble: a seeded random subset); a reference molecule
    without generated conformers is 'missing' and gets none. See the module docstring for the
    statistics and the outlier definition. PropertyInputError when a molecule's generated and
    reference records differ in composition or lack hydrogens."""
    gen_groups = dict(gen) if isinstance(gen, Mapping) else group_by_molecule(gen)
    ref_groups = dict(ref) if isinstance(ref, Mapping) else group_by_molecule(ref)
    tasks, n_total, missing = [], 0, {}
    for i, (key, refs) in enumerate(ref_groups.items()):
        ref_recs, comp = _records(key, refs, "reference", None)
        gen_recs, _ = _records(key, gen_groups.get(key, []), "generated", comp)
        if not gen_recs:
            missing[key] = MolProperties(key=key, status="missing", n_ref=sum(len(p) for _, _, p in ref_recs))
            continue
        sides = [_subset(ref_recs, max_confs, seed + 2 * i), _subset(gen_recs, max_confs, seed + 2 * i + 1)]
        n_total += sum(len(p) for recs in sides for _, _, p in recs)
        tasks.append((key, sides))
    props = _run(tasks, n_total, workers, progress, "xTB")
    rows = [missing[k] if k in missing else compare_ensembles(k, *props[k], margin) for k in ref_groups]
    return PropertyResult(rows=rows, margin=margin, max_confs=max_confs,
                          extra_keys=[k for k in gen_groups if k not in ref_groups])


def evaluate_properties_files(gen_sdf: str, ref_sdf: str, **kwargs) -> PropertyResult:
    """evaluate_properties on two SDF files (one record per conformer, with hydrogens; records
    grouped by evaluate.molecule_key). EvalInputError for a missing or unreadable file; with no
    shared molecule every row is 'missing' (evaluate_files names that problem)."""
    gen_mols, _ = read_sdf(gen_sdf, "generated")
    ref_mols, _ = read_sdf(ref_sdf, "reference")
    return evaluate_properties(group_by_molecule(gen_mols), group_by_molecule(ref_mols), **kwargs)


def format_properties_table(result: dict | PropertyResult) -> str:
    """A small text table of a PropertyResult summary: MAE and median absolute error per
    statistic (eV), and the outlier counts."""
    s = result.summary() if isinstance(result, PropertyResult) else result
    lines = [f"ensemble properties (GFN2-xTB, eV), {s['n_mols']} molecules "
             f"({s['n_ref_confs']} reference / {s['n_gen_confs']} generated conformers)",
             f"{'':10s}{'MAE':>9s}{'median':>9s}{'signed':>9s}"]
    for k in STAT_KEYS:
        lines.append(f"{STAT_LABELS[k]:10s}{s['mae'][k]:9.4f}{s['median_ae'][k]:9.4f}{s['mean_signed'][k]:+9.4f}")
    g, r = s["outliers"]["gen"], s["outliers"]["ref"]
    lines.append(f"outliers (removal moves the statistic > {s['margin_ev']:g} eV): generated E_min {g['e_min']}, "
                 f"gap_max {g['gap_max']} ({g['molecules']} molecules); reference E_min {r['e_min']}, "
                 f"gap_max {r['gap_max']}")
    lines.append(f"without the generated outliers: E_min MAE {s['mae_no_outliers']['e_min']:.4f}, "
                 f"gap_max MAE {s['mae_no_outliers']['gap_max']:.4f}")
    notes = [f"{s[k]} {label}" for k, label in (
        ("n_missing", "molecules without generated conformers (not in means)"),
        ("n_no_valid_ref", "molecules without reference single points"),
        ("n_failed_ref_confs", "reference SCF failures"), ("n_failed_gen_confs", "generated SCF failures"),
        ("n_extra", "extra generated molecules (ignored)")) if s.get(k)]
    if notes:
        lines.append("note: " + "; ".join(notes))
    return "\n".join(lines)
