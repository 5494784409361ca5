"""Conformer-ensemble quality: COV and MAT (recall and precision), and a stereo check.

For one molecule with K reference conformers r_1..r_K and M generated conformers g_1..g_M, let

    D[k, m] = RMSD(r_k, g_m)    # heavy atoms, optimal rigid alignment, minimised over symmetries

(RDKit rdMolAlign.GetBestRMS on hydrogen-free copies: it tries every atom map of the reference onto
the probe found by substructure matching, so symmetric groups and different atom orders are
handled). Then, with threshold delta (0.5 A for QM9, 1.25 A for Drugs),

    COV-R = 100/K * #{k : min_m D[k, m] <= delta}      MAT-R = 1/K * sum_k min_m D[k, m]
    COV-P = 100/M * #{m : min_k D[k, m] <= delta}      MAT-P = 1/M * sum_m min_k D[k, m]

(recall: are the references found?; precision: are the generated conformers real?). ConfGF (Shi
et al. 2021) reports COV-R/MAT-R; GeoDiff (Xu et al. 2022) adds the -P variants. The benchmark
figures are the mean and the median of the per-molecule values over molecules. COV is in percent,
MAT in angstrom. Only COV depends on delta: an evaluation keeps min_m D[k, m] and min_k D[k, m] per
molecule, and EvalResult.at_threshold gives the figures at another delta without new RMSDs.

Records are grouped into molecules by stereo-free canonical SMILES (see `molecule_key`), so
generated and reference files may list molecules in any order and with any atom numbering.
Within a molecule, a record whose bonding differs from the reference topology (e.g. a GEOM
conformer with a broken bond) cannot be aligned atom-for-atom; it is dropped and counted.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import multiprocessing
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdMolAlign
from tqdm.auto import tqdm

from ..chem.molecule import DEFAULT_MAX_MATCHES, canonical_smiles, heavy_copy, stereo_matches

SUMMARY_KEYS = ("cov_r_mean", "cov_r_median", "mat_r_mean", "mat_r_median",
                "cov_p_mean", "cov_p_median", "mat_p_mean", "mat_p_median")


# ---- one molecule ------------------------------------------------------------------------------

def _as_mol_list(mols: Chem.Mol | Sequence[Chem.Mol]) -> list[Chem.Mol]:
    return [mols] if isinstance(mols, Chem.Mol) else list(mols)


def _conformer_list(mols: list[Chem.Mol]) -> list[tuple[Chem.Mol, int]]:
    """(heavy-atom mol, conformer id) for every conformer of every mol, in order."""
    out = []
    for m in mols:
        h = heavy_copy(m)
        out.extend((h, c.GetId()) for c in h.GetConformers())
    return out


def rmsd_matrix(ref_mols: Chem.Mol | Sequence[Chem.Mol], gen_mols: Chem.Mol | Sequence[Chem.Mol], *,
                max_matches: int = DEFAULT_MAX_MATCHES, symmetrize_terminal: bool = True) -> np.ndarray:
    """Heavy-atom best RMSD between every reference and every generated conformer of ONE molecule.

    ref_mols, gen_mols: a Mol or a list of Mols; every conformer of every Mol is one row (ref) /
    one column (gen), in order. So both "one record per conformer" (SDF) and "one Mol holding all
    conformers" work. Hydrogens are removed (on copies) before alignment; atom orders may differ
    between the two sides.

    Returns D: float64 [K, M], D[k, m] = min over atom maps p of min over rotations/translations of
    sqrt(1/n * sum_i |r_k[i] - (R g_m[p(i)] + t)|^2)  (rdMolAlign.GetBestRMS). Pairs that cannot be
    mapped onto each other (different bonding) are NaN.

    max_matches: RDKit's maxMatches, the cap on atom maps tried (see DEFAULT_MAX_MATCHES).
    symmetrize_terminal: RDKit's symmetrizeConjugatedTerminalGroups (default True, as RDKit):
    the two O of a nitro / carboxylate group count as equivalent.
    """
    refs = _conformer_list(_as_mol_list(ref_mols))
    gens = _conformer_list(_as_mol_list(gen_mols))
    d = np.full((len(refs), len(gens)), np.nan, dtype=np.float64)
    for k, (rm, rid) in enumerate(refs):
        for m, (gm, gid) in enumerate(gens):
            try:
                # GetBestRMS leaves the probe conformer aligned; the probe is our private heavy copy
                # and the RMSD of later pairs does not depend on where it sits.
                d[k, m] = rdMolAlign.GetBestRMS(gm, rm, prbId=gid, refId=rid, maxMatches=max_matches,
                                                symmetrizeConjugatedTerminalGroups=symmetrize_terminal)
            except RuntimeError:  # "No sub-structure match found": different bonding
                pass
    return d


def closest_distances(rmsd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two vectors every COV/MAT figure of one molecule is computed from, for its [K, M]
    RMSD matrix D (rows: references):

        min_r[k] = min_m D[k, m]   # [K] closest generated conformer of each reference
        min_p[m] = min_k D[k, m]   # [M] closest reference of each generated conformer

    NaN entries (pairs that could not be aligned) count as infinitely far, so a row/column of
    only NaN gives inf. ValueError for an empty or non-2-D matrix."""
    d = np.asarray(rmsd, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"need a non-empty [K, M] RMSD matrix, got shape {d.shape}")
    d = np.where(np.isnan(d), np.inf, d)
    return d.min(axis=1), d.min(axis=0)


