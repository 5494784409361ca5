"""Bad input and faults: every molecule ends with conformers or a clear error, the rest of the batch
completes, and an interrupted run leaves a valid SDF that --resume completes.

The CLI runs use a tiny model trained here on H/C/N/O molecules and a 3 x 3 step schedule.
"""

import csv
import os
import re
import signal
from dataclasses import replace

import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import featurize, mol_from_smiles
from confgf_fast.cli import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    Interrupted,
    _SignalGuard,
    iter_inputs,
    main,
)
from confgf_fast.config import ModelConfig, NoiseConfig, Runtime, resolve_schedule
from confgf_fast.graph import PackedGraphs
from confgf_fast.model import checkpoint
from confgf_fast.model.checkpoint import WeightsError, load_model
from confgf_fast.model.network import ScoreNet
from confgf_fast.pipeline.generate import MoleculeError, generate, generate_iter, prepare_molecule
from confgf_fast.sampling.sampler import langevin_sample

FAST = ["--levels", "3", "--steps-per-level", "3", "-q"]
CALLS_PER_RUN = 9  # network evaluations per langevin_sample call under FAST

def paper(**overrides):
    """The paper's Langevin schedule with `overrides` (config.resolve_schedule), e.g. a few levels for speed."""
    return resolve_schedule("paper", overrides=overrides)



def run(ckpt, inp, out, *extra):
    return main(["generate", str(inp), "--out", str(out), "--weights", str(ckpt), *FAST, *extra])


def records(path):
    # ForwardSDMolSupplier: SDMolSupplier refuses a 0-byte file, the valid SDF of "no molecules".
    with open(path, "rb") as fh:
        return list(Chem.ForwardSDMolSupplier(fh, removeHs=False))


def errors_tsv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["mol_id", "input", "error"]
    return {int(r[0]): (r[1], r[2]) for r in rows[1:]}


def assert_complete_sdf(path, expected_ids):
    """Every record readable; each molecule's records consecutive, complete (num_confs of them,
    conf_id 0..n-1) and present once."""
    recs = records(path)
    assert all(r is not None for r in recs)
    groups: list[list] = []
    for r in recs:
        if groups and groups[-1][0].GetProp("mol_id") == r.GetProp("mol_id"):
            groups[-1].append(r)
        else:
            groups.append([r])
    ids = [int(g[0].GetProp("mol_id")) for g in groups]
    assert len(ids) == len(set(ids)), f"duplicate molecules: {ids}"
    assert set(ids) == set(expected_ids)
    for g in groups:
        assert [int(r.GetProp("conf_id")) for r in g] == list(range(int(g[0].GetProp("num_confs"))))
    with open(path, "rb") as fh:
        assert fh.read().rstrip().endswith(b"$$$$")
    return recs


# ---- empty and missing input ------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n\n   \n", "# only a comment\n\n"])
def test_empty_input_is_fatal_with_clear_message(tiny_ckpt, tmp_path, capsys, text):
    inp = tmp_path / "in.smi"
    inp.write_text(text)
    assert run(tiny_ckpt, inp, tmp_path / "out.sdf") == EXIT_FATAL
    assert "no molecules in" in capsys.readouterr().err
    assert not (tmp_path / "out.sdf.errors.tsv").exists()


def test_missing_input_file_is_fatal(tiny_ckpt, tmp_path, capsys):
    assert run(tiny_ckpt, tmp_path / "nope.smi", tmp_path / "out.sdf") == EXIT_FATAL
    assert "input file not found" in capsys.readouterr().err


def test_usage_errors(tiny_ckpt, tmp_path):
    for bad in (["-n", "0"], ["--retries", "-1"], ["--chunk-size", "0"]):
        with pytest.raises(SystemExit) as exc:
            run(tiny_ckpt, "CCO", tmp_path / "o.sdf", *bad)
        assert exc.value.code == EXIT_USAGE


