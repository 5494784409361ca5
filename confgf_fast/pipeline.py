"""SMILES / RDKit Mols in, conformers out: check, featurise, batch, sample, verify, put coordinates back.

The one place that joins chem (RDKit) -> graph batch -> model -> sampler -> RDKit conformers.

Every input molecule ends either with conformers or with an error that says why; one bad molecule
never stops the others. The policy, case by case (prepare_molecule and generate_iter):

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
- a conformer count below 1: an error for that molecule.
- duplicates: every input is its own molecule (index = input position); nothing is deduplicated.
- conformers whose coordinates come out non-finite or absurd (|x| > POS_LIMIT angstrom) are
  resampled in a batch of their own with a fresh seed, up to `retries` times; what still fails
  is reported as an error of its molecule, which keeps its good conformers. Molecules are
  independent in the batched graph and the Langevin update is per atom, so a NaN cannot leak from
  one conformer into another; checking each conformer at the end of sampling is enough.
- broken conformers (quality.py: a bond off, atoms >= 3 bonds apart overlapping or close enough to
  read as bonded) are resampled the same way; one that is still broken after the retries is
  written flagged `quality` = broken with its `quality_reasons`, and counted (RunStats).
- with a relax method (relax.py) each molecule's conformers are relaxed after sampling and checked
  again; conformers dropped there (xTB changed the bonds, energy window, RMSD pruning) are counted,
  not errors, unless none is left.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import torch
from rdkit import Chem
from torch import Tensor

from .checkpoint import QM9_ELEMENTS, load_model
from .chem import featurize, set_conformers
from .config import NUM_ATOM_TYPES, NoiseConfig, SamplerConfig, resolve_sampler
from .graph import MolGraph, PackedGraphs
from .model import ScoreNet
from .quality import conformer_defects, defect_reasons
from .relax import RelaxOptions, quality_flags, relax_flags
from .sampler import default_max_atoms, plan_batches
from .stereo import StereoConstraints, stereo_constraints

# The RDKit-free device-side pieces live in tensors.py (generate_tensors shares them); re-exported.
from .tensors import POS_LIMIT, bad_conformers, model_vocabulary, sample_batch  # noqa: F401 (re-export)

DEFAULT_MAX_HEAVY_ATOMS = 100
SAMPLED_SMILES_PROP = "_confgf_sampled_smiles"  # on a prepared Mol: the kept fragment's SMILES
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_RETRIES = 2


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

    @property
    def num_confs(self) -> int:
        """Conformers generated (0 when the molecule failed)."""
        return self.mol.GetNumConformers() if self.mol is not None else 0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class GenerationResult:
    """mols[k]: input k with its generated conformers (None if it failed); errors[k]: why it failed
    (also set when only some conformers failed: mols[k] then holds the others); warnings[k]: notes;
    flags[k]: per conformer of mols[k], {"stereo_ok": 0/1, "quality": "ok" | "broken", ...} (see
    MolOutcome.conf_flags); stats: counts and timings of the run (RunStats)."""

    mols: list[Chem.Mol | None]
    errors: dict[int, str] = field(default_factory=dict)
    warnings: dict[int, list[str]] = field(default_factory=dict)
    flags: dict[int, list[dict]] = field(default_factory=dict)
    stats: RunStats = field(default_factory=lambda: RunStats())


@dataclass
class RunStats:
    """Counts and timings of one generate_iter run (pass one in as `stats` to have it filled).

    sample_s: seconds inside sampling (featurised batches, Langevin, checks, retries); relax_s:
    seconds relaxing and selecting; broken_resampled: broken (finite) conformers sent back to
    sampling, summed over retries; broken_written: conformers written flagged `broken`;
    relaxed: conformers relaxed; dropped: conformers dropped after relaxing, by reason
    (bonds_changed / failed under xTB, energy_window, prune_rms); fallback: molecules relaxed
    with UFF (MMFF had no parameters) or left unrelaxed.
    """

    sample_s: float = 0.0
    relax_s: float = 0.0
    broken_resampled: int = 0
    broken_written: int = 0
    relaxed: int = 0
    dropped: Counter = field(default_factory=Counter)
    fallback: int = 0


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
    import re

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


def _symbols(zs: Iterable[int]) -> str:
    table = Chem.GetPeriodicTable()
    return ", ".join("*" if z == 0 else table.GetElementSymbol(z) for z in sorted(zs))


def prepare_molecule(source: str | Chem.Mol, *, max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS,
                     trained_elements: Container[int] = QM9_ELEMENTS, allow_unknown_elements: bool = False,
                     largest_fragment: bool = True, num_atom_types: int = NUM_ATOM_TYPES,
                     ) -> tuple[Chem.Mol, list[str]]:
    """Input -> (Mol with all hydrogens, warnings), or MoleculeError. The policy is in the module
    docstring; the order of the checks puts the cheap ones before AddHs and the graph."""
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
    heavy = mol.GetNumHeavyAtoms()
    if max_heavy_atoms and heavy > max_heavy_atoms:
        raise MoleculeError(f"too large: {heavy} heavy atoms, the limit is {max_heavy_atoms} "
                            "(max_heavy_atoms=0 lifts it)")
    has_coords = mol.GetNumConformers() > 0
    mol = Chem.AddHs(mol, addCoords=has_coords)
    if sampled is not None:
        mol.SetProp(SAMPLED_SMILES_PROP, sampled)  # private (not written to SDF); read by prepare_entry
    if mol.GetNumAtoms() == 1:
        return mol, warnings  # no edges and no model involved: any element is fine (see docstring)
    zs = {a.GetAtomicNum() for a in mol.GetAtoms()}
    beyond = {z for z in zs if z >= num_atom_types}
    if beyond:
        raise MoleculeError(f"element(s) {_symbols(beyond)} beyond the model's atom vocabulary (Z < {num_atom_types})")
    unknown = {z for z in zs if z not in trained_elements}
    if unknown and not allow_unknown_elements:
        raise MoleculeError(f"element(s) {_symbols(unknown)} not in the model's training data "
                            f"({_symbols(z for z in range(num_atom_types) if z in trained_elements)}); "
                            "allow_unknown_elements=True samples it anyway, with an untrained embedding")
    if unknown:
        warnings.append(f"element(s) {_symbols(unknown)} never seen in training: expect poor geometry")
    return mol, warnings


# ---- seeds and checks ---------------------------------------------------------------------------
def derive_seed(seed: int, chunk: int, batch: int = 0, retry: int = 0) -> int:
    """A well-mixed 64-bit seed for (chunk, batch, retry) of a run with base `seed`.

    Keys always have the same length and end in a constant, because SeedSequence treats trailing
    zeros as absent ([s, 1] and [s, 1, 0] would collide otherwise).
    """
    key = [seed % 2**64, chunk, batch, retry, 0x5EED]
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0])


# ---- streaming generation -----------------------------------------------------------------------
@dataclass
class _Entry:
    """Book-keeping of one molecule of the current chunk."""

    out: MolOutcome
    mol: Chem.Mol | None = None
    graph: MolGraph | None = None
    coords: list[Tensor] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)  # one per kept conformer
    stereo: StereoConstraints | None = None
    attempted: int = 0  # conformers sampled so far (good or not)

    @property
    def finished(self) -> bool:
        return self.out.error is not None or self.attempted >= self.out.requested


def _as_input(x: str | Chem.Mol | MolInput) -> MolInput:
    return x if isinstance(x, MolInput) else MolInput(x)


def prepare_entry(k: int, x: str | Chem.Mol | MolInput, num_confs: int, *, sampler: SamplerConfig,
                  max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS,
                  trained_elements: Container[int] = QM9_ELEMENTS,
                  allow_unknown_elements: bool = False, largest_fragment: bool = True,
                  num_atom_types: int = NUM_ATOM_TYPES) -> _Entry:
    """Input k -> its _Entry: the Mol with all H, graph and stereo constraints (when sampler.stereo),
    or out.error saying why it cannot be sampled. A lone atom gets its conformers (the origin) here
    and no graph. num_confs is the default count (a MolInput's own count wins). Shared by
    generate_iter and tensors.generate_tensors, so both apply the same per-molecule policy."""
    inp = _as_input(x)
    count = inp.num_confs if inp.num_confs is not None else num_confs
    e = _Entry(MolOutcome(index=k, text=inp.given(), name=inp.name, requested=count))
    if inp.error is not None:
        e.out.error = inp.error
    elif count < 1:
        e.out.error = f"conformer count must be at least 1 (got {count})"
    else:
        try:
            e.mol, e.out.warnings = prepare_molecule(
                inp.source, max_heavy_atoms=max_heavy_atoms, trained_elements=trained_elements,
                allow_unknown_elements=allow_unknown_elements, largest_fragment=largest_fragment,
                num_atom_types=num_atom_types)
            if e.mol.HasProp(SAMPLED_SMILES_PROP):
                e.out.sampled_smiles = e.mol.GetProp(SAMPLED_SMILES_PROP)
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


def generate_iter(inputs: Iterable[str | Chem.Mol | MolInput], num_confs: int = 10, *,
                  model: ScoreNet | None = None, noise: NoiseConfig | None = None, weights: str | None = None,
                  sampler: SamplerConfig | str | None = None, schedule: str | None = None,
                  device: str | torch.device = "cpu", seed: int = 0,
                  max_atoms: int | None = None, progress: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
                  retries: int = DEFAULT_RETRIES, max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS,
                  allow_unknown_elements: bool = False, largest_fragment: bool = True,
                  trained_elements: Iterable[int] | None = None, skip: Container[int] = (),
                  relax: str | RelaxOptions = "none", prune_rms: float | None = None,
                  energy_window: float | None = None, sort_energy: bool = False, stats: RunStats | None = None,
                  ) -> Iterator[MolOutcome]:
    """Generate conformers for a stream of inputs; yield one MolOutcome per input, in input order.

    inputs: SMILES, Mols or MolInput (per-molecule counts, names, known errors); read lazily,
    `chunk_size` at a time, so memory stays bounded for any input length. sampler / schedule:
    names as the CLI's --sampler / --schedule (config.resolve_sampler; default Langevin, paper
    schedule) or a SamplerConfig. Within a chunk,
    conformers of many molecules are sampled together in batches of at most `max_atoms` atoms,
    and a molecule is yielded as soon as it and every molecule before it are finished.
    skip: input indices not to process and not to yield (what a resumed run already has).

    Seeds: chunk c samples with a generator seeded by `seed` (c = 0, as earlier versions did for
    the whole input) or derive_seed(seed, c); retry r of batch b by derive_seed(seed, c, b, r). So
    the output depends on seed, input, chunk_size, max_atoms, device and the skipped set.
    trained_elements: atomic numbers the model knows (default: `model.trained_elements` as set by
    load_model, else H, C, N, O, F). See the module docstring for the per-molecule policy.
    relax: `none`, `mmff`, `mmff94s`, `xtb` or a relax.RelaxOptions: relax each molecule's conformers
    after sampling (relax.py), then drop those more than `energy_window` kcal/mol above its lowest
    and those within `prune_rms` A heavy-atom RMSD of a lower-energy one, and write them lowest
    energy first when `sort_energy`; the flags gain energy, relative_energy and energy_method.
    stats: a RunStats to fill with counts and per-stage timings.
    """
    relax_opts = relax if isinstance(relax, RelaxOptions) else RelaxOptions(relax, prune_rms, energy_window,
                                                                           sort_energy)
    stats = stats if stats is not None else RunStats()
    if model is None:
        model, noise = load_model(weights, device)
    noise = noise or NoiseConfig()
    sampler = resolve_sampler(sampler, schedule)
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    if retries < 0:
        raise ValueError("retries must be >= 0")
    known, num_atom_types = model_vocabulary(model, trained_elements)

    def prepare(k: int, x: str | Chem.Mol | MolInput) -> _Entry:
        return prepare_entry(k, x, num_confs, sampler=sampler, max_heavy_atoms=max_heavy_atoms,
                             trained_elements=known, allow_unknown_elements=allow_unknown_elements,
                             largest_fragment=largest_fragment, num_atom_types=num_atom_types)

    from tqdm import tqdm

    bar = tqdm(total=len(inputs) if isinstance(inputs, Sized) else None, desc="generate", unit="mol",
               disable=not progress, file=sys.stderr)
    try:
        stream = enumerate(inputs)
        for chunk_no in range(sys.maxsize):
            # Chunks are fixed ranges of input positions, whatever is skipped or fails, so the
            # seeds of later chunks do not depend on earlier molecules.
            chunk = list(islice(stream, chunk_size))
            if not chunk:
                break
            entries = [prepare(k, x) for k, x in chunk if k not in skip]

            def status(msg: str, chunk_no: int = chunk_no) -> None:
                bar.set_postfix_str(f"chunk {chunk_no + 1}, {msg}", refresh=True)

            for out in _timed(_sample_chunk(entries, model, noise, sampler, device, seed, chunk_no, max_atoms,
                                            retries, status if progress else None, stats), stats):
                if relax_opts.active and progress:
                    status(f"relaxing molecule {out.index} ({relax_opts.method})")
                _relax_outcome(out, relax_opts, stats)
                bar.update(1)
                yield out
    finally:
        bar.close()


def center_conformers(mol: Chem.Mol) -> Chem.Mol:
    """Translate every conformer of `mol` (in place) so that the centroid of all its atoms,
    hydrogens included and unweighted, is at the origin. Returns `mol`. The CLI writes its SDF
    so; generate / generate_iter return the sampler's frame (as generate_tensors does)."""
    from rdkit.Chem import rdMolTransforms

    for conf in mol.GetConformers():
        c = rdMolTransforms.ComputeCentroid(conf, ignoreHs=False)
        shift = np.eye(4)
        shift[:3, 3] = [-c.x, -c.y, -c.z]
        rdMolTransforms.TransformConformer(conf, shift)
    return mol