def coverage_from_closest(min_r: np.ndarray, min_p: np.ndarray, threshold: float) -> dict[str, float]:
    """COV-R, MAT-R, COV-P, MAT-P from the closest-distance vectors of `closest_distances`:

    COV-R = 100 * mean_k [min_r[k] <= threshold]   MAT-R = mean_k min_r[k]
    COV-P = 100 * mean_m [min_p[m] <= threshold]   MAT-P = mean_m min_p[m]

    Only COV depends on the threshold, so one RMSD matrix serves every threshold."""
    min_r, min_p = np.asarray(min_r, dtype=np.float64), np.asarray(min_p, dtype=np.float64)
    return {
        "cov_r": 100.0 * float(np.mean(min_r <= threshold)),
        "mat_r": float(np.mean(min_r)),
        "cov_p": 100.0 * float(np.mean(min_p <= threshold)),
        "mat_p": float(np.mean(min_p)),
    }


def coverage_matching(rmsd: np.ndarray, threshold: float) -> dict[str, float]:
    """COV-R, MAT-R, COV-P, MAT-P of one molecule from its [K, M] RMSD matrix (rows: references).

    COV-R = 100 * mean_k [min_m D[k, m] <= threshold]   MAT-R = mean_k min_m D[k, m]
    COV-P = 100 * mean_m [min_k D[k, m] <= threshold]   MAT-P = mean_m min_k D[k, m]
    COV in percent, MAT in the unit of D (angstrom). NaN entries (pairs that could not be aligned)
    count as infinitely far: they never cover, and a row/column of only NaN makes MAT infinite.
    """
    return coverage_from_closest(*closest_distances(rmsd), threshold)


# ---- grouping ----------------------------------------------------------------------------------

def molecule_key(mol: Chem.Mol) -> str:
    """Stereo-free canonical SMILES (no H) naming the molecule a record belongs to.

    Taken from the record's `smiles` property when it parses (so a record whose bonds were
    perturbed still lands in its molecule's group and is then reported as invalid), otherwise from
    the structure itself (e.g. GEOM SMILES with '/' replaced by '_' do not parse).
    """
    if mol.HasProp("smiles"):
        with rdBase.BlockLogs():  # an unparsable property is expected here, not worth a log line
            try:
                return canonical_smiles(mol.GetProp("smiles"))
            except ValueError:
                pass
    return canonical_smiles(mol)


