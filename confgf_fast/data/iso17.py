"""A small ISO17-style set: GFN2-xTB molecular dynamics of C7O2H10 isomers of QM9 at 500 K.

ISO17 (Schuett et al. 2017) is MD of 129 C7O2H10 isomers of QM9 at 500 K (DFT, 5 ps each, 1 fs
steps); ConfGF (Shi et al. 2021) compares distance distributions of its snapshots with generated
conformers (distance_mmd.py). ISO17 itself cannot be downloaded here, so this module rebuilds a
small version with GFN2-xTB (tblite) in place of DFT:

- isomers: the QM9 molecules of formula C7O2H10 (qm9pack), in QM9 index order, skipping any whose
  stereo-free canonical SMILES is in the held-out file (benchmark molecules) and any whose DFT
  geometry does not give back the QM9 SMILES (qm9.mol_from_qm9); the first `num_isomers` are used;
- dynamics: from the DFT geometry, Maxwell-Boltzmann velocities at T, Langevin dynamics with the
  BAOAB splitting (velocity Verlet with an Ornstein-Uhlenbeck velocity update in the middle of the
  step; with friction 0 it is exactly velocity Verlet), 0.5 fs steps, `equil_fs` of equilibration,
  then a snapshot every `snapshot_fs` for `production_fs`;
- a snapshot whose bonding broke (xtb.topology_kept) is kept in the file but flagged in `intact`.

Each isomer is written as its own compressed .npz in the cache folder (skipped when present: the
build resumes), and `write_set` packs them into one .npz. Units: angstrom, fs, amu, eV, K.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["KB_EV", "ISO17Config", "build_iso17", "find_isomers", "iter_qm9_rows", "kinetic_temperature",
           "langevin_md", "load_isomer", "load_set", "run_isomer", "write_set"]

KB_EV = 8.617333262e-5  # Boltzmann constant, eV / K
# 1 eV / (angstrom amu) in angstrom / fs^2: acceleration of a force in eV/A on a mass in amu
ACC = 1.602176634e-19 / (1e-10 * 1.66053906660e-27) * 1e10 / 1e30
FORMULA = {6: 7, 8: 2, 1: 10}  # C7O2H10


@dataclass
class ISO17Config:
    temperature: float = 500.0  # K
    dt: float = 0.5  # fs
    friction: float = 0.01  # 1/fs, Langevin collision rate (100 fs velocity relaxation)
    equil_fs: float = 500.0  # equilibration, not stored (5 thermostat relaxation times)
    production_fs: float = 2000.0  # stored part
    snapshot_fs: float = 10.0  # one snapshot every this many fs
    seed: int = 17


def kinetic_temperature(vel: np.ndarray, masses: np.ndarray) -> float:
    """vel [n, 3] angstrom/fs, masses [n] amu -> 2 KE / (3 n kB) in K (3n degrees of freedom: the
    Langevin thermostat does not conserve momentum)."""
    ke = 0.5 * float(np.sum(masses[:, None] * vel * vel)) / ACC  # eV
    return 2.0 * ke / (3 * len(masses) * KB_EV)


def maxwell_boltzmann(masses: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Velocities [n, 3] (angstrom/fs) drawn at `temperature`, centre-of-mass motion removed."""
    sd = np.sqrt(KB_EV * temperature * ACC / masses)[:, None]
    v = rng.standard_normal((len(masses), 3)) * sd
    v -= (masses[:, None] * v).sum(0) / masses.sum()
    return v


def langevin_md(force_fn: Callable[[np.ndarray], tuple[float, np.ndarray]], pos: np.ndarray, masses: np.ndarray,
                n_steps: int, dt: float = 0.5, temperature: float = 500.0, friction: float = 0.01,
                vel: np.ndarray | None = None, rng: np.random.Generator | None = None,
                every: int = 1) -> dict:
    """Langevin dynamics, BAOAB splitting, one force evaluation per step.

    force_fn(pos [n, 3] angstrom) -> (energy eV, forces [n, 3] eV/angstrom); masses [n] amu; dt fs;
    friction 1/fs (0: plain velocity Verlet, energy-conserving); vel: initial velocities
    (angstrom/fs; default Maxwell-Boltzmann at `temperature`). Per step:
    v += dt/2 a; x += dt/2 v; v = c v + sqrt(1 - c^2) sqrt(kT/m) xi (c = exp(-friction dt));
    x += dt/2 v; a = F(x)/m; v += dt/2 a.
    Returns frames every `every` steps (after steps every, 2 every, ...): pos [F, n, 3],
    potential [F] eV, kinetic [F] eV, temperature [F] K; and the final pos and vel."""
    rng = rng or np.random.default_rng()
    masses = np.asarray(masses, dtype=np.float64)
    x = np.array(pos, dtype=np.float64).reshape(-1, 3)
    v = maxwell_boltzmann(masses, temperature, rng) if vel is None else np.array(vel, dtype=np.float64)
    inv_m = ACC / masses[:, None]
    c = np.exp(-friction * dt)
    noise_sd = np.sqrt((1.0 - c * c) * KB_EV * temperature * ACC / masses)[:, None]
    epot, f = force_fn(x)
    frames: dict[str, list] = {"pos": [], "potential": [], "kinetic": [], "temperature": []}
    for step in range(1, n_steps + 1):
        v += 0.5 * dt * f * inv_m
        x += 0.5 * dt * v
        if friction > 0.0:
            v = c * v + noise_sd * rng.standard_normal(v.shape)
        x += 0.5 * dt * v
        epot, f = force_fn(x)
        v += 0.5 * dt * f * inv_m
        if step % every == 0:
            ke = 0.5 * float(np.sum(masses[:, None] * v * v)) / ACC
            frames["pos"].append(x.copy())
            frames["potential"].append(epot)
            frames["kinetic"].append(ke)
            frames["temperature"].append(2.0 * ke / (3 * len(masses) * KB_EV))
    out = {k: np.asarray(val, dtype=np.float64) for k, val in frames.items()}
    out["pos"] = out["pos"].reshape(-1, len(masses), 3)
    out["final_pos"], out["final_vel"] = x, v
    return out