def _timed(items: Iterator[MolOutcome], stats: RunStats) -> Iterator[MolOutcome]:
    """items, with the time spent producing them added to stats.sample_s."""
    while True:
        t0 = time.perf_counter()
        x = next(items, None)
        stats.sample_s += time.perf_counter() - t0
        if x is None:
            return
        yield x


def _relax_outcome(out: MolOutcome, opts: RelaxOptions, stats: RunStats) -> None:
    """Relax and select out.mol's conformers (opts; relax.py) in place, updating its flags, warnings
    and `stats`; then count the conformers written flagged broken."""
    if opts.active and out.mol is not None:
        t0 = time.perf_counter()
        n = out.mol.GetNumConformers()
        try:
            res, flags = relax_flags(out.mol, out.conf_flags, opts)
        except Exception as exc:  # RDKit / tblite raising on one odd molecule must not stop the run
            out.warnings.append(f"relax ({opts.method}) failed, conformers left unrelaxed: {type(exc).__name__}: {exc}")
            out.conf_flags = [{**f, "energy": "nan", "relative_energy": "nan", "energy_method": "none"}
                              for f in out.conf_flags]
            stats.fallback += 1
        else:
            stats.relaxed += n
            stats.dropped.update({k: v for k, v in res.dropped.items() if v})
            stats.fallback += any(m in ("UFF", "none") for m in res.methods)
            out.warnings.extend(res.warnings)
            out.mol, out.conf_flags = res.mol, flags
            if res.mol is None:
                why = f"all {n} conformers dropped after relaxing ({'; '.join(res.warnings)})"
                out.error = why if out.error is None else f"{out.error}; {why}"
        stats.relax_s += time.perf_counter() - t0
    stats.broken_written += sum(f.get("quality", "ok") != "ok" for f in out.conf_flags)


