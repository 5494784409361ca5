"""The confgf-fast command end to end, on a tiny model trained in the test."""

import json

import pytest
import torch
from rdkit import Chem

from confgf_fast.cli import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main, read_inputs
from confgf_fast.model.checkpoint import WeightsError, load_model

FAST = ["--levels", "3", "--steps-per-level", "3", "-q"]


def read_sdf(path):
    return [m for m in Chem.SDMolSupplier(str(path), removeHs=False)]


def test_train_writes_resumable_checkpoint(tiny_ckpt, ref_sdf, tmp_path):
    state = torch.load(tiny_ckpt, weights_only=True)
    assert state["step"] == 6 and state["model_config"]["hidden_dim"] == 32
    assert {"optimizer_state", "history", "noise_config", "train_config"} <= set(state)
    out = tmp_path / "resumed.pt"
    rc = main(["train", "--data", str(ref_sdf), "--out", str(out), "--resume", str(tiny_ckpt), "--steps", "9",
               "--batch-size", "4", "--val-fraction", "0", "-q"])
    assert rc == EXIT_OK
    assert torch.load(out, weights_only=True)["step"] == 9


def test_generate_smiles(tiny_ckpt, tmp_path):
    out = tmp_path / "out.sdf"
    rc = main(["generate", "CC(C)O", "--num-confs", "3", "--out", str(out), "--weights", str(tiny_ckpt), *FAST])
    assert rc == EXIT_OK
    recs = read_sdf(out)
    assert len(recs) == 3
    assert [r.GetProp("conf_id") for r in recs] == ["0", "1", "2"]
    for r in recs:
        assert r.GetProp("smiles") == "CC(C)O" and r.GetProp("mol_id") == "0"
        assert r.GetNumAtoms() == 12  # all hydrogens written
        assert r.GetConformer().Is3D()


def test_generate_threads_sets_torch_threads_and_output_is_unchanged(tiny_ckpt, tmp_path):
    """--threads bounds torch's (and the C++ kernels') CPU threads; the conformers do not depend on it."""
    before = torch.get_num_threads()
    a, b = tmp_path / "a.sdf", tmp_path / "b.sdf"
    try:
        torch.set_num_threads(2)  # so that the assertion below sees --threads act
        assert main(["generate", "CCO", "-n", "2", "--out", str(a), "--weights", str(tiny_ckpt), *FAST]) == EXIT_OK
        assert main(["generate", "CCO", "-n", "2", "--out", str(b), "--weights", str(tiny_ckpt), "--threads", "1",
                     *FAST]) == EXIT_OK
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    pa = [m.GetConformer().GetPositions() for m in read_sdf(a)]
    pb = [m.GetConformer().GetPositions() for m in read_sdf(b)]
    assert all(abs(x - y).max() < 1e-3 for x, y in zip(pa, pb))


def test_generate_bands_and_schedule_overrides(tiny_ckpt, tmp_path, monkeypatch):
    """--bands reaches the sampler; --levels/--steps-per-level replace the fast preset's bands; a
    malformed spec is refused before any work."""
    import confgf_fast.sampling.batch as batch_sampling

    seen = []
    real = batch_sampling.sample

    def spy(model, batch, noise, cfg, *a, **k):
        seen.append((cfg.bands, cfg.levels, cfg.steps_per_level))
        return real(model, batch, noise, cfg, *a, **k)

    monkeypatch.setattr(batch_sampling, "sample", spy)
    out = tmp_path / "out.sdf"
    common = ["generate", "CCO", "-n", "1", "--out", str(out), "--weights", str(tiny_ckpt), "-q", "--force"]
    assert main([*common, "--bands", "1:2x2,0:1x1"]) == EXIT_OK
    assert seen[-1][0] == "1:2x2,0:1x1"
    assert main([*common, "--schedule", "fast", "--levels", "2", "--steps-per-level", "2"]) == EXIT_OK
    assert seen[-1] == (None, 2, 2)
    n = len(seen)
    assert main([*common, "--bands", "1:2"]) == EXIT_FATAL
    assert len(seen) == n


