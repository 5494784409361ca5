"""Import a checkpoint of the official ConfGF implementation (DeepGraphLearning/ConfGF).

The official network (confgf/models/scorenet.py: DistanceScoreMatch, confgf/layers) is the one
model.ScoreNet follows, so its weights map one to one, by name and shape:

    official                                  ours
    node_emb.weight            [100, H]       node_emb.weight   [100, H]
    edge_emb.weight            [100, H]       edge_emb.weight   [6, H]   (rows picked, see below)
    input_mlp.layers.{0,1}.*                  dist_mlp.{0,2}.*
    model.convs.{k}.nn.layers.{0,1}.*         layers.{k}.mlp.{0,2}.*
    output_mlp.layers.{0,1,2}.*               out_mlp.{0,2,4}.*
    model.convs.{k}.eps        [1]            -- must be 0: our GINE layer is MLP(h_i + sum_j ...),
                                                 the official one MLP((1 + eps) h_i + sum_j ...)
    sigmas                     [L]            -- the noise levels, checked and stored as NoiseConfig

Edge-type vocabulary: the official code numbers bond types by their index in RDKit's
BondType.names (SINGLE 1, DOUBLE 2, TRIPLE 3, AROMATIC 12; 22 names in the RDKit 2020.03 of its
env.yml, as today) and the 2- and 3-hop pairs num_types + 1 = 23 and num_types + 2 = 24, in an
Embedding(100, H). Our vocabulary is config.EDGE_* (0..5); the converter copies exactly those six
rows. The other 94 rows belong to bond types our featurizer never produces (and that the
official QM9 / GEOM-Drugs data do not contain), so no molecule we can featurize gets a different
embedding; their count is recorded in the output (`official_edge_rows_dropped`).

The file is read with weights_only=True (read_official): tensors and containers, and the config's
easydict.EasyDict read as an OrderedDict; a pickle naming anything else is refused
unread, so importing a checkpoint someone shared cannot run code.

The official config (an EasyDict pickled in the checkpoint) must describe what ScoreNet computes:
relu for mlp_act and gnn_act, short_cut true, concat_hidden false, order 3. Anything else, and any
missing, unexpected or mis-shaped parameter, raises OfficialImportError naming it.
"""

from __future__ import annotations

import math
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import torch

from ..config import (
    EDGE_ANGLE,
    EDGE_AROMATIC,
    EDGE_DIHEDRAL,
    EDGE_DOUBLE,
    EDGE_SINGLE,
    EDGE_TRIPLE,
    NUM_EDGE_TYPES,
    ModelConfig,
    NoiseConfig,
)
from .checkpoint import UnsafeFileError, save_checkpoint, unsafe_message
from .elements import QM9_ELEMENTS
from .network import ScoreNet

SOURCE = "official ConfGF (DeepGraphLearning/ConfGF, DistanceScoreMatch)"
# len(rdkit.Chem.rdchem.BondType.names): the official `num_types` (utils.BOND_TYPES).
OFFICIAL_NUM_BOND_TYPES = 22
# Our edge type -> row of the official edge embedding (BOND_TYPES index; num_types + order - 1).
OFFICIAL_EDGE_ROW = {
    EDGE_SINGLE: 1,
    EDGE_DOUBLE: 2,
    EDGE_TRIPLE: 3,
    EDGE_AROMATIC: 12,
    EDGE_ANGLE: OFFICIAL_NUM_BOND_TYPES + 1,
    EDGE_DIHEDRAL: OFFICIAL_NUM_BOND_TYPES + 2,
}
# Elements of the training data, by official `data.dataset`. GEOM-Drugs: the 16 elements of the
# data set with hydrogens (H B C N O F Al Si P S Cl As Br I Hg Bi, as EDM's geom_with_h lists them).
DATASET_ELEMENTS = {
    "qm9": QM9_ELEMENTS,
    "drugs": (1, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 33, 35, 53, 80, 83),
    "iso17": (1, 6, 8),
}
# Official config values our ScoreNet hard-codes.
REQUIRED_MODEL_CONFIG = {"mlp_act": "relu", "gnn_act": "relu", "short_cut": True, "concat_hidden": False, "order": 3}


