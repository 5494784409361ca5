"""The one chunked builder of featurised training sets (QM9 and drug-like), and the conformer
generation they share.

A source is a list of rows `(index, smiles, ...)` and a module-level function
`make_mol(row, cfg) -> Mol | str` that returns the molecule with its conformers, or the reason it
was dropped (a stats key). `build_chunked` does the rest, the same way for every source:

- a seeded permutation of all rows, cut into chunks of `chunk_size` (so any prefix of chunks is a
  random subset of the source);
- each chunk built by one process and cached as its own featurised file (written atomically), so a
  build is deterministic, resumable (finished chunks are reused) and parallel;
- molecules whose stereo-free canonical SMILES (chem.canonical_smiles) is in `exclude` are never
  built, and are checked again when the chunks are merged (so a cache built before an exclusion
  list grew cannot leak a held-out molecule into the output);
- the merged dataset records the build settings, summed drop counts and the composition of what was
  built (elements, heavy-atom counts, conformers per molecule).

Conformers: `add_etkdg_conformers` adds ETKDGv3 + MMFF94 conformers, keeps only those with the
molecule's stereo and drops near-duplicates by heavy-atom RMSD; optionally (`refine_with_xtb`) the
whole set is then refined with GFN2-xTB.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from ..chem.molecule import etkdg_params
from ..model.elements import heavy_atom_mask
from .dataset import ConformerDataset

# Stats keys of chunks cached by earlier builder versions, read under their current names.
_LEGACY_STATS = {"heldout": "excluded"}


# ---- exclusion lists --------------------------------------------------------------------------
def heldout_keys(path: str | Path) -> set[str]:
    """Stereo-free canonical SMILES of every molecule in a held-out file.

    csv: every SMILES column (smiles, corrected_smiles, SMILES). sdf: every record's structure and,
    where present, its `smiles` property. Unparsable entries are skipped.
    """
    from rdkit import rdBase

    from ..chem.molecule import canonical_smiles

    path = Path(path)
    with rdBase.BlockLogs():  # unparsable entries are expected (GEOM SMILES with stray characters)
        return _heldout_keys(path, canonical_smiles)


def _heldout_keys(path: Path, canonical_smiles: Callable) -> set[str]:
    keys = set()
    if path.suffix.lower() in (".sdf", ".sd"):
        from rdkit import Chem

        for rec in Chem.SDMolSupplier(str(path), removeHs=False, sanitize=True):
            if rec is None:
                continue
            with contextlib.suppress(ValueError):
                keys.add(canonical_smiles(rec))
            if rec.HasProp("smiles"):
                with contextlib.suppress(ValueError):
                    keys.add(canonical_smiles(rec.GetProp("smiles")))
        return keys
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for col in ("smiles", "corrected_smiles", "SMILES"):
                s = r.get(col)
                if s:
                    with contextlib.suppress(ValueError):
                        keys.add(canonical_smiles(s))
    return keys


def exclusion_keys(paths: Sequence[str | Path]) -> set[str]:
    """Union of heldout_keys over several files (csv or sdf)."""
    keys: set[str] = set()
    for p in paths:
        keys |= heldout_keys(p)
    return keys


# ---- conformer generation ---------------------------------------------------------------------
def add_etkdg_conformers(mol, n: int, seed: int, dedup_rmsd: float, xtb: bool = False, *,
                         want_stereo: str | None = None, mmff_iters: int = 500,
                         max_iterations: int = 0, embed_timeout: int = 0, max_matches: int = 1_000_000,
                         mmff_on_copy: bool = False):
    """Add up to n ETKDGv3+MMFF94 conformers to `mol`, dropping any within dedup_rmsd (heavy atoms,
    symmetry-aware GetBestRMS) of one already kept, or whose 3D stereo differs from the molecule's.

    mol: RDKit Mol with explicit H. If it has conformers, it keeps them, its first conformer defines
    the stereo (unless want_stereo is given) and is the first dedup reference (QM9: the DFT
    geometry). Without conformers, want_stereo (isomeric canonical SMILES, chem.canonical_smiles)
    defines the stereo, or, when None, the first embedded conformer does.
    xtb: after the checks, refine every kept conformer, the input's included, with GFN2-xTB
    (refine_with_xtb: the whole set at the benchmark references' level of theory).
    max_iterations / embed_timeout: RDKit's per-embedding caps (0 = RDKit's defaults); conformers
    that fail to embed are simply absent. max_matches: GetBestRMS's cap on symmetry matches.
    mmff_on_copy: optimise a copy of the Mol and copy the coordinates back, so MMFF's aromaticity
    model does not leak into the stereo check (False: the QM9 v2 behaviour, which drops the MMFF
    conformers of molecules such as pyridones; kept so QM9 rebuilds stay identical).
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from ..chem.molecule import stereo_smiles_from_3d

    if n <= 0:
        return mol
    has_ref = mol.GetNumConformers() > 0
    want = want_stereo
    if want is None and has_ref:
        want = stereo_smiles_from_3d(mol, mol.GetConformers()[0].GetId())
    trial = Chem.Mol(mol)
    trial.RemoveAllConformers()
    params = etkdg_params(seed, max_iterations, embed_timeout)
    # With a timeout RDKit reports a failed embedding as id -1.
    cids = [cid for cid in AllChem.EmbedMultipleConfs(trial, numConfs=n, params=params) if cid >= 0]
    if not cids:
        return mol
    if mmff_on_copy:
        # MMFF's setup applies its own aromaticity model to the Mol in place (a pyridone ring
        # becomes non-aromatic), after which the stereo check below would reject every conformer.
        ff_mol = Chem.Mol(trial)
        with contextlib.suppress(Exception):
            AllChem.MMFFOptimizeMoleculeConfs(ff_mol, maxIters=mmff_iters)
        for cid in cids:
            trial.GetConformer(cid).SetPositions(ff_mol.GetConformer(cid).GetPositions())
    else:  # the QM9 v2 chunks were built this way (MMFF on `trial` itself)
        with contextlib.suppress(Exception):
            AllChem.MMFFOptimizeMoleculeConfs(trial, maxIters=mmff_iters)
    heavy_ref = Chem.RemoveHs(mol)
    heavy_trial = Chem.RemoveHs(trial)
    kept_heavy = [heavy_ref.GetConformers()[0].GetId()] if has_ref else []
    for cid in cids:
        ok, want = _accept(trial, heavy_trial, cid, want, heavy_ref, kept_heavy, dedup_rmsd, max_matches)
        if not ok:
            continue
        mol.AddConformer(trial.GetConformer(cid), assignId=True)
        kept_heavy.append(heavy_ref.AddConformer(heavy_trial.GetConformer(cid), assignId=True))
    return refine_with_xtb(mol, dedup_rmsd, want, max_matches) if xtb else mol


