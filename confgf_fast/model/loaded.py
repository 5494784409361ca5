"""A score network together with what sampling needs to know about it: its noise levels and what
its checkpoint says about the weights (ModelMeta). checkpoint.load_model / load_models return
LoadedModel; the Python API also takes a bare ScoreNet (+ NoiseConfig) and wraps it
(LoadedModel.of), which then means "built in code, training data unknown"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..config import NoiseConfig
from .network import ScoreNet


@dataclass(frozen=True)
class ModelMeta:
    """What a checkpoint records about its weights; every default means "not recorded" (a model
    built in code, or an older checkpoint).

    weights_name: the checkpoint's file name (None: not from a file). trained_steps: its training
    step. trained_elements: atomic numbers of its training data (None: unknown; elements.py then
    assumes QM9's H, C, N, O, F); trained_elements_assumed: True where an old checkpoint without
    the record was read as QM9 (checkpoint.trained_elements). trained_max_heavy_atoms: heavy atoms
    of the largest training molecule (None: unknown, no size warning). relax_default: the relax
    method measured best for what these weights sample (relax="auto"). sampler_defaults:
    {schedule: {field: value}} measured best for these weights (config.resolve_schedule's tuned).
    """

    weights_name: str | None = None
    trained_steps: int | None = None
    trained_elements: tuple[int, ...] | None = None
    trained_elements_assumed: bool = False
    trained_max_heavy_atoms: int | None = None
    relax_default: str = "none"
    sampler_defaults: Mapping[str, Mapping[str, float]] = field(default_factory=dict, hash=False)

    @property
    def name(self) -> str:
        """How messages name these weights: the file name, or "unknown"."""
        return self.weights_name or "unknown"


@dataclass(frozen=True)
class LoadedModel:
    """A score network, its noise levels and its checkpoint's metadata: one unit to sample with."""

    model: ScoreNet
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    meta: ModelMeta = field(default_factory=ModelMeta)

    @classmethod
    def of(cls, model: ScoreNet | LoadedModel, noise: NoiseConfig | None = None) -> LoadedModel:
        """`model` as a LoadedModel: one already is (with `noise`, if given, replacing its own); a
        bare network gets `noise` (default NoiseConfig()) and ModelMeta() (nothing recorded)."""
        if isinstance(model, LoadedModel):
            return model if noise is None else replace(model, noise=noise)
        return cls(model, noise or NoiseConfig())


__all__ = ["LoadedModel", "ModelMeta"]