def group_by_molecule(mols: Iterable[Chem.Mol]) -> dict[str, list[Chem.Mol]]:
    """Records -> {molecule_key: [records in input order]} (dict order: first appearance)."""
    groups: dict[str, list[Chem.Mol]] = {}
    for m in mols:
        if m is not None:
            groups.setdefault(molecule_key(m), []).append(m)
    return groups


class EvalInputError(ValueError):
    """An input file of `evaluate` is missing, empty or unreadable, or the two files share no
    molecule; the message names the file and the problem (the CLI prints it as one line)."""


def read_sdf(path: str | Path, role: str = "input") -> tuple[list[Chem.Mol], int]:
    """All records of an SDF (.sdf or .sdf.gz) with hydrogens kept -> (mols, unreadable count).

    EvalInputError (naming `role` and the path) when the file is missing, a directory, not
    readable, empty, or holds no readable record.
    """
    p = Path(path)
    if not p.exists():
        raise EvalInputError(f"{role} file not found: {p}")
    if p.is_dir():
        raise EvalInputError(f"{role} {p} is a directory, not an SDF file")
    try:
        with open(p, "rb") as fh:
            first = fh.read(1)
    except OSError as exc:
        raise EvalInputError(f"cannot read {role} file {p}: {exc.strerror or exc}") from None
    if not first:
        raise EvalInputError(f"{role} file {p} is empty (0 bytes)")
    try:
        with rdBase.BlockLogs():  # unreadable records are counted and reported, not logged one by one
            if p.name.endswith(".gz"):
                with gzip.open(p, "rb") as f:
                    recs = list(Chem.ForwardSDMolSupplier(f, removeHs=False))
            else:
                recs = list(Chem.SDMolSupplier(str(p), removeHs=False))
    except (OSError, EOFError, SystemError, RuntimeError) as exc:  # e.g. a corrupt .gz
        raise EvalInputError(f"cannot read {role} file {p}: {exc}") from None
    mols = [m for m in recs if m is not None]
    if not mols:
        raise EvalInputError(f"{role} file {p} has no readable SDF record ({len(recs)} unreadable): "
                             "is it an SDF file?")
    return mols, len(recs) - len(mols)


# ---- many molecules ----------------------------------------------------------------------------

@dataclass
class MolEval:
    """One molecule's figures. status: 'ok' (in the means), 'missing' (not generated),
    'no_valid_gen' / 'no_valid_ref' (every record of that side had the wrong bonding)."""

    key: str
    status: str
    n_ref: int = 0  # reference conformers used
    n_gen: int = 0  # generated conformers used
    n_invalid_ref: int = 0  # reference conformers dropped for bonding different from the topology
    n_invalid_gen: int = 0
    cov_r: float = math.nan  # percent
    mat_r: float = math.nan  # angstrom
    cov_p: float = math.nan
    mat_p: float = math.nan


