"""What a new user meets first (issue 16): one-line errors with the right exit code, inputs that
behave (headers, count columns, the shipped examples), what the SDF says, --version."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rdkit import Chem, RDLogger

from confgf_fast.cli import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, main
from confgf_fast.config import SamplerConfig

FAST = ["--levels", "3", "--steps-per-level", "3", "-q"]
REPO = Path(__file__).resolve().parents[1]


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
    from confgf_fast.checkpoint import load_model

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
    r = subprocess.run([sys.executable, "-m", "confgf_fast.evaluate", str(tmp_path / "nope.sdf"), str(ref_sdf), "-q"],
                       capture_output=True, text=True, timeout=120)
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

    model, noise = tiny_model
    RDLogger.EnableLog("rdApp.*")  # as in a fresh Python session (the CLI tests turn RDKit's log off)
    try:
        capfd.readouterr()
        res = generate(["C1CC", "not_a_smiles", "C(C)(C)(C)(C)C", "CCO"], 1, model=model, noise=noise,
                       sampler=SamplerConfig(levels=3, steps_per_level=3), seed=0, retries=0)
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

    model, noise = tiny_model
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
