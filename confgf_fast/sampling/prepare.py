"""RDKit preparation of one input molecule: parse, choose the fragment, check size and elements,
add hydrogens, featurise, read its stereo. What pipeline.generate_iter and
tensors.generate_tensors both do to every SMILES / Mol before sampling, so both apply one policy.

Every input ends either prepared or with an error that says why; one bad molecule never stops the
others. The policy, case by case (the element and size rules themselves are elements.py's):

- invalid SMILES or unreadable record: an error with RDKit's reason where RDKit gives one
  (valence, kekulisation); "syntax error" otherwise. A molecule with no atoms is an error.
- several fragments (salts, solvents, mixtures): by default the largest fragment is kept
  (RDKit's LargestFragmentChooser: most atoms including H, then molecular weight, then SMILES)
  with a warning naming what was dropped. With largest_fragment=False it is an error: the graph
  has no edges between fragments, so their relative placement would be meaningless noise.
- elements the model was not trained on (the checkpoint's `trained_elements`; H, C, N, O, F
  for old checkpoints): an error unless allow_unknown_elements. Atomic numbers beyond the model's
  embedding table are always an error.
- charged species: allowed. The graph is charge-blind (atomic numbers and bond types only), so
  an ion is sampled as its neutral skeleton would be; formal charges are kept on the output Mol.
- single atoms: every conformer is the atom at the origin, the only honest answer; no sampling,
  so any element is fine. (They have no edges; the sampler is never asked to move them.)
- more than max_heavy_atoms heavy (non-hydrogen) atoms: an error, checked before hydrogens are
  added and before the O(n^2) graph is built, so a giant input costs nothing.
- more heavy atoms than the largest molecule the weights were trained on (the checkpoint's
  `trained_max_heavy_atoms`; 9 for the shipped QM9 weights): a warning, and the molecule is
  sampled. The network has only seen graphs up to that size, so a larger one is extrapolation
  that may or may not hold up, and the user should know. Unknown size (None): no warning.
- several sets of weights (`coverages`): the molecule's are chosen by elements.choose_model
  before the element check, which then uses the chosen weights' elements and size
  (Entry.model / MolOutcome.model say which).
- a conformer count below 1: an error for that molecule.
- duplicates: every input is its own molecule (index = input position); nothing is deduplicated.
"""

from __future__ import annotations

import re
from collections.abc import Container, Sequence
from dataclasses import dataclass, field

import torch
from rdkit import Chem
from torch import Tensor

from ..chem.molecule import featurize
from ..chem.stereo import StereoConstraints, stereo_constraints
from ..config import NUM_ATOM_TYPES, Schedule
from ..graph import MolGraph
from ..model.elements import (
    DEFAULT_MAX_HEAVY_ATOMS,
    QM9_ELEMENTS,
    Coverage,
    check_elements,
    choose_model,
    num_heavy_atoms,
    size_error,
)

SAMPLED_SMILES_PROP = "_confgf_sampled_smiles"  # on a prepared Mol: the kept fragment's SMILES
BEYOND_TRAINED_SIZE_PROP = "_confgf_beyond_trained_size"  # on a prepared Mol: larger than any training molecule
MODEL_PROP = "_confgf_model"  # on a prepared Mol: index of the weights chosen for it (elements.choose_model)
_PRIVATE_PROPS = (SAMPLED_SMILES_PROP, BEYOND_TRAINED_SIZE_PROP, MODEL_PROP)


class MoleculeError(ValueError):
    """One input molecule cannot be used; the message says why (it goes to the user verbatim)."""


@dataclass
class MolInput:
    """One input molecule with what the caller knows about it.

    source: a SMILES string or an RDKit Mol (None when the record could not be read at all);
    num_confs: conformers wanted (None: the call's default); text: the input as given (for messages
    and the SDF `smiles` property; default the SMILES itself); name: an optional title;
    error: set when the reader already knows the molecule is unusable (e.g. a malformed SDF record).
    """

    source: str | Chem.Mol | None
    num_confs: int | None = None
    text: str | None = None
    name: str = ""
    error: str | None = None

    def given(self) -> str:
        """The input as the user gave it (the SMILES, or a SMILES written from the Mol)."""
        if self.text is not None:
            return self.text
        if isinstance(self.source, str):
            return self.source
        if isinstance(self.source, Chem.Mol):
            try:
                return Chem.MolToSmiles(Chem.RemoveHs(self.source))
            except Exception:  # an odd Mol: RemoveHs can fail on unsanitised input
                return Chem.MolToSmiles(self.source)
        return ""


