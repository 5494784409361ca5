"""SMILES / RDKit Mols in, conformers out: check, featurise, batch, sample, verify, put coordinates back.

The one place that joins chem (RDKit) -> graph batch -> model -> sampler -> RDKit conformers.

Every input molecule ends either with conformers or with an error that says why; one bad molecule
never stops the others. The policy, case by case (prepare_molecule and generate_iter):

- how each kind of input is prepared or refused (invalid SMILES, salts, elements, size, single
  atoms, counts, duplicates): prepare.py's docstring;
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

import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import torch
from rdkit import Chem
from torch import Tensor

from ..chem.diversity import select_conformers
from ..chem.molecule import etkdg_coordinates, mmff_energies, set_conformers
from ..chem.quality import conformer_defects, defect_reasons, quality_flags
from ..chem.relax import RelaxOptions, relax_flags, relax_per_model
from ..chem.stereo import StereoConstraints
from ..config import NoiseConfig, Runtime, Schedule, resolve_schedule
from ..graph import PackedGraphs
from ..model.checkpoint import load_models
from ..model.elements import Coverage
from ..model.loaded import LoadedModel
from ..model.network import ScoreNet
from ..sampling.batch import POS_LIMIT, bad_conformers, model_graphs, sample_batch  # noqa: F401 (bad_conformers: re-export)

# The per-molecule preparation lives in prepare.py (generate_tensors shares it); re-exported, as
# callers import these names from here.
from ..sampling.prepare import (  # noqa: F401 (re-exports)
    API_TO_CLI,
    SAMPLED_SMILES_PROP,
    Entry,
    MoleculeError,
    MolInput,
    MolOutcome,
    as_input,
    parse_smiles,
    prepare_entry,
    prepare_molecule,
)
from ..sampling.sampler import default_max_atoms, plan_batches
from ..sampling.tensors import check_device
from ..seeds import CHUNK_PURPOSE, MODEL_GROUP_PURPOSE, WARM_START_PURPOSE, derive_seed
from ..threads import ThreadBudget
from ..threads import resolve_for_call as resolve_threads
from ..threads import use as use_threads
from .request import DEFAULT_CHUNK_SIZE, DEFAULT_RETRIES, GenerateRequest  # noqa: F401 (re-exports)


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
    with UFF (MMFF had no parameters) or left unrelaxed; beyond_trained_size: molecules with more
    heavy atoms than the largest the weights were trained on (each has a warning; prepare.py).
    """

    sample_s: float = 0.0
    relax_s: float = 0.0
    broken_resampled: int = 0
    broken_written: int = 0
    relaxed: int = 0
    dropped: Counter = field(default_factory=Counter)
    fallback: int = 0
    beyond_trained_size: int = 0
    per_model: Counter = field(default_factory=Counter)


AnyModel = ScoreNet | LoadedModel
Models = Sequence[AnyModel]


def resolve_models(model: AnyModel | Models | None, noise: NoiseConfig | Sequence[NoiseConfig | None] | None,
                   weights: str | Sequence[str] | None, device: str | torch.device) -> list[LoadedModel]:
    """The run's models, in choice order: `model` (one or several, LoadedModel or a bare ScoreNet;
    `noise` alike: default a LoadedModel's own, else NoiseConfig()), else the checkpoint(s)
    `weights`, else the shipped set."""
    if model is None:
        return load_models(weights, device)
    models = [model] if isinstance(model, (torch.nn.Module, LoadedModel)) else list(model)
    noises = list(noise) if isinstance(noise, Sequence) else [noise] * len(models)
    if not models or len(noises) != len(models):
        raise ValueError("give one noise config per model (or one for all)")
    return [LoadedModel.of(m, n) for m, n in zip(models, noises)]


def tuned_schedule(schedule: Schedule, loaded: LoadedModel) -> Schedule:
    """`schedule` with the model's own measured settings for it (its checkpoint's sampler_defaults
    entry) on every field the caller did not set (config.resolve_schedule's tuned)."""
    return resolve_schedule(schedule, tuned=loaded.meta.sampler_defaults.get(schedule.name))