# ---- a file of bad molecules mixed with good ones -----------------------------------------------------
BAD_BATCH = [
    ("CCO 2", "ok"),                        # 0
    ("not_a_smiles", "syntax error"),       # 1
    ("C(C)(C)(C)(C)C", "valence"),          # 2 RDKit's reason is passed on
    ("C[Se]C", "Se not in the model's training data"),  # 3
    ("CC(=O)[O-].[Na+]", "ok"),             # 4 largest fragment kept, with a warning
    ("[He]", "ok"),                         # 5 single atom: origin
    ("C", "ok"),                            # 6 methane
    ("[H][H]", "ok"),                       # 7 one edge
    ("C" * 101, "101 heavy atoms"),         # 8 over --max-heavy-atoms 100
    ("CCO 2", "ok"),                        # 9 duplicate of 0: its own molecule
    ("CCO 0", "at least 1"),                # 10
    ("C[NH3+]", "ok"),                      # 11 charged: allowed (charge-blind graph)
    ("CCl", "Cl not in the model's training data"),  # 12
]


def test_bad_inputs_fail_alone_and_the_batch_completes(tiny_ckpt, tmp_path, capsys):
    inp = tmp_path / "in.smi"
    inp.write_text("\n".join(line for line, _ in BAD_BATCH[:5]) + "\n\n# comment\n"
                   + "\n".join(line for line, _ in BAD_BATCH[5:]) + "\n")
    out = tmp_path / "out.sdf"
    assert run(tiny_ckpt, inp, out, "-n", "3") == EXIT_PARTIAL
    err = capsys.readouterr().err
    expect_ok = [k for k, (_, why) in enumerate(BAD_BATCH) if why == "ok"]
    recs = assert_complete_sdf(out, expect_ok)
    by_id: dict[int, list] = {}
    for r in recs:
        by_id.setdefault(int(r.GetProp("mol_id")), []).append(r)
    assert len(by_id[0]) == len(by_id[9]) == 2 and len(by_id[5]) == 3
    for r in by_id[5]:  # a single atom sits at the origin
        assert r.GetNumAtoms() == 1 and r.GetConformer().GetPositions().tolist() == [[0.0, 0.0, 0.0]]
    assert by_id[7][0].GetNumAtoms() == 2 and by_id[6][0].GetNumAtoms() == 5
    salt = by_id[4][0]
    assert salt.GetNumAtoms() == 7 and salt.GetProp("smiles") == "CC(=O)[O-]"  # what was sampled: acetate + 3 H
    assert salt.GetProp("input_smiles") == "CC(=O)[O-].[Na+]"
    assert "dropped [Na+]" in salt.GetProp("warnings")
    assert not any(name.startswith("_confgf") for name in salt.GetPropNames(includePrivate=True))  # internal
    assert sum(a.GetFormalCharge() for a in by_id[11][0].GetAtoms()) == 1
    errors = errors_tsv(tmp_path / "out.sdf.errors.tsv")
    assert set(errors) == {k for k, (_, why) in enumerate(BAD_BATCH) if why != "ok"}
    for k, (text, error) in errors.items():
        assert BAD_BATCH[k][0].startswith(text)
        assert BAD_BATCH[k][1] in error
        assert f"error: molecule {k} " in err  # also on stderr
    assert "warning: molecule 4 " in err
    # 7 molecules have records; those whose every conformer the tiny model left broken are not "ok".
    summary = re.search(r"done: (\d+) ok, 0 with missing conformers(?:, (\d+) with every conformer flagged "
                        r"quality=broken)?, 6 failed of 13 molecules", err)
    assert summary and int(summary[1]) + int(summary[2] or 0) == 7
    # A clean rerun removes the stale default errors file.
    good = tmp_path / "good.smi"
    good.write_text("CCO\n")
    assert run(tiny_ckpt, good, out, "--force") == EXIT_OK
    assert not (tmp_path / "out.sdf.errors.tsv").exists()


