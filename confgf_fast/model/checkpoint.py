"""Checkpoints: model weights + every config needed to rebuild and resume, in one torch file.

Files are read with `torch.load(..., weights_only=True)` (load_plain): a checkpoint shared by
someone else must not be able to run code, and a pickle can (any callable, e.g. os.system, may be
named in it). So what we save is plain data only: tensors, dicts, lists, tuples, str, int, float,
bool and None (to_plain converts the few richer values we produce and refuses the rest at save
time, so we never write a file we would refuse to read).
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from ..config import (
    ModelConfig,
    NoiseConfig,
    check_relax_default,
    check_sampler_defaults,
    config_from_dict,
    config_to_dict,
)
from .elements import QM9_ELEMENTS
from .loaded import LoadedModel, ModelMeta
from .network import ScoreNet

CHECKPOINT_FORMAT = "confgf_fast/1"
DEFAULT_WEIGHTS = "qm9_small.pt"
# The shipped set, in the order elements.choose_model tries them: the QM9 model for what it was
# trained on (H, C, N, O, F, up to 9 heavy atoms), the drug-like model for everything else.
DEFAULT_WEIGHTS_SET = (DEFAULT_WEIGHTS, "drugs_small.pt")
QM9_MAX_HEAVY_ATOMS = 9  # QM9's definition: molecules of up to 9 heavy atoms (C, N, O, F)


class WeightsError(RuntimeError):
    """A weights file that is missing, unreadable or does not fit the model it describes."""


class UnsafeFileError(ValueError):
    """A torch file that is not plain tensors and containers: its pickle names a class or function
    (possibly code that would run on load). Refused before anything in it runs; one-line message
    naming the file. The loaders raise subclasses that their callers already catch."""


class UnsafeCheckpointError(WeightsError, UnsafeFileError):
    """A weights / training-state file refused by load_plain (a WeightsError, so `generate`, `train`
    and `export-weights` report it as any other bad weights file)."""


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def load_plain(path: str | Path, what: str = "checkpoint") -> Any:
    """torch.load(path, weights_only=True) on the CPU; UnsafeFileError (one line, naming the file and
    what its pickle asked for) when the file needs more than plain tensors and containers.

    Why not weights_only=False: that unpickles arbitrary objects, and unpickling can call any
    function the file names. Other failures (missing, truncated, not a torch file) propagate as
    torch raises them, for the caller to word."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(unsafe_message(path, what, exc)) from None


def unsafe_message(path: str | Path, what: str, exc: BaseException) -> str:
    """The one-line refusal for a file the weights-only unpickler rejected (torch's own message is
    a paragraph that suggests weights_only=False, which is exactly what must not be done)."""
    text = str(exc)
    named = _GLOBAL_RE.search(text)
    if named:
        why = f"its pickle asks for {named.group(1)}, which is refused (nothing in the file was run)"
    else:
        detail = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("Unsupported")), "")
        why = "not a torch file, or a pickle the weights-only reader cannot read" + (f" ({detail})" if detail else "")
    return (f"{path} is not a plain-tensor {what}: {why}; only tensors, dicts, lists, strings and numbers "
            "are loaded")


def to_plain(obj: Any, where: str = "state") -> Any:
    """`obj` as only what weights_only loading reads back (tensors, dict / OrderedDict, list, tuple,
    str, int, float, bool, None): numpy arrays become tensors, numpy scalars Python numbers, paths
    strings, dataclasses dicts, sets sorted lists. TypeError naming the key for anything else: a
    file is checked when written, not discovered unreadable when a user loads it.
    Values that are already plain are returned as they are (no copy of the tensors)."""
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        return obj  # allowed by weights_only loading
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, np.generic):
        return obj.item()
    for base in (int, float, str):  # subclasses (IntEnum, str enums) would pickle their own class
        if isinstance(obj, base):
            return str.__str__(obj) if base is str else base(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj), where)
    if isinstance(obj, dict):
        items = {}
        for k, v in obj.items():
            key = to_plain(k, f"{where} key")
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise TypeError(f"{where}: key {k!r} cannot be stored in a plain-tensor file")
            items[key] = to_plain(v, f"{where}[{k!r}]")
        if type(obj) is OrderedDict:  # a state_dict: keep its type and its _metadata (module versions)
            out = OrderedDict(items)
            if hasattr(obj, "_metadata"):
                out._metadata = to_plain(obj._metadata, f"{where}._metadata")
            return out
        return items
    if isinstance(obj, (list, tuple)):
        vals = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return vals if isinstance(obj, list) else tuple(vals)
    if isinstance(obj, (set, frozenset)):
        return sorted(to_plain(v, f"{where} item") for v in obj)
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored in a "
                    "plain-tensor file (only tensors, dicts, lists, tuples, str, int, float, bool, None)")


