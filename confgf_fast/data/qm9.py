"""QM9 training data from the PyPI package qm9pack (130,831 molecules, one DFT geometry each).

Per molecule: an RDKit Mol is built from the DFT XYZ (rdDetermineBonds), checked against the QM9
SMILES (stereo-free canonical SMILES must agree; mismatches are dropped and counted), its stereo
is perceived from the DFT geometry, and up to `extra_confs` more conformers are added from ETKDGv3 +
MMFF94, deduplicated at `dedup_rmsd` heavy-atom RMSD. Molecules of the held-out list are skipped.

Work is split into chunks of a fixed, seeded permutation of QM9 (so any prefix of chunks is a
random subset), each chunk cached as its own featurised file; the build is deterministic, resumable
and runs chunks in parallel processes.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import importlib.util
import json
import os
import sys
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .dataset import ConformerDataset

QM9_CSVS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


@dataclass
class QM9BuildConfig:
    extra_confs: int = 4  # ETKDG + MMFF conformers tried per molecule (before dedup)
    dedup_rmsd: float = 0.125  # angstrom, heavy-atom GetBestRMS
    chunk_size: int = 1000
    seed: int = 2021
    xtb: bool = False  # refine the extra conformers with GFN2-xTB (data/xtb.py; needs tblite)


def qm9pack_data_dir() -> Path:
    """Folder of qm9pack's CSV files (found without importing qm9pack, whose import needs
    pkg_resources)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PyPI package qm9pack is not installed: pip install qm9pack")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_qm9_rows(data_dir: Path | None = None) -> list[tuple[int, str, list[str], str]]:
    """All QM9 rows as (index, smiles, elements, xyz_json) in file order."""
    data_dir = data_dir or qm9pack_data_dir()
    csv.field_size_limit(1 << 30)
    rows = []
    for name in QM9_CSVS:
        with open(data_dir / name, newline="") as f:
            for r in csv.DictReader(f):
                rows.append((int(r["Index"]), r["SMILES"], ast.literal_eval(r["Elements"]), r["XYZ_Ang"]))
    return rows


def heldout_keys(path: str | Path) -> set[str]:
    """Stereo-free canonical SMILES of every molecule in a held-out csv (all SMILES columns)."""
    from ..chem import canonical_smiles

    keys = set()
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for col in ("smiles", "corrected_smiles", "SMILES"):
                s = r.get(col)
                if s:
                    with contextlib.suppress(ValueError):
                        keys.add(canonical_smiles(s))
    return keys


def mol_from_qm9(smiles: str, elements: list[str], xyz_json: str):
    """DFT XYZ -> RDKit Mol with bonds and 3D-perceived stereo; None if it disagrees with `smiles`.

    Bond orders come from rdDetermineBonds (xyz2mol); where that fails or disagrees, from the
    SMILES as a template on the XYZ connectivity. Either way the stereo-free canonical SMILES
    must equal the QM9 SMILES. (Measured on 1000 random QM9 rows: 46 dropped, mostly strained
    cages whose DFT geometry bonds differently and zwitterions.)
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdDetermineBonds

    from ..chem import canonical_smiles

    xyz = json.loads(xyz_json)
    block = f"{len(elements)}\n\n" + "\n".join(f"{e} {x:.10f} {y:.10f} {z:.10f}" for e, (x, y, z) in zip(elements, xyz))
    want = canonical_smiles(smiles)
    mol = None
    for method in ("xyz2mol", "template"):
        cand = Chem.MolFromXYZBlock(block)
        if cand is None:
            return None
        try:
            if method == "xyz2mol":
                rdDetermineBonds.DetermineBonds(cand, charge=0)
            else:
                rdDetermineBonds.DetermineConnectivity(cand)
                cand = AllChem.AssignBondOrdersFromTemplate(Chem.MolFromSmiles(smiles), cand)
            Chem.SanitizeMol(cand)
            if canonical_smiles(cand) == want:
                mol = cand
                break
        except Exception:
            continue
    if mol is None:
        return None
    Chem.AssignStereochemistryFrom3D(mol)
    return mol


def add_etkdg_conformers(mol, n: int, seed: int, dedup_rmsd: float, xtb: bool = False):
    """Add up to n ETKDGv3+MMFF conformers to `mol` (which keeps its first conformer), dropping any
    within dedup_rmsd (heavy atoms, symmetry-aware) of one already kept, or with changed stereo.
    xtb: refine each with GFN2-xTB after MMFF (before the checks); one whose optimisation fails or
    changes the bonding is dropped."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdMolAlign

    from ..chem import stereo_smiles_from_3d

    if n <= 0:
        return mol
    want = stereo_smiles_from_3d(mol, mol.GetConformers()[0].GetId())
    trial = Chem.Mol(mol)
    trial.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    cids = list(AllChem.EmbedMultipleConfs(trial, numConfs=n, params=params))
    if not cids:
        return mol
    with contextlib.suppress(Exception):
        AllChem.MMFFOptimizeMoleculeConfs(trial, maxIters=500)
    if xtb:
        from .xtb import refine_conformer

        failed = [cid for cid in cids if refine_conformer(trial, cid) is None]
        cids = [cid for cid in cids if cid not in failed]
    heavy_ref = Chem.RemoveHs(mol)
    heavy_trial = Chem.RemoveHs(trial)
    kept_heavy = [heavy_ref.GetConformers()[0].GetId()]
    for cid in cids:
        if stereo_smiles_from_3d(trial, cid) != want:
            continue
        dup = False
        for kid in kept_heavy:
            probe = Chem.Mol(heavy_trial, confId=cid)
            ref = Chem.Mol(heavy_ref, confId=kid)
            if rdMolAlign.GetBestRMS(probe, ref) < dedup_rmsd:
                dup = True
                break
        if dup:
            continue
        new_id = mol.AddConformer(trial.GetConformer(cid), assignId=True)
        heavy_ref.AddConformer(heavy_trial.GetConformer(cid), assignId=True)
        kept_heavy.append(new_id)
    return mol


