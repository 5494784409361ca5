"""What a new user meets first (issue 16): one-line errors with the right exit code, inputs that
behave (headers, count columns, the shipped examples), what the SDF says, --version."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rdkit import Chem, RDLogger

from confgf_fast.cli import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, main
from confgf_fast.config import resolve_schedule

FAST = ["--levels", "3", "--steps-per-level", "3", "-q"]
REPO = Path(__file__).resolve().parents[1]

def paper(**overrides):
    """The paper's Langevin schedule with `overrides` (config.resolve_schedule), e.g. a few levels for speed."""
    return resolve_schedule("paper", overrides=overrides)



def records(path):
    with open(path, "rb") as fh:
        return list(Chem.ForwardSDMolSupplier(fh, removeHs=False))


def one_line_error(err: str) -> str:
    """The stderr of a failed command: exactly one line, an `error:` line, no traceback."""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture()
def tiny_model(tiny_ckpt):
    from confgf_fast.model.checkpoint import load_model

    return load_model(tiny_ckpt)


# ---- 1. errors and exit codes -----------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing", "empty", "directory", "not_sdf", "bad_gz"])
@pytest.mark.parametrize("side", ["generated", "reference"])
def test_evaluate_bad_file_is_one_line_error(ref_sdf, tmp_path, capsys, case, side):
    bad = tmp_path / {"bad_gz": "bad.sdf.gz"}.get(case, f"{case}.sdf")
    if case == "empty":
        bad.write_bytes(b"")
    elif case == "directory":
        bad.mkdir()
    elif case == "not_sdf":
        bad.write_text("CCO\nc1ccccc1\n")
    elif case == "bad_gz":
        bad.write_bytes(b"this is not gzip data")
    args = [str(bad), str(ref_sdf)] if side == "generated" else [str(ref_sdf), str(bad)]
    assert main(["evaluate", *args, "-q"]) == EXIT_FATAL
    line = one_line_error(capsys.readouterr().err)
    assert str(bad) in line and side in line
    want = {"missing": "not found", "empty": "empty", "directory": "directory", "not_sdf": "no readable SDF record",
            "bad_gz": "cannot read"}[case]
    assert want in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_evaluate_unreadable_file(ref_sdf, tmp_path, capsys):
    bad = tmp_path / "locked.sdf"
    bad.write_bytes(ref_sdf.read_bytes())
    bad.chmod(0)
    assert main(["evaluate", str(bad), str(ref_sdf), "-q"]) == EXIT_FATAL
    assert "cannot read generated file" in one_line_error(capsys.readouterr().err)