def default_weights_path(name: str = DEFAULT_WEIGHTS) -> Path:
    """A shipped pretrained checkpoint (confgf_fast/weights/; default the QM9 model)."""
    return Path(str(resources.files("confgf_fast") / "weights" / name))


def default_weights_paths() -> list[Path]:
    """The shipped set of checkpoints (DEFAULT_WEIGHTS_SET), in choice order."""
    return [default_weights_path(name) for name in DEFAULT_WEIGHTS_SET]


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
    torch.save(to_plain(state), tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict in `path`; WeightsError naming the file if it is missing or unreadable,
    UnsafeCheckpointError (a WeightsError) if it is not plain tensors and containers (load_plain).
    The one reader of weights, training states and resume files (load_model, export_weights,
    train.py's resume and init), so none of them unpickles anything but plain data."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"weights path is a directory, not a checkpoint file: {path}")
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        state = load_plain(path, "checkpoint")
    except UnsafeFileError as exc:
        raise UnsafeCheckpointError(str(exc)) from None
    except Exception as exc:  # truncated, empty, or not a torch file at all
        raise WeightsError(f"cannot read weights file {path} (truncated or not a torch file?): {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a confgf_fast checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    for key in ("model_config", "noise_config", "model_state"):
        if not isinstance(state.get(key), dict):
            raise WeightsError(f"{path} is incomplete: it has no {key!r} dict")
    return state


def trained_elements(state: dict) -> tuple[tuple[int, ...], bool]:
    """(atomic numbers the model was trained on, whether they were assumed).

    Checkpoints written by train.py record `trained_elements`; older ones do not, and then the QM9
    set H, C, N, O, F is assumed (every checkpoint before the field existed was trained on QM9).
    """
    z = state.get("trained_elements")
    if z is None:
        return QM9_ELEMENTS, True
    return tuple(sorted(int(x) for x in z)), False


def trained_max_heavy_atoms(state: dict) -> int | None:
    """Heavy atoms of the largest molecule the checkpoint's weights were trained on, or None if unknown.

    Checkpoints written by train.py record `trained_max_heavy_atoms`. Older ones are read from what
    they say about their data: the dataset's composition statistics (data/build.py) where the
    build recorded them, else 9 for QM9 (`source` qm9pack: the shipped weights), else unknown.
    """
    n = state.get("trained_max_heavy_atoms")
    if n is not None:
        return int(n)
    meta = state.get("data_meta")
    if not isinstance(meta, dict):
        return None
    heavy = (meta.get("composition") or {}).get("heavy_atoms") or {}
    if heavy.get("max") is not None:  # an empty dataset's summary is {"n": 0}, without a max
        return int(heavy["max"])
    if meta.get("source") == "qm9pack":
        return QM9_MAX_HEAVY_ATOMS
    return None


def _state_dict_mismatch(model: ScoreNet, weights: dict) -> str:
    """A short description of how `weights` differs from `model.state_dict()` (at most 3 of each kind;
    the full PyTorch message lists every key, which buries the cause)."""
    want = model.state_dict()
    missing = [k for k in want if k not in weights]
    unexpected = [k for k in weights if k not in want]
    shapes = [f"{k} {list(getattr(weights[k], 'shape', []))} in file vs {list(want[k].shape)} expected"
              for k in want if k in weights and getattr(weights[k], "shape", None) != want[k].shape]
    parts = []
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{what}: {', '.join(items[:3])}{more}")
    return "; ".join(parts)


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the score network, its noise levels and its metadata from a checkpoint (default:
    shipped weights) as a LoadedModel (.model, .noise, .meta).

    Raises WeightsError naming the file when it is missing, unreadable, not a checkpoint, has
    weights that do not fit its model config (the mismatching keys / shapes are listed) or holds
    NaN / inf weights. meta (loaded.ModelMeta) has `weights_name` (the file name),
    `trained_elements` (tuple of atomic numbers), `trained_elements_assumed` (True for old
    checkpoints without the record; see trained_elements()), `trained_max_heavy_atoms` (heavy atoms
    of the largest training molecule, None if unknown; see trained_max_heavy_atoms()),
    `trained_steps` (the checkpoint's training step, None if it has none), `sampler_defaults` (the
    sampler settings measured best for these weights, config.resolve_schedule's tuned; {} if the
    checkpoint has none) and `relax_default` (the relax method measured best for what these weights
    sample, used by relax="auto"; "none" if it has none).
    """
    path = Path(path) if path is not None else default_weights_path()
    state = read_checkpoint(path)
    try:
        cfg = config_from_dict(ModelConfig, state["model_config"])
        model = ScoreNet(cfg)
    except Exception as exc:  # wrong types / values in the stored config
        raise WeightsError(f"{path} has an unusable model config {state['model_config']!r}: {exc}") from exc
    weights = state["model_state"]
    mismatch = _state_dict_mismatch(model, weights)
    if mismatch:
        raise WeightsError(f"weights in {path} do not fit their model config "
                           f"(hidden_dim={cfg.hidden_dim}, num_layers={cfg.num_layers}): {mismatch}")
    bad = [k for k, v in weights.items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise WeightsError(f"weights in {path} contain NaN or inf values: {', '.join(bad[:3])}{more}")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied; shapes were checked above
        raise WeightsError(f"weights in {path} do not match their model config: {exc}") from exc
    model.eval().to(device)
    elements, assumed = trained_elements(state)
    # Metadata beside the network, not buffers in it: it describes the training data, and must not
    # change the state_dict layout of existing checkpoints.
    try:
        meta = ModelMeta(weights_name=path.name, trained_steps=state.get("step"), trained_elements=elements,
                         trained_elements_assumed=assumed, trained_max_heavy_atoms=trained_max_heavy_atoms(state),
                         relax_default=check_relax_default(state.get("relax_default") or "none"),
                         sampler_defaults=check_sampler_defaults(state.get("sampler_defaults") or {}))
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    try:
        noise = config_from_dict(NoiseConfig, state["noise_config"])
        noise.sigmas()
    except Exception as exc:
        raise WeightsError(f"{path} has an unusable noise config {state['noise_config']!r}: {exc}") from exc
    return LoadedModel(model, noise, meta)


def load_models(paths: str | Path | Sequence[str | Path] | None = None,
                device: str | torch.device = "cpu") -> list[LoadedModel]:
    """load_model for each of `paths` (one path or several; default: the shipped set,
    default_weights_paths()), in the given order, which is the order molecules are matched to them
    (elements.choose_model)."""
    if paths is None:
        paths = default_weights_paths()
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise WeightsError("no weights file given")
    return [load_model(p, device) for p in paths]


# Training-only state: needed to resume, not to sample.
_TRAINING_KEYS = ("optimizer_state", "scheduler_state", "rng_state", "ema_state")


def export_weights(src: str | Path, dst: str | Path, average: bool = True,
                   sampler_defaults: dict | None = None, relax_default: str | None = None) -> dict:
    """Write a sampling-only copy of a training checkpoint (no optimizer/scheduler/RNG state, ~1/3
    of the size); config, step, learning curve and data description are kept. Returns the state.

    average: ship the exponential moving average of the weights when the checkpoint has one
    (train.WeightAverage); the copy records which in `weights_kind` ("ema" or "raw") and, for
    the average, its decay and update count in `ema`.
    sampler_defaults: {schedule: {field: value}} stored with the weights (merged over the
    source's own) and applied when they sample (config.resolve_schedule's tuned); ValueError if invalid.
    relax_default: the relax method (config.RELAX_METHODS) that relax="auto" applies to what these
    weights sample; None keeps the source's (if any)."""
    state = read_checkpoint(src)
    slim = {k: v for k, v in state.items() if k not in _TRAINING_KEYS}
    if sampler_defaults:
        merged = {k: dict(v) for k, v in (state.get("sampler_defaults") or {}).items()}
        for schedule, tuned in check_sampler_defaults(sampler_defaults).items():
            merged.setdefault(schedule, {}).update(tuned)
        slim["sampler_defaults"] = merged
    if relax_default is not None:
        slim["relax_default"] = check_relax_default(relax_default)
    ema = state.get("ema_state")
    if average and ema:
        slim["model_state"] = ema["weights"]
        slim["weights_kind"] = "ema"
        slim["ema"] = {"decay": ema["decay"], "updates": ema["updates"]}
    elif not state.get("weights_kind"):  # an exported copy (re-exported to add defaults) keeps its kind
        slim["weights_kind"] = "raw"
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(to_plain(slim), tmp)
    tmp.replace(dst)
    return slim