def _is_c7o2h10(elements: list[str]) -> bool:
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    counts: dict[int, int] = {}
    for e in elements:
        z = table.GetAtomicNumber(e)
        counts[z] = counts.get(z, 0) + 1
    return counts == FORMULA


def iter_qm9_rows(data_dir: Path | None = None) -> Iterator[tuple[int, str, list[str], str]]:
    """qm9pack's rows as qm9.read_qm9_rows gives them, read lazily in file order (QM9 index order),
    so a search that stops early does not parse all 130,831."""
    import ast
    import csv

    from .qm9 import QM9_CSVS, qm9pack_data_dir

    data_dir = data_dir or qm9pack_data_dir()
    csv.field_size_limit(1 << 30)
    for name in QM9_CSVS:
        with open(data_dir / name, newline="") as f:
            for r in csv.DictReader(f):
                yield int(r["Index"]), r["SMILES"], ast.literal_eval(r["Elements"]), r["XYZ_Ang"]


def find_isomers(num: int, heldout_csv: str | Path | None, rows: Iterable | None = None) -> Iterator[tuple]:
    """The first `num` usable C7O2H10 isomers of QM9 by index: yields (qm9_index, smiles, Mol with
    the DFT conformer and all H). rows: (index, smiles, elements, xyz_json) as qm9.read_qm9_rows
    gives them (default: all of qm9pack). Held-out molecules (stereo-free canonical SMILES in
    heldout_csv) and rows whose geometry does not reproduce the SMILES are skipped."""
    from ..chem.molecule import canonical_smiles
    from .build import heldout_keys
    from .qm9 import mol_from_qm9

    exclude = heldout_keys(heldout_csv) if heldout_csv is not None else set()
    found = 0
    for idx, smiles, elements, xyz in iter_qm9_rows() if rows is None else rows:
        if found >= num:
            return
        if not _is_c7o2h10(elements):
            continue
        try:
            if canonical_smiles(smiles) in exclude:
                continue
        except Exception:
            continue
        mol = mol_from_qm9(smiles, elements, xyz)
        if mol is None:
            continue
        found += 1
        yield idx, smiles, mol


def run_isomer(mol, cfg: ISO17Config, seed: int) -> dict:
    """GFN2-xTB Langevin MD of one molecule (all H, one conformer) per cfg; the arrays of its file."""
    from ..chem.xtb import XTBForces, topology_kept

    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    masses = np.array([a.GetMass() for a in mol.GetAtoms()], dtype=np.float64)
    forces = XTBForces(z, charge=sum(a.GetFormalCharge() for a in mol.GetAtoms()))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    n_equil = round(cfg.equil_fs / cfg.dt)
    every = max(1, round(cfg.snapshot_fs / cfg.dt))
    n_prod = round(cfg.production_fs / cfg.dt)
    eq = langevin_md(forces, mol.GetConformer().GetPositions(), masses, n_equil, cfg.dt, cfg.temperature,
                     cfg.friction, rng=rng, every=max(1, n_equil))
    prod = langevin_md(forces, eq["final_pos"], masses, n_prod, cfg.dt, cfg.temperature, cfg.friction,
                       vel=eq["final_vel"], rng=rng, every=every)
    seconds = time.perf_counter() - t0
    intact = np.array([topology_kept(mol, p) for p in prod["pos"]], dtype=bool)
    return {"z": z.astype(np.int8), "pos": prod["pos"].astype(np.float32),
            "potential": prod["potential"], "temperature": prod["temperature"].astype(np.float32),
            "intact": intact, "seconds": np.float64(seconds), "singlepoints": np.int64(forces.calls)}


def _isomer_path(cache_dir: Path, idx: int) -> Path:
    return cache_dir / f"qm9_{idx:06d}.npz"