def _build_chunk(args) -> dict:
    rows, heldout, cfg_dict, out_path = args
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    from ..chem import canonical_smiles

    cfg = QM9BuildConfig(**cfg_dict)
    mols, stats = [], {"total": 0, "heldout": 0, "mismatch": 0, "kept": 0, "conformers": 0}
    for idx, smiles, elements, xyz in rows:
        stats["total"] += 1
        try:
            key = canonical_smiles(smiles)
        except ValueError:
            stats["mismatch"] += 1
            continue
        if key in heldout:
            stats["heldout"] += 1
            continue
        mol = mol_from_qm9(smiles, elements, xyz)
        if mol is None:
            stats["mismatch"] += 1
            continue
        mol = add_etkdg_conformers(mol, cfg.extra_confs, cfg.seed + idx, cfg.dedup_rmsd, xtb=cfg.xtb)
        mol.SetProp("qm9_index", str(idx))
        stats["kept"] += 1
        stats["conformers"] += mol.GetNumConformers()
        mols.append(mol)
    ds = ConformerDataset.from_mols(mols, meta={"qm9_index": [int(m.GetProp("qm9_index")) for m in mols]})
    ds.meta["stats"] = stats
    tmp = str(out_path) + ".tmp"
    ds.save(tmp)
    os.replace(tmp, out_path)  # atomic: a half-written chunk never looks finished
    return stats


def build_qm9(out: str | Path, heldout_csv: str | Path, num_chunks: int | None = None, workers: int = 0,
              cache_dir: str | Path | None = None, cfg: QM9BuildConfig | None = None,
              progress: bool = True) -> dict:
    """Build (or resume) the featurised QM9 training set and write it to `out`.

    num_chunks: how many chunks of `chunk_size` molecules of the seeded permutation to use
    (None = all of QM9). Finished chunks in cache_dir are reused. Returns the summed stats.
    """
    from tqdm import tqdm

    cfg = cfg or QM9BuildConfig()
    out = Path(out)
    cache_dir = Path(cache_dir or out.with_suffix("").as_posix() + "_chunks")
    cache_dir.mkdir(parents=True, exist_ok=True)
    rows = read_qm9_rows()
    perm = np.random.default_rng(cfg.seed).permutation(len(rows))
    total_chunks = (len(rows) + cfg.chunk_size - 1) // cfg.chunk_size
    num_chunks = total_chunks if num_chunks is None else min(num_chunks, total_chunks)
    heldout = heldout_keys(heldout_csv)
    tag = f"v2_e{cfg.extra_confs}_r{cfg.dedup_rmsd}_s{cfg.seed}_c{cfg.chunk_size}" + ("_xtb" if cfg.xtb else "")
    paths = [cache_dir / f"qm9_{tag}_{k:04d}.pt" for k in range(num_chunks)]
    todo = [
        ([rows[i] for i in perm[k * cfg.chunk_size:(k + 1) * cfg.chunk_size]], heldout, asdict(cfg), paths[k])
        for k in range(num_chunks) if not paths[k].exists()
    ]
    workers = workers or max(1, (os.cpu_count() or 1))
    bar = tqdm(total=num_chunks, initial=num_chunks - len(todo), desc="qm9 chunks", disable=not progress,
               file=sys.stderr)
    if todo:
        with get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_build_chunk, todo):
                bar.update(1)
    bar.close()
    parts = [ConformerDataset.load(p) for p in paths]
    stats: dict = {}
    for p in parts:
        for k, v in p.meta["stats"].items():
            stats[k] = stats.get(k, 0) + v
    qm9_index = [i for p in parts for i in p.meta["qm9_index"]]
    ds = ConformerDataset.concat(parts, meta={"source": "qm9pack", "build": asdict(cfg), "chunks": num_chunks,
                                              "stats": stats, "qm9_index": qm9_index})
    ds.save(out)
    return stats
