"""No loader unpickles code: weights, training states / resume files, datasets, official checkpoints
and `generate --weights` all read torch files with weights_only=True and refuse, in one line naming
the file, a pickle that would call os.system (issue 26)."""

import os
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from confgf_fast.cli import EXIT_FATAL, main
from confgf_fast.config import ModelConfig, NoiseConfig
from confgf_fast.data.dataset import ConformerDataset, DatasetFileError, UnsafeDatasetError
from confgf_fast.model.checkpoint import (
    CHECKPOINT_FORMAT,
    UnsafeCheckpointError,
    UnsafeFileError,
    WeightsError,
    export_weights,
    load_model,
    read_checkpoint,
    save_checkpoint,
    to_plain,
)
from confgf_fast.model.network import ScoreNet
from confgf_fast.model.official import OfficialImportError, UnsafeOfficialError, import_official, read_official
from confgf_fast.train import train_from_files

ROOT = Path(__file__).resolve().parents[1]


class RunsCode:
    """Unpickling this calls os.system(command): what a hostile .pt file does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def touch(path: Path) -> RunsCode:
    return RunsCode(f"touch {shlex.quote(str(path))}")


def checkpoint_shaped(payload) -> dict:
    """A dict that passes every check of read_checkpoint, with the payload beside the weights."""
    model = ScoreNet(ModelConfig(hidden_dim=8, num_layers=1))
    return {"format": CHECKPOINT_FORMAT, "model_config": {"hidden_dim": 8, "num_layers": 1},
            "noise_config": {}, "model_state": model.state_dict(), "history": [payload]}


@pytest.fixture
def pwned(tmp_path):
    return tmp_path / "pwned"


@pytest.fixture
def evil_ckpt(tmp_path, pwned):
    path = tmp_path / "shared_weights.pt"
    torch.save(checkpoint_shaped(touch(pwned)), path)
    return path


def assert_refused(exc: BaseException, path: Path, what: str = "checkpoint") -> None:
    msg = str(exc)
    assert "\n" not in msg, msg
    assert str(path) in msg and f"is not a plain-tensor {what}" in msg, msg
    assert "system" in msg, msg  # names what the pickle asked for (posix.system / nt.system)
    assert isinstance(exc, UnsafeFileError) and isinstance(exc, ValueError)


def test_the_payload_is_live_without_weights_only(tmp_path):
    # The control: the same kind of file does run its command when unpickled the old way, so the
    # refusals below are what stands between a shared file and code execution.
    control = tmp_path / "control"
    path = tmp_path / "c.pt"
    torch.save({"x": touch(control)}, path)
    torch.load(path, weights_only=False)
    assert control.exists()


def test_checkpoint_loaders_refuse_code(evil_ckpt, pwned, tmp_path):
    for load in (load_model, read_checkpoint, lambda p: export_weights(p, tmp_path / "slim.pt")):
        with pytest.raises(UnsafeCheckpointError) as info:
            load(evil_ckpt)
        assert_refused(info.value, evil_ckpt)
        assert isinstance(info.value, WeightsError)  # what generate / export-weights catch
    assert not pwned.exists() and not (tmp_path / "slim.pt").exists()


def test_legacy_format_file_is_refused_too(tmp_path, pwned):
    path = tmp_path / "legacy.pt"
    torch.save(checkpoint_shaped(touch(pwned)), path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_model(path)
    assert_refused(info.value, path)
    with pytest.raises(UnsafeOfficialError):
        import_official(path, tmp_path / "o.pt", dataset="qm9")
    assert not pwned.exists()


def test_resume_and_init_refuse_code(evil_ckpt, pwned, ref_sdf, tmp_path):
    for kw in ({"resume": str(evil_ckpt)}, {"init": str(evil_ckpt)}):
        with pytest.raises(UnsafeCheckpointError) as info:
            train_from_files([str(ref_sdf)], str(tmp_path / "out.pt"), progress=False, val_fraction=0, **kw)
        assert_refused(info.value, evil_ckpt)
    assert not pwned.exists() and not (tmp_path / "out.pt").exists()


def test_dataset_loader_refuses_code(ref_sdf, pwned, tmp_path):
    good = tmp_path / "good.pt"
    ConformerDataset.from_sdf(ref_sdf).save(good)
    d = torch.load(good, weights_only=True)  # what we write is plain
    d["meta"] = {"source": touch(pwned)}
    evil = tmp_path / "shared_data.pt"
    torch.save(d, evil)
    with pytest.raises(UnsafeDatasetError) as info:
        ConformerDataset.load(evil)
    assert_refused(info.value, evil, "dataset")
    with pytest.raises(UnsafeDatasetError):
        train_from_files([str(evil)], str(tmp_path / "out.pt"), progress=False, val_fraction=0)
    assert not pwned.exists()
    assert ConformerDataset.load(good).num_molecules == 2
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(DatasetFileError, match=r"junk\.pt"):
        ConformerDataset.load(tmp_path / "junk.pt")


def test_official_importer_allows_only_its_config_class(tmp_path, pwned, capsys):
    sd = {"node_emb.weight": torch.zeros(100, 4)}
    src = tmp_path / "checkpoint284"
    torch.save({"model": sd, "config": {"model": {"name": "x"}}, "extra": touch(pwned)}, src)
    with pytest.raises(UnsafeOfficialError) as info:
        import_official(src, tmp_path / "out.pt", dataset="qm9")
    assert_refused(info.value, src, "official checkpoint")
    assert isinstance(info.value, OfficialImportError)
    assert main(["import-official", str(src), "--out", str(tmp_path / "out.pt")]) == EXIT_FATAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(src) in err and "Traceback" not in err
    assert not pwned.exists() and not (tmp_path / "out.pt").exists()


def test_official_config_class_is_read_without_importing_it(tmp_path):
    # easydict.EasyDict keeps every item as an attribute as well (so its pickle has a BUILD step);
    # pickle one from a throwaway module named like the real one, then remove the module.
    mod = types.ModuleType("easydict")

    class EasyDict(dict):
        def __init__(self, d=None):
            super().__init__()
            for k, v in (d or {}).items():
                setattr(self, k, EasyDict(v) if isinstance(v, dict) else v)

        def __setattr__(self, name, value):
            super().__setattr__(name, value)
            self[name] = value

    EasyDict.__module__, EasyDict.__qualname__ = "easydict", "EasyDict"
    mod.EasyDict = EasyDict
    saved = sys.modules.get("easydict")
    sys.modules["easydict"] = mod
    try:
        src = tmp_path / "checkpoint1"
        torch.save({"model": {"node_emb.weight": torch.ones(2, 2)},
                    "config": EasyDict({"model": {"hidden_dim": 2, "order": 3}, "data": {"dataset": "qm9"}})}, src)
    finally:
        if saved is None:
            del sys.modules["easydict"]
        else:
            sys.modules["easydict"] = saved
    state = read_official(src)
    assert state["config"]["model"]["hidden_dim"] == 2 and state["config"]["data"]["dataset"] == "qm9"
    assert isinstance(state["config"], dict) and type(state["config"]) is not EasyDict
    assert torch.equal(state["model"]["node_emb.weight"], torch.ones(2, 2))


def test_generate_cli_refuses_shared_weights_in_one_line(evil_ckpt, pwned, tmp_path, capsys):
    out = tmp_path / "out.sdf"
    rc = main(["generate", "CCO", "--weights", str(evil_ckpt), "--out", str(out), "--num-confs", "1", "-q"])
    assert rc == EXIT_FATAL
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and str(evil_ckpt) in lines[0]
    assert "is not a plain-tensor checkpoint" in lines[0]
    assert not pwned.exists() and not out.exists()


@pytest.mark.parametrize("folder", ["confgf_fast/weights", "bench/train_state"])
def test_shipped_files_are_plain(folder):
    files = sorted((ROOT / folder).glob("*.pt"))
    assert files, folder
    for path in files:
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert state["format"] == CHECKPOINT_FORMAT
        read_checkpoint(path)


def test_saves_are_plain_and_refuse_what_load_would(tmp_path):
    model = ScoreNet(ModelConfig(hidden_dim=8, num_layers=1))
    path = tmp_path / "ck.pt"
    save_checkpoint(path, model, NoiseConfig(), note=np.float32(0.5), counts=np.arange(3), where=tmp_path,
                    tags={"b", "a"})
    state = torch.load(path, weights_only=True)
    assert state["note"] == 0.5 and type(state["note"]) is float and state["tags"] == ["a", "b"]
    assert torch.equal(state["counts"], torch.arange(3)) and state["where"] == str(tmp_path)
    for k, v in model.state_dict().items():  # the weights themselves go through unchanged
        assert torch.equal(state["model_state"][k], v)
    with pytest.raises(TypeError, match=r"state\['extra'\].*RunsCode"):
        to_plain({"extra": touch(tmp_path / "never")})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "bad.pt", model, NoiseConfig(), extra=object())
    assert not (tmp_path / "bad.pt").exists() and not (tmp_path / "never").exists()


def test_train_cli_refuses_shared_resume_file_in_one_line(evil_ckpt, pwned, ref_sdf, tmp_path, capsys):
    out = tmp_path / "out.pt"
    rc = main(["train", "--data", str(ref_sdf), "--out", str(out), "--resume", str(evil_ckpt), "--steps", "1", "-q"])
    assert rc == EXIT_FATAL
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: "), err
    assert str(evil_ckpt) in err and not pwned.exists() and not out.exists()


def test_geom_pickles_unpickle_only_mols_numpy_and_containers(tmp_path, pwned):
    import json
    import pickle

    from rdkit import Chem

    from confgf_fast.data.geom import UnsafeGeomPickleError, load_geom_pickle, load_geom_rdkit_folder_with_stats

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    Chem.AllChem.EmbedMolecule(mol, randomSeed=1)
    good = {"smiles": "CCO", "conformers": [{"rd_mol": mol, "boltzmannweight": np.float64(1.0),
                                             "totalenergy": -1.0, "coords": np.zeros((2, 3))}]}
    (tmp_path / "qm9").mkdir()
    (tmp_path / "qm9" / "good.pickle").write_bytes(pickle.dumps(good))
    data = load_geom_pickle(tmp_path / "qm9" / "good.pickle")
    assert data["conformers"][0]["rd_mol"].GetNumAtoms() == mol.GetNumAtoms()
    (tmp_path / "qm9" / "evil.pickle").write_bytes(pickle.dumps({"smiles": "CO", "conformers": [touch(pwned)]}))
    with pytest.raises(UnsafeGeomPickleError, match="system") as info:
        load_geom_pickle(tmp_path / "qm9" / "evil.pickle")
    assert isinstance(info.value, UnsafeFileError) and "\n" not in str(info.value)
    # through the folder loader: the hostile molecule is skipped and counted, the good one loads
    summary = {"CCO": {"pickle_path": "qm9/good.pickle"}, "CO": {"pickle_path": "qm9/evil.pickle"}}
    (tmp_path / "summary_qm9.json").write_text(json.dumps(summary))
    mols, stats = load_geom_rdkit_folder_with_stats(tmp_path, "qm9")
    assert stats.n_unreadable_pickle == 1 and len(mols) == 1
    assert not pwned.exists()