def build_iso17(cache_dir: str | Path, num_isomers: int = 10, heldout_csv: str | Path | None = None,
                cfg: ISO17Config | None = None, rows: Iterable | None = None, progress: bool = True) -> list[Path]:
    """Run (or resume) the MD of the first `num_isomers` isomers (find_isomers), one compressed .npz
    per isomer in cache_dir (present files are skipped: the run resumes where it stopped; a file
    built with another config is rebuilt). Returns the files in isomer order; an isomer whose MD
    fails (an SCF that does not converge) is reported and left out, so fewer may come back."""
    from rdkit import Chem

    cfg = cfg or ISO17Config()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    want = json.dumps(asdict(cfg), sort_keys=True)
    paths = []
    for idx, smiles, mol in find_isomers(num_isomers, heldout_csv, rows):
        path = _isomer_path(cache_dir, idx)
        if path.exists():
            with np.load(path) as f:
                if str(f["config"]) == want:
                    paths.append(path)
                    continue
        try:
            arrays = run_isomer(mol, cfg, cfg.seed + idx)
        except Exception as exc:  # tblite raises when an SCF fails: that isomer is left out, the rest go on
            print(f"qm9 {idx} {smiles}: MD failed ({exc}); skipped", flush=True)
            continue
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays, qm9_index=np.int64(idx), smiles=np.str_(smiles),
                            molblock=np.str_(Chem.MolToMolBlock(mol)), config=np.str_(want))
        tmp.replace(path)
        paths.append(path)
        if progress:
            print(f"qm9 {idx} {smiles}: {len(arrays['pos'])} snapshots, {arrays['singlepoints']} single points, "
                  f"{float(arrays['seconds']):.1f} s, mean T {float(arrays['temperature'].mean()):.0f} K, "
                  f"intact {arrays['intact'].mean():.2f}", flush=True)
    return paths


def load_isomer(path: str | Path) -> dict:
    """One isomer file -> {qm9_index, smiles, mol (RDKit, DFT conformer), z [n], pos [S, n, 3] float32,
    potential [S] eV (float64: total energies are ~ -800 eV), temperature [S] K, intact [S], seconds,
    singlepoints, config}."""
    from rdkit import Chem

    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    out = {k: d[k] for k in ("z", "pos", "potential", "temperature", "intact")}
    out.update(qm9_index=int(d["qm9_index"]), smiles=str(d["smiles"]), seconds=float(d["seconds"]),
               singlepoints=int(d["singlepoints"]), config=json.loads(str(d["config"])),
               mol=Chem.MolFromMolBlock(str(d["molblock"]), removeHs=False))
    return out


def write_set(paths: Iterable[str | Path], out: str | Path) -> dict:
    """Pack isomer files into one compressed .npz: pos [S_total, n, 3] float32 (every isomer has 19
    atoms), offsets [I + 1] into it, z [I, n], qm9_index [I], smiles and molblocks (json lists),
    potential, temperature, intact [S_total], seconds [I], config (json). Returns a summary."""
    from rdkit import Chem

    items = [load_isomer(p) for p in paths]
    if not items:
        raise ValueError("write_set: no isomer files")
    offsets = np.cumsum([0] + [len(it["pos"]) for it in items])
    np.savez_compressed(
        out, pos=np.concatenate([it["pos"] for it in items]).astype(np.float32), offsets=offsets,
        z=np.stack([it["z"] for it in items]), qm9_index=np.array([it["qm9_index"] for it in items]),
        smiles=np.str_(json.dumps([it["smiles"] for it in items])),
        molblocks=np.str_(json.dumps([Chem.MolToMolBlock(it["mol"]) for it in items])),
        potential=np.concatenate([it["potential"] for it in items]),
        temperature=np.concatenate([it["temperature"] for it in items]),
        intact=np.concatenate([it["intact"] for it in items]),
        seconds=np.array([it["seconds"] for it in items]), config=np.str_(json.dumps(items[0]["config"])))
    return {"isomers": len(items), "snapshots": int(offsets[-1]), "seconds": float(sum(it["seconds"] for it in items)),
            "bytes": Path(out).stat().st_size}


def load_set(path: str | Path) -> list[dict]:
    """A packed set (write_set) -> one dict per isomer: qm9_index, smiles, mol, z, pos [S, n, 3],
    potential, temperature, intact, seconds; plus config."""
    from rdkit import Chem

    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    smiles, blocks, cfg = json.loads(str(d["smiles"])), json.loads(str(d["molblocks"])), json.loads(str(d["config"]))
    out = []
    for i, (a, b) in enumerate(zip(d["offsets"][:-1], d["offsets"][1:])):
        out.append({"qm9_index": int(d["qm9_index"][i]), "smiles": smiles[i], "z": d["z"][i],
                    "mol": Chem.MolFromMolBlock(blocks[i], removeHs=False), "pos": d["pos"][a:b],
                    "potential": d["potential"][a:b], "temperature": d["temperature"][a:b],
                    "intact": d["intact"][a:b], "seconds": float(d["seconds"][i]), "config": cfg})
    return out
