"""Conformers as tensors that stay on the device: the API for GPU pipelines.

    res = generate_tensors(graphs_or_mols, num_confs=8, device="cuda", seed=0)
    res.pos[res.atom_ptr[g]:res.atom_ptr[g + 1]]   # conformer g, [n, 3], of input res.mol_index[g]

Inputs are MolGraphs (no RDKit involved: this module imports without RDKit, e.g. on a GPU box
that has none) or, through pipeline.prepare_entry, SMILES / RDKit Mols / MolInput with exactly the
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
last levels and mirror images are reflected, as in `generate` (when sampler.stereo). A bare
MolGraph carries no stereo information (only atomic numbers and bond types), so its conformers
get random handedness, like the official ConfGF; build it from a Mol if you need stereo.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .checkpoint import QM9_ELEMENTS, load_model
from .config import NUM_ATOM_TYPES, NoiseConfig, SamplerConfig, resolve_sampler
from .graph import GraphBatch, MolGraph, PackedGraphs
from .model import ScoreNet
from .quality import broken_conformers
from .sampler import default_max_atoms, plan_batches, sample
from .stereo import StereoConstraints, make_guidance

# Coordinates beyond this (angstrom) count as an exploded conformer: sampling starts at N(0, 1)
# and real molecules are a few nm at most, so 1e4 is far outside anything a working run produces.
POS_LIMIT = 1e4


def bad_conformers(pos: Tensor, node_graph: Tensor, num_graphs: int, limit: float = POS_LIMIT) -> Tensor:
    """[G] bool: conformers with any non-finite coordinate or any |x| > limit.

    pos: [N, 3]; node_graph: [N] conformer of each atom.
    """
    bad_atom = ~torch.isfinite(pos).all(1) | (pos.abs() > limit).any(1)  # NaN > limit is False: isfinite catches it
    hits = torch.zeros(num_graphs, dtype=torch.long, device=pos.device)
    hits.index_add_(0, node_graph.to(pos.device), bad_atom.long())
    return hits > 0


def model_vocabulary(model: ScoreNet, trained_elements: Iterable[int] | None = None) -> tuple[frozenset[int], int]:
    """(atomic numbers the model was trained on, size of its atom embedding table).

    trained_elements overrides the model's own `trained_elements` (set by load_model); checkpoints
    without one are taken to be QM9 (H, C, N, O, F).
    """
    known = frozenset(trained_elements if trained_elements is not None
                      else getattr(model, "trained_elements", QM9_ELEMENTS))
    num_atom_types = getattr(getattr(model, "config", None), "num_atom_types", NUM_ATOM_TYPES)
    return known, num_atom_types


# ---- one batch on the device ----------------------------------------------------------------------
@dataclass
class SampledBatch:
    """One sampled GraphBatch, everything on the device.

    pos: [N, 3] final coordinates (mirror images reflected when stereo is on);
    bad: [G] non-finite or |x| > POS_LIMIT (see bad_conformers), judged before the mirror fix;
    stereo_ok: [G] every stereo element of the input reproduced (True without constraints);
    broken: [G] quality.broken_conformers (None where RDKit, which supplies the covalent radii of
    that test, is not installed).
    """

    batch: GraphBatch
    pos: Tensor
    bad: Tensor
    stereo_ok: Tensor
    broken: Tensor | None


def sample_batch(model: ScoreNet, packed: PackedGraphs, mol_ids: Tensor, noise: NoiseConfig,
                 sampler: SamplerConfig, device: str | torch.device, generator: torch.Generator,
                 stereo: Sequence[StereoConstraints] | None = None,
                 callback: Callable[[int, int], None] | None = None) -> SampledBatch:
    """Sample the conformers `mol_ids` ([G] int64, indices into `packed`) in one batch.

    stereo[m]: constraints of packed molecule m (None: no stereo information at all, no guidance
    and stereo_ok all True). Shared by pipeline.generate_iter and generate_tensors, so both sample
    exactly alike; callback goes to sampler.sample (None keeps the loop free of host syncs).
    """
    batch = packed.batch(mol_ids).to(device)
    guidance, finalize = make_guidance(stereo, batch, sampler) if stereo is not None else (None, None)
    pos = sample(model, batch, noise, sampler, generator=generator, guidance=guidance, callback=callback)
    bad = bad_conformers(pos, batch.node_graph, batch.num_graphs)
    if finalize is not None:
        pos, stereo_ok = finalize(pos)
    else:
        stereo_ok = torch.ones(batch.num_graphs, dtype=torch.bool, device=pos.device)
    try:
        broken = broken_conformers(pos, batch)
    except ImportError:  # quality.py reads covalent radii from RDKit's periodic table
        broken = None
    return SampledBatch(batch, pos, bad, stereo_ok, broken)


# ---- many molecules -----------------------------------------------------------------------------
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
                   num_atom_types: int) -> str | None:
    """Why a MolGraph input cannot be sampled, or None. The element policy of
    pipeline.prepare_molecule, by atomic number (no RDKit here to name the elements)."""
    if graph.num_atoms == 0:
        return "molecule has no atoms"
    zs = set(graph.z.tolist())
    if graph.num_atoms == 1:
        return None  # placed at the origin without the model: any element is fine
    beyond = sorted(z for z in zs if z < 0 or z >= num_atom_types)
    if beyond:
        return f"atomic number(s) {beyond} beyond the model's atom vocabulary (0 <= Z < {num_atom_types})"
    unknown = sorted(z for z in zs if z not in known)
    if unknown and not allow_unknown_elements:
        return (f"atomic number(s) {unknown} not in the model's training data ({sorted(known)}); "
                "allow_unknown_elements=True samples it anyway, with an untrained embedding")
    return None


@dataclass
class _Job:
    """One input that gets conformers: its graph (or a lone atom), count, stereo constraints."""

    index: int
    z: Tensor  # [n]
    count: int
    graph: MolGraph | None  # None: a single atom, placed at the origin without sampling
    stereo: StereoConstraints | None


def generate_tensors(inputs: Sequence[MolGraph | object], num_confs: int | Sequence[int] = 10, *,
                     model: ScoreNet | None = None, noise: NoiseConfig | None = None, weights: str | None = None,
                     sampler: SamplerConfig | str | None = None, device: str | torch.device = "cpu", seed: int = 0,
                     max_atoms: int | None = None, max_heavy_atoms: int | None = 100,
                     allow_unknown_elements: bool = False, largest_fragment: bool = True,
                     trained_elements: Iterable[int] | None = None) -> TensorConformers:
    """Sample conformers for every input and return them as device tensors (TensorConformers).

    inputs: MolGraph (RDKit-free; no stereo information), or SMILES / RDKit Mol / MolInput
    (needs RDKit; prepared exactly as `generate` does, stereo guidance when sampler.stereo).
    num_confs: one count for all inputs or one per input (a MolInput's own count wins).
    Without `model`, the checkpoint `weights` (default: the shipped one) is loaded on `device`.
    Deterministic for a given seed, input, max_atoms and device. An input that cannot be used gets
    no conformers and an entry in `errors`; lone atoms sit at the origin (ok, not sampled).
    max_heavy_atoms (default 100 = pipeline.DEFAULT_MAX_HEAVY_ATOMS), allow_unknown_elements,
    largest_fragment, trained_elements: as `generate` (max_heavy_atoms and largest_fragment apply
    to Mol / SMILES inputs only; a MolGraph is checked for its elements).
    """
    if model is None:
        model, noise = load_model(weights, device)
    noise = noise or NoiseConfig()
    sampler = resolve_sampler(sampler)
    counts = [num_confs] * len(inputs) if isinstance(num_confs, int) else list(num_confs)
    if len(counts) != len(inputs):
        raise ValueError("num_confs must be an int or have one entry per input")
    known, num_atom_types = model_vocabulary(model, trained_elements)

    jobs: list[_Job] = []
    errors: dict[int, str] = {}
    warnings: dict[int, list[str]] = {}
    for k, (x, count) in enumerate(zip(inputs, counts)):
        if isinstance(x, MolGraph):
            why = (f"conformer count must be at least 1 (got {count})" if count < 1
                   else _graph_problem(x, known, allow_unknown_elements, num_atom_types))
            if why is not None:
                errors[k] = why
                continue
            jobs.append(_Job(k, x.z.long(), count, x if x.num_atoms > 1 else None, None))
            continue
        from .pipeline import prepare_entry  # RDKit from here on

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
    atom_ptr = torch.zeros(n_conf.numel() + 1, dtype=torch.long)
    torch.cumsum(n_conf, 0, out=atom_ptr[1:])
    mol_index = torch.tensor([j.index for j in jobs for _ in range(j.count)], dtype=torch.long)
    z = torch.cat([j.z.repeat(j.count) for j in jobs]) if jobs else torch.zeros(0, dtype=torch.long)
    sampled = torch.tensor([j.graph is not None for j in jobs for _ in range(j.count)], dtype=torch.bool)  # [G]

    todo = [j for j in jobs if j.graph is not None]
    pos_parts: list[Tensor] = []
    flag_parts: list[tuple[Tensor, Tensor]] = []
    if todo:
        packed = PackedGraphs([j.graph for j in todo])
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
            out = sample_batch(model, packed, mol_ids, noise, sampler, device, gen, stereo)
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
    "POS_LIMIT",
    "SampledBatch",
    "TensorConformers",
    "bad_conformers",
    "generate_tensors",
    "model_vocabulary",
    "sample_batch",
]