def _sample_chunk(entries: list[_Entry], model: ScoreNet, noise: NoiseConfig, sampler: SamplerConfig,
                  device: str | torch.device, seed: int, chunk_no: int, max_atoms: int,
                  retries: int, status: Callable[[str], None] | None = None,
                  stats: RunStats | None = None) -> Iterator[MolOutcome]:
    """Sample every entry with a graph; yield finished outcomes in order as soon as possible."""
    todo = [e for e in entries if e.graph is not None and e.out.error is None]
    next_out = 0

    def ready() -> Iterator[MolOutcome]:
        nonlocal next_out
        while next_out < len(entries) and entries[next_out].finished:
            e = entries[next_out]
            next_out += 1
            out = _finish(e, retries)
            e.coords, e.mol, e.graph = [], None, None  # the outcome owns the result now; free the rest
            yield out

    yield from ready()
    if not todo:
        return
    packed = PackedGraphs([e.graph for e in todo])
    stereo = [e.stereo if e.stereo is not None else StereoConstraints.empty() for e in todo]
    plan = plan_batches([e.graph.num_atoms for e in todo], [e.out.requested for e in todo],
                        max_atoms or default_max_atoms(device))
    gen = torch.Generator(device=device).manual_seed(seed if chunk_no == 0 else derive_seed(seed, chunk_no))
    for b, pieces in enumerate(plan):
        mol_ids = torch.cat([torch.full((c,), m, dtype=torch.long) for m, c in pieces])

        def on_level(done: int, total: int, b: int = b) -> None:
            if status is not None:
                status(f"batch {b + 1}/{len(plan)}: step {done}/{total}")

        pos = _sample(model, packed, stereo, mol_ids, noise, sampler, device, gen, on_level)
        for r in range(1, retries + 1):
            # Non-finite (None) and broken (quality.py) conformers are resampled alike.
            failed = [g for g, p in enumerate(pos) if p is None or p[1]["quality"] != "ok"]
            if not failed:
                break
            if stats is not None:
                stats.broken_resampled += sum(pos[g] is not None for g in failed)
            # Only the failed conformers, in a batch of their own with a seed of their own: the good
            # ones are kept as they are, and the retry is reproducible.
            retry_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, chunk_no, b, r))
            again = _sample(model, packed, stereo, mol_ids[failed], noise, sampler, device, retry_gen, on_level)
            for g, p in zip(failed, again):
                if p is not None and (pos[g] is None or p[1]["quality"] == "ok"):
                    pos[g] = p  # a broken conformer is kept (flagged) if its retries do no better
        for m, p in zip(mol_ids.tolist(), pos):
            e = todo[m]
            e.attempted += 1
            if p is not None:
                e.coords.append(p[0])
                e.flags.append(p[1])
        yield from ready()