@dataclass
class MolOutcome:
    """What became of input `index`: `mol` (all H, one conformer per success) or None, and `error`.

    A molecule can have both a Mol and an error when some, but not all, of its conformers failed.
    `warnings` are notes that did not stop it (e.g. fragments dropped from a salt).
    """

    index: int
    text: str
    name: str
    requested: int
    mol: Chem.Mol | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    # Per written conformer: {"stereo_ok": 0/1, "quality": "ok" | "broken", "quality_reasons" (when
    # broken): "vdw,connectivity" (quality.DEFECTS), and after a relax "energy" (kcal/mol),
    # "relative_energy", "energy_method"} (SDF properties).
    conf_flags: list[dict] = field(default_factory=list)
    # What was sampled when it is not the input itself: the kept fragment's SMILES of a salt or
    # mixture (the SDF's `smiles`; the input then goes to `input_smiles`). None: the input.
    sampled_smiles: str | None = None
    # More heavy atoms than the largest training molecule (warned; counted in pipeline.RunStats).
    beyond_trained_size: bool = False
    # Index of the weights that sampled it, of those the run was given (elements.choose_model).
    model: int = 0

    @property
    def num_confs(self) -> int:
        """Conformers generated (0 when the molecule failed)."""
        return self.mol.GetNumConformers() if self.mol is not None else 0

    @property
    def ok(self) -> bool:
        return self.error is None



# ---- one molecule ---------------------------------------------------------------------------------
# How the per-molecule errors name the options that change them: the Python keyword arguments
# here; the CLI rewrites them to its flags (cli.cli_wording) before printing.
API_TO_CLI = {"allow_unknown_elements=True": "--allow-unknown-elements",
              "largest_fragment=True": "--largest-fragment", "max_heavy_atoms=0": "--max-heavy-atoms 0"}


def _quiet_rdkit():
    """A context that keeps RDKit's error log off stderr and, where RDKit can (2025.09+:
    rdBase.CaptureErrorLog), keeps its messages in `.messages` (the reason goes into our error)."""
    from rdkit import rdBase

    capture = getattr(rdBase, "CaptureErrorLog", None)
    return capture() if capture is not None else rdBase.BlockLogs()


def _parse_reason(log: object) -> str:
    """RDKit's SMILES-parser log (captured) -> a short reason, e.g. 'unclosed ring' or 'syntax error
    around position 3'; '' when nothing was captured."""
    reasons = []
    for line in str(getattr(log, "messages", "") or "").splitlines():
        line = re.sub(r"^\[[0-9:]+\]\s*", "", line).strip()
        if not line.startswith("SMILES Parse Error:"):
            continue  # the echoed input and the ~~^ marker
        msg = line.removeprefix("SMILES Parse Error:").strip()
        if msg.startswith("Failed parsing SMILES"):
            continue  # says nothing more than "invalid"
        msg = re.sub(r" (for input|while parsing): .*$", "", msg)
        msg = re.sub(r"^check for mistakes (around position \d+):?$", r"\1", msg)
        if msg and msg not in reasons:
            reasons.append(msg)
    return " ".join(reasons)


def parse_smiles(smiles: str) -> Chem.Mol:
    """SMILES -> sanitised Mol (no explicit H yet); MoleculeError with the reason when RDKit refuses.
    RDKit's own log lines are kept off stderr: the reason is in the error, said once."""
    if not smiles.strip():
        raise MoleculeError("empty SMILES")
    with _quiet_rdkit():
        mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        return mol
    # Parse again without sanitising only to say why: a valence or aromaticity problem comes back
    # as an exception with a readable message; a syntax error gives no Mol at all.
    with _quiet_rdkit() as log:
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
    if raw is None:
        raise MoleculeError(f"invalid SMILES {smiles!r} ({_parse_reason(log) or 'syntax error'})")
    try:
        with _quiet_rdkit():
            Chem.SanitizeMol(raw)
    except Exception as exc:  # RDKit's AtomValenceException, KekulizeException, ...
        raise MoleculeError(f"invalid SMILES {smiles!r}: {exc}") from None
    raise MoleculeError(f"invalid SMILES {smiles!r}")


def trained_size_warning(num_heavy: int, trained_max_heavy_atoms: int | None) -> str | None:
    """The warning for a molecule of `num_heavy` heavy atoms when the weights were trained on
    molecules of at most `trained_max_heavy_atoms` (None: unknown, no warning), or None."""
    if trained_max_heavy_atoms is None or num_heavy <= trained_max_heavy_atoms:
        return None
    return (f"{num_heavy} heavy atoms, more than the {trained_max_heavy_atoms} of the largest molecule the weights "
            "were trained on: conformers may be less reliable")


