"""Drug-like training data: MOSES SMILES with ETKDGv3 + MMFF94 conformers.

SMILES: the MOSES benchmark training set (Polykovskiy et al. 2020; ~1.58 M ZINC Clean Leads
molecules, elements H C N O F S Cl Br, 250-350 Da, no charged atoms), the file
`moses/dataset/data/train.csv.gz` inside the PyPI wheel molsets 0.3.1 (MIT licence). The wheel is
found in the cache or downloaded with `pip download --no-deps`; molsets itself (and its dependency
tree) is never installed.

There is no reference geometry: each molecule gets up to `confs` ETKDGv3 conformers, each
optimised with MMFF94 (optionally refined with GFN2-xTB), deduplicated at `dedup_rmsd` heavy-atom
RMSD. MOSES SMILES carry no stereo, so every unassigned stereocentre / stereo double bond is first
fixed to that of one seeded embedding: all conformers of a molecule are the same stereoisomer
(checked from 3D), and the stored SMILES says which. Molecules that MMFF94 cannot parameterise are dropped
("mmff_fail"), as are those of which no conformer embeds ("embed_fail"). Chunking, caching,
resuming and exclusions are data/build.py's, shared with the QM9 builder.
"""

from __future__ import annotations

import glob
import gzip
import os
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..chem.molecule import etkdg_params
from .build import add_etkdg_conformers, build_chunked, exclusion_keys
from .exclusions import default_exclusion_files

MOLSETS_VERSION = "0.3.1"
MOSES_TRAIN = "moses/dataset/data/train.csv.gz"


@dataclass
class DrugsBuildConfig:
    confs: int = 5  # ETKDGv3 + MMFF94 conformers tried per molecule (before dedup)
    dedup_rmsd: float = 0.5  # angstrom, heavy-atom GetBestRMS
    chunk_size: int = 500
    seed: int = 2024
    mmff_iters: int = 2000  # MMFF94 optimisation cap per conformer
    max_iterations: int = 0  # ETKDG attempts per conformer (0: RDKit's default)
    embed_timeout: int = 10  # seconds per ETKDG call of one molecule (RDKit's timeout; 0: none)
    xtb: bool = False  # refine the conformers with GFN2-xTB (xtb.py; needs tblite)