@dataclass
class EvalResult:
    rows: list[MolEval]  # one per reference molecule, in reference order
    threshold: float
    extra_keys: list[str] = field(default_factory=list)  # generated molecules absent from the reference
    n_unreadable_ref: int = 0
    n_unreadable_gen: int = 0
    # {row key: (min_r [n_ref], min_p [n_gen])} for every 'ok' row evaluated here: the closest-distance
    # vectors of `closest_distances` its figures come from, so `at_threshold` needs no new RMSD matrix.
    # Not part of row_dicts / to_csv / summary.
    closest: dict = field(default_factory=dict, repr=False)

    def at_threshold(self, threshold: float) -> EvalResult:
        """The same evaluation at another COV threshold, from the stored closest distances (no RMSD
        is recomputed): every row's COV-R / COV-P recomputed by `coverage_from_closest`, MAT and the
        counts unchanged. Equal to running `evaluate` again with `threshold`. ValueError when an
        'ok' row has no stored distances (a result assembled by hand rather than by `evaluate`)."""
        rows = []
        for r in self.rows:
            if r.status != "ok":
                rows.append(replace(r))
            elif r.key in self.closest:
                rows.append(replace(r, **coverage_from_closest(*self.closest[r.key], threshold)))
            else:
                raise ValueError(f"no closest distances stored for molecule {r.key!r}: at_threshold needs a "
                                 "result of evaluate()")
        return replace(self, rows=rows, threshold=threshold, extra_keys=list(self.extra_keys),
                       closest=dict(self.closest))

    def summary(self) -> dict:
        """Mean and median over the 'ok' molecules, plus counts (plain JSON-able values)."""
        ok = [r for r in self.rows if r.status == "ok"]
        out: dict = {}
        for name in ("cov_r", "mat_r", "cov_p", "mat_p"):
            vals = np.array([getattr(r, name) for r in ok], dtype=np.float64)
            out[f"{name}_mean"] = float(np.mean(vals)) if vals.size else math.nan
            out[f"{name}_median"] = float(np.median(vals)) if vals.size else math.nan
        out.update(
            n_mols=len(ok),
            n_missing=sum(r.status in ("missing", "no_valid_gen") for r in self.rows),
            n_extra=len(self.extra_keys),
            threshold=float(self.threshold),
            n_ref_mols=len(self.rows),
            n_no_valid_ref=sum(r.status == "no_valid_ref" for r in self.rows),
            n_ref_confs=sum(r.n_ref for r in ok),
            n_gen_confs=sum(r.n_gen for r in ok),
            n_invalid_ref_confs=sum(r.n_invalid_ref for r in self.rows),
            n_invalid_gen_confs=sum(r.n_invalid_gen for r in self.rows),
            n_unreadable_ref=self.n_unreadable_ref,
            n_unreadable_gen=self.n_unreadable_gen,
        )
        return out

    def row_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.rows]

    def to_csv(self, path: str | Path) -> None:
        """Per-molecule rows as CSV."""
        names = list(MolEval.__dataclass_fields__)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=names)
            w.writeheader()
            w.writerows(self.row_dicts())


def _n_confs(mols: Sequence[Chem.Mol]) -> int:
    return sum(m.GetNumConformers() for m in mols)


def _evaluate_molecule(task: tuple) -> tuple[MolEval, tuple[np.ndarray, np.ndarray] | None]:
    """Worker: (key, ref records, gen records, threshold, max_matches, symmetrize) -> (MolEval,
    its closest-distance vectors (min_r, min_p), or None when no RMSD matrix was computed)."""
    key, refs, gens, threshold, max_matches, symmetrize = task
    ref_h = [heavy_copy(m) for m in refs]
    gen_h = [heavy_copy(m) for m in gens]
    ref_topo = [canonical_smiles(m) for m in ref_h]
    gen_topo = [canonical_smiles(m) for m in gen_h]
    # The molecule's topology is the bonding most reference conformers share; records with other
    # bonding have no atom-for-atom map onto it (GetBestRMS would fail on them).
    votes = Counter()
    for t, m in zip(ref_topo, ref_h):
        votes[t] += m.GetNumConformers()
    topo = votes.most_common(1)[0][0]
    ref_ok = [m for t, m in zip(ref_topo, ref_h) if t == topo]
    gen_ok = [m for t, m in zip(gen_topo, gen_h) if t == topo]
    row = MolEval(key=key, status="ok", n_ref=_n_confs(ref_ok), n_gen=_n_confs(gen_ok),
                  n_invalid_ref=_n_confs(ref_h) - _n_confs(ref_ok), n_invalid_gen=_n_confs(gen_h) - _n_confs(gen_ok))
    if row.n_ref == 0:
        row.status = "no_valid_ref"
    elif row.n_gen == 0:
        row.status = "no_valid_gen"
    else:
        closest = closest_distances(rmsd_matrix(ref_ok, gen_ok, max_matches=max_matches,
                                                symmetrize_terminal=symmetrize))
        for name, val in coverage_from_closest(*closest, threshold).items():
            setattr(row, name, val)
        return row, closest
    return row, None


