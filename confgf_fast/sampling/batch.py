"""Sampling one batch of conformers on the device, RDKit-free: the step shared by
pipeline.generate_iter (SMILES / Mols, with retries on the host) and tensors.generate_tensors
(device tensors out).

sample_batch builds the GraphBatch of the chosen conformers, runs the sampler (sampler.sample)
with stereo guidance when constraints are given, reflects mirror images (stereo.py), and judges
each conformer: non-finite or exploded coordinates (bad_conformers) and geometric defects
(quality.broken_conformers). Everything stays on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..chem.quality import broken_conformers
from ..chem.stereo import StereoConstraints, make_guidance
from ..config import DEFAULT_GRAPH_ORDER, NoiseConfig, Runtime, Schedule
from ..graph import GraphBatch, MolGraph, PackedGraphs
from ..model.network import ScoreNet
from .sampler import sample

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


def model_graphs(graphs: Sequence[MolGraph], model: ScoreNet) -> PackedGraphs:
    """The molecules' graphs, packed at the order `model` was trained on: prepare and featurize
    build ConfGF's order 3, a model of ModelConfig.graph_order K scores all pairs within K bonds."""
    order = model.config.graph_order
    return PackedGraphs([g if order == DEFAULT_GRAPH_ORDER else g.at_order(order) for g in graphs])


def sample_batch(model: ScoreNet, packed: PackedGraphs, mol_ids: Tensor, noise: NoiseConfig,
                 sampler: Schedule, runtime: Runtime, device: str | torch.device, generator: torch.Generator,
                 stereo: Sequence[StereoConstraints] | None = None,
                 callback: Callable[[int, int], None] | None = None,
                 pos_init: Tensor | None = None) -> SampledBatch:
    """Sample the conformers `mol_ids` ([G] int64, indices into `packed`) in one batch.

    stereo[m]: constraints of packed molecule m (None: no stereo information at all, no guidance
    and stereo_ok all True). Shared by pipeline.generate_iter and generate_tensors, so both sample
    exactly alike; callback goes to sampler.sample (None keeps the loop free of host syncs).
    pos_init: [N, 3] start coordinates of the batch's atoms (a warm start, ProjectSchedule.init "etkdg").
    """
    batch = packed.batch(mol_ids).to(device)
    guidance, finalize = make_guidance(stereo, batch, sampler) if stereo is not None else (None, None)
    if pos_init is not None:
        pos_init = pos_init.to(device=batch.z.device, dtype=torch.float32)
    pos = sample(model, batch, noise, sampler, runtime, generator=generator, pos_init=pos_init, guidance=guidance,
                 callback=callback)
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


__all__ = ["POS_LIMIT", "SampledBatch", "bad_conformers", "model_graphs", "sample_batch"]