def test_unknown_elements_allowed_on_request_and_explicit_errors_file(tiny_ckpt, tmp_path, capsys):
    errs = tmp_path / "errs.tsv"
    assert run(tiny_ckpt, "CCl", tmp_path / "o.sdf", "-n", "2", "--errors", str(errs)) == EXIT_PARTIAL
    assert "--allow-unknown-elements" in errors_tsv(errs)[0][1]
    rc = run(tiny_ckpt, "CCl", tmp_path / "o.sdf", "-n", "2", "--errors", str(errs), "--allow-unknown-elements")
    assert errors_tsv(errs) == {}  # an explicit --errors file is always written
    recs = records(tmp_path / "o.sdf")
    assert len(recs) == 2
    # Unknown elements sampled into nothing but broken conformers is a partial run (issue 29).
    all_broken = all(r.GetProp("quality") == "broken" for r in recs)
    assert rc == (EXIT_PARTIAL if all_broken else EXIT_OK)
    assert "never seen in training" in capsys.readouterr().err


def test_no_largest_fragment_fails_salts(tiny_ckpt, tmp_path):
    out = tmp_path / "o.sdf"
    assert run(tiny_ckpt, "CC(=O)[O-].[Na+]", out, "--no-largest-fragment") == EXIT_PARTIAL
    assert "2 disconnected fragments" in errors_tsv(str(out) + ".errors.tsv")[0][1]
    assert not out.exists()  # no record: no 0-byte SDF left behind


def test_max_heavy_atoms_option(tiny_ckpt, tmp_path):
    inp = tmp_path / "in.smi"
    inp.write_text("CCCCCC\nCCO\n")
    out = tmp_path / "o.sdf"
    assert run(tiny_ckpt, inp, out, "-n", "1", "--max-heavy-atoms", "5") == EXIT_PARTIAL
    assert "6 heavy atoms, the limit is 5" in errors_tsv(str(out) + ".errors.tsv")[0][1]
    assert run(tiny_ckpt, inp, out, "-n", "1", "--max-heavy-atoms", "0", "--force") == EXIT_OK  # 0: no limit


def test_unreadable_sdf_record_is_one_error(tiny_ckpt, tmp_path):
    good = mol_from_smiles("CCO")
    AllChem.EmbedMolecule(good, randomSeed=0)
    block = Chem.MolToMolBlock(good)
    pentavalent = Chem.MolToMolBlock(Chem.MolFromSmiles("C(C)(C)(C)(C)C", sanitize=False), kekulize=False)
    sdf = tmp_path / "in.sdf"
    sdf.write_text(block + "$$$$\n" + pentavalent + "$$$$\n" + "garbage\n\n\n 1 2\n$$$$\n" + block + "$$$$\n")
    items = list(iter_inputs(str(sdf), 2))
    assert len(items) == 4 and items[0].error is None and items[3].error is None
    assert "valence" in items[1].error.lower() and "SDF record 1" in items[1].error
    assert "SDF record 2" in items[2].error
    out = tmp_path / "o.sdf"
    assert run(tiny_ckpt, sdf, out, "-n", "1") == EXIT_PARTIAL
    assert sorted(int(r.GetProp("mol_id")) for r in records(out)) == [0, 3]
    assert set(errors_tsv(str(out) + ".errors.tsv")) == {1, 2}


