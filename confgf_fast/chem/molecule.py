"""RDKit in and out: SMILES/Mol -> MolGraph, conformers back onto Mols, SDF writing, stereo checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from rdkit import Chem
from rdkit.Geometry import Point3D

from ..config import EDGE_AROMATIC, EDGE_DOUBLE, EDGE_SINGLE, EDGE_TRIPLE
from ..graph import MolGraph, extended_graph

_BOND_EDGE_TYPE = {
    Chem.BondType.SINGLE: EDGE_SINGLE,
    Chem.BondType.DOUBLE: EDGE_DOUBLE,
    Chem.BondType.TRIPLE: EDGE_TRIPLE,
    Chem.BondType.AROMATIC: EDGE_AROMATIC,
}


class FeaturizeError(ValueError):
    """A molecule that cannot be turned into a graph (bad SMILES, unsupported bond, ...)."""


# Size limits on input from files we did not write (issue 26). Each bounds the memory and time one
# molecule can take before any limit of the caller's applies; what exceeds one fails for that
# molecule alone, with a message naming the limit, and the rest of the input goes on.
# - MAX_SMILES_CHARS: a SMILES longer than this is not parsed. 10,000 characters is ~50x the
#   longest SMILES in GEOM-Drugs and far beyond the 100 heavy atoms generate allows by default.
# - MAX_ATOMS: atoms including hydrogens, the graph the model sees. The extended graph has ~25-30
#   edges per atom and every edge an H-wide feature in each network evaluation, so 1,000 atoms is
#   ~30k edges (tens of MB per activation at H = 256); 100,000 atoms would be GBs. Applies with
#   --max-heavy-atoms 0 too (that lifts the heavy-atom policy, not this bound).
# - MAX_SDF_RECORD_BYTES: one SDF record (mol block + data items) is read into memory only up to
#   this size; 1 MiB is ~10x a MAX_ATOMS molecule's V2000 block (~70 bytes per atom line).
MAX_SMILES_CHARS = 10_000
MAX_ATOMS = 1_000
MAX_SDF_RECORD_BYTES = 1 << 20


def smiles_length_error(n_chars: int) -> str | None:
    """Why a SMILES of `n_chars` characters is not read (over MAX_SMILES_CHARS), or None."""
    if n_chars > MAX_SMILES_CHARS:
        return (f"SMILES of {n_chars:,} characters, more than the limit of {MAX_SMILES_CHARS:,} "
                "(chem.molecule.MAX_SMILES_CHARS); not parsed")
    return None


def atom_count_error(n_atoms: int) -> str | None:
    """Why a molecule of `n_atoms` atoms (hydrogens included) is refused (over MAX_ATOMS), or None."""
    if n_atoms > MAX_ATOMS:
        return (f"too large: {n_atoms:,} atoms with hydrogens, more than the limit of {MAX_ATOMS:,} "
                "(chem.molecule.MAX_ATOMS)")
    return None


# RDKit seeds each conformer of EmbedMultipleConfs from randomSeed with a multiplicative generator
# modulo 2^31 - 1; a seed of 0 or 2^31 - 1 makes every conformer identical (measured with RDKit
# 2026.09: 10 conformers of CCN(CC=O)CCO or CCCCO at RMSD 0, while seeds 1..39 give distinct ones).
# The benchmark scripts seed molecule k with seed + k, so their first molecule got seed 0 and its
# ETKDG baseline was one conformer repeated, until etkdg_seed remapped it.
_DEGENERATE_SEED_REPLACEMENT = 0x5EED5


def etkdg_seed(seed: int) -> int:
    """seed modulo 2^31 (RDKit takes a signed 32-bit int; -1 would mean unseeded), with the two
    values RDKit's per-conformer seeding turns into identical conformers (0 and 2^31 - 1) replaced
    by a fixed nonzero seed; every other seed is unchanged, so results from before the fix
    reproduce."""
    s = seed % 2**31
    return _DEGENERATE_SEED_REPLACEMENT if s % (2**31 - 1) == 0 else s


def etkdg_params(seed: int, max_iterations: int = 0, embed_timeout: int = 0):
    """RDKit ETKDGv3 parameters with a seed and, where > 0, an iteration cap and a per-call
    timeout (seconds; some embeddings of strained systems otherwise run for minutes).

    seed: any int, reduced to RDKit's 31 bits (etkdg_seed)."""
    from rdkit.Chem import AllChem

    params = AllChem.ETKDGv3()
    params.randomSeed = etkdg_seed(seed)
    if max_iterations:
        params.maxIterations = max_iterations
    if embed_timeout:
        params.timeout = embed_timeout
    return params


