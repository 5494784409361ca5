"""Relaxing generated conformers, energies, and energy-based pruning.

    relaxed = relax_conformers(mol, "mmff", prune_rms=0.5, energy_window=10.0, sort_energy=True)
    relaxed.mol            # the kept conformers, ids 0..k-1, in output order
    relaxed.energies       # kcal/mol, one per kept conformer

Methods:
- `mmff`: RDKit MMFF94 (`mmff94s`: the MMFF94s variant), every conformer of the molecule at once
  with MMFFOptimizeMoleculeConfs, multi-threaded over conformers (numThreads). Where MMFF has no
  parameters for the molecule (an element or atom type it does not know), UFF is used instead,
  with a warning; the method is recorded per conformer (`energy_method`). With neither, the
  conformers are kept unrelaxed (energy NaN, method `none`) and a warning says so.
- `xtb`: GFN2-xTB geometry optimisation with the PyPI package tblite (an optional dependency;
  RelaxError naming the package if it is missing), the L-BFGS optimiser of xtb.py, one
  conformer per thread. A conformer whose bonding changed (xtb.topology_kept, or the
  quality.py bond / 1-3 clash / connectivity tests on the optimised geometry) or whose
  optimisation failed is dropped and counted; the energy is the GFN2-xTB total energy.
Energies are in kcal/mol (xTB's hartree x 627.5095). After relaxing, every kept conformer is
checked again: `stereo_ok` with stereo.stereo_ok (the geometric check made after sampling, on the
input's stereo elements; where it fails, RDKit's 3D perception decides, see check_conformers) and
the quality.py tests, so the flags describe the written geometry.

Then, on the relaxed energies: `energy_window` E drops conformers more than E kcal/mol above the
molecule's lowest; `prune_rms` R drops every conformer within R A heavy-atom RMSD (symmetry-aware,
RDKit GetBestRMS) of a lower-energy kept one (RDKit's pruneRmsThresh, but by energy order);
`sort_energy` writes the conformers lowest energy first (else in their sampled order).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers, rdMolAlign

from ..config import RELAX_AUTO, RELAX_METHODS
from .quality import quality_flags

HARTREE_KCAL = 627.5094740631  # kcal/mol per hartree
# Quality defects that mean the bonding of a conformer is not the input's (quality.DEFECTS).
BONDING_DEFECTS = ("nonfinite", "bond", "clash", "connectivity")
DEFAULT_MAX_ITERS = 1000  # MMFF / UFF iterations per conformer (RDKit's default is 200)


class RelaxError(RuntimeError):
    """A relax method that cannot run here (unknown name, tblite not installed)."""


@dataclass
class RelaxOptions:
    """What to do with a molecule's conformers after sampling.

    method: one of RELAX_METHODS; prune_rms: R (A) or None; energy_window: E (kcal/mol) or None;
    sort_energy: write lowest energy first; max_iters: MMFF / UFF iterations; xtb_steps: L-BFGS
    steps of the xTB optimisation; threads: conformers relaxed at once (0: one per CPU core).
    """

    method: str = "none"
    prune_rms: float | None = None
    energy_window: float | None = None
    sort_energy: bool = False
    max_iters: int = DEFAULT_MAX_ITERS
    xtb_steps: int = 300
    threads: int = 0

    def __post_init__(self):
        if self.method not in RELAX_METHODS:
            raise RelaxError(f"unknown relax method {self.method!r}; choose from {', '.join(RELAX_METHODS)}")
        if self.method == "none" and (self.prune_rms is not None or self.energy_window is not None
                                      or self.sort_energy):
            raise RelaxError("prune_rms, energy_window and sort_energy need energies: choose a relax method "
                             "(mmff or xtb)")
        if self.prune_rms is not None and self.prune_rms < 0:
            raise RelaxError(f"prune_rms must be >= 0 (got {self.prune_rms})")
        if self.energy_window is not None and self.energy_window < 0:
            raise RelaxError(f"energy_window must be >= 0 (got {self.energy_window})")
        if self.method == "xtb":
            require_tblite()

    @property
    def active(self) -> bool:
        return self.method != "none"


def relax_per_model(relax: str | RelaxOptions | Sequence[RelaxOptions], defaults: Sequence[str],
                    prune_rms: float | None = None, energy_window: float | None = None,
                    sort_energy: bool = False, threads: int = 0) -> list[RelaxOptions]:
    """One RelaxOptions per model, for the molecules that model samples.

    relax: a method name (every model alike), "auto" (each model's own `defaults[i]`, the
    `relax_default` its checkpoint was exported with: the method measured best for it), a
    RelaxOptions (every model alike) or one RelaxOptions per model. prune_rms, energy_window,
    sort_energy and threads complete a name. With "auto" they need every model to relax: a
    RelaxError says how many would not (the caller knows their names)."""
    n = len(defaults)
    if isinstance(relax, RelaxOptions):
        return [relax] * n
    if not isinstance(relax, str):
        opts = list(relax)
        if len(opts) != n or not all(isinstance(o, RelaxOptions) for o in opts):
            raise RelaxError(f"relax: expected one RelaxOptions per model ({n}), got {len(opts)}")
        return opts
    methods = list(defaults) if relax == RELAX_AUTO else [relax] * n
    if relax == RELAX_AUTO and (prune_rms is not None or energy_window is not None or sort_energy) \
            and "none" in methods:
        raise RelaxError("prune_rms, energy_window and sort_energy need energies, and with relax 'auto' "
                         f"{methods.count('none')} of the {n} weights do not relax (their relax_default is none): "
                         "choose a relax method (mmff or xtb)")
    made: dict[str, RelaxOptions] = {}
    for m in methods:
        if m not in made:
            made[m] = RelaxOptions(m, prune_rms, energy_window, sort_energy, threads=threads)
    return [made[m] for m in methods]


def require_tblite() -> None:
    """RelaxError with the install hint when tblite (GFN2-xTB) is not importable."""
    from .xtb import available

    if not available():
        raise RelaxError("relax method xtb needs the tblite package (GFN2-xTB): pip install tblite")


@dataclass
class RelaxedConformers:
    """The outcome of relaxing one molecule's conformers (all lists: one entry per kept conformer,
    in output order).

    mol: the kept conformers (ids 0..k-1), None when none is left; energies: kcal/mol (NaN where
    nothing could relax the molecule); methods: `MMFF94`, `MMFF94s`, `UFF`, `GFN2-xTB` or `none`;
    source: index of each kept conformer in the input Mol; converged: the optimiser converged;
    stereo_ok: the input's stereo elements are all right in the relaxed geometry (stereo.stereo_ok);
    defects: failed quality.py tests of the relaxed geometry (empty: ok); dropped: counts by reason
    (`bonds_changed`, `failed`, `energy_window`, `prune_rms`); warnings: notes for the user;
    seconds: wall time of the relaxation and the checks.
    """

    mol: Chem.Mol | None
    energies: list[float]
    methods: list[str]
    source: list[int]
    converged: list[bool]
    stereo_ok: list[int]
    defects: list[list[str]]
    dropped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def relative_energies(self) -> list[float]:
        """Energies relative to the lowest kept conformer (kcal/mol)."""
        finite = [e for e in self.energies if math.isfinite(e)]
        low = min(finite) if finite else math.nan
        return [e - low for e in self.energies]


# ---- force fields -------------------------------------------------------------------------------
def _force_field(mol: Chem.Mol, method: str, max_iters: int, threads: int,
                 ) -> tuple[list[float], list[bool], str, list[str]]:
    """Relax every conformer of `mol` in place with MMFF (variant per method) or UFF as fallback.
    -> (energies kcal/mol, converged, method name, warnings)."""
    variant = "MMFF94s" if method == "mmff94s" else "MMFF94"
    C = mol.GetNumConformers()
    if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        res = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, numThreads=threads, maxIters=max_iters,
                                                            mmffVariant=variant)
        return [float(e) for _, e in res], [nc == 0 for nc, _ in res], variant, []
    if rdForceFieldHelpers.UFFHasAllMoleculeParams(mol):
        res = rdForceFieldHelpers.UFFOptimizeMoleculeConfs(mol, numThreads=threads, maxIters=max_iters)
        why = f"{variant} has no parameters for this molecule: relaxed with UFF instead"
        return [float(e) for _, e in res], [nc == 0 for nc, _ in res], "UFF", [why]
    why = f"neither {variant} nor UFF has parameters for this molecule: conformers left unrelaxed"
    return [math.nan] * C, [False] * C, "none", [why]


def _xtb(mol: Chem.Mol, max_steps: int, threads: int) -> tuple[list[float], list[bool], list[str | None]]:
    """GFN2-xTB optimisation of every conformer of `mol`, in place where it succeeds.
    -> (energies kcal/mol, converged, per conformer None or why it is dropped)."""
    from .xtb import topology_kept, xtb_optimize

    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    confs = list(mol.GetConformers())

    def one(conf):  # xtb_optimize runs tblite on one OpenMP thread: the conformers are the parallelism
        try:
            res = xtb_optimize(z, conf.GetPositions(), charge=charge, max_steps=max_steps)
        except Exception:  # tblite raises on SCF failure: the conformer is dropped and counted
            return None, "failed"
        if not np.all(np.isfinite(res.pos)) or not math.isfinite(res.energy):
            return None, "failed"
        if not topology_kept(mol, res.pos):
            return None, "bonds_changed"
        return res, None

    workers = threads or torch.get_num_threads()
    with ThreadPoolExecutor(max(1, min(workers, len(confs)))) as pool:  # tblite releases the GIL
        results = list(pool.map(one, confs))
    energies, converged, why = [], [], []
    for conf, (res, reason) in zip(confs, results):
        if res is None:
            energies.append(math.nan)
            converged.append(False)
        else:
            for i, p in enumerate(res.pos):
                conf.SetAtomPosition(i, p.tolist())
            energies.append(res.energy * HARTREE_KCAL)
            converged.append(bool(res.converged))
        why.append(reason)
    return energies, converged, why


# ---- checks after relaxing ----------------------------------------------------------------------
def check_conformers(mol: Chem.Mol) -> tuple[list[int], list[list[str]]]:
    """Every conformer of `mol` (all H) -> (stereo_ok 0/1, quality.py defect names) per conformer:
    the checks made after sampling, on these coordinates; a conformer that fails the geometric
    stereo check is passed if RDKit's 3D perception (chem.stereo_matches) finds the input's
    stereo in it."""
    from ..graph import PackedGraphs
    from .molecule import conformer_positions, featurize
    from .quality import conformer_defects, defect_reasons
    from .stereo import batch_constraints, stereo_constraints, stereo_ok

    C = mol.GetNumConformers()
    if C == 0:
        return [], []
    pos = conformer_positions(mol).reshape(-1, 3)
    if mol.GetNumAtoms() == 1:
        return [1] * C, [[] for _ in range(C)]
    batch = PackedGraphs([featurize(mol)]).batch(torch.zeros(C, dtype=torch.long))
    cons = batch_constraints([stereo_constraints(mol)], batch)
    ok = [bool(x) for x in stereo_ok(pos, cons, batch.atom_ptr).tolist()]
    if not all(ok):
        # stereo.stereo_ok is sufficient, not necessary: it also asks the substituents' tetrahedron
        # to have the right orientation, which a relaxed strained cage can miss while RDKit perceives
        # every centre right from 3D (2 of 30 dev molecules after MMFF). Ask RDKit for those.
        from .molecule import remove_hs, stereo_matches

        try:
            target = Chem.MolToSmiles(remove_hs(mol))
            perceived = stereo_matches(mol, target)
            ok = [a or bool(b) for a, b in zip(ok, perceived)]
        except Exception:  # a Mol RDKit cannot write and read back: keep the geometric verdict
            pass
    return [int(x) for x in ok], defect_reasons(conformer_defects(pos, batch))


# ---- selection on energies ----------------------------------------------------------------------
def within_energy_window(energies: list[float], window: float) -> list[int]:
    """Indices of the conformers within `window` kcal/mol of the lowest (all of them when no
    energy is finite: nothing to compare)."""
    finite = [e for e in energies if math.isfinite(e)]
    if not finite:
        return list(range(len(energies)))
    low = min(finite)
    return [k for k, e in enumerate(energies) if math.isfinite(e) and e - low <= window]


def prune_by_rms(mol: Chem.Mol, energies: list[float], threshold: float, candidates: list[int] | None = None,
              max_matches: int | None = None) -> list[int]:
    """Greedy RMSD pruning in energy order: the lowest-energy conformer is kept, then each next one
    if its heavy-atom RMSD (symmetry-aware GetBestRMS on a hydrogen-free copy) to every kept one is
    more than `threshold` A. candidates: conformer indices to consider (default all). Returns the
    kept indices in energy order (NaN energies last, in their order)."""
    from .molecule import DEFAULT_MAX_MATCHES, heavy_copy

    idx = list(range(mol.GetNumConformers())) if candidates is None else list(candidates)
    idx.sort(key=lambda k: (not math.isfinite(energies[k]), energies[k] if math.isfinite(energies[k]) else 0.0))
    heavy = heavy_copy(mol)
    ids = [c.GetId() for c in heavy.GetConformers()]
    kept: list[int] = []
    for k in idx:
        close = False
        for j in kept:
            try:
                r = rdMolAlign.GetBestRMS(heavy, heavy, prbId=ids[k], refId=ids[j],
                                          maxMatches=max_matches or DEFAULT_MAX_MATCHES)
            except RuntimeError:  # no atom map (cannot happen for one molecule): treat as different
                r = math.inf
            if r <= threshold:
                close = True
                break
        if not close:
            kept.append(k)
    return kept


# ---- everything, for one molecule --------------------------------------------------------------
def relax_conformers(mol: Chem.Mol, method: str | RelaxOptions = "mmff", *, prune_rms: float | None = None,
                     energy_window: float | None = None, sort_energy: bool = False,
                     max_iters: int = DEFAULT_MAX_ITERS, threads: int = 0) -> RelaxedConformers:
    """Relax every conformer of `mol` (all hydrogens, as generated) and select on energies.

    method: `mmff`, `mmff94s` or `xtb` (see the module docstring), or a RelaxOptions (then the
    keywords are ignored). The input Mol is not modified. Conformers are written in their input
    order unless sort_energy; energy_window and prune_rms are applied in that order.
    """
    opts = method if isinstance(method, RelaxOptions) else RelaxOptions(
        method, prune_rms, energy_window, sort_energy, max_iters=max_iters, threads=threads)
    if not opts.active:
        raise RelaxError("relax_conformers needs a relax method (mmff, mmff94s or xtb)")
    t0 = time.perf_counter()
    work = Chem.Mol(mol)
    C = work.GetNumConformers()
    dropped: Counter = Counter()
    warnings: list[str] = []
    why: list[str | None] = [None] * C
    if opts.method == "xtb":
        energies, converged, why = _xtb(work, opts.xtb_steps, opts.threads)
        methods = ["GFN2-xTB"] * C
    else:
        energies, converged, name, warnings = _force_field(work, opts.method, opts.max_iters, opts.threads)
        methods = [name] * C
    stereo, defects = check_conformers(work)
    if opts.method == "xtb":
        for k in range(C):
            if why[k] is None and any(d in BONDING_DEFECTS for d in defects[k]):
                why[k] = "bonds_changed"
    keep = [k for k in range(C) if why[k] is None]
    dropped.update(w for w in why if w is not None)
    if dropped:
        said = {"bonds_changed": "whose bonds changed", "failed": "whose optimisation failed"}
        what = " and ".join(f"{n} conformer(s) {said[w]}" for w, n in sorted(dropped.items()))
        warnings.append(f"GFN2-xTB: dropped {what}")
    if opts.energy_window is not None:
        within = set(within_energy_window([energies[k] for k in keep], opts.energy_window))
        dropped["energy_window"] += len(keep) - len(within)
        keep = [k for i, k in enumerate(keep) if i in within]
    if opts.prune_rms is not None and len(keep) > 1:
        kept = set(prune_by_rms(work, energies, opts.prune_rms, candidates=keep))
        dropped["prune_rms"] += len(keep) - len(kept)
        keep = [k for k in keep if k in kept]
    if opts.sort_energy:
        keep.sort(key=lambda k: (not math.isfinite(energies[k]), energies[k] if math.isfinite(energies[k]) else 0.0))
    out = None
    if keep:
        from .molecule import set_conformers

        confs = list(work.GetConformers())
        out = set_conformers(work, [confs[k].GetPositions() for k in keep])
    return RelaxedConformers(
        mol=out, energies=[energies[k] for k in keep], methods=[methods[k] for k in keep], source=keep,
        converged=[converged[k] for k in keep], stereo_ok=[stereo[k] for k in keep],
        defects=[defects[k] for k in keep], dropped=dropped, warnings=warnings,
        seconds=time.perf_counter() - t0)


def relax_flags(mol: Chem.Mol, flags: list[dict], opts: RelaxOptions,
                ) -> tuple[RelaxedConformers, list[dict]]:
    """relax_conformers on a generated molecule plus its per-conformer flags (pipeline.MolOutcome's
    conf_flags) -> (result, flags of the kept conformers): each conformer's own flags, with
    stereo_ok and quality (+ quality_reasons) of the relaxed geometry and the properties
    `energy` (kcal/mol), `relative_energy` (kcal/mol above the molecule's lowest kept conformer)
    and `energy_method`."""
    res = relax_conformers(mol, opts)
    new = []
    for k, e, rel, m, ok, bad in zip(res.source, res.energies, res.relative_energies(), res.methods,
                                     res.stereo_ok, res.defects):
        f = {key: v for key, v in (flags[k] if k < len(flags) else {}).items() if key != "quality_reasons"}
        f.update(quality_flags(bad))
        f["stereo_ok"] = ok
        f["energy"] = round(e, 4) if math.isfinite(e) else "nan"
        f["relative_energy"] = round(rel, 4) if math.isfinite(rel) else "nan"
        f["energy_method"] = m
        new.append(f)
    return res, new


__all__ = [
    "HARTREE_KCAL",
    "RELAX_AUTO",
    "RELAX_METHODS",
    "RelaxError",
    "RelaxOptions",
    "RelaxedConformers",
    "check_conformers",
    "prune_by_rms",
    "relax_conformers",
    "relax_flags",
    "relax_per_model",
    "require_tblite",
    "within_energy_window",
]
