"""confgf_fast: fast ConfGF molecular conformer generation (score fields on distances + annealed
Langevin dynamics, Shi et al., ICML 2021).

Public API:
    generate(inputs, num_confs, ...) -> GenerationResult   SMILES/Mols in, RDKit conformers out
        (the shipped QM9 and drug-like weights, chosen per molecule by elements and size)
    generate_tensors(graphs_or_mols, num_confs, ...) -> TensorConformers   conformers as device tensors
    load_model(path=None, device="cpu") -> (ScoreNet, NoiseConfig)   one checkpoint (default the QM9 model)
    load_models(paths=None, device="cpu") -> [(ScoreNet, NoiseConfig)]   several (default the shipped set)
    featurize(mol) -> MolGraph;  PackedGraphs(graphs).batch(mol_ids) -> GraphBatch
    langevin_sample(model, batch, noise, sampler_cfg) -> positions [N, 3]
    ops: pairwise_distance, coord_score, langevin_step (backend choice)
"""

from __future__ import annotations

from . import ops
from .config import ModelConfig, NoiseConfig, SamplerConfig, TrainConfig
from .graph import GraphBatch, MolGraph, PackedGraphs
from .model import ScoreNet

__version__ = "0.1.0"


def __getattr__(name: str):
    # RDKit-dependent pieces load lazily, so tensor-only users (e.g. a GPU box without RDKit)
    # can import the package.
    if name in ("generate", "GenerationResult"):
        from . import pipeline as _g

        return getattr(_g, name)
    if name in ("generate_tensors", "TensorConformers"):
        from . import tensors as _t

        return getattr(_t, name)
    if name == "featurize":
        from .chem import featurize

        return featurize
    if name in ("load_model", "load_models"):
        from . import checkpoint as _c

        return getattr(_c, name)
    if name == "langevin_sample":
        from .sampler import langevin_sample

        return langevin_sample
    raise AttributeError(f"module 'confgf_fast' has no attribute {name!r}")


__all__ = [
    "GenerationResult",
    "GraphBatch",
    "ModelConfig",
    "MolGraph",
    "NoiseConfig",
    "PackedGraphs",
    "SamplerConfig",
    "ScoreNet",
    "TensorConformers",
    "TrainConfig",
    "featurize",
    "generate",
    "generate_tensors",
    "langevin_sample",
    "load_model",
    "load_models",
    "ops",
]