def etkdg_coordinates(mol: Chem.Mol, n: int, seed: int, oversample: int = 1,
                      ) -> tuple[torch.Tensor | None, str | None]:
    """([k, atoms, 3] float32, note): up to n ETKDGv3 conformers of `mol` (explicit H; atoms in
    mol's order), embedded on a copy. Where the eigenvector embedding gives nothing (strained
    cages), RDKit's documented fallback from random coordinates is tried, then one without
    ETKDG's chirality check (2 of the 190 QM9 dev molecules, fused small rings, need it; the note
    says so, since their stereo then rests on the sampler's guidance). (None, note) if all fail.
    seed: any int (etkdg_seed). oversample > 1 embeds oversample x n conformers and keeps
    a diverse n of them (diverse_subset)."""
    from rdkit.Chem import AllChem

    m = Chem.Mol(mol)
    m.RemoveAllConformers()
    params = etkdg_params(seed)
    n_embed = n * max(1, oversample)
    AllChem.EmbedMultipleConfs(m, n_embed, params)
    note = None
    if m.GetNumConformers() == 0:
        params.useRandomCoords = True
        AllChem.EmbedMultipleConfs(m, n_embed, params)
    if m.GetNumConformers() == 0:
        params.useRandomCoords, params.enforceChirality = False, False
        AllChem.EmbedMultipleConfs(m, n_embed, params)
        note = ("ETKDG embedded this molecule only without its chirality check; the warm start's stereo comes "
                "from guidance")
    if m.GetNumConformers() == 0:
        return None, ("RDKit ETKDG could not embed this molecule for the warm start (--init etkdg); "
                      "try --init random")
    pos = conformer_positions(m)
    return pos[diverse_subset(m, pos, n)], note