def evaluate(gen: Mapping[str, Sequence[Chem.Mol]] | Iterable[Chem.Mol],
             ref: Mapping[str, Sequence[Chem.Mol]] | Iterable[Chem.Mol], threshold: float = 0.5, *,
             workers: int = 1, progress: bool = True, max_matches: int = DEFAULT_MAX_MATCHES,
             symmetrize_terminal: bool = True) -> EvalResult:
    """COV/MAT of generated conformers against reference ensembles, molecule by molecule.

    gen, ref: either records (an iterable of Mols, each with one or more conformers; grouped with
    `group_by_molecule`) or ready groups {key: [Mols]} whose keys are matched verbatim. A
    reference molecule without generated conformers is reported as 'missing' and left out of the
    means (with a warning); generated molecules absent from the reference are counted in
    `extra_keys` and ignored.

    workers > 1 spreads molecules over that many processes; progress shows a tqdm bar on stderr.
    max_matches / symmetrize_terminal: see `rmsd_matrix`. The result keeps each molecule's
    closest distances, so `result.at_threshold(t)` gives the figures at any other threshold t
    without recomputing the RMSD matrices (the expensive part).
    """
    gen_groups = dict(gen) if isinstance(gen, Mapping) else group_by_molecule(gen)
    ref_groups = dict(ref) if isinstance(ref, Mapping) else group_by_molecule(ref)
    rows: list[MolEval | None] = [None] * len(ref_groups)
    closest: dict = {}
    tasks, task_pos = [], []
    for i, (key, refs) in enumerate(ref_groups.items()):
        gens = gen_groups.get(key, [])
        if _n_confs(gens) == 0:
            rows[i] = MolEval(key=key, status="missing", n_ref=_n_confs(refs))
        else:
            tasks.append((key, list(refs), list(gens), threshold, max_matches, symmetrize_terminal))
            task_pos.append(i)
    bar = tqdm(total=len(tasks), disable=not progress, file=sys.stderr, desc="COV/MAT", unit="mol")
    if workers > 1 and len(tasks) > 1:
        with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
            # imap keeps task order; chunksize 1 because molecules differ a lot in cost.
            for i, (row, dist) in zip(task_pos, pool.imap(_evaluate_molecule, tasks, chunksize=1)):
                rows[i] = row
                if dist is not None:
                    closest[row.key] = dist
                bar.update(1)
    else:
        for i, task in zip(task_pos, tasks):
            rows[i], dist = _evaluate_molecule(task)
            if dist is not None:
                closest[rows[i].key] = dist
            bar.update(1)
    bar.close()
    result = EvalResult(rows=[r for r in rows if r is not None], threshold=threshold,
                        extra_keys=[k for k in gen_groups if k not in ref_groups], closest=closest)
    n_missing = sum(r.status in ("missing", "no_valid_gen") for r in result.rows)
    if n_missing:
        warnings.warn(f"{n_missing} of {len(result.rows)} reference molecules have no (valid) generated "
                      "conformers; they are left out of the means", stacklevel=2)
    return result


