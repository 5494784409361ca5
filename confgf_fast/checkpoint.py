"""Checkpoints: model weights + every config needed to rebuild and resume, in one torch file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from .config import ModelConfig, NoiseConfig, config_from_dict, config_to_dict
from .model import ScoreNet

CHECKPOINT_FORMAT = "confgf_fast/1"
DEFAULT_WEIGHTS = "qm9_small.pt"


class WeightsError(RuntimeError):
    """A weights file that is missing, unreadable or does not fit the model it describes."""


def default_weights_path() -> Path:
    """The shipped pretrained checkpoint (confgf_fast/weights/)."""
    return Path(str(resources.files("confgf_fast") / "weights" / DEFAULT_WEIGHTS))


def save_checkpoint(path: str | Path, model: ScoreNet, noise: NoiseConfig, **extra) -> None:
    """Write atomically (tmp file + rename) so an interrupted save never corrupts the last one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model_config": config_to_dict(model.config),
        "noise_config": config_to_dict(noise),
        "model_state": model.state_dict(),
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or not a torch file
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a confgf_fast checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[ScoreNet, NoiseConfig]:
    """Rebuild the score network and its noise levels from a checkpoint (default: shipped weights)."""
    path = Path(path) if path is not None else default_weights_path()
    state = read_checkpoint(path)
    model = ScoreNet(config_from_dict(ModelConfig, state["model_config"]))
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise WeightsError(f"weights in {path} do not match their model config: {exc}") from exc
    model.eval().to(device)
    return model, config_from_dict(NoiseConfig, state["noise_config"])