def generate_iter(inputs: Iterable[str | Chem.Mol | MolInput], num_confs: int | None = None, *,
                  model: ScoreNet | Models | None = None, noise: NoiseConfig | Sequence[NoiseConfig] | None = None,
                  weights: str | Sequence[str] | None = None, skip: Container[int] = (),
                  stats: RunStats | None = None, threads: int | ThreadBudget | None = None,
                  request: GenerateRequest | None = None, **options: Any) -> Iterator[MolOutcome]:
    """Generate conformers for a stream of inputs; yield one MolOutcome per input, in input order.

    inputs: SMILES, Mols or MolInput (per-molecule counts, names, known errors); read lazily,
    `chunk_size` at a time, so memory stays bounded for any input length.

    What to generate: `request` (a request.GenerateRequest, as the CLI builds one), or its settings
    as keywords (`options`: GenerateRequest's fields by name, validated once by
    GenerateRequest.from_api): num_confs, sampler / schedule / runtime, device, seed, max_atoms,
    progress, chunk_size, retries, max_heavy_atoms, allow_unknown_elements, largest_fragment,
    trained_elements, relax, prune_rms, energy_window, sort_energy. sampler / schedule:
    names as the CLI's --sampler / --schedule (config.resolve_schedule; default the `warm`
    schedule: ETKDGv3 conformers noised to 0.5 A, refined by the projected sampler in 24 network
    evaluations; schedule="paper" is the paper's Langevin run from noise), or schedule= a
    config.Schedule built by resolve_schedule (e.g. with overrides). runtime: how the network runs
    (config.Runtime: backend, compile, precision, cuda_graphs; default Runtime()).
    Within a chunk,
    conformers of many molecules are sampled together in batches of at most `max_atoms` atoms,
    and a molecule is yielded as soon as it and every molecule before it are finished.
    skip: input indices not to process and not to yield (what a resumed run already has).

    Seeds: chunk c samples with a generator seeded by `seed` (c = 0, as earlier versions did for
    the whole input) or seeds.derive_seed(seed, c, 0, 0); retry r of batch b by
    seeds.derive_seed(seed, c, b, r) (purpose CHUNK_PURPOSE). So
    the output depends on seed, input, chunk_size, max_atoms, device and the skipped set.
    Models: `model` (a LoadedModel, as load_model returns, or a bare ScoreNet with `noise`; or a
    list of them, `noise` alike), else the checkpoint(s) `weights`,
    else the shipped set (checkpoint.DEFAULT_WEIGHTS_SET: the QM9 model, then the drug-like one).
    With several, each molecule is sampled by the first whose training data covers its elements and
    size (elements.choose_model; MolOutcome.model says which); molecules of one chunk are sampled
    per model, the first model's with the seeds above, model g's with seeds derived from (seed,
    chunk, g, batch, retry), so a run whose molecules all go to the first model is the same as a
    run with that model alone.
    trained_elements: atomic numbers the models know (default: each model's meta.trained_elements,
    from its checkpoint, else H, C, N, O, F). Molecules larger than the model's
    meta.trained_max_heavy_atoms get a warning and are sampled. See the module docstring for the per-molecule policy.
    relax: `none`, `mmff`, `mmff94s`, `xtb`, a relax.RelaxOptions, or one per model: relax each
    molecule's conformers after sampling (relax.py), then drop those more than `energy_window`
    kcal/mol above its lowest and those within `prune_rms` A heavy-atom RMSD of a lower-energy one,
    and write them lowest energy first when `sort_energy`; the flags gain energy, relative_energy
    and energy_method. `auto` (the default): each molecule as the weights that sample it were
    measured best with (their checkpoint's meta.relax_default; none for models built in
    code): the shipped QM9 weights do not relax, the drug-like ones relax with MMFF94.
    stats: a RunStats to fill with counts and per-stage timings.
    threads: CPU threads of the run, shared by torch / the C++ kernels' OpenMP and RDKit's relax
    (threads.py): None = the cores available to the process minus those other processes keep
    busy, at most torch.get_num_threads() (torch's own default, one per core, oversubscribes a
    shared machine; a caller's lower setting is kept); torch's previous thread count is restored
    when the iterator finishes.
    """
    if request is None:
        request = GenerateRequest.from_api(10 if num_confs is None else num_confs, caller="generate_iter", **options)
    elif options:
        raise TypeError(f"generate_iter(): give request= or its settings as keywords, not both ({', '.join(options)})")
    elif num_confs is not None:
        request = dataclasses.replace(request, num_confs=num_confs)
    r = request
    check_device(r.device)  # a clear DeviceError, not torch's AssertionError from inside Module.to
    stats = stats if stats is not None else RunStats()
    budget = threads if isinstance(threads, ThreadBudget) else resolve_threads(threads)
    models = resolve_models(model, noise, weights, r.device)
    relax_opts = relax_per_model(r.relax, [m.meta.relax_default for m in models], r.prune_rms,
                                 r.energy_window, r.sort_energy, threads=budget.threads)
    # RDKit's numThreads=0 means every core of the machine: bound it by the run's budget too.
    relax_opts = [dataclasses.replace(o, threads=budget.threads) if o.threads <= 0 or o.threads > budget.threads
                  else o for o in relax_opts]
    # Coverage.of reads the checkpoint's trained_max_heavy_atoms; a model built in code does not
    # know its training data: no size warning.
    coverages = [Coverage.of(m, r.trained_elements) for m in models]

    def prepare(k: int, x: str | Chem.Mol | MolInput) -> Entry:
        return prepare_entry(k, x, r.num_confs, sampler=r.schedule, max_heavy_atoms=r.max_heavy_atoms,
                             allow_unknown_elements=r.allow_unknown_elements, largest_fragment=r.largest_fragment,
                             coverages=coverages)

    from tqdm import tqdm

    bar = tqdm(total=len(inputs) if isinstance(inputs, Sized) else None, desc="generate", unit="mol",
               disable=not r.progress, file=sys.stderr)
    try:
        yield from _run_chunks(inputs, prepare, models, r.schedule, r.runtime, relax_opts, r.device, r.seed,
                               r.chunk_size, r.max_atoms, r.retries, skip, r.progress, stats, bar, budget)
    finally:
        bar.close()