def _sample(model: ScoreNet, packed: PackedGraphs, stereo: list[StereoConstraints], mol_ids: Tensor,
            noise: NoiseConfig, sampler: SamplerConfig, device: str | torch.device, gen: torch.Generator,
            callback: Callable[[int, int], None] | None = None) -> list[tuple[Tensor, dict] | None]:
    """Sample one batch; per conformer ([n, 3] CPU coordinates, flags), or None if the coordinates
    are non-finite / exploded (those are resampled). Stereo guidance acts in the last levels and
    mirror images are reflected at the end (stereo.py); broken-but-finite conformers (quality.py:
    bond lengths, clashes, connectivity; resampled by the caller, kept flagged if that fails) and
    remaining stereo mismatches are flagged, with the failed tests as quality_reasons."""
    out = sample_batch(model, packed, mol_ids, noise, sampler, device, gen, stereo, callback)
    bad = out.bad.cpu().tolist()
    broken = out.broken.cpu().tolist()
    reasons = defect_reasons(conformer_defects(out.pos, out.batch)) if any(broken) else None
    ok = out.stereo_ok.cpu().tolist()
    pos = out.pos.cpu()
    ptr = out.batch.atom_ptr.cpu().tolist()
    return [None if bad[g] else (pos[ptr[g]:ptr[g + 1]],
                                 {"stereo_ok": int(ok[g]), **quality_flags(reasons[g] if broken[g] else [])})
            for g in range(len(bad))]