def _near_any(probe, refs, ref_ids: list[int], threshold: float, max_matches: int) -> bool:
    """True when the one-conformer heavy-atom Mol `probe` is within `threshold` (heavy-atom
    GetBestRMS, symmetry-aware) of conformer ref_ids of `refs` (the dedup of the builders)."""
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign

    return any(rdMolAlign.GetBestRMS(probe, Chem.Mol(refs, confId=k), maxMatches=max_matches) < threshold
               for k in ref_ids)


def _accept(mol, heavy, cid: int, want: str | None, refs, ref_ids: list[int], dedup_rmsd: float,
            max_matches: int) -> tuple[bool, str]:
    """The builders' test of conformer cid of `mol` (all H; `heavy`: its heavy-atom copy): its 3D
    stereo equals `want` (None: this conformer's defines it) and it is not within dedup_rmsd of
    conformer ref_ids of `refs` (_near_any). Returns (accepted, want)."""
    from rdkit import Chem

    from ..chem.molecule import stereo_smiles_from_3d

    got = stereo_smiles_from_3d(mol, cid)
    want = got if want is None else want
    return got == want and not _near_any(Chem.Mol(heavy, confId=cid), refs, ref_ids, dedup_rmsd, max_matches), want


def refine_with_xtb(mol, dedup_rmsd: float, want_stereo: str | None = None, max_matches: int = 1_000_000):
    """Optimise every conformer of `mol` (all H) with GFN2-xTB (xtb.py) in place and keep those
    that converge without changing the bonding, keep the stereo (want_stereo, isomeric canonical
    SMILES; None: the first conformer's) and are not within dedup_rmsd of one kept before them (two
    MMFF minima can fall into one xTB minimum). Returns `mol`, possibly with no conformer left.

    Refining after the MMFF-level dedup, not before, optimises only the conformers kept (~2.3 of
    the 5 tried per QM9 molecule): a chunk of 1000 QM9 molecules takes 6-9 minutes on one core,
    MMFF stage included (stats.seconds of the chunks in bench/train_data/qm9_xtb2_chunks).
    """
    from rdkit import Chem

    from ..chem.xtb import refine_conformer

    ids = [c.GetId() for c in mol.GetConformers()]
    refined = [cid for cid in ids if refine_conformer(mol, cid) is not None]
    heavy = Chem.RemoveHs(mol)
    kept: list[int] = []
    for cid in refined:
        ok, want_stereo = _accept(mol, heavy, cid, want_stereo, heavy, kept, dedup_rmsd, max_matches)
        if ok:
            kept.append(cid)
    for cid in ids:
        if cid not in kept:
            mol.RemoveConformer(cid)
    return mol