def _run_chunks(inputs: Iterable[str | Chem.Mol | MolInput], prepare: Callable[[int, object], Entry],
                models: list[LoadedModel], sampler: Schedule, runtime: Runtime,
                relax_opts: list[RelaxOptions],
                device: str | torch.device, seed: int, chunk_size: int, max_atoms: int | None, retries: int,
                skip: Container[int], progress: bool, stats: RunStats, bar, budget: ThreadBudget,
                ) -> Iterator[MolOutcome]:
    """generate_iter's loop over chunks, with torch on the run's thread budget."""
    with use_threads(budget):
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

            for out in _timed(_sample_per_model(entries, models, sampler, runtime, device, seed, chunk_no,
                                                max_atoms, retries, status if progress else None, stats), stats):
                opts = relax_opts[out.model]
                if opts.active and progress:
                    status(f"relaxing molecule {out.index} ({opts.method})")
                _relax_outcome(out, opts, stats)
                stats.beyond_trained_size += out.beyond_trained_size
                if out.mol is not None:
                    stats.per_model[out.model] += 1
                bar.update(1)
                yield out


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


def _sample_per_model(entries: list[Entry], models: list[LoadedModel], sampler: Schedule,
                      runtime: Runtime, device: str | torch.device, seed: int, chunk_no: int, max_atoms: int,
                      retries: int,
                      status: Callable[[str], None] | None = None,
                      stats: RunStats | None = None) -> Iterator[MolOutcome]:
    """_sample_chunk for each model's share of the entries (MolOutcome.model); outcomes in input order,
    each as soon as it and every entry before it are finished."""
    groups: dict[int, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.out.model, []).append(e)
    # Each model samples with its checkpoint's own settings wherever the caller set none
    # (resolve_schedule's tuned), e.g. the drug-like model's smaller warm-start noise.
    tuned = [tuned_schedule(sampler, m) for m in models]
    if len(groups) <= 1:  # the common case: stream straight through
        g = next(iter(groups), 0)
        yield from _sample_chunk(entries, models[g].model, models[g].noise, tuned[g], runtime, device, seed,
                                 chunk_no, max_atoms, retries, status, stats, group=g)
        return
    order = [e.out.index for e in entries]
    done: dict[int, MolOutcome] = {}
    at = 0
    for g in sorted(groups):
        for out in _sample_chunk(groups[g], models[g].model, models[g].noise, tuned[g], runtime, device, seed,
                                 chunk_no, max_atoms, retries, status, stats, group=g):
            done[out.index] = out
            while at < len(order) and order[at] in done:
                yield done.pop(order[at])
                at += 1


def _batch_seed(seed: int, chunk_no: int, group: int, batch: int, retry: int) -> int:
    """The seed of batch `batch`, retry `retry` (0: the first try) of model `group`'s share of a chunk.
    Model 0 keeps the seeds of a one-model run (chunk 0's first tries draw from `seed` itself)."""
    if group == 0:
        if retry == 0:
            return seed if chunk_no == 0 else derive_seed(seed, chunk_no, 0, 0, purpose=CHUNK_PURPOSE)
        return derive_seed(seed, chunk_no, batch, retry, purpose=CHUNK_PURPOSE)
    return derive_seed(seed, chunk_no, group, batch, retry, purpose=MODEL_GROUP_PURPOSE)


