"""Bounded input (issue 26): a huge SMILES line, an oversized SDF record or a very long input fails
per molecule or streams, in memory bounded by the documented limits (chem.molecule.MAX_SMILES_CHARS,
chem.molecule.MAX_ATOMS, chem.molecule.MAX_SDF_RECORD_BYTES, pipeline.io.MAX_LINE_CHARS), never by the file."""

import tracemalloc

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem import molecule as chem
from confgf_fast.chem.molecule import (
    MAX_ATOMS,
    MAX_SDF_RECORD_BYTES,
    MAX_SMILES_CHARS,
    FeaturizeError,
    featurize,
    mol_from_smiles,
)
from confgf_fast.cli import EXIT_PARTIAL, main
from confgf_fast.pipeline.io import MAX_LINE_CHARS, count_inputs, iter_inputs, sdf_blocks, sdf_records

FAST = ["--levels", "3", "--steps-per-level", "3", "-q", "--relax", "none"]


def molblock(smiles: str) -> str:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.Compute2DCoords(mol)
    return Chem.MolToMolBlock(mol) + "$$$$\n"


def v3000_record(n_atoms: int) -> str:
    """A V3000 record of n_atoms carbons in a chain (the V2000 counts line stops at 999)."""
    atoms = "".join(f"M  V30 {i + 1} C {1.5 * i:.1f} 0 0 0\n" for i in range(n_atoms))
    bonds = "".join(f"M  V30 {i + 1} 1 {i + 1} {i + 2}\n" for i in range(n_atoms - 1))
    return (f"chain{n_atoms}\n  test\n\n  0  0  0     0  0            999 V3000\nM  V30 BEGIN CTAB\n"
            f"M  V30 COUNTS {n_atoms} {n_atoms - 1} 0 0 0\nM  V30 BEGIN ATOM\n{atoms}M  V30 END ATOM\n"
            f"M  V30 BEGIN BOND\n{bonds}M  V30 END BOND\nM  V30 END CTAB\nM  END\n$$$$\n")


def test_huge_smiles_line_fails_alone(tmp_path):
    p = tmp_path / "in.smi"
    p.write_text("CCO first\n" + "C" * (MAX_SMILES_CHARS + 1) + " big\n" + "N" * (3 * MAX_LINE_CHARS)
                 + "\nCC last\n")
    got = list(iter_inputs(str(p), 1))
    assert [m.source for m in got] == ["CCO", None, None, "CC"]
    assert got[1].error == (f"SMILES of {MAX_SMILES_CHARS + 1:,} characters, more than the limit of "
                            f"{MAX_SMILES_CHARS:,} (chem.molecule.MAX_SMILES_CHARS); not parsed")
    assert got[2].error == (f"input line of {3 * MAX_LINE_CHARS:,} characters, more than the limit of "
                            f"{MAX_LINE_CHARS:,} (pipeline.io.MAX_LINE_CHARS); not read")
    assert len(got[1].text) < 100 and len(got[2].text) < 100  # quoted in messages, clipped
    assert count_inputs(str(p)) == 4  # the progress total counts what the reader yields
    # A SMILES given on the command line is held to the same limit.
    assert "chem.molecule.MAX_SMILES_CHARS" in next(iter_inputs("C" * (MAX_SMILES_CHARS + 1), 1)).error


def test_generate_reports_each_oversized_molecule_and_samples_the_rest(tiny_ckpt, tmp_path, capsys):
    p = tmp_path / "in.smi"
    p.write_text("CCO\n" + "C" * (MAX_SMILES_CHARS + 5) + "\n" + "O" * (MAX_LINE_CHARS + 1) + "\nCC\n")
    out = tmp_path / "out.sdf"
    rc = main(["generate", str(p), "--num-confs", "1", "--out", str(out), "--weights", str(tiny_ckpt), *FAST])
    assert rc == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "error: molecule 1 (" in err and "chem.molecule.MAX_SMILES_CHARS" in err
    assert "error: molecule 2 (" in err and "pipeline.io.MAX_LINE_CHARS" in err
    assert "Traceback" not in err
    ids = [r.GetProp("mol_id") for r in Chem.SDMolSupplier(str(out), removeHs=False)]
    assert ids == ["0", "3"]