def diverse_subset(mol: Chem.Mol, pos: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of n diverse conformers among pos [C, atoms, 3] of `mol` (all of them if C <= n):
    diversity.farthest_point_subset on the heavy atoms, or on all atoms where fewer than 3 heavy
    atoms fix no orientation."""
    from .diversity import farthest_point_subset

    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    return farthest_point_subset(pos, n, torch.tensor(heavy) if len(heavy) >= 3 else None)


def mmff_energies(mol: Chem.Mol, coords: Iterable[np.ndarray | torch.Tensor]) -> np.ndarray:
    """[C] MMFF94 single-point energies (kcal/mol) of `mol` at each of the coordinate sets coords
    ([atoms, 3] each, angstrom): the force field scores the geometry as it is, nothing is
    optimised. All inf where MMFF94 has no parameters for the molecule (it is then no ranking)."""
    from rdkit.Chem import rdForceFieldHelpers

    coords = [np.asarray(c, dtype=np.float64).reshape(-1) for c in coords]
    m = Chem.Mol(mol)
    if not coords or not rdForceFieldHelpers.MMFFHasAllMoleculeParams(m):
        return np.full(len(coords), np.inf)
    m.RemoveAllConformers()
    conf = Chem.Conformer(m.GetNumAtoms())
    m.AddConformer(conf, assignId=True)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(m)
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(m, props)
    if ff is None:
        return np.full(len(coords), np.inf)
    out = np.array([ff.CalcEnergy(c.tolist()) for c in coords])
    return np.where(np.isfinite(out), out, np.inf)


def mol_from_smiles(smiles: str) -> Chem.Mol:
    """Parse a SMILES and add explicit hydrogens (the model works on all atoms). FeaturizeError
    for a SMILES over MAX_SMILES_CHARS (not parsed) or a molecule over MAX_ATOMS with hydrogens
    (counted before they are added)."""
    too_long = smiles_length_error(len(smiles))
    if too_long is not None:
        raise FeaturizeError(too_long)
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise FeaturizeError(f"invalid SMILES: {smiles!r}")
    too_large = atom_count_error(mol.GetNumAtoms() + sum(a.GetTotalNumHs() for a in mol.GetAtoms()))
    if too_large is not None:
        raise FeaturizeError(too_large)
    return Chem.AddHs(mol)


def featurize(mol: Chem.Mol, order: int = 3) -> MolGraph:
    """Mol (with explicit H) -> MolGraph of all atom pairs within `order` bonds.

    Edge (i, j) exists for 1 <= topological distance(i, j) <= order. Its type is the bond type
    when i and j are bonded, EDGE_ANGLE at distance 2, EDGE_DIHEDRAL at distance 3 (built by
    graph.extended_graph from the bonds, so RDKit-free data files rebuild the same graph).
    FeaturizeError for more than MAX_ATOMS atoms: the graph's memory is bounded for any input.
    """
    n = mol.GetNumAtoms()
    if n == 0:
        raise FeaturizeError("molecule has no atoms")
    too_large = atom_count_error(n)
    if too_large is not None:
        raise FeaturizeError(too_large)
    z = torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long)
    pairs, types = [], []
    for b in mol.GetBonds():
        bt = _BOND_EDGE_TYPE.get(b.GetBondType())
        if bt is None:
            raise FeaturizeError(f"unsupported bond type {b.GetBondType()} in {Chem.MolToSmiles(mol)}")
        pairs.append((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        types.append(bt)
    bond_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).t()
    return extended_graph(z, bond_index, torch.tensor(types, dtype=torch.long), order)


def set_conformers(mol: Chem.Mol, coords: Iterable[np.ndarray | torch.Tensor]) -> Chem.Mol:
    """Copy of `mol` (no conformers) with one conformer per [n, 3] coordinate array."""
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    for k, xyz in enumerate(coords):
        xyz = np.asarray(xyz.detach().cpu() if isinstance(xyz, torch.Tensor) else xyz, dtype=np.float64)
        conf = Chem.Conformer(out.GetNumAtoms())
        for i in range(out.GetNumAtoms()):
            conf.SetAtomPosition(i, Point3D(*xyz[i]))
        conf.Set3D(True)
        conf.SetId(k)
        out.AddConformer(conf, assignId=False)
    return out


def conformer_positions(mol: Chem.Mol) -> torch.Tensor:
    """[C, n, 3] float32 positions of all conformers of `mol`."""
    confs = [c.GetPositions() for c in mol.GetConformers()]
    if not confs:
        return torch.zeros(0, mol.GetNumAtoms(), 3)
    return torch.tensor(np.stack(confs), dtype=torch.float32)


def remove_hs(mol: Chem.Mol) -> Chem.Mol:
    """RemoveHs that also drops hydrogens defining double-bond stereo (imine N-H), so a molecule
    perceived from 3D and one parsed from a SMILES without explicit H give the same string."""
    params = Chem.RemoveHsParameters()
    params.removeDefiningBondStereo = True
    return Chem.RemoveHs(mol, params, sanitize=False)


def canonical_smiles(mol_or_smiles: Chem.Mol | str, stereo: bool = False) -> str:
    """Canonical SMILES without hydrogens; stereo-free by default (the key that groups molecules
    and matches held-out molecules)."""
    mol = Chem.MolFromSmiles(mol_or_smiles) if isinstance(mol_or_smiles, str) else Chem.Mol(mol_or_smiles)
    if mol is None:
        raise FeaturizeError(f"invalid SMILES: {mol_or_smiles!r}")
    if not stereo:
        Chem.RemoveStereochemistry(mol)  # first, so no H is kept for defining stereo
    return Chem.MolToSmiles(remove_hs(mol), isomericSmiles=stereo)


def stereo_smiles_from_3d(mol: Chem.Mol, conf_id: int = -1) -> str:
    """Isomeric canonical SMILES with stereo perceived from the 3D coordinates of one conformer."""
    m = Chem.Mol(mol)
    conf = Chem.Conformer(m.GetConformer(conf_id))
    m.RemoveAllConformers()
    m.AddConformer(conf, assignId=True)
    Chem.AssignStereochemistryFrom3D(m)
    return canonical_smiles(m, stereo=True)


def write_sdf(path_or_writer, mol: Chem.Mol, props: dict | None = None, conf_ids: Iterable[int] | None = None,
              conf_props: list[dict] | None = None) -> int:
    """Write each conformer of `mol` as one SDF record with all hydrogens. Returns records written."""
    writer = Chem.SDWriter(path_or_writer) if isinstance(path_or_writer, str) else path_or_writer
    ids = list(conf_ids) if conf_ids is not None else [c.GetId() for c in mol.GetConformers()]
    for k, cid in enumerate(ids):
        m = Chem.Mol(mol)
        for key, val in (props or {}).items():
            m.SetProp(key, str(val))
        for key, val in (conf_props[k] if conf_props else {}).items():
            m.SetProp(key, str(val))
        writer.write(m, confId=cid)
    if isinstance(path_or_writer, str):
        writer.close()
    return len(ids)


# Cap on the atom maps GetBestRMS enumerates per pair. RDKit's own default is 1,000,000; each map
# costs one alignment, so a very symmetric molecule (several t-butyl / CF3 groups) can take
# seconds per pair. 10,000 covers e.g. 5 independent 3-fold rotors plus 2 ring flips exactly;
# beyond that the RMSD can only be over-estimated (fewer maps tried), never under-estimated.
DEFAULT_MAX_MATCHES = 10_000


def heavy_copy(mol: Chem.Mol) -> Chem.Mol:
    """Copy of `mol` without hydrogens (all conformers kept). Falls back to an unsanitised removal
    for records RDKit cannot sanitise, so one odd record does not abort an evaluation."""
    try:
        return Chem.RemoveHs(mol)
    except Exception:
        h = Chem.RemoveHs(mol, sanitize=False)
        h.UpdatePropertyCache(strict=False)
        return h


# ---- stereo as perceived from 3D vs. the input ----------------------------------------------

@dataclass(frozen=True)
class _StereoTarget:
    mol: Chem.Mol  # the input, no H, stereo as written
    iso: str  # its canonical isomeric SMILES
    flat: str | None  # its stereo-free canonical SMILES when it specifies no stereo at all, else None
    partial: bool  # some potential stereo element is left unspecified


@lru_cache(maxsize=4096)
def _stereo_target(smiles: str) -> _StereoTarget:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES: {smiles!r}")
    # Canonicalised as chem.stereo_smiles_from_3d writes a conformer (chem.canonical_smiles).
    iso, flat = canonical_smiles(mol, stereo=True), canonical_smiles(mol)
    partial = any(el.specified == Chem.StereoSpecified.Unspecified for el in Chem.FindPotentialStereo(Chem.Mol(mol)))
    return _StereoTarget(mol, iso, flat if iso == flat else None, partial)


def _perceived_heavy(mol: Chem.Mol, conf_id: int) -> Chem.Mol:
    """One conformer's molecule, stereo perceived from 3D, no H (as chem.stereo_smiles_from_3d)."""
    m = Chem.Mol(mol)
    conf = Chem.Conformer(mol.GetConformer(conf_id))
    m.RemoveAllConformers()
    m.AddConformer(conf, assignId=True)
    Chem.AssignStereochemistryFrom3D(m)
    return remove_hs(m)


def _matches_with_unspecified_cleared(mol: Chem.Mol, conf_id: int, t: _StereoTarget, max_maps: int = 1000) -> bool:
    """Does the conformer match once every stereo element the input leaves unspecified is cleared?

    The atom map input -> conformer comes from substructure matching without chirality; every map
    is tried (symmetric atoms may be mapped either way).
    """
    h = _perceived_heavy(mol, conf_id)
    free_atoms = [a.GetIdx() for a in t.mol.GetAtoms() if a.GetChiralTag() not in
                  (Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW)]
    free_bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in t.mol.GetBonds()
                  if b.GetBondType() == Chem.BondType.DOUBLE
                  and b.GetStereo() in (Chem.BondStereo.STEREONONE, Chem.BondStereo.STEREOANY)]
    for match in h.GetSubstructMatches(t.mol, useChirality=False, uniquify=False, maxMatches=max_maps):
        c = Chem.Mol(h)
        for i in free_atoms:
            c.GetAtomWithIdx(match[i]).SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
        for i, j in free_bonds:
            c.GetBondBetweenAtoms(match[i], match[j]).SetStereo(Chem.BondStereo.STEREONONE)
        if free_bonds:
            # SMILES output follows the single bonds' '/' '\\' directions, not the double bonds'
            # stereo flags: rebuild the directions from the flags that are left.
            for b in c.GetBonds():
                b.SetBondDir(Chem.BondDir.NONE)
            Chem.SetDoubleBondNeighborDirections(c)
        if canonical_smiles(c, stereo=True) == t.iso:
            return True
    return False


