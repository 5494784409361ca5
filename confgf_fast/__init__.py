"""confgf_fast: fast ConfGF molecular conformer generation (score fields on distances + annealed
Langevin dynamics, Shi et al., ICML 2021).

Public API:
    generate(inputs, num_confs, ...) -> GenerationResult   SMILES/Mols in, RDKit conformers out
        (the shipped QM9 and drug-like weights, chosen per molecule by elements and size)
    generate_iter(inputs, num_confs, ...) -> Iterator[MolOutcome]   the same, streamed in input order
    generate_tensors(graphs_or_mols, num_confs, ...) -> TensorConformers   conformers as device tensors
    load_model(path=None, device="cpu") -> LoadedModel(model, noise, meta)   one checkpoint (default the QM9 model)
    load_models(paths=None, device="cpu") -> [LoadedModel]   several (default the shipped set)
    featurize(mol) -> MolGraph (warns when hydrogens are implicit);  PackedGraphs(graphs).batch(mol_ids) -> GraphBatch
    resolve_schedule(schedule=None, *, sampler=None, init=None, overrides=None) -> Schedule   what a sampler produces
    langevin_sample(model, batch, noise, schedule, runtime=None) -> positions [N, 3]
    ops: pairwise_distance, coord_score, langevin_step (backend choice)
"""

from __future__ import annotations

# isort: off
# threads first: it takes the thread probe's first reading before torch is imported (threads.py)
from . import threads  # noqa: F401
# isort: on
from . import ops
from .config import (
    DistSchedule,
    LangevinSchedule,
    ModelConfig,
    NoiseConfig,
    ProjectSchedule,
    Runtime,
    Schedule,
    TrainConfig,
    resolve_schedule,
)
from .graph import GraphBatch, MolGraph, PackedGraphs
from .model.loaded import LoadedModel, ModelMeta
from .model.network import ScoreNet

__version__ = "0.1.0"


def featurize(mol, order: int = 3) -> MolGraph:
    """chem.featurize (Mol -> MolGraph of all atom pairs within `order` bonds), with a warning when
    `mol` carries hydrogens only implicitly: the model was trained on graphs with every H as an
    atom, and an H-less graph samples without complaint into conformers with no hydrogens at all.
    The warning gives the count and the fix (Chem.AddHs, or chem.mol_from_smiles)."""
    import warnings

    from .chem.molecule import featurize as _featurize

    missing = sum(a.GetTotalNumHs() for a in mol.GetAtoms())  # H not present as atoms
    if missing:
        warnings.warn(f"featurize: {missing} hydrogen(s) of this molecule are implicit, not atoms; the model "
                      "works on graphs with every H as an atom: call rdkit.Chem.AddHs(mol) first "
                      "(confgf_fast.chem.molecule.mol_from_smiles does)", UserWarning, stacklevel=2)
    return _featurize(mol, order)


def __getattr__(name: str):
    # RDKit-dependent pieces load lazily, so tensor-only users (e.g. a GPU box without RDKit)
    # can import the package.
    if name in ("generate", "generate_iter", "GenerationResult", "RunStats"):
        from .pipeline import generate as _g

        return getattr(_g, name)
    if name in ("generate_tensors", "TensorConformers"):
        from .sampling import tensors as _t

        return getattr(_t, name)
    if name in ("load_model", "load_models"):
        from .model import checkpoint as _c

        return getattr(_c, name)
    if name == "langevin_sample":
        from .sampling.sampler import langevin_sample

        return langevin_sample
    raise AttributeError(f"module 'confgf_fast' has no attribute {name!r}")


__all__ = [
    "DistSchedule",
    "GenerationResult",
    "GraphBatch",
    "LangevinSchedule",
    "LoadedModel",
    "ModelConfig",
    "ModelMeta",
    "MolGraph",
    "NoiseConfig",
    "PackedGraphs",
    "ProjectSchedule",
    "Runtime",
    "Schedule",
    "ScoreNet",
    "TensorConformers",
    "TrainConfig",
    "featurize",
    "generate",
    "generate_iter",
    "generate_tensors",
    "langevin_sample",
    "load_model",
    "load_models",
    "ops",
    "resolve_schedule",
]