class OfficialImportError(ValueError):
    """An official checkpoint that cannot be represented exactly by ScoreNet (one-line message)."""


class UnsafeOfficialError(OfficialImportError, UnsafeFileError):
    """An official checkpoint whose pickle asks for more than tensors, containers and the EasyDict
    config (a class or function that could run code): refused before anything in it runs."""


def _is_easydict(name: str) -> bool:
    """A pickled class name the importer reads as an OrderedDict: class `EasyDict` from a module
    whose last part names easydict (easydict.EasyDict in the official runner's checkpoints). Any
    such module is safe to map: the name only selects collections.OrderedDict (which the
    weights-only unpickler fills item by item and whose __dict__ takes the EasyDict attributes);
    the module is never imported and none of its code runs."""
    module, _, cls = name.rpartition(".")
    return cls == "EasyDict" and "easydict" in module.rpartition(".")[2].lower()


def read_official(path: str | Path) -> dict:
    """The official checkpoint as a dict with a `model` state dict (a bare state dict is wrapped).

    Read with weights_only=True: tensors and containers only, plus the config's EasyDict class,
    which is read as an OrderedDict (a dict: _get reads it by item). Any other class or function named in the
    pickle is refused with UnsafeOfficialError (one line, naming the file and the globals) before
    the file is unpickled: a shared checkpoint must not run code here.
    """
    path = Path(path)
    if not path.is_file():
        raise OfficialImportError(f"official checkpoint not found: {path}")
    try:  # a static scan of the pickle's globals (zip-format files; nothing is unpickled)
        named = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # the legacy (non-zip) format: the weights-only unpickler still refuses them
        named = ["easydict.EasyDict"]
    refused = [g for g in named if not _is_easydict(g)]
    if refused:
        more = f" (+{len(refused) - 3} more)" if len(refused) > 3 else ""
        raise UnsafeOfficialError(
            f"{path} is not a plain-tensor official checkpoint: its pickle asks for {', '.join(refused[:3])}{more}, "
            "which is refused (nothing in the file was run); only tensors, containers and the EasyDict config "
            "are loaded")
    try:
        with torch.serialization.safe_globals([(OrderedDict, g) for g in named]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeOfficialError(unsafe_message(path, "official checkpoint", exc)) from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OfficialImportError(f"cannot read {path} as a torch checkpoint: {first}") from None
    if not isinstance(state, dict):
        raise OfficialImportError(f"{path} holds a {type(state).__name__}, not an official ConfGF checkpoint dict")
    if "model" not in state:
        if all(torch.is_tensor(v) for v in state.values()) and state:
            return {"model": state}
        raise OfficialImportError(f"{path} has no 'model' state dict (keys: {sorted(map(str, state))[:6]})")
    return state


def _get(cfg, *keys):
    for k in keys:
        if cfg is None:
            return None
        cfg = cfg.get(k) if isinstance(cfg, dict) else getattr(cfg, k, None)
    return cfg


def _official_shapes(H: int, L: int) -> dict[str, tuple[int, ...]]:
    shapes = {"node_emb.weight": (100, H), "edge_emb.weight": (100, H)}

    def mlp(prefix, dims):
        for k in range(len(dims) - 1):
            shapes[f"{prefix}.layers.{k}.weight"] = (dims[k + 1], dims[k])
            shapes[f"{prefix}.layers.{k}.bias"] = (dims[k + 1],)

    mlp("input_mlp", [1, H, H])
    mlp("output_mlp", [2 * H, H, H // 2, 1])
    for c in range(L):
        shapes[f"model.convs.{c}.eps"] = (1,)
        mlp(f"model.convs.{c}.nn", [H, H, H])
    return shapes


def _key_map(L: int) -> dict[str, str]:
    """Official name -> our name, for every parameter copied as is."""
    m = {"node_emb.weight": "node_emb.weight"}
    for off, ours in ((0, 0), (1, 2)):
        for p in ("weight", "bias"):
            m[f"input_mlp.layers.{off}.{p}"] = f"dist_mlp.{ours}.{p}"
            for c in range(L):
                m[f"model.convs.{c}.nn.layers.{off}.{p}"] = f"layers.{c}.mlp.{ours}.{p}"
    for off, ours in ((0, 0), (1, 2), (2, 4)):
        for p in ("weight", "bias"):
            m[f"output_mlp.layers.{off}.{p}"] = f"out_mlp.{ours}.{p}"
    return m


def _noise_from_sigmas(sigmas: torch.Tensor, cfg_model) -> NoiseConfig:
    """NoiseConfig reproducing the official geometric `sigmas`; checked against the config's
    sigma_begin / sigma_end / num_noise_level when the checkpoint has one."""
    s = sigmas.detach().double().flatten()
    if s.numel() < 2 or not torch.isfinite(s).all() or (s <= 0).any():
        raise OfficialImportError(f"official sigmas are not a usable noise schedule: {s.tolist()[:5]}")
    noise = NoiseConfig(sigma_begin=float(s[0]), sigma_end=float(s[-1]), num_levels=int(s.numel()))
    if cfg_model is not None:
        want = (_get(cfg_model, "sigma_begin"), _get(cfg_model, "sigma_end"), _get(cfg_model, "num_noise_level"))
        if None not in want:
            noise = NoiseConfig(sigma_begin=float(want[0]), sigma_end=float(want[1]), num_levels=int(want[2]))
    ours = noise.sigmas().double()
    if ours.shape != s.shape or not torch.allclose(ours, s, rtol=1e-5, atol=0.0):
        raise OfficialImportError(
            f"official sigmas ({s.numel()} levels, {float(s[0]):g} .. {float(s[-1]):g}) are not the geometric "
            f"schedule sigma_begin={noise.sigma_begin:g}, sigma_end={noise.sigma_end:g}, "
            f"num={noise.num_levels} that NoiseConfig represents")
    return noise


def convert_official(state: dict, dataset: str | None = None) -> tuple[ScoreNet, NoiseConfig, dict]:
    """Official checkpoint dict (read_official) -> (ScoreNet with its weights, NoiseConfig, metadata
    for save_checkpoint). `dataset` (qm9 / drugs / iso17) is required when the checkpoint has no
    config and overrides nothing otherwise (a conflicting value is an error)."""
    sd = state["model"]
    cfg = state.get("config")
    cfg_model = _get(cfg, "model")

    for key, want in REQUIRED_MODEL_CONFIG.items():
        got = _get(cfg_model, key)
        if cfg_model is not None and got is not None and got != want:
            raise OfficialImportError(
                f"official config model.{key} = {got!r} cannot be represented: ScoreNet computes {key} = {want!r}")

    if "node_emb.weight" not in sd or getattr(sd["node_emb.weight"], "dim", lambda: 0)() != 2:
        raise OfficialImportError("official state dict has no 2-D 'node_emb.weight' (not a DistanceScoreMatch model?)")
    H = int(sd["node_emb.weight"].shape[1])
    convs = {int(m.group(1)) for k in sd if (m := re.match(r"model\.convs\.(\d+)\.", k))}
    L = max(convs) + 1 if convs else 0
    if L == 0:
        raise OfficialImportError("official state dict has no 'model.convs.*' parameters (no GINE layers)")
    for key, got in (("hidden_dim", H), ("num_convs", L)):
        want = _get(cfg_model, key)
        if want is not None and int(want) != got:
            raise OfficialImportError(f"official config model.{key} = {want} but the weights have {got}")

    shapes = _official_shapes(H, L)
    expected = set(shapes) | {"sigmas"}
    for k in sd:
        if k not in expected:
            raise OfficialImportError(f"unexpected parameter in official checkpoint: {k} "
                                      f"{list(getattr(sd[k], 'shape', []))} (ScoreNet has no counterpart)")
    for k in sorted(expected):
        if k not in sd:
            raise OfficialImportError(f"missing parameter in official checkpoint: {k}")
    for k, want in shapes.items():
        got = tuple(getattr(sd[k], "shape", ()))
        if got != want:
            raise OfficialImportError(f"parameter {k} has shape {list(got)}, expected {list(want)} "
                                      f"(hidden_dim={H}, num_convs={L})")
    for c in range(L):
        eps = sd[f"model.convs.{c}.eps"]
        if float(eps.abs().max()) != 0.0:
            raise OfficialImportError(f"model.convs.{c}.eps = {float(eps.flatten()[0]):g} != 0: ScoreNet's GINE "
                                      "layer has no (1 + eps) weight on h_i")

    model = ScoreNet(ModelConfig(hidden_dim=H, num_layers=L, num_edge_types=NUM_EDGE_TYPES))
    ours = model.state_dict()
    new = {}
    for off, k in _key_map(L).items():
        new[k] = sd[off].detach().to(ours[k].dtype).clone()
    rows = torch.tensor([OFFICIAL_EDGE_ROW[t] for t in range(NUM_EDGE_TYPES)])
    new["edge_emb.weight"] = sd["edge_emb.weight"].detach().to(ours["edge_emb.weight"].dtype)[rows].clone()
    assert set(new) == set(ours), sorted(set(ours) ^ set(new))
    bad = [k for k, v in new.items() if not torch.isfinite(v).all()]
    if bad:
        raise OfficialImportError(f"official weights contain NaN or inf: {', '.join(bad[:3])}")
    model.load_state_dict(new)
    model.eval()

    noise = _noise_from_sigmas(sd["sigmas"], cfg_model)

    cfg_dataset = _get(cfg, "data", "dataset")
    if dataset is not None and cfg_dataset is not None and str(cfg_dataset).lower() != dataset.lower():
        raise OfficialImportError(f"--dataset {dataset} contradicts the checkpoint's config "
                                  f"data.dataset = {cfg_dataset}")
    ds = str(dataset or cfg_dataset or "").lower()
    if ds not in DATASET_ELEMENTS:
        what = f"data set {ds!r} is not one of" if ds else "the checkpoint has no config naming its data set; pass"
        raise OfficialImportError(f"{what} --dataset {'/'.join(DATASET_ELEMENTS)} (needed for trained_elements)")
    name = _get(cfg_model, "name")
    meta = {
        "source": SOURCE,
        "official_config": str(name) if name is not None else None,
        "official_dataset": ds,
        "official_epoch": state.get("cur_epoch"),
        "official_edge_rows": {int(t): int(r) for t, r in OFFICIAL_EDGE_ROW.items()},
        "official_edge_rows_dropped": int(sd["edge_emb.weight"].shape[0]) - NUM_EDGE_TYPES,
        "trained_elements": list(DATASET_ELEMENTS[ds]),
    }
    best = state.get("best_loss")
    if isinstance(best, (int, float)) and math.isfinite(best):
        meta["official_best_loss"] = float(best)
    return model, noise, meta


def import_official(src: str | Path, out: str | Path, dataset: str | None = None) -> dict:
    """Convert the official checkpoint `src` and write a confgf_fast checkpoint to `out`.
    Returns the recorded metadata (plus the noise levels)."""
    model, noise, meta = convert_official(read_official(src), dataset)
    meta["official_file"] = Path(src).name
    save_checkpoint(out, model, noise, **meta)
    return {**meta, "sigma_begin": noise.sigma_begin, "sigma_end": noise.sigma_end, "num_levels": noise.num_levels}
