"""Conformers as tensors that stay on the device: the API for GPU pipelines.

    res = generate_tensors(graphs_or_mols, num_confs=8, device="cuda", seed=0)
    res.pos[res.atom_ptr[g]:res.atom_ptr[g + 1]]   # conformer g, [n, 3], of input res.mol_index[g]

Inputs are MolGraphs (no RDKit involved: this module imports without RDKit, e.g. on a GPU box
that has none) or, through prepare.prepare_entry, SMILES / RDKit Mols / MolInput with exactly the
checks of `generate` (fragments, elements, size). All inputs are sampled as one chunk: batches of
at most `max_atoms` atoms (sampler.plan_batches), one torch.Generator seeded with `seed` running
through them in order, exactly as generate_iter samples its first chunk; so SMILES in gives the
same coordinates as `generate(..., seed)` before any retry.

Device residency: the sampler loop itself never waits on the host (sampler.sample is called
without a progress callback; guidance and the fused step are pure device work). Per batch there
is host work before the loop (building the batch; with stereo constraints, make_guidance reads
the batch's molecule ids back) and one after it: quality.py reads the per-conformer atom counts to
plan its all-pairs checks. The flags of every batch are kept on the device and concatenated at the
end. Nothing is resampled: `ok` says which conformers are usable (the CLI / generate resample
non-finite and broken ones, which needs the host to know which).

Stereo: with Mols / SMILES the input's tetrahedral centres and cis/trans double bonds guide the
last levels and mirror images are reflected, as in `generate` (when the schedule's stereo is on). A bare
MolGraph carries no stereo information (only atomic numbers and bond types), so its conformers
get random handedness, like the official ConfGF; build it from a Mol if you need stereo.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..chem.stereo import StereoConstraints
from ..config import NoiseConfig, Runtime, Schedule, api_schedule, resolve_schedule
from ..graph import MolGraph, offsets
from ..model.checkpoint import load_model
from ..model.elements import DEFAULT_MAX_HEAVY_ATOMS, check_elements, model_vocabulary
from ..model.loaded import LoadedModel
from ..model.network import ScoreNet

# The one-batch sampler lives in sampling/batch.py (shared with pipeline/generate.py); re-exported here.
from .batch import POS_LIMIT, SampledBatch, bad_conformers, model_graphs, sample_batch
from .sampler import default_max_atoms, plan_batches


@dataclass
class TensorConformers:
    """Conformers of many molecules as flat tensors, all on the sampling device.

    pos: [N_total, 3] float32; conformer g is pos[atom_ptr[g]:atom_ptr[g + 1]];
    atom_ptr: [G+1] int64 per-conformer atom offsets; z: [N_total] int64 atomic numbers;
    mol_index: [G] int64 input index of each conformer (non-decreasing: the conformers of input k
    are consecutive and in input order; failed inputs have none);
    ok: [G] bool finite, within POS_LIMIT and not broken (quality.py: bond lengths, 1-3 / 1-4
    clashes; without RDKit installed that test is skipped and ok means finite and within bounds);
    stereo_ok: [G] bool every stereo element of the input reproduced (True when the input had
    none, e.g. every MolGraph input);
    errors: {input index: why it has no conformers}; warnings: {input index: notes} (host dicts).
    Atom order within a conformer is the input's (the Mol's with all hydrogens, or the MolGraph's).
    """

    pos: Tensor
    atom_ptr: Tensor
    mol_index: Tensor
    z: Tensor
    ok: Tensor
    stereo_ok: Tensor
    errors: dict[int, str] = field(default_factory=dict)
    warnings: dict[int, list[str]] = field(default_factory=dict)

    @property
    def num_conformers(self) -> int:
        """G (from the tensor's shape: no device sync)."""
        return int(self.mol_index.shape[0])

    def to(self, device: torch.device | str) -> TensorConformers:
        tensors = {k: getattr(self, k).to(device) for k in ("pos", "atom_ptr", "mol_index", "z", "ok", "stereo_ok")}
        return TensorConformers(**tensors, errors=dict(self.errors), warnings=dict(self.warnings))


def _graph_problem(graph: MolGraph, known: Container[int], allow_unknown_elements: bool,
                   num_atom_types: int) -> tuple[str | None, list[str]]:
    """(why a MolGraph input cannot be sampled or None, warnings): elements.py's policy, as
    prepare.prepare_molecule applies it to Mols (the size limit applies to Mol / SMILES inputs only)."""
    if graph.num_atoms == 0:
        return "molecule has no atoms", []
    if graph.num_atoms == 1:
        return None, []  # placed at the origin without the model: any element is fine
    return check_elements(set(graph.z.tolist()), known, allow_unknown_elements=allow_unknown_elements,
                          num_atom_types=num_atom_types)


@dataclass
class _Job:
    """One input that gets conformers: its graph (or a lone atom), count, stereo constraints."""

    index: int
    z: Tensor  # [n]
    count: int
    graph: MolGraph | None  # None: a single atom, placed at the origin without sampling
    stereo: StereoConstraints | None


# generate_tensors embeds nothing (no RDKit), so it samples from noise: its default is what
# resolve_schedule gives for init "random" with the projected sampler, the `quick` schedule (44
# network evaluations, the fastest from-noise schedule measured, docs/samplers.md). generate's
# from-noise mode `noise` oversamples and selects by MMFF94 energy, which needs RDKit too.
DEFAULT_SAMPLER = "project"


class DeviceError(RuntimeError):
    """The requested device cannot be used in this process (no CUDA, no such GPU)."""


def check_device(device: str | torch.device) -> torch.device:
    """torch.device(device) if this process can run on it, else DeviceError with one line naming the
    fix: torch itself answers a CUDA request on a CPU-only build with a bare AssertionError from deep
    inside Module.to."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"device {device!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r} requested but no CUDA device is available "
                              "(torch.cuda.is_available() is False); use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(device)!r}: this process sees {torch.cuda.device_count()} CUDA device(s)")
    return dev


def generate_tensors(inputs: Sequence[MolGraph | object], num_confs: int | Sequence[int] = 10, *,
                     model: ScoreNet | LoadedModel | None = None, noise: NoiseConfig | None = None,
                     weights: str | None = None,
                     sampler: str | None = None, schedule: str | Schedule | None = None,
                     runtime: Runtime | None = None, device: str | torch.device = "cpu", seed: int = 0,
                     max_atoms: int | None = None, max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS,
                     allow_unknown_elements: bool = False, largest_fragment: bool = True,
                     trained_elements: Iterable[int] | None = None, threads: int | None = None) -> TensorConformers:
    """Sample conformers for every input and return them as device tensors (TensorConformers).

    inputs: MolGraph (RDKit-free; no stereo information), or SMILES / RDKit Mol / MolInput
    (needs RDKit; prepared exactly as `generate` does, stereo guidance when the schedule's stereo is on).
    num_confs: one count for all inputs or one per input (a MolInput's own count wins).
    model: a LoadedModel (load_model's) or a bare ScoreNet with `noise` (default NoiseConfig()).
    Without `model`, the checkpoint `weights` (default: the shipped QM9 model) is loaded on `device`;
    one model samples every input (no per-molecule choice of weights as in `generate`: for
    drug-like inputs pass the drug-like weights, checkpoint.default_weights_path("drugs_small.pt")).
    Deterministic for a given seed, input, max_atoms and device. An input that cannot be used gets
    no conformers and an entry in `errors`; lone atoms sit at the origin (ok, not sampled).
    max_heavy_atoms (default elements.DEFAULT_MAX_HEAVY_ATOMS), allow_unknown_elements,
    largest_fragment, trained_elements: as `generate` (max_heavy_atoms and largest_fragment apply
    to Mol / SMILES inputs only; a MolGraph is checked for its elements).
    sampler / schedule / runtime: as `generate`'s (config.resolve_schedule), except that the
    start is always noise: there is no RDKit embedding here, so no ETKDG warm start and no
    energy-based selection of oversampled conformers. The default is therefore the from-noise
    projected sampler, schedule `quick` (44 network evaluations; sampler="langevin" = the paper's
    5000); a warm-start or oversampling schedule (warm, noise) is a ValueError pointing to
    `generate`. A device this process cannot use raises DeviceError (a RuntimeError) before
    anything loads.
    threads: CPU threads for torch and the C++ kernels during the call (threads.py; default the
    cores available minus those other processes keep busy, at most torch.get_num_threads());
    torch's count is restored after.
    """
    check_device(device)
    from .. import threads as threads_mod

    with threads_mod.use(threads_mod.resolve_for_call(threads)):
        return _generate_tensors(inputs, num_confs, model=model, noise=noise, weights=weights, sampler=sampler,
                                 schedule=schedule, runtime=runtime, device=device, seed=seed, max_atoms=max_atoms,
                                 max_heavy_atoms=max_heavy_atoms,
                                 allow_unknown_elements=allow_unknown_elements, largest_fragment=largest_fragment,
                                 trained_elements=trained_elements)


def _generate_tensors(inputs: Sequence[MolGraph | object], num_confs: int | Sequence[int], *,
                      model: ScoreNet | LoadedModel | None, noise: NoiseConfig | None, weights: str | None,
                      sampler: str | None, schedule: str | Schedule | None, runtime: Runtime | None,
                      device: str | torch.device, seed: int,
                      max_atoms: int | None, max_heavy_atoms: int | None, allow_unknown_elements: bool,
                      largest_fragment: bool, trained_elements: Iterable[int] | None) -> TensorConformers:
    """generate_tensors' work, on the thread budget it set."""
    loaded = load_model(weights, device) if model is None else LoadedModel.of(model, noise)
    model, noise = loaded.model, loaded.noise
    # No sampler and no schedule named: DEFAULT_SAMPLER from noise (schedule quick); the paper's
    # 5000-step Langevin is sampler="langevin" (it took 44 s for 6 small conformers as a default).
    if sampler is None and schedule is None:
        sampler, runtime = resolve_schedule(sampler=DEFAULT_SAMPLER, init="random"), runtime or Runtime()
    else:
        sampler, runtime = api_schedule(sampler, schedule, runtime)
    if sampler.init != "random" or sampler.oversample > 1:
        raise ValueError(f"generate_tensors samples from noise only (no RDKit: no ETKDG warm start, no energy-based "
                         f"selection), so schedule {sampler.name!r} with init={sampler.init!r}, "
                         f"oversample={sampler.oversample} cannot run here: use a from-noise schedule such as "
                         "'quick' (the default), or generate / generate_iter")
    counts = [num_confs] * len(inputs) if isinstance(num_confs, int) else list(num_confs)
    if len(counts) != len(inputs):
        raise ValueError("num_confs must be an int or have one entry per input")
    known, num_atom_types = model_vocabulary(loaded, trained_elements)

    jobs: list[_Job] = []
    errors: dict[int, str] = {}
    warnings: dict[int, list[str]] = {}
    for k, (x, count) in enumerate(zip(inputs, counts)):
        if isinstance(x, MolGraph):
            why, notes = ((f"conformer count must be at least 1 (got {count})", []) if count < 1
                          else _graph_problem(x, known, allow_unknown_elements, num_atom_types))
            if notes:
                warnings[k] = notes
            if why is not None:
                errors[k] = why
                continue
            jobs.append(_Job(k, x.z.long(), count, x if x.num_atoms > 1 else None, None))
            continue
        from .prepare import prepare_entry  # RDKit from here on

        e = prepare_entry(k, x, count, sampler=sampler, max_heavy_atoms=max_heavy_atoms, trained_elements=known,
                          allow_unknown_elements=allow_unknown_elements, largest_fragment=largest_fragment,
                          num_atom_types=num_atom_types)
        if e.out.warnings:
            warnings[k] = list(e.out.warnings)
        if e.out.error is not None:
            errors[k] = e.out.error
            continue
        z = torch.tensor([a.GetAtomicNum() for a in e.mol.GetAtoms()], dtype=torch.long)
        stereo = e.stereo if e.stereo is not None else StereoConstraints.empty()
        jobs.append(_Job(k, z, e.out.requested, e.graph, stereo))

    # Layout of the output, all on the host (sizes are known without touching the device).
    n_conf = torch.tensor([j.z.numel() for j in jobs for _ in range(j.count)], dtype=torch.long)  # [G]
    atom_ptr = offsets(n_conf)  # [G+1]
    mol_index = torch.tensor([j.index for j in jobs for _ in range(j.count)], dtype=torch.long)
    z = torch.cat([j.z.repeat(j.count) for j in jobs]) if jobs else torch.zeros(0, dtype=torch.long)
    sampled = torch.tensor([j.graph is not None for j in jobs for _ in range(j.count)], dtype=torch.bool)  # [G]

    todo = [j for j in jobs if j.graph is not None]
    pos_parts: list[Tensor] = []
    flag_parts: list[tuple[Tensor, Tensor]] = []
    if todo:
        packed = model_graphs([j.graph for j in todo], model)
        # A MolGraph has no stereo information; guidance is built only if some input has any.
        stereo = None
        if any(j.stereo is not None for j in todo):
            stereo = [j.stereo if j.stereo is not None else StereoConstraints.empty() for j in todo]
        plan = plan_batches([j.graph.num_atoms for j in todo], [j.count for j in todo],
                            max_atoms or default_max_atoms(device))
        # One generator through all batches, as generate_iter's first chunk (same coordinates).
        gen = torch.Generator(device=device).manual_seed(seed)
        for pieces in plan:
            mol_ids = torch.cat([torch.full((c,), m, dtype=torch.long) for m, c in pieces])
            out = sample_batch(model, packed, mol_ids, noise, sampler, runtime, device, gen, stereo)
            ok = ~out.bad if out.broken is None else ~(out.bad | out.broken)
            pos_parts.append(out.pos)
            flag_parts.append((ok, out.stereo_ok))

    dev = torch.device(device)
    G, N = int(mol_index.numel()), int(z.numel())
    if pos_parts and bool(sampled.all()):
        pos = torch.cat(pos_parts) if len(pos_parts) > 1 else pos_parts[0]
        ok = torch.cat([f[0] for f in flag_parts])
        stereo_ok = torch.cat([f[1] for f in flag_parts])
    else:
        # Lone atoms interleave with sampled molecules: scatter the sampled conformers into place
        # (indices from the host layout, so still no sync); lone atoms stay at the origin, ok.
        pos = torch.zeros(N, 3, device=dev)
        ok = torch.ones(G, dtype=torch.bool, device=dev)
        stereo_ok = torch.ones(G, dtype=torch.bool, device=dev)
        if pos_parts:
            atom_dest = torch.repeat_interleave(sampled, n_conf).nonzero().squeeze(1).to(dev)
            conf_dest = sampled.nonzero().squeeze(1).to(dev)
            pos[atom_dest] = torch.cat(pos_parts)
            ok[conf_dest] = torch.cat([f[0] for f in flag_parts])
            stereo_ok[conf_dest] = torch.cat([f[1] for f in flag_parts])
    return TensorConformers(pos=pos, atom_ptr=atom_ptr.to(dev), mol_index=mol_index.to(dev), z=z.to(dev), ok=ok,
                            stereo_ok=stereo_ok, errors=errors, warnings=warnings)


__all__ = [
    "DEFAULT_SAMPLER",
    "POS_LIMIT",
    "DeviceError",
    "SampledBatch",
    "TensorConformers",
    "bad_conformers",
    "check_device",
    "generate_tensors",
    "model_vocabulary",
    "sample_batch",
]
