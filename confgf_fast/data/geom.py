"""GEOM (Axelrod & Gomez-Bombarelli 2022) in its `rdkit_folder` layout -> RDKit Mols / a ConformerDataset.

Layout (as distributed, rdkit_folder.tar.gz):

    root/summary_qm9.json     {smiles: {"pickle_path": "qm9/<name>.pickle", "uniqueconfs": int, ...}, ...}
    root/summary_drugs.json   same for GEOM-Drugs ("drugs/<name>.pickle")
    root/qm9/*.pickle, root/drugs/*.pickle
        {"smiles": str, "conformers": [{"rd_mol": Mol (with H, one conformer), "boltzmannweight": float,
                                        "totalenergy": float (Hartree), ...}, ...], ...}

Every conformer is its own Mol; a molecule is kept only when all of them share one atom order and
one bonding (the same elements index by index, the same bonded pairs, the same stereo-free SMILES)
and that bonding is the one the SMILES key names; GEOM has CREST conformers where a bond broke or
a proton moved, and those cannot be conformers of one graph. Skips are counted in GeomLoadStats.

Conformer selection follows ConfGF's preprocessing idea: the `max_confs_per_mol` conformers of
highest Boltzmann weight (ConfGF trains on 5 per QM9 molecule).
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from tqdm.auto import tqdm

from ..chem.molecule import canonical_smiles
from ..model.checkpoint import UnsafeFileError
from .dataset import ConformerDataset

log = logging.getLogger(__name__)

GEOM_DATASETS = ("qm9", "drugs")


@dataclass
class GeomLoadStats:
    """What happened to each summary entry looked at (a molecule lands in exactly one of the
    n_* molecule counters, except n_listed which counts every entry)."""

    n_listed: int = 0  # entries in the summary json
    n_loaded: int = 0
    n_excluded: int = 0  # key in exclude_smiles
    n_no_pickle_path: int = 0  # summary entry without "pickle_path" (GEOM has such entries)
    n_missing_pickle: int = 0  # pickle_path given but the file is not there
    n_unreadable_pickle: int = 0
    n_no_conformers: int = 0
    n_mismatch: int = 0  # conformers disagree with each other or with the SMILES
    n_conformers: int = 0  # conformers in the loaded molecules
    n_dropped_conformers: int = 0  # conformers with the wrong bonding dropped (drop_bad_conformers=True)


# What a GEOM rdkit_folder pickle needs: RDKit Mols, numpy scalars and arrays, plain containers.
# A pickle may name any importable callable (os.system included) and runs it on load; GEOM files
# come from a download, so anything else is refused (issue 26).
_GEOM_PICKLE_GLOBALS = {
    ("rdkit.Chem.rdchem", "Mol"), ("copyreg", "_reconstructor"), ("builtins", "object"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("collections", "OrderedDict"), ("collections", "defaultdict"),
}


class UnsafeGeomPickleError(UnsafeFileError):
    """A GEOM pickle that names a class or function beyond RDKit Mols, numpy data and containers."""


class _GeomUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _GEOM_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeGeomPickleError(f"refused: the GEOM pickle asks for {module}.{name}, which a GEOM file never "
                                    "needs (only RDKit Mols, numpy data and containers are unpickled)")


def load_geom_pickle(path: str | Path) -> dict:
    """One GEOM rdkit_folder pickle, unpickling only RDKit Mols, numpy data and plain containers;
    UnsafeGeomPickleError for anything else (it could run code)."""
    with open(path, "rb") as f:
        return _GeomUnpickler(f).load()


def _topology(mol: Chem.Mol) -> tuple:
    """Index-level identity of a conformer's graph: elements in atom order and bonded pairs."""
    z = tuple(a.GetAtomicNum() for a in mol.GetAtoms())
    bonds = frozenset((min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
                      for b in mol.GetBonds())
    return z, bonds


def _key_or_none(smiles_or_mol) -> str | None:
    with rdBase.BlockLogs():
        try:
            return canonical_smiles(smiles_or_mol)
        except Exception:
            return None


def _select_conformers(confs: list[dict], max_confs: int | None) -> list[dict]:
    """Conformers of highest Boltzmann weight first (stable for ties); at most max_confs."""
    order = sorted(range(len(confs)), key=lambda i: -float(confs[i].get("boltzmannweight", 0.0) or 0.0))
    picked = [confs[i] for i in order]
    return picked if max_confs is None else picked[:max_confs]


def _molecule_from_pickle(smiles: str, data: dict, max_confs: int | None, drop_bad: bool,
                          stats: GeomLoadStats) -> Chem.Mol | None:
    confs = [c for c in data.get("conformers", []) if isinstance(c, dict) and c.get("rd_mol") is not None]
    confs = [c for c in confs if c["rd_mol"].GetNumConformers() > 0]
    if not confs:
        stats.n_no_conformers += 1
        return None
    key = _key_or_none(smiles)
    # The graph every conformer must share: the first conformer that agrees with the SMILES (or
    # simply the first when the SMILES does not parse).
    keys = [_key_or_none(c["rd_mol"]) for c in confs]
    ref_i = next((i for i, k in enumerate(keys) if k is not None and (key is None or k == key)), None)
    if ref_i is None:
        stats.n_mismatch += 1
        return None
    ref_topo, ref_key = _topology(confs[ref_i]["rd_mol"]), keys[ref_i]
    good = [c for c, k in zip(confs, keys) if k == ref_key and _topology(c["rd_mol"]) == ref_topo]
    if len(good) < len(confs):
        if not drop_bad:
            stats.n_mismatch += 1
            return None
        stats.n_dropped_conformers += len(confs) - len(good)
    chosen = _select_conformers(good, max_confs)
    mol = Chem.Mol(chosen[0]["rd_mol"])
    mol.RemoveAllConformers()
    for c in chosen:
        conf = Chem.Conformer(c["rd_mol"].GetConformer())
        conf.Set3D(True)
        mol.AddConformer(conf, assignId=True)  # ids 0..C-1 in Boltzmann-weight order
    mol.SetProp("smiles", smiles)
    mol.SetProp("boltzmann_weights", json.dumps([float(c.get("boltzmannweight", float("nan"))) for c in chosen]))
    mol.SetProp("total_energies", json.dumps([float(c.get("totalenergy", float("nan"))) for c in chosen]))
    return mol


def load_geom_rdkit_folder_with_stats(
    root: str | Path, dataset: str = "qm9", max_molecules: int | None = None, max_confs_per_mol: int | None = None,
    exclude_smiles: Iterable[str] | None = None, seed: int | None = 0, drop_bad_conformers: bool = False,
    progress: bool = False,
) -> tuple[list[Chem.Mol], GeomLoadStats]:
    """`load_geom_rdkit_folder` that also returns what was skipped and why."""
    if dataset not in GEOM_DATASETS:
        raise ValueError(f"dataset must be one of {GEOM_DATASETS}, got {dataset!r}")
    root = Path(root)
    summary_path = root / f"summary_{dataset}.json"
    with open(summary_path) as f:
        summary: dict = json.load(f)
    smiles_list = list(summary)
    if seed is not None:
        # A seeded permutation: with max_molecules the result is a random subset, reproducibly.
        smiles_list = [smiles_list[i] for i in np.random.default_rng(seed).permutation(len(smiles_list))]
    exclude = set(exclude_smiles or ())
    stats = GeomLoadStats(n_listed=len(smiles_list))
    mols: list[Chem.Mol] = []
    for smiles in tqdm(smiles_list, disable=not progress, desc=f"GEOM-{dataset}", unit="mol"):
        if max_molecules is not None and len(mols) >= max_molecules:
            break
        if exclude and _key_or_none(smiles) in exclude:  # checked before the (slow) pickle load
            stats.n_excluded += 1
            continue
        entry = summary[smiles] or {}
        rel = entry.get("pickle_path")
        if not rel:
            stats.n_no_pickle_path += 1
            continue
        path = root / rel
        if not path.is_file():
            stats.n_missing_pickle += 1
            continue
        try:
            data = load_geom_pickle(path)
        except UnsafeGeomPickleError as e:
            log.warning("unsafe GEOM pickle %s: %s", path, e)
            stats.n_unreadable_pickle += 1
            continue
        except Exception as e:
            log.warning("unreadable GEOM pickle %s: %s", path, e)
            stats.n_unreadable_pickle += 1
            continue
        mol = _molecule_from_pickle(smiles, data, max_confs_per_mol, drop_bad_conformers, stats)
        if mol is None:
            continue
        # The structure's own key too: catches SMILES that do not parse.
        if exclude and _key_or_none(mol) in exclude:
            stats.n_excluded += 1
            continue
        mol.SetProp("geom_pickle", str(rel))
        mols.append(mol)
        stats.n_loaded += 1
        stats.n_conformers += mol.GetNumConformers()
    log.info("GEOM-%s: %s", dataset, stats)
    return mols, stats


def load_geom_rdkit_folder(
    root: str | Path, dataset: str = "qm9", max_molecules: int | None = None, max_confs_per_mol: int | None = None,
    exclude_smiles: Iterable[str] | None = None, seed: int | None = 0, drop_bad_conformers: bool = False,
    progress: bool = False,
) -> list[Chem.Mol]:
    """Molecules of GEOM's rdkit_folder, each one Mol with hydrogens and all its chosen conformers.

    root: the folder holding summary_<dataset>.json (pickle paths in it are relative to root).
    max_molecules: stop after this many loaded molecules (in the seeded order).
    max_confs_per_mol: keep the conformers of highest Boltzmann weight (None: all).
    exclude_smiles: stereo-free canonical SMILES keys (chem.canonical_smiles) never to load, e.g.
        held-out test molecules; matched on the summary SMILES and on the loaded structure.
    seed: order in which summary entries are visited (None: file order).
    drop_bad_conformers: drop conformers whose bonding differs instead of skipping the molecule.

    Each Mol carries props smiles (GEOM's key), geom_pickle, boltzmann_weights and
    total_energies (JSON lists, conformer order). Conformer ids are 0..C-1, by descending weight.
    """
    return load_geom_rdkit_folder_with_stats(root, dataset, max_molecules, max_confs_per_mol, exclude_smiles, seed,
                                             drop_bad_conformers, progress)[0]


def build_geom_dataset(root: str | Path, out_pt: str | Path, dataset: str = "qm9", max_molecules: int | None = None,
                       max_confs_per_mol: int | None = None, exclude_smiles: Iterable[str] | None = None,
                       heldout_csv: str | Path | None = None, seed: int | None = 0,
                       drop_bad_conformers: bool = False, progress: bool = False) -> ConformerDataset:
    """Load GEOM (see `load_geom_rdkit_folder`), featurise, save a ConformerDataset to out_pt and
    return it. heldout_csv: molecules of this csv (data.qm9.heldout_keys) are excluded as well."""
    exclude = set(exclude_smiles or ())
    if heldout_csv is not None:
        from .qm9 import heldout_keys

        exclude |= heldout_keys(heldout_csv)
    mols, stats = load_geom_rdkit_folder_with_stats(root, dataset, max_molecules, max_confs_per_mol, exclude, seed,
                                                    drop_bad_conformers, progress)
    meta = {"source": "geom_rdkit_folder", "dataset": dataset, "max_confs_per_mol": max_confs_per_mol,
            "seed": seed, "n_excluded_keys": len(exclude), "stats": asdict(stats)}
    ds = ConformerDataset.from_mols(mols, meta)
    Path(out_pt).parent.mkdir(parents=True, exist_ok=True)
    ds.save(out_pt)
    return ds