def stereo_matches(mols: Chem.Mol | Iterable[Chem.Mol], input_smiles: str | Sequence[str] | None = None) -> np.ndarray:
    """Per conformer (every conformer of every Mol, in order): does its 3D-perceived stereo equal
    the input's? True iff chem.stereo_smiles_from_3d(conformer) equals the canonical isomeric SMILES
    of the input (without H, canonicalised the same way), where stereo elements the input leaves
    unspecified are ignored: an input without any stereo only needs the same stereo-free molecule,
    and for a partly specified input those elements are cleared on the conformer before comparing.

    input_smiles: one SMILES for all, one per Mol, or None to use each Mol's `smiles` property.
    """
    mols = [mols] if isinstance(mols, Chem.Mol) else list(mols)
    if input_smiles is None:
        smiles = [m.GetProp("smiles") for m in mols]
    elif isinstance(input_smiles, str):
        smiles = [input_smiles] * len(mols)
    else:
        smiles = list(input_smiles)
        if len(smiles) != len(mols):
            raise ValueError(f"{len(smiles)} SMILES for {len(mols)} molecules")
    out: list[bool] = []
    for mol, smi in zip(mols, smiles):
        t = _stereo_target(smi)
        if t.flat is not None:
            out.extend([canonical_smiles(mol) == t.flat] * mol.GetNumConformers())
            continue
        for c in mol.GetConformers():
            ok = stereo_smiles_from_3d(mol, c.GetId()) == t.iso
            if not ok and t.partial:
                ok = _matches_with_unspecified_cleared(mol, c.GetId(), t)
            out.append(ok)
    return np.array(out, dtype=bool)
