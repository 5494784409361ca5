"""SMILES / RDKit Mols in, conformers out: featurise, batch, sample, and put coordinates back.

The one place that joins chem (RDKit) -> graph batch -> model -> sampler -> RDKit conformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from rdkit import Chem
from torch import Tensor

from .checkpoint import load_model
from .chem import featurize, mol_from_smiles, set_conformers
from .config import NoiseConfig, SamplerConfig
from .graph import PackedGraphs
from .model import ScoreNet
from .sampler import langevin_sample, plan_batches, progress_bar


@dataclass
class GenerationResult:
    """mols[k]: input k with its generated conformers (None if it failed); errors[k]: why it failed."""

    mols: list[Chem.Mol | None]
    errors: dict[int, str] = field(default_factory=dict)


def _as_mol(x: str | Chem.Mol) -> Chem.Mol:
    if isinstance(x, Chem.Mol):
        return Chem.AddHs(x, addCoords=x.GetNumConformers() > 0)
    return mol_from_smiles(x)


def generate(inputs: Sequence[str | Chem.Mol], num_confs: int | Sequence[int] = 10, *,
             model: ScoreNet | None = None, noise: NoiseConfig | None = None, weights: str | None = None,
             sampler: SamplerConfig | None = None, device: str | torch.device = "cpu", seed: int = 0,
             max_atoms: int = 20_000, progress: bool = False) -> GenerationResult:
    """Generate conformers for each input (SMILES or Mol) with annealed Langevin dynamics.

    num_confs: one count for all inputs or one per input. Conformers of many molecules are sampled
    together in batches of at most `max_atoms` atoms. Deterministic for a given seed, batch plan
    and device. Without `model`, the checkpoint `weights` (default: the shipped one) is loaded.
    """
    if model is None:
        model, noise = load_model(weights, device)
    noise = noise or NoiseConfig()
    sampler = sampler or SamplerConfig()
    counts = [num_confs] * len(inputs) if isinstance(num_confs, int) else list(num_confs)
    if len(counts) != len(inputs):
        raise ValueError("num_confs must be an int or have one entry per input")
    mols: list[Chem.Mol | None] = [None] * len(inputs)
    errors: dict[int, str] = {}
    ok, graphs = [], []
    for k, x in enumerate(inputs):
        try:
            mol = _as_mol(x)
            graphs.append(featurize(mol))
            mols[k] = mol
            ok.append(k)
        except ValueError as exc:
            errors[k] = str(exc)
    packed = PackedGraphs(graphs)
    sizes = [g.num_atoms for g in graphs]
    plan = plan_batches(sizes, [counts[k] for k in ok], max_atoms)
    coords: list[list[Tensor]] = [[] for _ in ok]
    gen = torch.Generator(device=device).manual_seed(seed)
    total = sum(counts[k] for k in ok)
    bar = progress_bar(total, "generate", progress)
    for pieces in plan:
        mol_ids = torch.cat([torch.full((c,), m, dtype=torch.long) for m, c in pieces])
        batch = packed.batch(mol_ids).to(device)
        pos = langevin_sample(model, batch, noise, sampler, generator=gen).cpu()
        ptr = batch.atom_ptr.cpu()
        for g, m in enumerate(mol_ids.tolist()):
            coords[m].append(pos[ptr[g]:ptr[g + 1]])
        bar.update(mol_ids.numel())
    bar.close()
    for j, k in enumerate(ok):
        mols[k] = set_conformers(mols[k], coords[j])
    return GenerationResult(mols, errors)