def prepare_molecule(source: str | Chem.Mol, *, max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS,
                     trained_elements: Container[int] = QM9_ELEMENTS, allow_unknown_elements: bool = False,
                     largest_fragment: bool = True, num_atom_types: int = NUM_ATOM_TYPES,
                     trained_max_heavy_atoms: int | None = None,
                     coverages: Sequence[Coverage] | None = None) -> tuple[Chem.Mol, list[str]]:
    """Input -> (Mol with all hydrogens, warnings), or MoleculeError. The policy is in the module
    docstring; the order of the checks puts the cheap ones before AddHs and the graph.

    trained_max_heavy_atoms: heavy atoms of the largest training molecule (the model's, its
    checkpoint's meta.trained_max_heavy_atoms); a larger input gets a warning and the Mol BEYOND_TRAINED_SIZE_PROP.
    None (the default, e.g. a model built in code): no size warning.
    coverages: several sets of weights to choose from (elements.choose_model); when given they
    replace trained_elements, num_atom_types and trained_max_heavy_atoms, and the chosen index is
    set on the Mol as MODEL_PROP (prepare_entry moves it to the outcome)."""
    warnings: list[str] = []
    if isinstance(source, Chem.Mol):
        mol = Chem.Mol(source)
    elif isinstance(source, str):
        mol = parse_smiles(source)
    else:
        raise MoleculeError(f"not a SMILES string or RDKit Mol: {type(source).__name__}")
    if mol.GetNumAtoms() == 0:
        raise MoleculeError("molecule has no atoms")
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    if len(frags) > 1:
        if not largest_fragment:
            raise MoleculeError(f"{len(frags)} disconnected fragments (a salt or mixture?); "
                                "largest_fragment=True keeps only the largest one")
        from rdkit.Chem.MolStandardize import rdMolStandardize

        kept = rdMolStandardize.LargestFragmentChooser(preferOrganic=False).choose(mol)
        kept_smi = Chem.MolToSmiles(kept)
        dropped = list(Chem.MolToSmiles(mol).split("."))
        if kept_smi in dropped:
            dropped.remove(kept_smi)
        warnings.append(f"{len(frags)} fragments: kept the largest, {kept_smi}; dropped {'.'.join(dropped)}")
        mol = kept
        try:
            sampled = Chem.MolToSmiles(Chem.RemoveHs(kept))
        except Exception:  # RemoveHs can refuse odd hydrogens; the SMILES is a label here
            sampled = kept_smi
    else:
        sampled = None
    num_heavy = num_heavy_atoms(a.GetAtomicNum() for a in mol.GetAtoms())
    too_large = size_error(num_heavy, max_heavy_atoms)
    if too_large is not None:
        raise MoleculeError(too_large)
    has_coords = mol.GetNumConformers() > 0
    mol = Chem.AddHs(mol, addCoords=has_coords)
    if sampled is not None:
        mol.SetProp(SAMPLED_SMILES_PROP, sampled)  # read, then cleared, by prepare_entry
    if mol.GetNumAtoms() == 1:
        return mol, warnings  # no edges and no model involved: any element is fine (see docstring)
    zs = {a.GetAtomicNum() for a in mol.GetAtoms()}
    if coverages:
        chosen = choose_model(zs, num_heavy, coverages)
        mol.SetIntProp(MODEL_PROP, chosen)
        cov = coverages[chosen]
        trained_elements, num_atom_types = cov.elements, cov.num_atom_types
        trained_max_heavy_atoms = cov.max_heavy_atoms
    error, notes = check_elements(zs, trained_elements,
                                  allow_unknown_elements=allow_unknown_elements, num_atom_types=num_atom_types)
    if error is not None:
        raise MoleculeError(error)
    warnings.extend(notes)
    # Said after the errors: a molecule refused for its elements needs no note about its size.
    beyond = trained_size_warning(num_heavy, trained_max_heavy_atoms)
    if beyond is not None:
        warnings.append(beyond)
        mol.SetBoolProp(BEYOND_TRAINED_SIZE_PROP, True)  # read, then cleared, by prepare_entry
    return mol, warnings