def _finish(e: _Entry, retries: int) -> MolOutcome:
    out = e.out
    if out.error is not None:
        return out
    missing = out.requested - len(e.coords)
    why = f"non-finite or exploded coordinates (NaN/inf or |x| > {POS_LIMIT:g} A) after {retries} retries"
    if len(e.coords) == 0:
        out.error = f"all {out.requested} conformers failed: {why}"
        return out
    if missing:
        out.error = f"{missing} of {out.requested} conformers missing ({len(e.coords)} written): {why}"
    out.mol = set_conformers(e.mol, e.coords)
    out.conf_flags = list(e.flags)
    return out


def generate(inputs: Sequence[str | Chem.Mol | MolInput], num_confs: int | Sequence[int] = 10, *,
             model: ScoreNet | None = None, noise: NoiseConfig | None = None, weights: str | None = None,
             sampler: SamplerConfig | str | None = None, schedule: str | None = None,
             device: str | torch.device = "cpu", seed: int = 0,
             max_atoms: int | None = None, progress: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
             retries: int = DEFAULT_RETRIES, max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS,
             allow_unknown_elements: bool = False, largest_fragment: bool = True,
             trained_elements: Iterable[int] | None = None, relax: str | RelaxOptions = "none",
             prune_rms: float | None = None, energy_window: float | None = None,
             sort_energy: bool = False) -> GenerationResult:
    """Generate conformers for each input (SMILES or Mol) with annealed Langevin dynamics.

    num_confs: one count for all inputs or one per input. Conformers of many molecules are sampled
    together in batches of at most `max_atoms` atoms. Deterministic for a given seed, batch plan
    and device. Without `model`, the checkpoint `weights` (default: the shipped one) is loaded.
    All results are held in memory; for large inputs stream with generate_iter. The remaining
    options are generate_iter's (relax, prune_rms, energy_window, sort_energy: relax.py); the run's
    counts and timings are in result.stats.
    """
    counts = [num_confs] * len(inputs) if isinstance(num_confs, int) else list(num_confs)
    if len(counts) != len(inputs):
        raise ValueError("num_confs must be an int or have one entry per input")
    items = []
    for x, c in zip(inputs, counts):
        inp = _as_input(x)
        items.append(inp if inp.num_confs is not None else MolInput(inp.source, c, inp.text, inp.name, inp.error))
    result = GenerationResult([None] * len(items))
    for out in generate_iter(items, model=model, noise=noise, weights=weights, sampler=sampler, schedule=schedule,
                             device=device,
                             seed=seed, max_atoms=max_atoms, progress=progress, chunk_size=chunk_size,
                             retries=retries, max_heavy_atoms=max_heavy_atoms,
                             allow_unknown_elements=allow_unknown_elements, largest_fragment=largest_fragment,
                             trained_elements=trained_elements, relax=relax, prune_rms=prune_rms,
                             energy_window=energy_window, sort_energy=sort_energy, stats=result.stats):
        result.mols[out.index] = out.mol
        result.flags[out.index] = out.conf_flags
        if out.error is not None:
            result.errors[out.index] = out.error
        if out.warnings:
            result.warnings[out.index] = out.warnings
    return result