# ---- weights ------------------------------------------------------------------------------------------
def test_corrupt_truncated_and_mismatched_weights_are_named(tiny_ckpt, tmp_path, capsys):
    raw = tiny_ckpt.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(raw[: len(raw) // 2])
    assert run(cut, "CCO", tmp_path / "o.sdf") == EXIT_FATAL
    assert "cut.pt" in capsys.readouterr().err
    with pytest.raises(WeightsError, match="is a directory"):
        load_model(tmp_path)

    state = torch.load(tiny_ckpt, weights_only=True)
    shape = dict(state, model_config=dict(state["model_config"], hidden_dim=16))
    torch.save(shape, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match=r"shape\.pt.*hidden_dim=16.*shape mismatch: node_emb\.weight \[100, 32\]"):
        load_model(tmp_path / "shape.pt")

    keys = dict(state, model_state={k: v for k, v in state["model_state"].items() if "out_mlp" not in k})
    torch.save(keys, tmp_path / "keys.pt")
    with pytest.raises(WeightsError, match=r"keys\.pt.*missing keys: out_mlp"):
        load_model(tmp_path / "keys.pt")

    nan_state = dict(state["model_state"])
    nan_state["dist_mlp.0.weight"] = nan_state["dist_mlp.0.weight"].clone().fill_(float("nan"))
    torch.save(dict(state, model_state=nan_state), tmp_path / "nan.pt")
    assert run(tmp_path / "nan.pt", "CCO", tmp_path / "o.sdf") == EXIT_FATAL
    err = capsys.readouterr().err
    assert "nan.pt" in err and "NaN or inf" in err and "dist_mlp.0.weight" in err

    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a confgf_fast checkpoint"):
        load_model(tmp_path / "other.pt")


def test_old_checkpoint_without_elements_assumes_qm9(tiny_ckpt, tmp_path, capsys):
    state = torch.load(tiny_ckpt, weights_only=True)
    assert state["trained_elements"] == [1, 6, 7, 8]
    del state["trained_elements"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    meta = load_model(old).meta
    assert meta.trained_elements == (1, 6, 7, 8, 9) and meta.trained_elements_assumed
    assert run(old, "CCF", tmp_path / "o.sdf", "-n", "1") == EXIT_OK  # F is in the QM9 set
    assert "assuming H, C, N, O, F" in capsys.readouterr().err


# ---- molecules larger than the training data -----------------------------------------------------------
def test_molecules_larger_than_the_training_data_get_a_warning(tiny_ckpt, tmp_path, capsys):
    """tiny_ckpt was trained on CCO and CC(=O)N (at most 4 heavy atoms): hexane (6) is sampled, with
    a warning in its SDF record and on stderr, and counted in the closing summary; ethanol is not."""
    assert torch.load(tiny_ckpt, weights_only=True)["trained_max_heavy_atoms"] == 4
    assert load_model(tiny_ckpt).meta.trained_max_heavy_atoms == 4
    inp = tmp_path / "in.smi"
    inp.write_text("CCO\nCCCCCC\n")
    out = tmp_path / "o.sdf"
    assert run(tiny_ckpt, inp, out, "-n", "2") == EXIT_OK  # a warning, not an error
    err = capsys.readouterr().err
    by_id = {int(r.GetProp("mol_id")): r for r in records(out)}
    assert set(by_id) == {0, 1}
    assert not by_id[0].HasProp("warnings")
    said = "6 heavy atoms, more than the 4 of the largest molecule the weights were trained on"
    assert said in by_id[1].GetProp("warnings")
    assert not any(name.startswith("_confgf") for name in by_id[1].GetPropNames(includePrivate=True))
    assert f"warning: molecule 1 ('CCCCCC'): {said}" in err and "warning: molecule 0 " not in err
    assert "1 molecule(s) larger than any the weights were trained on" in err
    # The Python API: the same warning, and the count in the run's stats.
    loaded = load_model(tiny_ckpt)
    res = generate(["CC", "CCCCCC"], 1, model=loaded, schedule=paper(levels=2, steps_per_level=2))
    assert 0 not in res.warnings and said in res.warnings[1][0] and res.mols[1] is not None
    assert res.stats.beyond_trained_size == 1
    # the bare network (built in code, as far as generate can tell) does not know its training data:
    # no warning
    res = generate(["CCCCCC"], 1, model=loaded.model, noise=loaded.noise, schedule=paper(levels=2, steps_per_level=2))
    assert res.warnings == {} and res.stats.beyond_trained_size == 0


def test_trained_size_of_older_checkpoints(tiny_ckpt, tmp_path):
    """Checkpoints without trained_max_heavy_atoms: the data's composition statistics, else 9 for
    QM9 (the shipped weights), else unknown (None: no warning)."""
    assert load_model().meta.trained_max_heavy_atoms == 9  # qm9_small.pt: QM9, at most 9 heavy atoms
    state = torch.load(tiny_ckpt, weights_only=True)
    del state["trained_max_heavy_atoms"]
    old = tmp_path / "old.pt"
    for meta, expect in (({}, None), ({"source": "qm9pack"}, 9),
                         ({"source": "qm9pack", "composition": {"heavy_atoms": {"n": 3, "max": 7}}}, 7),
                         ({"composition": {"heavy_atoms": {"n": 0}}}, None)):
        torch.save(dict(state, data_meta=meta), old)
        assert load_model(old).meta.trained_max_heavy_atoms == expect
    assert prepare_molecule("CCCCCC", trained_max_heavy_atoms=None)[1] == []
    warns = prepare_molecule("CC(C)(C)C.O", trained_max_heavy_atoms=4)[1]  # the kept fragment is counted
    assert len(warns) == 2 and "5 heavy atoms, more than the 4" in warns[1]
    assert prepare_molecule("CC(C)(C)C", trained_max_heavy_atoms=5)[1] == []  # equal to the largest: fine


# ---- single atoms and the sampler ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_sampler_survives_edgeless_graphs_in_a_mixed_batch(backend):
    """The pipeline never samples single atoms, but the sampler itself must not crash on them."""
    graphs = [featurize(mol_from_smiles(s)) for s in ["[He]", "CCO", "[H][H]"]]
    assert graphs[0].num_edges == 0
    batch = PackedGraphs(graphs).batch(torch.tensor([0, 1, 0, 2, 1]))
    model = ScoreNet(ModelConfig(16, 2)).eval()
    pos = langevin_sample(model, batch, NoiseConfig(), resolve_schedule("paper", overrides={"levels": 2,
                          "steps_per_level": 2}), Runtime(backend=backend), generator=torch.Generator().manual_seed(0))
    assert pos.shape == (batch.num_atoms, 3) and torch.isfinite(pos).all()


def test_prepare_molecule_policy():
    mol, warns = prepare_molecule("[Xe]")  # single atom: no model involved, any element
    assert mol.GetNumAtoms() == 1 and warns == []
    with pytest.raises(MoleculeError, match="beyond the model's atom vocabulary"):
        prepare_molecule("C[Og]", allow_unknown_elements=True, trained_elements=range(200))
    with pytest.raises(MoleculeError, match="no atoms"):
        prepare_molecule(Chem.Mol())
    with pytest.raises(MoleculeError, match="empty SMILES"):
        prepare_molecule("  ")


# ---- NaN during sampling ------------------------------------------------------------------------------
class NaNScores(torch.nn.Module):
    """Wraps a score model and returns NaN for the edges of chosen conformers.

    mode "first_run": the first conformer of the batch, during the first langevin_sample call only;
    mode "first_always": the first conformer of every batch (so its retries fail too);
    mode "nitrogen": every edge leaving a nitrogen atom, always.
    """

    def __init__(self, inner, mode, first_atoms=9):
        super().__init__()
        self.inner, self.mode, self.first_atoms, self.calls = inner, mode, first_atoms, 0
        self.config = inner.config  # the sampler builds each model's graphs at its config.graph_order

    def forward(self, z, edge_index, edge_type, d, sigma, half_edges=None, edge_pair=None):
        s = self.inner(z, edge_index, edge_type, d, sigma)
        first_run = self.calls < CALLS_PER_RUN
        self.calls += 1
        if self.mode == "nitrogen":
            poison = z[edge_index[0]] == 7
        else:
            if self.mode == "first_run" and not first_run:
                return s
            poison = edge_index[0] < self.first_atoms  # the first conformer is CCO in these tests
        return torch.where(poison, torch.full_like(s, float("nan")), s)


@pytest.fixture()
def tiny_model(tiny_ckpt):
    return load_model(tiny_ckpt)


def test_nan_conformer_is_retried_and_others_untouched(tiny_model):
    model, noise = tiny_model.model, tiny_model.noise
    cfg = paper(levels=3, steps_per_level=3)
    clean = generate(["CCO", "CC(=O)N"], 3, model=model, noise=noise, schedule=cfg, seed=4)
    res = generate(["CCO", "CC(=O)N"], 3, model=NaNScores(model, "first_run"), noise=noise, schedule=cfg, seed=4)
    assert res.errors == {}
    assert [m.GetNumConformers() for m in res.mols] == [3, 3]
    for m in res.mols:
        assert all(torch.isfinite(torch.tensor(c.GetPositions())).all() for c in m.GetConformers())
    # The poisoned conformer was resampled; every other conformer is exactly the clean run's.
    for k in range(2):
        for c in range(3):
            same = (clean.mols[k].GetConformer(c).GetPositions() == res.mols[k].GetConformer(c).GetPositions()).all()
            assert bool(same) == ((k, c) != (0, 0))
    again = generate(["CCO", "CC(=O)N"], 3, model=NaNScores(model, "first_run"), noise=noise, schedule=cfg, seed=4)
    assert (again.mols[0].GetConformer(0).GetPositions() == res.mols[0].GetConformer(0).GetPositions()).all()
    # Without retries the failure is reported and the molecule keeps its other conformers.
    res0 = generate(["CCO", "CC(=O)N"], 3, model=NaNScores(model, "first_run"), noise=noise, schedule=cfg, seed=4,
                    retries=0)
    assert res0.mols[0].GetNumConformers() == 2 and "1 of 3 conformers missing (2 written)" in res0.errors[0]


def test_persistent_nan_is_reported_per_molecule(tiny_model):
    model, noise = tiny_model.model, tiny_model.noise
    cfg = paper(levels=3, steps_per_level=3)
    res = generate(["CCO", "CC(=O)N", "CCO"], 2, model=NaNScores(model, "nitrogen"), noise=noise, schedule=cfg)
    assert res.mols[1] is None and "all 2 conformers failed" in res.errors[1] and "after 2 retries" in res.errors[1]
    assert set(res.errors) == {1}
    assert res.mols[0].GetNumConformers() == res.mols[2].GetNumConformers() == 2
    res = generate(["CCO", "CCN"], 3, model=NaNScores(model, "first_always"), noise=noise, schedule=cfg, retries=1)
    assert res.mols[0].GetNumConformers() == 2 and "1 of 3 conformers missing" in res.errors[0]
    assert res.mols[1].GetNumConformers() == 3


def test_nan_through_cli_exit_code_and_errors_file(tiny_ckpt, tiny_model, tmp_path, monkeypatch, capsys):
    model = tiny_model.model
    monkeypatch.setattr(checkpoint, "load_model",
                        lambda *a, **k: replace(tiny_model, model=NaNScores(model, "nitrogen")))
    inp = tmp_path / "in.smi"
    inp.write_text("CCO\nCC(=O)N\nCO\n")
    out = tmp_path / "o.sdf"
    assert run(tiny_ckpt, inp, out, "-n", "2") == EXIT_PARTIAL
    assert sorted({int(r.GetProp("mol_id")) for r in records(out)}) == [0, 2]
    assert "all 2 conformers failed" in errors_tsv(str(out) + ".errors.tsv")[1][1]
    assert "1 failed of 3 molecules" in capsys.readouterr().err


# ---- streaming, interrupt and resume ------------------------------------------------------------------
def test_generate_iter_streams_in_input_order(tiny_model):
    model, noise = tiny_model.model, tiny_model.noise
    consumed = []

    def source():
        for k, s in enumerate(["CCO", "bad(", "CN", "[He]", "CCC", "CO", "OCCO"]):
            consumed.append(k)
            yield s

    it = generate_iter(source(), 2, model=model, noise=noise, schedule=paper(levels=2, steps_per_level=2),
                       chunk_size=3, max_atoms=20)
    first = next(it)
    assert first.index == 0 and first.num_confs == 2 and len(consumed) <= 3  # read lazily, one chunk at a time
    rest = list(it)
    assert [o.index for o in [first, *rest]] == list(range(7))
    assert rest[0].error is not None and all(o.ok for o in rest[1:])


class InterruptAfter(torch.nn.Module):
    """Raises KeyboardInterrupt (or sends itself a signal) at network call `after`."""

    def __init__(self, inner, after, signum=None):
        super().__init__()
        self.inner, self.after, self.signum, self.calls = inner, after, signum, 0
        self.config = inner.config  # the sampler builds each model's graphs at its config.graph_order

    def forward(self, *args):
        self.calls += 1
        if self.calls == self.after:
            if self.signum is None:
                raise KeyboardInterrupt
            os.kill(os.getpid(), self.signum)
        return self.inner(*args)


RESUME_INPUT = ["CCO", "CCN", "not_smiles", "CCC", "CO", "CN", "OCCO", "CC(=O)N"]


@pytest.mark.parametrize("signum", [None, signal.SIGTERM])
def test_interrupt_leaves_valid_sdf_and_resume_completes_it(tiny_ckpt, tiny_model, tmp_path, monkeypatch, signum):
    model = tiny_model.model
    inp = tmp_path / "in.smi"
    inp.write_text("\n".join(RESUME_INPUT) + "\n")
    out = tmp_path / "o.sdf"
    # --max-atoms 20: batches are [CCO x2], [CCN x2], [CCC], [CCC, ...]; stop in the 4th batch, so
    # molecules 0 and 1 are complete (2 is invalid) and CCC is half done: it must not be written.
    # --retries 0: the tiny model's conformers come out broken, and resampling them would add calls.
    monkeypatch.setattr(checkpoint, "load_model",
                        lambda *a, **k: replace(tiny_model, model=InterruptAfter(model, 3 * CALLS_PER_RUN + 2, signum)))
    rc = run(tiny_ckpt, inp, out, "-n", "2", "--max-atoms", "20", "--retries", "0")
    assert rc == (EXIT_SIGINT if signum is None else EXIT_SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    partial = assert_complete_sdf(out, {0, 1})
    assert len(partial) == 4
    # Simulate a kill in the middle of a write as well: half a record at the end of the file.
    text = out.read_text()
    with open(out, "a") as fh:
        fh.write(text[: len(text) // 5])
    monkeypatch.setattr(checkpoint, "load_model", load_model)
    assert run(tiny_ckpt, inp, out, "-n", "2", "--max-atoms", "20", "--resume") == EXIT_PARTIAL
    recs = assert_complete_sdf(out, {0, 1, 3, 4, 5, 6, 7})
    assert len(recs) == 14
    assert [r.GetProp("smiles") for r in recs[::2]] == [s for s in RESUME_INPUT if s != "not_smiles"]
    assert set(errors_tsv(str(out) + ".errors.tsv")) == {2}
    # Resuming a complete file does nothing more; resuming against another input is refused.
    assert run(tiny_ckpt, inp, out, "-n", "2", "--resume") == EXIT_PARTIAL
    assert len(records(out)) == 14
    other = tmp_path / "other.smi"
    other.write_text("CCCC\n")
    assert run(tiny_ckpt, other, out, "--resume") == EXIT_FATAL
    shorter = tmp_path / "shorter.smi"  # a prefix of the input: same molecules, but OUT has more
    shorter.write_text("\n".join(RESUME_INPUT[:3]) + "\n")
    assert run(tiny_ckpt, shorter, out, "--resume") == EXIT_FATAL
    assert len(records(out)) == 14


def test_resume_refuses_foreign_sdf(tiny_ckpt, tmp_path, capsys):
    foreign = tmp_path / "f.sdf"
    mol = mol_from_smiles("CCO")
    AllChem.EmbedMolecule(mol, randomSeed=0)
    Chem.MolToMolFile(mol, str(foreign))
    with open(foreign, "a") as fh:
        fh.write("$$$$\n")
    assert run(tiny_ckpt, "CCO", foreign, "--resume") == EXIT_FATAL
    assert "without a mol_id" in capsys.readouterr().err


@pytest.mark.parametrize("start", [signal.default_int_handler, signal.SIG_IGN])
def test_signal_inside_a_write_waits_for_the_write(start):
    """Independent of how pytest was started: under nohup or `&` SIGINT starts ignored (SIG_IGN)
    and Python installs no KeyboardInterrupt handler; the guard restores whatever was there."""
    before = signal.signal(signal.SIGINT, start)
    try:
        guard = _SignalGuard()
        with guard, pytest.raises(Interrupted) as exc:
            with guard.critical():
                os.kill(os.getpid(), signal.SIGINT)
                written = True  # still running: the signal is held until the block ends
            pytest.fail("the held signal must be raised when the critical block ends")
        assert written and exc.value.signum == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is start
    finally:
        signal.signal(signal.SIGINT, before)