def test_generate_project_sampler_provenance_and_option_checks(tiny_ckpt, tmp_path, capsys):
    """--sampler project runs the projected sampler, every record says how it was made (sampler,
    schedule, evaluations, weights and step, seed), the summary gives evaluations per conformer
    and conformers/s; options of the other sampler, or a schedule of the other sampler, are
    usage errors."""
    out = tmp_path / "out.sdf"
    common = ["generate", "CCO", "-n", "2", "--out", str(out), "--weights", str(tiny_ckpt), "-q", "--seed", "3",
              "--force"]
    assert main([*common, "--sampler", "project", "--num-steps", "5"]) == EXIT_OK
    recs = [m for m in Chem.SDMolSupplier(str(out), removeHs=False)]
    step = load_model(str(tiny_ckpt)).meta.trained_steps
    want = (f"sampler=project schedule=quick num_steps=5 nfe=9 weights={tiny_ckpt.name} "
            f"step={step if step is not None else 'unknown'} seed=3")
    assert len(recs) == 2 and all(r.GetProp("sampler") == want for r in recs)
    assert "9 network evaluations per conformer" in capsys.readouterr().err
    assert main([*common, "--sampler", "project", "--bands", "0:1x1"]) == EXIT_USAGE
    assert main([*common, "--sampler", "langevin", "--num-steps", "5"]) == EXIT_USAGE
    # the default is the project sampler's ETKDG warm start, named in every record
    assert main(common) == EXIT_OK
    assert all(r.GetProp("sampler").startswith("sampler=project schedule=warm init=etkdg init_oversample=3 nfe=24 ")
               for r in Chem.SDMolSupplier(str(out), removeHs=False))
    # the warm start's oversampling is an option of the warm start only, and named when changed
    assert main([*common, "--init-oversample", "1"]) == EXIT_OK
    assert all(r.GetProp("sampler").startswith("sampler=project schedule=warm init_oversample=1 init=etkdg nfe=24 ")
               for r in Chem.SDMolSupplier(str(out), removeHs=False))
    assert main([*common, "--init", "random", "--sampler", "project", "--init-oversample", "2"]) == EXIT_USAGE
    assert main([*common, "--sampler", "langevin", "--init-oversample", "2"]) == EXIT_USAGE
    # Langevin-only options without a sampler named ask for Langevin
    assert main([*common, "--levels", "2", "--steps-per-level", "2"]) == EXIT_OK
    assert all(r.GetProp("sampler").startswith("sampler=langevin schedule=paper steps_per_level=2 levels=2 nfe=4 ")
               for r in Chem.SDMolSupplier(str(out), removeHs=False))
    assert main([*common, "--sampler", "project", "--schedule", "fast"]) == EXIT_USAGE


def test_generate_file_with_counts_and_bad_line(tiny_ckpt, tmp_path):
    inp = tmp_path / "in.smi"
    inp.write_text("CCO 2\n\nc1ccccc1,1\nnot_a_smiles 2\nCN\n")
    assert [(s, c) for s, _, c in read_inputs(str(inp), 4)] == [("CCO", 2), ("c1ccccc1", 1), ("not_a_smiles", 2),
                                                                  ("CN", 4)]
    out = tmp_path / "out.sdf"
    rc = main(["generate", str(inp), "-n", "4", "--out", str(out), "--weights", str(tiny_ckpt), *FAST])
    assert rc == EXIT_PARTIAL
    recs = read_sdf(out)
    assert [(r.GetProp("mol_id"), r.GetProp("smiles")) for r in recs] == (
        [("0", "CCO")] * 2 + [("1", "c1ccccc1")] + [("3", "CN")] * 4)


def test_generate_sdf_input_and_evaluate(tiny_ckpt, ref_sdf, tmp_path):
    out = tmp_path / "gen.sdf"
    assert main(["generate", str(ref_sdf), "-n", "2", "--out", str(out), "--weights", str(tiny_ckpt), *FAST]) == EXIT_OK
    assert len(read_sdf(out)) == 12  # 6 input records, 2 conformers each
    js = tmp_path / "eval.json"
    assert main(["evaluate", str(ref_sdf), str(ref_sdf), "--json", str(js), "-q"]) == EXIT_OK
    res = json.loads(js.read_text())
    assert res["n_mols"] == 2 and res["cov_r_mean"] == pytest.approx(100.0) and res["mat_r_mean"] < 1e-3
    for key in ("cov_r_median", "mat_r_median", "cov_p_mean", "cov_p_median", "mat_p_mean", "mat_p_median"):
        assert key in res


def test_bad_weights_named(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"bad\.pt"):
        load_model(bad)
    rc = main(["generate", "CCO", "--out", str(tmp_path / "x.sdf"), "--weights", str(tmp_path / "missing.pt"), "-q"])
    assert rc == EXIT_FATAL
    assert "missing.pt" in capsys.readouterr().err


def test_train_from_featurised_file_without_rdkit(ref_sdf, tmp_path):
    """The GPU machine has no RDKit: training from a featurised .pt must not import it."""
    import subprocess
    import sys

    from confgf_fast.data.dataset import ConformerDataset

    data = tmp_path / "data.pt"
    ConformerDataset.from_sdf(ref_sdf).save(data)
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "rdkit" or name.startswith("rdkit."):
            raise ImportError("rdkit blocked for this test")
sys.meta_path.insert(0, Block())
from confgf_fast.cli import main
rc = main(["train", "--data", {str(data)!r}, "--out", {str(tmp_path / "ck.pt")!r}, "--preset", "tiny",
           "--steps", "3", "--batch-size", "4", "--val-every", "3", "-q"])
assert "rdkit" not in sys.modules
sys.exit(rc)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(tmp_path / "ck.pt", weights_only=True)["step"] == 3


def test_generate_flags_stereo_and_quality(tiny_ckpt, tmp_path):
    out = tmp_path / "chiral.sdf"
    rc = main(["generate", "C[C@H](N)O", "-n", "3", "--out", str(out), "--weights", str(tiny_ckpt), *FAST])
    assert rc == EXIT_OK
    recs = read_sdf(out)
    assert len(recs) == 3
    for r in recs:
        assert r.GetProp("stereo_ok") in ("0", "1")
        assert r.GetProp("quality") in ("ok", "broken")