def test_evaluate_files_sharing_no_molecule_fail(ref_sdf, tmp_path, capsys):
    from rdkit.Chem import AllChem

    other = tmp_path / "other.sdf"
    mol = Chem.AddHs(Chem.MolFromSmiles("CCCC"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    with Chem.SDWriter(str(other)) as w:
        w.write(mol)
    js = tmp_path / "m.json"
    assert main(["evaluate", str(other), str(ref_sdf), "--json", str(js), "-q"]) == EXIT_FATAL
    line = one_line_error(capsys.readouterr().err)
    assert "share no molecule" in line and "CCCC" in line
    assert not js.exists()  # no all-NaN figures


def test_python_module_evaluate_also_one_line(tmp_path, ref_sdf):
    r = subprocess.run([sys.executable, "-m", "confgf_fast.evaluation.evaluate", str(tmp_path / "nope.sdf"),
                        str(ref_sdf), "-q"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "generated file not found" in one_line_error(r.stderr)


def test_generate_all_failed_leaves_no_empty_sdf(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out.sdf"
    out.write_text("")  # even a 0-byte file from an earlier run is not left behind
    assert main(["generate", "not_a_smiles", "-o", str(out), "--weights", str(tiny_ckpt), *FAST]) == EXIT_PARTIAL
    assert not out.exists()
    err = capsys.readouterr().err
    assert "0 conformers written" in err and "not kept" in err
    assert (tmp_path / "out.sdf.errors.tsv").is_file()  # the failures are still written down


def test_invalid_smiles_from_the_api_is_reported_once(tiny_model, capfd):
    from confgf_fast import generate

    model, noise = tiny_model.model, tiny_model.noise
    RDLogger.EnableLog("rdApp.*")  # as in a fresh Python session (the CLI tests turn RDKit's log off)
    try:
        capfd.readouterr()
        res = generate(["C1CC", "not_a_smiles", "C(C)(C)(C)(C)C", "CCO"], 1, model=model, noise=noise,
                       schedule=paper(levels=3, steps_per_level=3), seed=0, retries=0)
        err = capfd.readouterr().err
    finally:
        RDLogger.DisableLog("rdApp.*")
    assert "SMILES Parse Error" not in err and "valence" not in err.lower(), err
    assert "unclosed ring" in res.errors[0]
    assert "syntax error" in res.errors[1] and "position" in res.errors[1]
    assert "valence" in res.errors[2].lower()
    assert 3 not in res.errors


def test_option_named_as_the_caller_can_change_it(tiny_model, tiny_ckpt, tmp_path):
    from confgf_fast import generate

    model, noise = tiny_model.model, tiny_model.noise
    res = generate(["CCl", "CC(=O)[O-].[Na+]", "CCCCCC"], 1, model=model, noise=noise, largest_fragment=False,
                   max_heavy_atoms=5)
    assert "allow_unknown_elements=True" in res.errors[0] and "--" not in res.errors[0]
    assert "largest_fragment=True" in res.errors[1] and "--" not in res.errors[1]
    assert "max_heavy_atoms=0" in res.errors[2] and "--" not in res.errors[2]
    errs = tmp_path / "e.tsv"
    inp = tmp_path / "in.smi"
    inp.write_text("CCl\nCC(=O)[O-].[Na+]\nCCCCCC\n")
    assert main(["generate", str(inp), "-o", str(tmp_path / "o.sdf"), "--weights", str(tiny_ckpt), "--errors",
                 str(errs), "--no-largest-fragment", "--max-heavy-atoms", "5", *FAST]) == EXIT_PARTIAL
    text = errs.read_text()
    for flag in ("--allow-unknown-elements", "--largest-fragment", "--max-heavy-atoms 0"):
        assert flag in text
    assert "=True" not in text and "max_heavy_atoms" not in text


# ---- 2. inputs --------------------------------------------------------------------------------------
def test_csv_header_is_not_a_molecule_and_counts_are_opt_in(tiny_ckpt, tmp_path, capsys):
    from confgf_fast.cli import read_inputs

    csv = tmp_path / "heldout.csv"  # the layout of ../shared/data/qm9_heldout_smiles.csv
    csv.write_text("smiles,n_conformers,corrected_smiles\nCCO,29,CCO\nCC(=O)N,10,CC(N)=O\n")
    assert [(s, c) for s, _, c in read_inputs(str(csv), 2)] == [("CCO", 2), ("CC(=O)N", 2)]
    assert [(s, c) for s, _, c in read_inputs(str(csv), 2, "n_conformers")] == [("CCO", 29), ("CC(=O)N", 10)]
    out = tmp_path / "out.sdf"
    assert main(["generate", str(csv), "-n", "2", "-o", str(out), "--weights", str(tiny_ckpt), *FAST]) == EXIT_OK
    err = capsys.readouterr().err
    assert "'n_conformers'" in err and "--count-column n_conformers" in err  # told about, not used
    recs = records(out)
    assert [(r.GetProp("mol_id"), r.GetProp("smiles"), r.GetProp("_Name")) for r in recs] == (
        [("0", "CCO", "mol0")] * 2 + [("1", "CC(=O)N", "mol1")] * 2)


def test_tsv_header_with_name_and_count_columns(tmp_path):
    from confgf_fast.cli import iter_inputs

    tsv = tmp_path / "in.tsv"
    tsv.write_text("ID\tSMILES\tconfs\nm 1\tCCO\t3\nm2\tCN\t\nm3\tCC\tmany\n")
    got = [(m.source, m.num_confs, m.name, m.error) for m in iter_inputs(str(tsv), 7, count_column="confs")]
    assert got == [("CCO", 3, "m 1", None), ("CN", 7, "m2", None),
                   ("CC", 7, "m3", "count column 'confs': 'many' is not an integer")]
    assert [m.num_confs for m in iter_inputs(str(tsv), 7, count_column="3")] == [3, 7, 7]
    assert [m.num_confs for m in iter_inputs(str(tsv), 7)] == [7, 7, 7]  # a header: counts only on request


def test_headerless_count_column_is_announced_and_can_be_turned_off(tiny_ckpt, tmp_path, capsys):
    from confgf_fast.cli import iter_inputs

    smi = tmp_path / "in.smi"
    smi.write_text("CCO 2 ethanol\nCN methylamine\n")
    notes = []
    got = [(m.source, m.num_confs, m.name) for m in iter_inputs(str(smi), 5, note=notes.append)]
    assert got == [("CCO", 2, "ethanol"), ("CN", 5, "methylamine")]
    assert len(notes) == 1 and "conformer count" in notes[0] and "--count-column none" in notes[0]
    got = [(m.source, m.num_confs, m.name) for m in iter_inputs(str(smi), 5, count_column="none")]
    assert got == [("CCO", 5, "2 ethanol"), ("CN", 5, "methylamine")]
    out = tmp_path / "out.sdf"
    assert main(["generate", str(smi), "-n", "1", "-o", str(out), "--weights", str(tiny_ckpt), *FAST]) == EXIT_OK
    assert "note: " in capsys.readouterr().err and len(records(out)) == 3
    assert main(["generate", str(smi), "-n", "1", "-o", str(out), "--weights", str(tiny_ckpt), "--count-column",
                 "none", "--force", *FAST]) == EXIT_OK
    assert "note: " not in capsys.readouterr().err and len(records(out)) == 2


@pytest.mark.parametrize(("content", "col", "why"), [
    ("CCO 2\n", "count", "no header line"),
    ("smiles,n\nCCO,2\n", "count", "no such column"),
    ("smiles,n\nCCO,2\n", "1", "apart from the SMILES"),
    (None, "2", "not to an SDF file"),
])
def test_bad_count_column_is_a_usage_error(tiny_ckpt, ref_sdf, tmp_path, capsys, content, col, why):
    from confgf_fast.cli import EXIT_USAGE

    if content is None:
        inp = ref_sdf
    else:
        inp = tmp_path / "in.csv"
        inp.write_text(content)
    out = tmp_path / "o.sdf"
    assert main(["generate", str(inp), "-o", str(out), "--weights", str(tiny_ckpt), "--count-column", col,
                 *FAST]) == EXIT_USAGE
    assert why in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def quick_start_lines() -> list[str]:
    """The command lines of the README's Quick start block."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_quick_start_lines_write_distinct_files():
    import shlex

    lines = quick_start_lines()
    assert len(lines) >= 4 and all(line.startswith("confgf-fast ") for line in lines)
    outs = []
    for line in lines:
        argv = shlex.split(line, comments=True)
        for flag in ("-o", "--out", "--json"):
            if flag in argv:
                outs.append(argv[argv.index(flag) + 1])
    assert len(outs) == len(set(outs)), outs


def test_quick_start_runs_as_written(tmp_path, monkeypatch, capsys):
    """Every Quick start line, from a directory laid out like the repo root (examples/), with the
    shipped weights and a tiny schedule appended so that it takes seconds."""
    import shlex

    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    for line in quick_start_lines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "confgf-fast"
        extra = []
        if argv[1] == "generate":
            project = "project" in argv or any(s in argv for s in ("quick", "standard"))
            extra = ["--num-steps", "2"] if project else ["--levels", "2", "--steps-per-level", "2"]
        rc = main([*argv[1:], *extra, "-q"])
        err = capsys.readouterr().err
        assert rc == EXIT_OK, f"{line}\n{err}"
    assert len(records(tmp_path / "dev3.sdf")) == 30
    assert [r.GetProp("_Name") for r in records(tmp_path / "dev3.sdf")][::10] == [
        "glycidol", "N,N-diethylacetamide", "3-amino-2-methoxypropanenitrile"]
    assert len(records(tmp_path / "table.sdf")) == 3 + 5 + 4


# ---- 3. salts ---------------------------------------------------------------------------------------
def test_salt_record_says_what_was_sampled_and_evaluates_against_the_parent(tiny_ckpt, tmp_path, capsys):
    from rdkit.Chem import AllChem

    inp = tmp_path / "in.smi"
    inp.write_text("CC(=O)[O-].[Na+] sodium-acetate\nCCO ethanol\n")
    out = tmp_path / "out.sdf"
    common = ["generate", str(inp), "-n", "2", "-o", str(out), "--weights", str(tiny_ckpt), *FAST]
    assert main(common) == EXIT_OK
    recs = records(out)
    assert [r.GetProp("smiles") for r in recs] == ["CC(=O)[O-]"] * 2 + ["CCO"] * 2
    assert [r.GetProp("input_smiles") for r in recs[:2]] == ["CC(=O)[O-].[Na+]"] * 2
    assert not recs[2].HasProp("input_smiles")  # only where something was dropped
    # --resume recognises the salt's records as this input's (by input_smiles)
    assert main([*common, "--resume"]) == EXIT_OK
    assert "resume: 2 molecules already complete" in capsys.readouterr().err and len(records(out)) == 4
    # a reference of the parent (the acetate) is matched
    ref = tmp_path / "ref.sdf"
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-]"))
    AllChem.EmbedMultipleConfs(mol, 2, randomSeed=0)
    with Chem.SDWriter(str(ref)) as w:
        for c in mol.GetConformers():
            w.write(mol, confId=c.GetId())
    js = tmp_path / "m.json"
    assert main(["evaluate", str(out), str(ref), "--json", str(js), "-q"]) == EXIT_OK
    import json

    assert json.loads(js.read_text())["n_mols"] == 1


def test_out_help_lists_every_property_written(tiny_ckpt, tmp_path):
    from confgf_fast.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    out_help = next(a.help for a in sub.choices["generate"]._actions if a.dest == "out")
    out = tmp_path / "out.sdf"
    # a salt (input_smiles, warnings) and the tiny model's broken conformers (quality_reasons)
    assert main(["generate", "CC(=O)[O-].[Na+]", "-n", "3", "-o", str(out), "--weights", str(tiny_ckpt),
                 "--retries", "0", *FAST]) == EXIT_OK
    written = set().union(*(r.GetPropNames() for r in records(out)))
    assert {"smiles", "input_smiles", "warnings", "quality"} <= written
    assert [p for p in written if p not in out_help] == []


# ---- 4. CLI surface ---------------------------------------------------------------------------------
def test_version(capsys):
    import confgf_fast

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"confgf-fast {confgf_fast.__version__}"


def test_progress_bar_shows_the_total(tiny_ckpt, tmp_path, capsys):
    inp = tmp_path / "in.csv"
    inp.write_text("smiles\n# a comment\nCCO\n\nCN\nCC\n")
    out = tmp_path / "out.sdf"
    common = ["generate", str(inp), "-n", "1", "-o", str(out), "--weights", str(tiny_ckpt), "--levels", "2",
              "--steps-per-level", "2"]
    assert main(common) == EXIT_OK
    assert "3/3" in capsys.readouterr().err
    inp.write_text("smiles\nCCO\nCN\nCC\nCCC\n")  # --resume: the bar counts what is left
    assert main([*common, "--resume"]) == EXIT_OK
    assert "1/1" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["a.sdf", "crlf.sdf", "unterminated.sdf", "no_newline.sdf"])
def test_count_inputs_sdf_matches_the_reader(tmp_path, name):
    from confgf_fast.pipeline.io import count_sdf_records, sdf_records

    data = (REPO / "examples" / "reference.sdf").read_bytes()
    data = {"a.sdf": data, "crlf.sdf": data.replace(b"\n", b"\r\n"),
            "unterminated.sdf": data + data.split(b"$$$$\n")[0], "no_newline.sdf": data.rstrip(b"\n")}[name]
    p = tmp_path / name
    p.write_bytes(data)
    want = sum(1 for _ in sdf_records(p))
    assert [count_sdf_records(p, block_size=bs) for bs in (1, 3, 7, 1 << 20)] == [want] * 4


def test_export_weights_in_the_cli_reference():
    """docs/cli.md (the CLI reference the README links) documents every command."""
    ref = (REPO / "docs" / "cli.md").read_text()
    assert "docs/cli.md" in (REPO / "README.md").read_text()
    from confgf_fast.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "export-weights" in sub.choices
    for command in sub.choices:  # every command, export-weights included
        assert f"`confgf-fast {command} " in ref, command
    assert "`confgf-fast --version`" in ref
    generate = sub.choices["generate"]
    for opt in (o for a in generate._actions for o in a.option_strings if o.startswith("--") and o != "--help"):
        assert f"`{opt}" in ref, opt  # every generate option has its row in the options table


def test_readme_stays_a_front_page():
    """Issue 27: README.md is at most 200 lines; the reference lives in docs/."""
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


# ---- 5. centred output ------------------------------------------------------------------------------
@pytest.mark.parametrize("relax", ["none", "mmff"])
def test_conformers_are_written_centred(tiny_ckpt, tmp_path, relax):
    out = tmp_path / "out.sdf"
    assert main(["generate", "CC(=O)N", "-n", "3", "-o", str(out), "--weights", str(tiny_ckpt), "--relax", relax,
                 *FAST]) == EXIT_OK
    for r in records(out):
        pos = r.GetConformer().GetPositions()
        assert abs(pos.mean(axis=0)).max() < 1e-3  # the SDF keeps 4 decimals
        assert abs(pos).max() > 0.5  # a real conformer, not collapsed


def test_center_conformers_helper(tiny_model):
    """The Python API keeps the sampler's frame (as generate_tensors); center_conformers centres."""
    import numpy as np

    from confgf_fast import generate
    from confgf_fast.pipeline.generate import center_conformers

    model, noise = tiny_model.model, tiny_model.noise
    res = generate(["CCO", "[He]"], [2, 1], model=model, noise=noise,
                   schedule=paper(levels=3, steps_per_level=3))
    for mol in res.mols:
        before = [c.GetPositions() for c in mol.GetConformers()]
        center_conformers(mol)
        for conf, pos in zip(mol.GetConformers(), before):
            assert np.abs(conf.GetPositions().mean(axis=0)).max() < 1e-9
            np.testing.assert_allclose(conf.GetPositions(), pos - pos.mean(axis=0), atol=1e-9)