@dataclass
class Entry:
    """One prepared input: its outcome record, Mol with all H, graph and stereo constraints, and the
    sampling book-keeping (coordinates and flags so far) of pipeline.generate_iter."""

    out: MolOutcome
    mol: Chem.Mol | None = None
    graph: MolGraph | None = None
    coords: list[Tensor] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)  # one per kept conformer
    stereo: StereoConstraints | None = None
    attempted: int = 0  # conformers sampled so far (good or not)
    # Warm start (ProjectSchedule.init = "etkdg"): [k, atoms, 3] ETKDG conformers, handed out in turn
    # (cycling when RDKit gave fewer than requested); init_next counts those handed out.
    init_coords: Tensor | None = None
    init_next: int = 0
    # From noise (ProjectSchedule.init = "random", oversample > 1): oversample x requested conformers
    # are sampled and a diverse `requested` of the good ones kept (diversity.select_conformers).
    oversample: int = 1

    def next_start(self) -> Tensor:
        """The next warm-start conformer [atoms, 3]."""
        assert self.init_coords is not None
        x = self.init_coords[self.init_next % self.init_coords.shape[0]]
        self.init_next += 1
        return x

    @property
    def finished(self) -> bool:
        return self.out.error is not None or self.attempted >= self.to_sample

    @property
    def to_sample(self) -> int:
        """Conformers to sample: the requested count, times the oversampling from noise."""
        return self.out.requested * self.oversample


def as_input(x: str | Chem.Mol | MolInput) -> MolInput:
    return x if isinstance(x, MolInput) else MolInput(x)


def prepare_entry(k: int, x: str | Chem.Mol | MolInput, num_confs: int, *, sampler: Schedule,
                  max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS,
                  trained_elements: Container[int] = QM9_ELEMENTS,
                  allow_unknown_elements: bool = False, largest_fragment: bool = True,
                  num_atom_types: int = NUM_ATOM_TYPES, trained_max_heavy_atoms: int | None = None,
                  coverages: Sequence[Coverage] | None = None) -> Entry:
    """Input k -> its _Entry: the Mol with all H, graph and stereo constraints (when sampler.stereo),
    or out.error saying why it cannot be sampled. A lone atom gets its conformers (the origin) here
    and no graph. num_confs is the default count (a MolInput's own count wins). Shared by
    generate_iter and tensors.generate_tensors, so both apply the same per-molecule policy
    (trained_max_heavy_atoms, coverages: prepare_molecule's; generate_tensors leaves the size None,
    no size warning, and samples with one model)."""
    inp = as_input(x)
    count = inp.num_confs if inp.num_confs is not None else num_confs
    e = Entry(MolOutcome(index=k, text=inp.given(), name=inp.name, requested=count))
    if inp.error is not None:
        e.out.error = inp.error
    elif count < 1:
        e.out.error = f"conformer count must be at least 1 (got {count})"
    else:
        try:
            e.mol, e.out.warnings = prepare_molecule(
                inp.source, max_heavy_atoms=max_heavy_atoms, trained_elements=trained_elements,
                allow_unknown_elements=allow_unknown_elements, largest_fragment=largest_fragment,
                num_atom_types=num_atom_types, trained_max_heavy_atoms=trained_max_heavy_atoms, coverages=coverages)
            if e.mol.HasProp(SAMPLED_SMILES_PROP):
                e.out.sampled_smiles = e.mol.GetProp(SAMPLED_SMILES_PROP)
            e.out.beyond_trained_size = e.mol.HasProp(BEYOND_TRAINED_SIZE_PROP)
            e.out.model = e.mol.GetIntProp(MODEL_PROP) if e.mol.HasProp(MODEL_PROP) else 0
            # Read into the outcome, then removed: RDKit's SDWriter writes underscore ("private")
            # properties too, so they would reach the output SDF and the returned Mols.
            for prop in _PRIVATE_PROPS:
                e.mol.ClearProp(prop)
            if e.mol.GetNumAtoms() == 1:
                e.coords = [torch.zeros(1, 3) for _ in range(count)]
                e.attempted = count
            else:
                e.graph = featurize(e.mol)
                if sampler.stereo:
                    e.stereo = stereo_constraints(e.mol)
        except MoleculeError as exc:
            e.out.error = str(exc)
        except Exception as exc:  # RDKit raises plain RuntimeError/ValueError from C++ per molecule
            e.out.error = f"cannot featurise: {type(exc).__name__}: {exc}"
    return e


__all__ = [
    "API_TO_CLI",
    "BEYOND_TRAINED_SIZE_PROP",
    "MODEL_PROP",
    "SAMPLED_SMILES_PROP",
    "Entry",
    "MolInput",
    "MolOutcome",
    "MoleculeError",
    "as_input",
    "parse_smiles",
    "prepare_entry",
    "prepare_molecule",
    "trained_size_warning",
]