def default_cache_dir() -> Path:
    """$CONFGF_FAST_CACHE, else data_cache/ of the repository checkout (gitignored), else
    ~/.cache/confgf_fast."""
    env = os.environ.get("CONFGF_FAST_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        return repo / "data_cache"
    return Path.home() / ".cache" / "confgf_fast"


def molsets_wheel(cache_dir: str | Path | None = None, download: bool = True) -> Path:
    """Path of the molsets wheel in cache_dir/wheels, downloaded there with pip if missing."""
    wheels = Path(cache_dir or default_cache_dir()) / "wheels"
    pattern = str(wheels / f"molsets-{MOLSETS_VERSION}-*.whl")
    found = sorted(glob.glob(pattern))
    if not found and download:
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"molsets=={MOLSETS_VERSION}", "-d", str(wheels)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(glob.glob(pattern))
        if not found:
            raise RuntimeError(
                f"could not download the molsets {MOLSETS_VERSION} wheel (the MOSES SMILES are read from it):\n"
                f"  {' '.join(cmd)}\n  exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-500:]}\n"
                f"Download it elsewhere and put it in {wheels}, or pass its path (--wheel).")
    if not found:
        raise RuntimeError(f"no molsets-{MOLSETS_VERSION} wheel in {wheels}")
    return Path(found[-1])


def read_moses_smiles(wheel: str | Path | None = None, cache_dir: str | Path | None = None) -> list[str]:
    """The MOSES training SMILES, in file order, read from the molsets wheel."""
    wheel = Path(wheel) if wheel else molsets_wheel(cache_dir)
    try:
        with zipfile.ZipFile(wheel) as z, z.open(MOSES_TRAIN) as raw, gzip.open(raw, "rt") as f:
            header = f.readline().strip()
            if header != "SMILES":
                raise RuntimeError(f"{wheel}:{MOSES_TRAIN}: unexpected header {header!r}")
            return [line.strip() for line in f if line.strip()]
    except (zipfile.BadZipFile, KeyError) as exc:
        raise RuntimeError(f"{wheel}: not a molsets wheel with {MOSES_TRAIN} ({exc})") from exc


def drug_rows(smiles: list[str]) -> list[tuple[int, str]]:
    return list(enumerate(smiles))


def fix_stereo(mol, seed: int, max_iterations: int = 0, embed_timeout: int = 0):
    """Copy of `mol` (explicit H) without conformers whose stereo is that of a seeded ETKDGv3
    embedding (unassigned stereo elements become assigned), and its isomeric canonical SMILES as
    perceived from 3D (chem.stereo_smiles_from_3d, the form add_etkdg_conformers compares); None if
    it does not embed.

    Taking the stereo from a real embedding rather than a random choice per centre keeps cages
    feasible: a random assignment of adamantane's bridgeheads cannot be embedded at all.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from ..chem.molecule import stereo_smiles_from_3d

    probe = Chem.Mol(mol)
    probe.RemoveAllConformers()
    params = etkdg_params(seed, max_iterations, embed_timeout)
    if AllChem.EmbedMolecule(probe, params) < 0 or probe.GetNumConformers() == 0:
        return None
    want = stereo_smiles_from_3d(probe)
    Chem.AssignStereochemistryFrom3D(probe)
    probe.RemoveAllConformers()
    return probe, want


def make_drug_mol(row, cfg: dict):
    """build_chunked's per-row function: (index, smiles) -> Mol with up to cfg confs conformers of
    one stereoisomer, or the reason it was dropped ("invalid", "mmff_fail", "embed_fail")."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    idx, smiles = row[0], row[1]
    c = DrugsBuildConfig(**cfg)
    seed = c.seed + int(idx)
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return "invalid"
    mol = Chem.AddHs(mol)
    if not AllChem.MMFFHasAllMoleculeParams(mol):
        return "mmff_fail"
    fixed = fix_stereo(mol, seed, c.max_iterations, c.embed_timeout)
    if fixed is None:
        return "embed_fail"
    mol, want = fixed
    mol = add_etkdg_conformers(mol, c.confs, seed, c.dedup_rmsd, xtb=c.xtb, want_stereo=want,
                               mmff_iters=c.mmff_iters, max_iterations=c.max_iterations,
                               embed_timeout=c.embed_timeout, max_matches=10_000, mmff_on_copy=True)
    return mol if mol.GetNumConformers() else "embed_fail"


def build_tag(cfg: DrugsBuildConfig) -> str:
    """Every setting that changes a chunk's content."""
    return (f"v1_n{cfg.confs}_r{cfg.dedup_rmsd}_s{cfg.seed}_c{cfg.chunk_size}_m{cfg.mmff_iters}"
            f"_i{cfg.max_iterations}_t{cfg.embed_timeout}" + ("_xtb2" if cfg.xtb else ""))


def build_drugs(out: str | Path, exclude_files: list[str | Path] | None = None, num_chunks: int | None = None,
                workers: int = 0, cache_dir: str | Path | None = None, cfg: DrugsBuildConfig | None = None,
                wheel: str | Path | None = None, smiles: list[str] | None = None, progress: bool = True):
    """Build (or resume) the featurised drug-like training set and write it to `out`.

    exclude_files: csv / sdf files of molecules never to include (None: default_exclusion_files()).
    num_chunks: chunks of cfg.chunk_size molecules of the seeded permutation (None: all of MOSES).
    smiles: the SMILES list to use instead of MOSES (tests). Returns (stats, dataset).
    """
    cfg = cfg or DrugsBuildConfig()
    files = default_exclusion_files() if exclude_files is None else list(exclude_files)
    exclude = exclusion_keys(files)
    if smiles is None:
        wheel = Path(wheel) if wheel else molsets_wheel(cache_dir=None)
        smiles = read_moses_smiles(wheel)
        source = f"MOSES train set (molsets {MOLSETS_VERSION} wheel, {MOSES_TRAIN}; MIT licence; ZINC Clean Leads)"
    else:
        source = "given SMILES list"
    method = "etkdgv3+mmff94" + (", all refined with gfn2-xtb" if cfg.xtb else "")
    return build_chunked(out, drug_rows(smiles), make_drug_mol, asdict(cfg), name="drugs", tag=build_tag(cfg),
                         chunk_size=cfg.chunk_size, seed=cfg.seed, num_chunks=num_chunks, workers=workers,
                         cache_dir=cache_dir, exclude=exclude, index_key="source_index", progress=progress,
                         meta={"source": source, "source_size": len(smiles), "conformer_method": method,
                               "excluded_files": [str(f) for f in files], "excluded_keys": len(exclude)})
