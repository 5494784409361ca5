"""v2 reference ensembles: the ETKDG-seeded references plus minima found by a search without ETKDG.

The v1 development references (../shared/benchmarks/qm9_xtb_dev.sdf, drugs_xtb_dev.sdf) grew from
RDKit ETKDGv3 starts (ETKDG -> MMFF94 -> GFN2-xTB), so they hold only the basins ETKDG samples and
reward methods that stay near ETKDG. This module searches each molecule's conformer space without
any RDKit embedding and adds what the references miss:

1. start from the molecule's lowest reference conformer (a GFN2-xTB minimum); re-optimise it here
   so every energy below comes from the same optimiser;
2. for each of `starts` starts: set every rotatable torsion (a single, non-ring bond between two
   atoms with at least two heavy neighbours each, neither in a triple bond) to a uniform random
   angle, then add Gaussian noise of `noise` Å to every atom (so rings can change pucker);
3. optimise with GFN2-xTB (tblite through xtb.xtb_optimize, convergence at a largest atomic
   force of 0.02 eV/Å, the references' ASE `fmax`);
4. drop a minimum whose bonding changed (xtb.topology_kept) or whose 3D-perceived stereo SMILES
   differs from the start's;
5. keep minima within `window` kcal/mol of the lowest energy seen (references' or the search's),
   deduplicated at `dedup` Å heavy-atom RMSD (RDKit GetBestRMS, symmetry-aware);
6. the union: every reference, plus every kept minimum more than `dedup` Å from all references,
   re-windowed at `window` kcal/mol from the lowest of either.

Energies of the union are relative to its lowest member (kcal/mol). The per-molecule summary counts
the minima more than 0.5 Å and 0.25 Å from every reference (what a method evaluated on v1 could
never be credited for). It is a lower bound on what the references miss: the search starts from
one ring pucker and one conformer.

Resumable: one gzipped JSON file per molecule in `cache_dir` (plain data, no pickle, so a shared
cache cannot run code), written atomically when the molecule is done. Cost: ~50 s per QM9
molecule at 24 starts on one core.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HARTREE_KCAL = 627.509474  # kcal/mol per hartree
EV_PER_HARTREE_PER_BOHR = 51.42208619  # eV/Å per hartree/bohr
# The references converged at ASE's fmax = 0.02 eV/Å (largest atomic force norm). xtb_optimize tests
# the largest gradient component; component <= norm <= sqrt(3) * largest component, so this
# component tolerance guarantees the same force-norm bound.
REFERENCE_GRAD_TOL = 0.02 / EV_PER_HARTREE_PER_BOHR / 3**0.5


@dataclass(frozen=True)
class SearchSettings:
    starts: int = 24  # random starts per molecule
    noise: float = 0.25  # Å, Gaussian noise on every atom after the torsions are set
    window: float = 6.0  # kcal/mol, as the references
    dedup: float = 0.125  # Å heavy-atom RMSD, as the QM9 references
    max_steps: int = 600  # optimiser iterations per start
    seed: int = 1000  # molecule k of the reference file uses seed + k


def read_reference_groups(path: str | Path) -> dict[str, list]:
    """Records of a reference SDF (.sdf or .sdf.gz) grouped by their `mol_id`, in file order."""
    from rdkit import Chem

    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            supplier = Chem.ForwardSDMolSupplier(fh, removeHs=False)
            mols = [m for m in supplier if m is not None]
    else:
        mols = [m for m in Chem.SDMolSupplier(str(path), removeHs=False) if m is not None]
    groups: dict[str, list] = {}
    for m in mols:
        groups.setdefault(m.GetProp("mol_id"), []).append(m)
    return groups


def rotatable_torsions(mol) -> list[tuple[int, int, int, int]]:
    """(a, b, c, d) atom quadruples, one per rotatable bond b-c: single, not in a ring, both ends with
    >= 2 heavy neighbours (so methyl, OH and NH2 rotors, which move only hydrogens, are skipped), no
    end in a triple bond (a linear unit has no defined torsion)."""
    from rdkit import Chem

    def heavy_degree(atom) -> int:
        return sum(n.GetAtomicNum() > 1 for n in atom.GetNeighbors())

    def in_triple(atom) -> bool:
        return any(b.GetBondType() == Chem.BondType.TRIPLE for b in atom.GetBonds())

    out = []
    for bond in mol.GetBonds():
        if bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing():
            continue
        b, c = bond.GetBeginAtom(), bond.GetEndAtom()
        if min(heavy_degree(b), heavy_degree(c)) < 2 or in_triple(b) or in_triple(c):
            continue
        a = next(n.GetIdx() for n in b.GetNeighbors() if n.GetIdx() != c.GetIdx() and n.GetAtomicNum() > 1)
        d = next(n.GetIdx() for n in c.GetNeighbors() if n.GetIdx() != b.GetIdx() and n.GetAtomicNum() > 1)
        out.append((a, b.GetIdx(), c.GetIdx(), d))
    return out


def _with_positions(mol, pos: np.ndarray):
    from rdkit import Chem

    m = Chem.Mol(mol)
    conf = m.GetConformer()
    for i, p in enumerate(pos):
        conf.SetAtomPosition(i, p.tolist())
    return m


def _best_rms(a, b) -> float:
    from rdkit.Chem import rdMolAlign

    return float(rdMolAlign.GetBestRMS(a, b))


def search_molecule(refs: Sequence, settings: SearchSettings, seed: int,
                    optimize: Callable | None = None) -> dict:
    """The independent search and the union for one molecule.

    refs: the molecule's reference conformers (RDKit Mols with all H, property `energy_kcal`).
    optimize(z [n], pos [n, 3] Å) -> (pos [n, 3] Å, energy hartree) or None; GFN2-xTB by default.
    Returns a JSON-ready dict: `summary` (counts) and `union` (list of {energy_kcal, source, molblock}).
    """
    from rdkit import Chem
    from rdkit.Chem import rdMolTransforms

    from ..chem.molecule import heavy_copy, stereo_smiles_from_3d
    from ..chem.xtb import topology_kept

    optimize = optimize or _xtb_optimizer(settings.max_steps)
    t0 = time.time()
    rng = np.random.default_rng(seed)
    refs = sorted(refs, key=lambda m: float(m.GetProp("energy_kcal")))
    base = Chem.Mol(refs[0])
    z = np.array([a.GetAtomicNum() for a in base.GetAtoms()])
    target = stereo_smiles_from_3d(base)
    first = optimize(z, base.GetConformer().GetPositions())
    if first is None:
        raise RuntimeError(f"GFN2-xTB failed on the lowest reference of {base.GetProp('mol_id')}")
    e_base = first[1] * HARTREE_KCAL
    torsions = rotatable_torsions(base)

    found: list[tuple[float, Chem.Mol]] = []  # (kcal/mol relative to refs[0], conformer)
    for _ in range(settings.starts):
        m = Chem.Mol(base)
        conf = m.GetConformer()
        for a, b, c, d in torsions:
            rdMolTransforms.SetDihedralDeg(conf, a, b, c, d, float(rng.uniform(-180.0, 180.0)))
        start = conf.GetPositions() + rng.normal(0.0, settings.noise, (len(z), 3))
        res = optimize(z, start)
        if res is None or not np.all(np.isfinite(res[0])) or not topology_kept(base, res[0]):
            continue
        m = _with_positions(base, res[0])
        if stereo_smiles_from_3d(m) != target:
            continue
        found.append((res[1] * HARTREE_KCAL - e_base, m))

    ref_e = [float(r.GetProp("energy_kcal")) for r in refs]
    lowest = min([min(ref_e)] + [e for e, _ in found])
    minima: list[tuple[float, Chem.Mol, Chem.Mol]] = []  # (energy, conformer, heavy copy), deduplicated
    for e, m in sorted(found, key=lambda t: t[0]):
        if e - lowest > settings.window:
            break
        h = heavy_copy(m)
        if all(_best_rms(h, u) > settings.dedup for _, _, u in minima):
            minima.append((e, m, h))
    ref_heavy = [heavy_copy(r) for r in refs]
    far = [min(_best_rms(h, r) for r in ref_heavy) for _, _, h in minima]
    union = [(e, "reference", r) for e, r in zip(ref_e, refs)]
    union += [(e, "independent", m) for (e, m, _), d in zip(minima, far) if d > settings.dedup]
    lo = min(e for e, _, _ in union)
    union = sorted(((e - lo, s, m) for e, s, m in union if e - lo <= settings.window), key=lambda t: t[0])
    summary = dict(
        mol_id=base.GetProp("mol_id"), smiles=base.GetProp("smiles") if base.HasProp("smiles") else "",
        references=len(refs), torsions=len(torsions), starts=settings.starts, kept=len(found),
        minima=len(minima), unmatched_0p5=int(sum(d > 0.5 for d in far)),
        unmatched_0p25=int(sum(d > 0.25 for d in far)),
        lower_than_references_kcal=round(float(max(0.0, min(ref_e) - lowest)), 3),
        union=len(union), union_references=sum(s == "reference" for _, s, _ in union),
        seconds=round(time.time() - t0, 1), seed=seed)
    return dict(summary=summary, settings=asdict(settings),
                union=[dict(energy_kcal=round(e, 4), source=s, molblock=Chem.MolToMolBlock(m)) for e, s, m in union])


def _xtb_optimizer(max_steps: int) -> Callable:
    from ..chem.xtb import xtb_optimize

    def optimize(z: np.ndarray, pos: np.ndarray):
        try:
            r = xtb_optimize(z, pos, max_steps=max_steps, grad_tol=REFERENCE_GRAD_TOL)
        except Exception:  # tblite raises on SCF failure: that start is simply lost
            return None
        return r.pos, r.energy

    return optimize


def _cache_file(cache_dir: Path, mol_id: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in mol_id)
    return cache_dir / f"mol_{safe}.json.gz"


def load_cached(path: Path) -> dict:
    with gzip.open(path, "rt") as fh:
        return json.load(fh)


def _save_cached(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt") as fh:
        json.dump(result, fh)
    os.replace(tmp, path)


def build_union(ref_sdf: str | Path, out_sdf: str | Path, cache_dir: str | Path, settings: SearchSettings,
                mol_ids: Iterable[str] | None = None, progress: bool = True,
                optimize: Callable | None = None) -> dict:
    """Search every molecule of ref_sdf (or those in mol_ids), resuming from cache_dir, and write the
    union ensemble as out_sdf (.sdf.gz compresses) and its summary as out_sdf's stem + .json.

    Records of the union: all atoms with H; properties smiles, mol_id, conf_id, energy_kcal (relative
    to the union's lowest), source (reference | independent), the references' geom_conformers, and
    budget_k: the molecule's reference count in ref_sdf. A benchmark on the union generates 2 x budget_k
    conformers, the same budget as on ref_sdf, so the two yardsticks score the same samples.
    Returns the summary dict (totals and per-molecule rows)."""
    from rdkit import Chem
    from tqdm import tqdm

    groups = read_reference_groups(ref_sdf)
    keys = [k for k in groups if mol_ids is None or k in set(mol_ids)]
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    results = []
    bar = tqdm(keys, desc="independent search", unit="mol", disable=not progress)
    index = {k: i for i, k in enumerate(groups)}
    for key in bar:
        path = _cache_file(cache, key)
        if path.exists():
            res = load_cached(path)
            if res["settings"] != asdict(settings):
                raise ValueError(f"{path} was built with settings {res['settings']}, not {asdict(settings)}: "
                                 "use another --cache-dir")
        else:
            res = search_molecule(groups[key], settings, settings.seed + index[key], optimize=optimize)
            _save_cached(path, res)
        bar.set_postfix(minima=res["summary"]["minima"], new=res["summary"]["unmatched_0p5"])
        results.append(res)

    out_sdf = Path(out_sdf)
    with (gzip.open(out_sdf, "wt") if out_sdf.suffix == ".gz" else open(out_sdf, "w")) as fh:
        writer = Chem.SDWriter(fh)
        for key, res in zip(keys, results):
            first = groups[key][0]
            for k, rec in enumerate(res["union"]):
                m = Chem.MolFromMolBlock(rec["molblock"], removeHs=False)
                for prop in ("smiles", "geom_conformers"):
                    if first.HasProp(prop):
                        m.SetProp(prop, first.GetProp(prop))
                m.SetProp("mol_id", key)
                m.SetProp("conf_id", str(k))
                m.SetProp("energy_kcal", f"{rec['energy_kcal']:.3f}")
                m.SetProp("source", rec["source"])
                m.SetProp("budget_k", str(len(groups[key])))
                writer.write(m)
        writer.close()
    rows = [r["summary"] for r in results]
    totals = {k: sum(r[k] for r in rows) for k in ("references", "minima", "unmatched_0p5", "unmatched_0p25",
                                                     "union", "union_references", "starts")}
    totals.update(molecules=len(rows), molecules_with_unmatched_0p5=sum(r["unmatched_0p5"] > 0 for r in rows),
                  molecules_with_lower_minimum=sum(r["lower_than_references_kcal"] > 0.1 for r in rows),
                  seconds=round(sum(r["seconds"] for r in rows), 1))
    summary = dict(reference=str(ref_sdf), settings=asdict(settings), totals=totals, molecules=rows)
    stem = out_sdf.name.split(".")[0]
    (out_sdf.parent / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