def _sample_chunk(entries: list[Entry], model: ScoreNet, noise: NoiseConfig, sampler: Schedule,
                  runtime: Runtime, device: str | torch.device, seed: int, chunk_no: int, max_atoms: int,
                  retries: int, status: Callable[[str], None] | None = None,
                  stats: RunStats | None = None, group: int = 0) -> Iterator[MolOutcome]:
    """Sample every entry with a graph (with `model`, the run's model number `group`); yield finished
    outcomes in order as soon as possible."""
    todo = [e for e in entries if e.graph is not None and e.out.error is None]
    next_out = 0

    def ready() -> Iterator[MolOutcome]:
        nonlocal next_out
        while next_out < len(entries) and entries[next_out].finished:
            e = entries[next_out]
            next_out += 1
            out = _finish(e, retries, (sampler.select_window, sampler.select_temperature)
                          if sampler.init == "random" else None)
            e.coords, e.mol, e.graph = [], None, None  # the outcome owns the result now; free the rest
            yield out

    yield from ready()
    if not todo:
        return
    if sampler.init == "random" and sampler.oversample > 1:
        for e in todo:
            e.oversample = sampler.oversample
    packed = model_graphs([e.graph for e in todo], model)
    stereo = [e.stereo if e.stereo is not None else StereoConstraints.empty() for e in todo]
    plan = plan_batches([e.graph.num_atoms for e in todo], [e.to_sample for e in todo],
                        max_atoms or default_max_atoms(device))
    # One generator through the chunk's first tries; each retry has its own (reproducible) seed.
    gen = torch.Generator(device=device).manual_seed(_batch_seed(seed, chunk_no, group, 0, 0))
    embedded = 0
    for b, pieces in enumerate(plan):
        if sampler.init == "etkdg":
            # The warm start embeds each batch's molecules just before the batch samples, not the
            # whole chunk up front: the first records are written after one batch's embeddings
            # (seconds), not after the chunk's (minutes for 200 drug-size molecules), and the bar
            # says which molecule is embedding. Seeds are per molecule, so the order changes nothing.
            for m, _ in pieces:
                e = todo[m]
                if e.init_coords is None and e.out.error is None:
                    embedded += 1
                    if status is not None:
                        status(f"embedding ETKDG starts, molecule {e.out.index} ({embedded}/{len(todo)})")
                    _embed_start(e, seed, chunk_no, sampler)
            # A molecule RDKit could not embed now has its error: its conformers leave the batch.
            pieces = [(m, c) for m, c in pieces if todo[m].out.error is None]
            if not pieces:
                yield from ready()
                continue
        mol_ids = torch.cat([torch.full((c,), m, dtype=torch.long) for m, c in pieces])

        def on_level(done: int, total: int, b: int = b) -> None:
            if status is not None:
                status(f"batch {b + 1}/{len(plan)}: step {done}/{total}")

        pos = _sample(model, packed, stereo, mol_ids, noise, sampler, runtime, device, gen, on_level,
                      _starts(todo, mol_ids, sampler))
        for r in range(1, retries + 1):
            # Non-finite (None) and broken (quality.py) conformers are resampled alike.
            failed = [g for g, p in enumerate(pos) if p is None or p[1]["quality"] != "ok"]
            if not failed:
                break
            if stats is not None:
                stats.broken_resampled += sum(pos[g] is not None for g in failed)
            # Only the failed conformers, in a batch of their own with a seed of their own: the good
            # ones are kept as they are, and the retry is reproducible.
            retry_gen = torch.Generator(device=device).manual_seed(_batch_seed(seed, chunk_no, group, b, r))
            again = _sample(model, packed, stereo, mol_ids[failed], noise, sampler, runtime, device, retry_gen,
                            on_level,
                            _starts(todo, mol_ids[failed], sampler))
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


def _embed_start(e: Entry, seed: int, chunk_no: int, sampler: Schedule) -> None:
    """Warm start (ProjectSchedule.init = "etkdg"): ETKDGv3 conformers for entry e, seeded by (seed,
    chunk, input index), a diverse subset of init_oversample x as many; an entry RDKit cannot embed
    at all gets an error."""
    e.init_coords, note = etkdg_coordinates(e.mol, e.out.requested,
                                            derive_seed(seed, chunk_no, e.out.index, purpose=WARM_START_PURPOSE),
                                            oversample=sampler.init_oversample)
    if e.init_coords is None:
        e.out.error = note
    elif note is not None:
        e.out.warnings.append(note)


def _starts(todo: list[Entry], mol_ids: Tensor, sampler: Schedule) -> Tensor | None:
    """[N, 3] warm-start coordinates for the conformers mol_ids of a batch, in batch order; None
    without a warm start."""
    if sampler.init != "etkdg":
        return None
    return torch.cat([todo[m].next_start() for m in mol_ids.tolist()])