# ---- composition statistics -------------------------------------------------------------------
def composition(ds: ConformerDataset) -> dict:
    """Element and size statistics of a dataset (for the build log and the model card).

    elements: symbol -> {"atoms": count over molecules, "molecules": molecules containing it};
    heavy_atoms: summary and histogram (heavy-atom count -> molecules);
    atoms: the same summary with hydrogens; conformers_per_molecule: summary and histogram.
    """
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    z = ds.graphs.z.long()
    ptr = ds.graphs.atom_ptr.long()
    M = ds.num_molecules
    mol_of_atom = torch.repeat_interleave(torch.arange(M), ptr[1:] - ptr[:-1])
    elements = {}
    for e in torch.unique(z).tolist():
        sel = z == e
        elements[table.GetElementSymbol(int(e))] = {"atoms": int(sel.sum()),
                                                    "molecules": int(torch.unique(mol_of_atom[sel]).numel())}
    heavy = torch.zeros(M, dtype=torch.long).index_add_(0, mol_of_atom, heavy_atom_mask(z).long())
    atoms = ptr[1:] - ptr[:-1]
    confs = torch.bincount(ds.conf_mol.long(), minlength=M) if M else torch.zeros(0, dtype=torch.long)

    def summary(x: torch.Tensor, histogram: bool) -> dict:
        if x.numel() == 0:
            return {"n": 0}
        xf = x.double().numpy()
        out = {"n": int(x.numel()), "min": int(x.min()), "p5": float(np.percentile(xf, 5)),
               "median": float(np.median(xf)), "mean": round(float(xf.mean()), 3),
               "p95": float(np.percentile(xf, 95)), "max": int(x.max()), "sum": int(x.sum())}
        if histogram:
            vals, counts = torch.unique(x, return_counts=True)
            out["histogram"] = {int(v): int(c) for v, c in zip(vals.tolist(), counts.tolist())}
        return out

    return {"molecules": M, "conformers": ds.num_conformers,
            "elements": dict(sorted(elements.items(), key=lambda kv: -kv[1]["atoms"])),
            "heavy_atoms": summary(heavy, True), "atoms": summary(atoms, False),
            "conformers_per_molecule": summary(confs, True)}


def format_composition(comp: dict) -> str:
    """Human-readable lines of `composition`'s result."""
    lines = [f"molecules {comp['molecules']}, conformers {comp['conformers']}"]
    if comp["molecules"]:
        lines.append("elements (atoms / molecules containing): " + ", ".join(
            f"{s} {v['atoms']}/{v['molecules']}" for s, v in comp["elements"].items()))
        for key, label in (("heavy_atoms", "heavy atoms per molecule"), ("atoms", "atoms per molecule (with H)"),
                           ("conformers_per_molecule", "conformers per molecule")):
            s = comp[key]
            lines.append(f"{label}: min {s['min']}, p5 {s['p5']:g}, median {s['median']:g}, mean {s['mean']:g}, "
                         f"p95 {s['p95']:g}, max {s['max']}")
            if "histogram" in s:
                lines.append("  histogram: " + " ".join(f"{k}:{v}" for k, v in s["histogram"].items()))
    return "\n".join(lines)


def _key(canonical_smiles: Callable, smiles: str) -> str | None:
    try:
        return canonical_smiles(smiles)
    except ValueError:
        return None


# ---- the chunked builder ----------------------------------------------------------------------
@dataclass
class ChunkJob:
    make_mol: Callable  # module-level (picklable by name): (row, cfg) -> Mol | drop reason
    rows: list  # (index, smiles, ...) tuples
    exclude: set  # stereo-free canonical SMILES never to build
    cfg: dict
    path: Path
    index_key: str  # meta key of the per-molecule source index, e.g. "qm9_index"


