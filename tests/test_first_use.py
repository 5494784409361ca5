"""What a new user hits first (issue 29): each case gives a one-line error naming the fix, or a
warning with a count, never a traceback or a silent surprise."""

import warnings

import pytest
import torch
from rdkit import Chem

import confgf_fast as cf
from confgf_fast.cli import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main

FAST = ["--levels", "3", "--steps-per-level", "3", "-q"]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")


def _one_line_error(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "gpu"])
def test_device_without_gpu_is_one_line_error(tmp_path, capsys, device):
    out = tmp_path / "out.sdf"
    assert main(["generate", "CCO", "-n", "1", "--out", str(out), "--device", device, "-q"]) == EXIT_FATAL
    line = _one_line_error(capsys.readouterr().err)
    assert f"--device {device}" in line and ("--device cpu" in line or "cuda:N" in line)
    assert not out.exists()


@no_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_backend_that_cannot_run_names_the_fix(tmp_path, capsys, backend, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "out.sdf"
    assert main(["generate", "CCO", "-n", "1", "--out", str(out), "--backend", backend, "-q"]) == EXIT_USAGE
    err = capsys.readouterr().err
    line = _one_line_error(err)
    assert f"--backend {backend}" in line and "--backend auto" in line
    assert "generation stopped" not in err and "--resume" not in err


@no_cuda
def test_generate_tensors_on_missing_cuda_is_a_clear_error():
    from confgf_fast.sampling.tensors import DeviceError

    with pytest.raises(DeviceError, match="no CUDA device"):
        cf.generate_tensors(["CCO"], 1, device="cuda")
    with pytest.raises(RuntimeError, match="not a device"):
        cf.generate_tensors(["CCO"], 1, device="gpu")


def test_generate_iter_is_top_level():
    from confgf_fast.pipeline.generate import generate_iter

    assert cf.generate_iter is generate_iter
    assert "generate_iter" in cf.__all__


def test_packed_graphs_batch_takes_a_list():
    from confgf_fast.chem.molecule import featurize, mol_from_smiles

    packed = cf.PackedGraphs([featurize(mol_from_smiles("CCO")), featurize(mol_from_smiles("C"))])
    from_list = packed.batch([0, 0, 1])
    from_tensor = packed.batch(torch.tensor([0, 0, 1]))
    assert from_list.z.tolist() == from_tensor.z.tolist()
    assert torch.equal(from_list.edge_index, from_tensor.edge_index)
    assert from_list.z.numel() == 9 + 9 + 5
    with pytest.raises(IndexError, match="out of range"):
        packed.batch([2])


def test_featurize_without_explicit_h_warns_with_count():
    with pytest.warns(UserWarning, match=r"6 hydrogen\(s\).*AddHs"):
        g = cf.featurize(Chem.MolFromSmiles("CCO"))
    assert g.num_atoms == 3  # the graph is the molecule as given; the warning says what is missing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cf.featurize(Chem.AddHs(Chem.MolFromSmiles("CCO"))).num_atoms == 9


def test_existing_output_is_not_overwritten_without_resume_or_force(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out.sdf"
    out.write_text("precious\n")
    args = ["generate", "CCO", "-n", "1", "--out", str(out), "--weights", str(tiny_ckpt), *FAST]
    assert main(args) == EXIT_USAGE
    line = _one_line_error(capsys.readouterr().err)
    assert "--resume" in line and "--force" in line
    assert out.read_text() == "precious\n"
    assert main([*args, "--force"]) == EXIT_OK
    assert "$$$$" in out.read_text()
    assert main([*args, "--overwrite"]) == EXIT_OK  # the same flag under its other name


def test_all_broken_molecule_is_not_counted_ok(tiny_ckpt, tmp_path, capsys):
    """A tiny model (6 training steps) on 3 x 3 Langevin steps writes every conformer flagged broken:
    the summary must not call that molecule "ok", and with --allow-unknown-elements (a Si atom the
    model never saw) the exit is partial."""
    out = tmp_path / "out.sdf"
    rc = main(["generate", "C[Si](C)(C)C", "-n", "3", "--out", str(out), "--weights", str(tiny_ckpt),
               "--allow-unknown-elements", "--retries", "0", *FAST])
    err = capsys.readouterr().err
    records = list(Chem.SDMolSupplier(str(out), removeHs=False))
    flags = [r.GetProp("quality") for r in records]
    assert flags and set(flags) == {"broken"}
    summary = next(x for x in err.splitlines() if x.startswith("done:"))
    assert summary.startswith("done: 0 ok") and "1 with every conformer flagged quality=broken" in summary
    assert rc == EXIT_PARTIAL


def test_generate_tensors_default_is_not_the_5000_step_schedule(monkeypatch):
    """No sampler named: the quick projected schedule (44 evaluations), not the paper's 5000."""
    import confgf_fast.sampling.tensors as tensors
    from confgf_fast.config import resolve_schedule
    from confgf_fast.sampling.sampler import num_evaluations

    seen = []

    def spy(model, packed, mol_ids, noise, sampler, *a, **k):
        seen.append(sampler)
        raise RuntimeError("stop here")

    monkeypatch.setattr(tensors, "sample_batch", spy)
    model = cf.ScoreNet(cf.ModelConfig.preset("tiny"))
    with pytest.raises(RuntimeError, match="stop here"):
        cf.generate_tensors(["CCO"], 1, model=model, noise=cf.NoiseConfig())
    assert seen[0].sampler == "project" and seen[0].name == "quick"
    assert num_evaluations(cf.NoiseConfig(), seen[0]) < 100 < num_evaluations(cf.NoiseConfig(),
                                                                             resolve_schedule(sampler="langevin"))


def test_warm_start_embeds_per_batch_so_records_come_early(tiny_ckpt, monkeypatch):
    """The ETKDG warm start used to embed a whole chunk before sampling anything (minutes of 0/200 on
    drug inputs). Now each batch embeds its own molecules: the first outcome is yielded after only
    the first batch's embeddings, and every molecule is still embedded exactly once."""
    import confgf_fast.pipeline.generate as pipeline
    from confgf_fast.model.checkpoint import load_model

    loaded = load_model(str(tiny_ckpt))
    model, noise = loaded.model, loaded.noise
    embedded = []
    real = pipeline.etkdg_coordinates

    def spy(mol, n, seed, oversample=1):
        embedded.append(mol.GetNumAtoms())
        return real(mol, n, seed, oversample=oversample)

    monkeypatch.setattr(pipeline, "etkdg_coordinates", spy)
    smiles = ["CCO", "CCN", "CCC", "CC=O", "OCCO", "CCCO"]
    stream = pipeline.generate_iter(smiles, 2, model=model, noise=noise, max_atoms=30, threads=1,
                                    schedule="warm")
    first = next(stream)
    assert first.index == 0 and first.mol is not None
    assert 1 <= len(embedded) < len(smiles)  # not the whole chunk before the first record
    rest = list(stream)
    assert [o.index for o in rest] == list(range(1, len(smiles)))
    assert len(embedded) == len(smiles)


def test_warm_start_progress_names_the_molecule_embedding(tiny_ckpt, capsys):
    from confgf_fast.model.checkpoint import load_model
    from confgf_fast.pipeline.generate import generate_iter

    loaded = load_model(str(tiny_ckpt))
    model, noise = loaded.model, loaded.noise
    outs = list(generate_iter(["CCO", "CCN"], 1, model=model, noise=noise, progress=True, threads=1,
                              schedule="warm"))
    assert len(outs) == 2
    err = capsys.readouterr().err
    assert "embedding ETKDG starts, molecule 0 (1/2)" in err and "molecule 1 (2/2)" in err


@no_cuda
def test_generate_on_missing_cuda_is_a_clear_error():
    from confgf_fast.sampling.tensors import DeviceError

    with pytest.raises(DeviceError, match="no CUDA device"):
        cf.generate(["CCO"], 1, device="cuda:0")


def test_tetramethylurea_default_conformers_are_not_flagged():
    """Issue 29: the default (warm start) wrote 16 of 30 tetramethylurea conformers flagged broken
    (H...H 1.00 A between the two N-methyl groups, atoms 6 bonds apart that no edge of the graph
    joins, so the network could not see them). The warm schedule's repel keeps such pairs at
    >= 0.8 x their vdW sum; with repel off the clash is back (the control)."""
    from confgf_fast.config import resolve_schedule

    res = cf.generate(["CN(C)C(=O)N(C)C"], 30, seed=0)
    assert [f["quality"] for f in res.flags[0]] == ["ok"] * 30
    off = resolve_schedule("warm", overrides={"repel": 0.0})
    res_off = cf.generate(["CN(C)C(=O)N(C)C"], 30, schedule=off, seed=0)
    assert sum(f["quality"] != "ok" for f in res_off.flags[0]) >= 5