def _sample(model: ScoreNet, packed: PackedGraphs, stereo: list[StereoConstraints], mol_ids: Tensor,
            noise: NoiseConfig, sampler: Schedule, runtime: Runtime, device: str | torch.device,
            gen: torch.Generator,
            callback: Callable[[int, int], None] | None = None,
            pos_init: Tensor | None = None) -> list[tuple[Tensor, dict] | None]:
    """Sample one batch; per conformer ([n, 3] CPU coordinates, flags), or None if the coordinates
    are non-finite / exploded (those are resampled). Stereo guidance acts in the last levels and
    mirror images are reflected at the end (stereo.py); broken-but-finite conformers (quality.py:
    bond lengths, clashes, connectivity; resampled by the caller, kept flagged if that fails) and
    remaining stereo mismatches are flagged, with the failed tests as quality_reasons."""
    out = sample_batch(model, packed, mol_ids, noise, sampler, runtime, device, gen, stereo, callback, pos_init)
    bad = out.bad.cpu().tolist()
    broken = out.broken.cpu().tolist()
    reasons = defect_reasons(conformer_defects(out.pos, out.batch)) if any(broken) else None
    ok = out.stereo_ok.cpu().tolist()
    pos = out.pos.cpu()
    ptr = out.batch.atom_ptr.cpu().tolist()
    return [None if bad[g] else (pos[ptr[g]:ptr[g + 1]],
                                 {"stereo_ok": int(ok[g]), **quality_flags(reasons[g] if broken[g] else [])})
            for g in range(len(bad))]


def _finish(e: Entry, retries: int, select: tuple[float | None, float | None] | None = None) -> MolOutcome:
    """select: (select_window, select_temperature) of an oversampled run from noise, or None."""
    out = e.out
    if out.error is not None:
        return out
    if len(e.coords) > out.requested:  # oversampled from noise: keep a diverse `requested` of the good ones
        window, temperature = select if select is not None else (None, None)
        energies = mmff_energies(e.mol, e.coords) if window is not None or temperature is not None else None
        keep = select_conformers(e.mol, e.coords, e.flags, out.requested, energies, window, temperature)
        e.coords, e.flags = [e.coords[k] for k in keep], [e.flags[k] for k in keep]
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


def generate(inputs: Sequence[str | Chem.Mol | MolInput], num_confs: int | Sequence[int] | None = None, *,
             model: ScoreNet | Models | None = None, noise: NoiseConfig | Sequence[NoiseConfig] | None = None,
             weights: str | Sequence[str] | None = None, threads: int | None = None,
             request: GenerateRequest | None = None, **options: Any) -> GenerationResult:
    """Generate conformers for each input (SMILES or Mol) with the score model (by default from
    ETKDG warm starts, schedule `warm`; see generate_iter for sampler / schedule).

    num_confs: one count for all inputs or one per input. Conformers of many molecules are sampled
    together in batches of at most `max_atoms` atoms. Deterministic for a given seed, batch plan
    and device. Without `model`, the checkpoint(s) `weights` (default: the shipped set, QM9 then
    drug-like, chosen per molecule; see generate_iter) are loaded.
    All results are held in memory; for large inputs stream with generate_iter. The settings
    (`request`, or its fields as keywords: sampler, schedule, runtime, device, seed, relax, ...)
    are generate_iter's (relax, prune_rms, energy_window, sort_energy: relax.py; threads:
    threads.py, default the cores available minus those other processes keep busy); the run's
    counts and timings are in result.stats.
    """
    if request is None:
        request = GenerateRequest.from_api(caller="generate", **options)
    elif options:
        raise TypeError(f"generate(): give request= or its settings as keywords, not both ({', '.join(options)})")
    num_confs = request.num_confs if num_confs is None else num_confs
    counts = [num_confs] * len(inputs) if isinstance(num_confs, int) else list(num_confs)
    if len(counts) != len(inputs):
        raise ValueError("num_confs must be an int or have one entry per input")
    items = []
    for x, c in zip(inputs, counts):
        inp = as_input(x)
        items.append(inp if inp.num_confs is not None else MolInput(inp.source, c, inp.text, inp.name, inp.error))
    result = GenerationResult([None] * len(items))
    for out in generate_iter(items, model=model, noise=noise, weights=weights, stats=result.stats, threads=threads,
                             request=request):
        result.mols[out.index] = out.mol
        result.flags[out.index] = out.conf_flags
        if out.error is not None:
            result.errors[out.index] = out.error
        if out.warnings:
            result.warnings[out.index] = out.warnings
    return result