def build_chunk(job: ChunkJob) -> dict:
    """Build one chunk and write it atomically to job.path. Returns its stats."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    from ..chem.molecule import canonical_smiles

    t0 = time.perf_counter()
    mols, index = [], []
    stats = {"total": 0, "invalid": 0, "excluded": 0, "error": 0, "kept": 0, "conformers": 0}
    for row in job.rows:
        idx, smiles = row[0], row[1]
        stats["total"] += 1
        try:
            key = canonical_smiles(smiles)
        except ValueError:
            stats["invalid"] += 1
            continue
        if key in job.exclude:
            stats["excluded"] += 1
            continue
        try:
            mol = job.make_mol(row, job.cfg)
        except Exception:  # one bad molecule must not cost a chunk of minutes
            mol = "error"
        if isinstance(mol, str) or mol is None or mol.GetNumConformers() == 0:
            reason = mol if isinstance(mol, str) else "no_conformer"
            stats[reason] = stats.get(reason, 0) + 1
            continue
        stats["kept"] += 1
        stats["conformers"] += mol.GetNumConformers()
        mols.append(mol)
        index.append(int(idx))
    ds = ConformerDataset.from_mols(mols, meta={job.index_key: index})
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    ds.meta["stats"] = stats
    tmp = str(job.path) + ".tmp"
    ds.save(tmp)
    os.replace(tmp, job.path)  # atomic: a half-written chunk never looks finished
    return stats


def build_chunked(out: str | Path, rows: Sequence, make_mol: Callable, cfg: dict, *, name: str, tag: str,
                  chunk_size: int, seed: int, num_chunks: int | None = None, workers: int = 0,
                  cache_dir: str | Path | None = None, exclude: set | None = None, index_key: str = "index",
                  meta: dict | None = None, progress: bool = True) -> tuple[dict, ConformerDataset]:
    """Build (or resume) a featurised dataset from `rows` and write it to `out`.

    rows: (index, smiles, ...) tuples; make_mol(row, cfg): the molecule with its conformers, or a
    drop reason. Chunks of `chunk_size` rows of the permutation seeded by `seed` are cached in
    cache_dir (default: beside `out`) as `{name}_{tag}_{k:04d}.pt`, `tag` naming every setting that
    changes a chunk's content. num_chunks: how many chunks (None = all rows). workers: processes
    (0 = all cores; 1 = in this process). Returns (summed stats, merged dataset); the dataset's meta
    has meta's entries, "build" (cfg), "chunks", "stats", "composition" and index_key.
    """
    from tqdm import tqdm

    from ..chem.molecule import canonical_smiles

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir or out.with_suffix("").as_posix() + "_chunks")
    cache_dir.mkdir(parents=True, exist_ok=True)
    exclude = set(exclude or ())
    perm = np.random.default_rng(seed).permutation(len(rows))
    total_chunks = (len(rows) + chunk_size - 1) // chunk_size
    num_chunks = total_chunks if num_chunks is None else min(num_chunks, total_chunks)
    paths = [cache_dir / f"{name}_{tag}_{k:04d}.pt" for k in range(num_chunks)]
    todo = [ChunkJob(make_mol, [rows[i] for i in perm[k * chunk_size:(k + 1) * chunk_size]], exclude, cfg,
                     paths[k], index_key)
            for k in range(num_chunks) if not paths[k].exists()]
    workers = workers or max(1, (os.cpu_count() or 1))
    bar = tqdm(total=num_chunks, initial=num_chunks - len(todo), desc=f"{name} chunks", disable=not progress,
               file=sys.stderr)

    def done(job: ChunkJob, stats: dict) -> None:
        bar.update(1)
        if progress:
            bar.write(f"{job.path.name}: kept {stats['kept']}/{stats['total']} molecules, "
                      f"{stats['conformers']} conformers, {stats['seconds']:.0f} s", file=sys.stderr)

    if todo and (workers == 1 or len(todo) == 1):
        for job in todo:
            done(job, build_chunk(job))
    elif todo:
        with get_context("spawn").Pool(min(workers, len(todo))) as pool:
            for job, stats in zip(todo, pool.imap(build_chunk, todo)):
                done(job, stats)
    bar.close()

    parts, stats, index = [], {}, []
    for p in paths:
        part = ConformerDataset.load(p)
        for k, v in part.meta["stats"].items():
            k = _LEGACY_STATS.get(k, k)
            stats[k] = stats.get(k, 0) + v
        ids = part.meta[index_key]
        # Exclusions are checked again here: the cache may predate a longer exclusion list.
        keep = [m for m, s in enumerate(part.smiles) if _key(canonical_smiles, s) not in exclude]
        if len(keep) < part.num_molecules:
            stats["excluded_at_merge"] = stats.get("excluded_at_merge", 0) + part.num_molecules - len(keep)
            part = part.subset(keep)
            ids = [ids[m] for m in keep]
        parts.append(part)
        index.extend(ids)
    if "seconds" in stats:
        stats["seconds"] = round(stats["seconds"], 2)
    ds = ConformerDataset.concat(parts, meta={**(meta or {}), "build": dict(cfg), "chunks": num_chunks,
                                              "stats": stats, index_key: index})
    ds.meta["composition"] = composition(ds)
    ds.save(out)
    return stats, ds
