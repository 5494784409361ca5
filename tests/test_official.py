"""Import of official ConfGF checkpoints (confgf_fast.model.official, `confgf-fast import-official`)."""

import sys
import types

import numpy as np
import pytest
import torch

from confgf_fast.chem.molecule import featurize, mol_from_smiles
from confgf_fast.cli import main
from confgf_fast.model.checkpoint import load_model
from confgf_fast.model.official import OFFICIAL_EDGE_ROW, OfficialImportError, convert_official, import_official

H, L = 16, 3


def official_state_dict(seed=0):
    """Random weights under the official DistanceScoreMatch names and shapes (hidden H, L convs)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    sd = {"node_emb.weight": r(100, H), "edge_emb.weight": r(100, H)}
    for prefix, dims in [("input_mlp", [1, H, H]), ("output_mlp", [2 * H, H, H // 2, 1])] + [
            (f"model.convs.{c}.nn", [H, H, H]) for c in range(L)]:
        for k in range(len(dims) - 1):
            sd[f"{prefix}.layers.{k}.weight"] = r(dims[k + 1], dims[k])
            sd[f"{prefix}.layers.{k}.bias"] = r(dims[k + 1], scale=0.1)
    for c in range(L):
        sd[f"model.convs.{c}.eps"] = torch.zeros(1)
    sd["sigmas"] = torch.tensor(np.exp(np.linspace(np.log(10), np.log(0.01), 50)), dtype=torch.float32)
    return sd


def official_config(**model):
    cfg = {"name": "qm9_default", "hidden_dim": H, "num_convs": L, "sigma_begin": 10, "sigma_end": 0.01,
           "num_noise_level": 50, "order": 3, "mlp_act": "relu", "gnn_act": "relu", "short_cut": True,
           "concat_hidden": False, "noise_type": "symmetry", "edge_encoder": "mlp"}
    cfg.update(model)
    return {"model": cfg, "data": {"dataset": "qm9"}}


def official_get_score(sd, atom_type, edge_index, edge_type, d, sigma):
    """DistanceScoreMatch.get_score restated in plain torch (official code, relu config)."""
    relu = torch.relu

    def mlp(prefix, x, n):
        for k in range(n):
            x = x @ sd[f"{prefix}.layers.{k}.weight"].t() + sd[f"{prefix}.layers.{k}.bias"]
            if k < n - 1:
                x = relu(x)
        return x

    node_attr = sd["node_emb.weight"][atom_type]
    edge_attr = mlp("input_mlp", d, 2) * sd["edge_emb.weight"][edge_type]
    x = node_attr
    for c in range(L):  # GINEConv: PyG message x_j = x[edge_index[0]], summed at edge_index[1]
        msg = relu(x[edge_index[0]] + edge_attr)
        out = torch.zeros_like(x).index_add_(0, edge_index[1], msg) + (1 + sd[f"model.convs.{c}.eps"]) * x
        hidden = mlp(f"model.convs.{c}.nn", out, 2)
        if c < L - 1:
            hidden = relu(hidden)
        x = hidden + x  # short_cut
    feat = torch.cat([x[edge_index[0]] * x[edge_index[1]], edge_attr], dim=-1)
    return mlp("output_mlp", feat, 3) * (1.0 / sigma)


@pytest.mark.parametrize("smiles", ["c1ccccc1C#N", "CC(=O)NC=C"])
def test_converted_scores_match_official_forward(smiles):
    torch.manual_seed(0)
    sd = official_state_dict()
    model, noise, meta = convert_official({"model": sd, "config": official_config()})
    g = featurize(mol_from_smiles(smiles))
    official_type = torch.tensor([OFFICIAL_EDGE_ROW[int(t)] for t in g.edge_type])
    d = 1.0 + 2.0 * torch.rand(g.num_edges)
    d = 0.5 * (d + d[g.rev])  # symmetric distances, as pairwise distances are
    sigma = torch.tensor(0.37)
    want = official_get_score(sd, g.z, g.edge_index, official_type, d.unsqueeze(-1), sigma).squeeze(-1)
    with torch.no_grad():
        got = model(g.z, g.edge_index, g.edge_type, d, sigma.expand(g.num_edges))
    assert want.abs().max() > 1e-3  # not a trivially zero network
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (noise.sigma_begin, noise.sigma_end, noise.num_levels) == (10.0, 0.01, 50)
    torch.testing.assert_close(noise.sigmas(), sd["sigmas"], rtol=1e-5, atol=0)
    assert meta["official_config"] == "qm9_default" and meta["trained_elements"] == [1, 6, 7, 8, 9]


def test_import_official_cli_writes_loadable_checkpoint(tmp_path, capsys):
    # The official checkpoint pickles an easydict.EasyDict config: a dict subclass from a module
    # that need not be installed here. Pickle one from a throwaway module, then remove the module.
    mod = types.ModuleType("fake_easydict")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "fake_easydict", "EasyDict"
    mod.EasyDict = EasyDict
    sys.modules["fake_easydict"] = mod
    try:
        cfg = EasyDict({k: EasyDict(v) for k, v in official_config(name="drugs_default").items()})
        cfg["data"]["dataset"] = "drugs"
        src = tmp_path / "checkpoint284"
        torch.save({"model": official_state_dict(), "optimizer": {}, "scheduler": {}, "config": cfg,
                    "cur_epoch": 284, "best_loss": 1.5}, src)
    finally:
        del sys.modules["fake_easydict"]
    out = tmp_path / "drugs.pt"
    assert main(["import-official", str(src), "--out", str(out)]) == 0
    loaded = load_model(out)
    model, noise = loaded.model, loaded.noise
    state = torch.load(out, weights_only=True)
    assert state["source"].startswith("official ConfGF") and state["official_config"] == "drugs_default"
    assert state["official_epoch"] == 284 and state["official_dataset"] == "drugs"
    assert 35 in loaded.meta.trained_elements and 80 in loaded.meta.trained_elements
    assert not loaded.meta.trained_elements_assumed
    assert (noise.sigma_begin, noise.sigma_end, noise.num_levels) == (10.0, 0.01, 50)
    assert model.config.hidden_dim == H and model.config.num_layers == L


def _write(tmp_path, sd, config=None):
    src = tmp_path / "official.pt"
    torch.save({"model": sd, "config": config or official_config()}, src)
    return src


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.__setitem__("output_mlp.layers.1.weight", torch.zeros(H, H)),
     "parameter output_mlp.layers.1.weight has shape [16, 16], expected [8, 16]"),
    (lambda sd: sd.__setitem__("input_mlp.layers.2.weight", torch.zeros(H, H)),
     "unexpected parameter in official checkpoint: input_mlp.layers.2.weight"),
    (lambda sd: sd.pop("model.convs.1.nn.layers.0.bias"),
     "missing parameter in official checkpoint: model.convs.1.nn.layers.0.bias"),
    (lambda sd: sd.__setitem__("model.convs.0.eps", torch.tensor([0.1])), "model.convs.0.eps = 0.1 != 0"),
])
def test_bad_parameters_fail_with_one_line_naming_them(tmp_path, capsys, edit, message):
    sd = official_state_dict()
    edit(sd)
    src = _write(tmp_path, sd)
    with pytest.raises(OfficialImportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        import_official(src, tmp_path / "x.pt")
    assert main(["import-official", str(src), "--out", str(tmp_path / "y.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "y.pt").exists()


@pytest.mark.parametrize("config, message", [
    (official_config(gnn_act="softplus"), "model.gnn_act = 'softplus' cannot be represented"),
    (official_config(concat_hidden=True), "model.concat_hidden = True cannot be represented"),
    (official_config(num_convs=4), "model.num_convs = 4 but the weights have 3"),
    (official_config(sigma_end=0.001), "not the geometric schedule"),
])
def test_unrepresentable_config_is_refused(tmp_path, config, message):
    with pytest.raises(OfficialImportError, match=message):
        import_official(_write(tmp_path, official_state_dict(), config), tmp_path / "x.pt")


def test_bare_state_dict_needs_dataset(tmp_path):
    src = tmp_path / "bare.pt"
    torch.save(official_state_dict(), src)
    with pytest.raises(OfficialImportError, match="pass --dataset"):
        import_official(src, tmp_path / "x.pt")
    meta = import_official(src, tmp_path / "x.pt", dataset="qm9")
    assert meta["official_config"] is None and meta["trained_elements"] == [1, 6, 7, 8, 9]