def test_oversized_sdf_records_fail_per_record(tmp_path):
    small = molblock("CCO")
    many_atoms = molblock("C" * 400)  # 1,202 atoms with H: under the byte limit, over MAX_ATOMS
    assert len(many_atoms) < MAX_SDF_RECORD_BYTES
    huge = v3000_record(100_000)  # the 100,000-atom record: ~5 MB
    assert len(huge) > MAX_SDF_RECORD_BYTES
    p = tmp_path / "in.sdf"
    p.write_text(small + many_atoms + huge + v3000_record(1_500) + small)
    got = list(iter_inputs(str(p), 1))
    assert [type(m.source).__name__ for m in got] == ["Mol", "NoneType", "NoneType", "NoneType", "Mol"]
    assert got[1].error == (f"SDF record 1: too large: 1,202 atoms with hydrogens, more than the limit of "
                            f"{MAX_ATOMS:,} (chem.molecule.MAX_ATOMS); not read")
    assert got[2].error == (f"SDF record 2 (chain100000): {len(huge):,} bytes, more than the limit of "
                            f"{MAX_SDF_RECORD_BYTES:,} for one record (chem.molecule.MAX_SDF_RECORD_BYTES); not read")
    assert "1,500 atoms with hydrogens" in got[3].error  # V3000 counts read before RDKit parses
    assert count_inputs(str(p)) == 5
    # The oversized record is skipped, not held: its bytes never come back.
    blocks = list(sdf_blocks(p, MAX_SDF_RECORD_BYTES))
    assert [b.data is None for b in blocks] == [False, False, True, False, False]
    assert blocks[2].size == len(huge)
    # Our own files (merge, --resume) are read unbounded, byte for byte.
    assert b"".join(sdf_records(p)) == p.read_bytes()


def test_sdf_record_without_newlines_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(chem, "MAX_SDF_RECORD_BYTES", 4096)
    p = tmp_path / "in.sdf"
    p.write_bytes(molblock("CCO").encode() + b"x" * 3_000_000 + b"\n$$$$\n" + molblock("CC").encode())
    tracemalloc.start()
    try:
        got = list(iter_inputs(str(p), 1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [m.source is not None for m in got] == [True, False, True]
    assert "chem.molecule.MAX_SDF_RECORD_BYTES" in got[1].error
    assert peak < 1_000_000  # the 3 MB line was never held


def test_atom_limit_in_chem():
    with pytest.raises(FeaturizeError, match=r"chem\.molecule\.MAX_ATOMS"):
        mol_from_smiles("C" * 400)  # counted with its hydrogens before they are added
    with pytest.raises(FeaturizeError, match=r"chem\.molecule\.MAX_SMILES_CHARS"):
        mol_from_smiles("C" * (MAX_SMILES_CHARS + 1))
    with pytest.raises(FeaturizeError, match=r"too large: 1,202 atoms"):
        featurize(Chem.AddHs(Chem.MolFromSmiles("C" * 400)))
    assert featurize(mol_from_smiles("C" * 300)).num_atoms == 902  # under the limit: unchanged


def test_reader_streams_a_long_input(tmp_path):
    # The first molecule comes back at once from a file far too large to read whole: 1 GiB, sparse
    # (no disk), after one real line.
    p = tmp_path / "big.smi"
    with open(p, "wb") as f:
        f.write(b"CCO first\nCC second\n")
        f.truncate(1 << 30)
    items = iter_inputs(str(p), 1)
    tracemalloc.start()
    try:
        first, second = next(items), next(items)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (first.source, first.name, second.source) == ("CCO", "first", "CC")
    assert peak < 2_000_000
    items.close()

    # Many lines: memory stays flat while every line is read (it would grow with a list).
    many = tmp_path / "many.smi"
    many.write_text("CCO\n" * 50_000)
    tracemalloc.start()
    try:
        n = sum(1 for _ in iter_inputs(str(many), 1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 50_000 and count_inputs(str(many)) == 50_000
    assert peak < 1_000_000  # measured ~30 kB; the list of all 50,000 inputs is ~8.7 MB