def evaluate_files(gen_sdf: str | Path, ref_sdf: str | Path, threshold: float = 0.5, workers: int = 1,
                   progress: bool = True, *, max_matches: int = DEFAULT_MAX_MATCHES,
                   symmetrize_terminal: bool = True, rows_csv: str | Path | None = None) -> dict:
    """`evaluate` on two SDF files (one record per conformer, hydrogens optional).

    Returns the summary dict: cov_r_mean, cov_r_median, mat_r_mean, mat_r_median, cov_p_mean,
    cov_p_median, mat_p_mean, mat_p_median (COV %, MAT A), n_mols, n_missing, n_extra, threshold
    and further counts (see EvalResult.summary). Per-molecule rows go to `rows_csv` when given;
    call `evaluate` for them as objects.
    """
    gen_mols, gen_bad = read_sdf(gen_sdf, "generated")
    ref_mols, ref_bad = read_sdf(ref_sdf, "reference")
    gen_groups, ref_groups = group_by_molecule(gen_mols), group_by_molecule(ref_mols)
    if not gen_groups.keys() & ref_groups.keys():
        raise EvalInputError(
            f"{gen_sdf} and {ref_sdf} share no molecule (matched by stereo-free canonical SMILES: the `smiles` "
            f"property, else the structure); {len(gen_groups)} generated and {len(ref_groups)} reference "
            f"molecules, e.g. {next(iter(gen_groups))!r} and {next(iter(ref_groups))!r}")
    result = evaluate(gen_groups, ref_groups, threshold, workers=workers, progress=progress, max_matches=max_matches,
                      symmetrize_terminal=symmetrize_terminal)
    result.n_unreadable_gen, result.n_unreadable_ref = gen_bad, ref_bad
    if rows_csv is not None:
        result.to_csv(rows_csv)
    return result.summary()


def format_table(result: dict | EvalResult) -> str:
    """A small text table of a summary dict (or EvalResult)."""
    s = result.summary() if isinstance(result, EvalResult) else result
    head = (f"threshold {s['threshold']:g} A, {s['n_mols']} molecules "
            f"({s.get('n_ref_confs', '?')} reference / {s.get('n_gen_confs', '?')} generated conformers)")
    lines = [head, f"{'':8s}{'mean':>10s}{'median':>10s}"]
    for name, label, unit in (("cov_r", "COV-R", "%"), ("mat_r", "MAT-R", "A"), ("cov_p", "COV-P", "%"),
                              ("mat_p", "MAT-P", "A")):
        fmt = "{:10.2f}" if unit == "%" else "{:10.4f}"
        lines.append(f"{label + ' ' + unit:8s}" + fmt.format(s[f"{name}_mean"]) + fmt.format(s[f"{name}_median"]))
    notes = [f"{s[k]} {label}" for k, label in (
        ("n_missing", "missing molecules (not in means)"), ("n_extra", "extra generated molecules (ignored)"),
        ("n_no_valid_ref", "molecules without valid references"),
        ("n_invalid_ref_confs", "reference conformers with other bonding (dropped)"),
        ("n_invalid_gen_confs", "generated conformers with other bonding (dropped)"),
        ("n_unreadable_ref", "unreadable reference records"), ("n_unreadable_gen", "unreadable generated records"),
    ) if s.get(k)]
    if notes:
        lines.append("note: " + "; ".join(notes))
    return "\n".join(lines)


# ---- stereo ------------------------------------------------------------------------------------

def stereo_match_rate(mols_or_records: Chem.Mol | Iterable[Chem.Mol], input_smiles: str | Sequence[str] | None = None
                      ) -> float:
    """Fraction of conformers whose 3D-perceived stereo matches the input SMILES (see
    `stereo_matches`); NaN when there are no conformers."""
    hits = stereo_matches(mols_or_records, input_smiles)
    return float(hits.mean()) if hits.size else math.nan


# ---- command line ------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """python -m confgf_fast.evaluation.evaluate GEN.sdf REF.sdf [--threshold 0.5] [--workers N] [--json OUT]"""
    p = argparse.ArgumentParser(prog="python -m confgf_fast.evaluation.evaluate", description=main.__doc__)
    p.add_argument("generated")
    p.add_argument("reference")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-matches", type=int, default=DEFAULT_MAX_MATCHES)
    p.add_argument("--rows-csv", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--quiet", "-q", action="store_true")
    a = p.parse_args(argv)
    try:
        s = evaluate_files(a.generated, a.reference, a.threshold, a.workers, not a.quiet, max_matches=a.max_matches,
                           rows_csv=a.rows_csv)
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(s))
    if a.json:
        Path(a.json).write_text(json.dumps(s, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
