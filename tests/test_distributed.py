"""`confgf-fast generate` under torchrun: 2 CPU processes (gloo), shards merged in input order."""

import os
import socket
import subprocess
import sys

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import mol_from_smiles
from confgf_fast.cli import EXIT_OK, EXIT_PARTIAL, main
from confgf_fast.distributed import Shard, merge_errors, merge_sdf, shard_path

FAST = ["--levels", "3", "--steps-per-level", "3", "-q"]
# mol 1 repeats mol 0 on the other rank, mol 2 is invalid, mol 6 a salt (kept with a warning),
# counts vary; --chunk-size 2 below makes each rank go through several chunks.
INPUT = "CCO 2\nCCO 1\nnot_a_smiles 2\nCC(=O)N 3\nCN\nC[C@H](N)C(=O)O 2 alanine\nCC(=O)[O-].[Na+] 1\n"
MORE = "OCCO 2\nC#N 1\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, cwd, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "confgf_fast.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def structure(path) -> list[tuple[str, str, str, str]]:
    """(mol_id, smiles, conf_id, num_confs) of every record, in file order."""
    return [(m.GetProp("mol_id"), m.GetProp("smiles"), m.GetProp("conf_id"), m.GetProp("num_confs"))
            for m in Chem.SDMolSupplier(str(path), removeHs=False)]


def test_two_ranks_merge_in_input_order_like_one_process(tiny_ckpt, tmp_path):
    inp = tmp_path / "in.smi"
    inp.write_text(INPUT)
    common = [str(inp), "-n", "2", "--weights", str(tiny_ckpt), "--chunk-size", "2", *FAST]
    single = tmp_path / "single.sdf"
    assert main(["generate", *common, "--out", str(single)]) == EXIT_PARTIAL

    out = tmp_path / "dist.sdf"
    run = torchrun("generate", *common, "--out", str(out), cwd=tmp_path)
    assert "merged 2 shards: 6 molecules, 11 conformers" in run.stderr, run.stderr
    assert run.returncode != 0  # rank 0 exits 3 (a molecule failed); torchrun reports that as a failure
    assert "exitcode  : 3" in run.stderr

    got = structure(out)
    assert got == structure(single)
    assert [r[0] for r in got] == ["0", "0", "1", "3", "3", "3", "4", "4", "5", "5", "6"]
    assert (tmp_path / "dist.sdf.errors.tsv").read_text() == (tmp_path / "single.sdf.errors.tsv").read_text()
    # Shards and their errors files are gone.
    assert sorted(p.name for p in tmp_path.iterdir() if "rank" in p.name) == []
    mols = list(Chem.SDMolSupplier(str(out), removeHs=False))
    assert mols[0].GetProp("_Name") == "mol0" and mols[8].GetProp("_Name") == "alanine"
    # Mol 1 (rank 1) is mol 0 (rank 0) again, first in its rank's first batch: ranks draw different noise.
    assert mols[2].GetProp("smiles") == "CCO"
    assert mols[0].GetConformer().GetPositions().tolist() != mols[2].GetConformer().GetPositions().tolist()

    # --resume with the finished OUT and two more input lines: only those are sampled, then merged.
    inp.write_text(INPUT + MORE)
    again = torchrun("generate", *common, "--out", str(out), "--resume", cwd=tmp_path)
    assert "resume: 6 molecules already complete" in again.stderr, again.stderr
    assert "of 1 molecules" in again.stderr  # each rank sampled one of the two new molecules
    new = structure(out)
    assert new[:len(got)] == got
    assert [r[:2] for r in new[len(got):]] == [("7", "OCCO"), ("7", "OCCO"), ("8", "C#N")]


def test_resume_unmerged_shards(tiny_ckpt, tmp_path):
    """An interrupted run leaves OUT.rank{r}.sdf; --resume completes each shard and merges them."""
    inp = tmp_path / "in.smi"
    inp.write_text("CCO 2\nCN 1\nCC(=O)N 1\nOCCO 1\n")
    out = tmp_path / "out.sdf"
    common = [str(inp), "--weights", str(tiny_ckpt), *FAST]
    # What two ranks would have finished before the interrupt: rank 0 molecule 0, rank 1 molecule 1.
    assert main(["generate", *common, "--out", str(tmp_path / "full.sdf")]) == EXIT_OK
    records = (tmp_path / "full.sdf").read_bytes().split(b"$$$$\n")[:-1]
    shard_path(out, 0).write_bytes(b"".join(r + b"$$$$\n" for r in records[:2]))
    shard_path(out, 1).write_bytes(b"".join(r + b"$$$$\n" for r in records[2:3]))
    run = torchrun("generate", *common, "--out", str(out), "--resume", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("resume: 1 molecules already complete") == 2
    assert [r[0] for r in structure(out)] == ["0", "0", "1", "2", "3"]
    assert structure(out)[:3] == structure(tmp_path / "full.sdf")[:3]
    assert not shard_path(out, 0).exists() and not shard_path(out, 1).exists()


def test_empty_input_is_fatal_once(tmp_path):
    inp = tmp_path / "empty.smi"
    inp.write_text("# nothing\n\n")
    run = torchrun("generate", str(inp), "--out", str(tmp_path / "o.sdf"), "-q", cwd=tmp_path)
    assert run.returncode != 0
    assert run.stderr.count("error: no molecules in") == 1


def test_shard_ownership_and_foreign_shard():
    s = Shard(1, 3, resumed={0: 10, 1: 11, 4: 14})
    assert [k for k in range(8) if s.owns(k)] == [1, 4, 7]
    assert s.adopt({7: 17}) == {1: 11, 4: 14, 7: 17}
    skip = s.skip({7: 17})
    assert [k for k in range(9) if k not in skip] == [1, 4]
    from confgf_fast.cli import ResumeError

    with pytest.raises(ResumeError, match="another number of processes"):
        s.adopt({2: 12})


def _record(mol_id: int, conf: int) -> str:
    return (f"mol{mol_id}\n     RDKit          3D\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n"
            "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\nM  END\n"
            f">  <mol_id>  (1) \n{mol_id}\n\n>  <conf_id>  (1) \n{conf}\n\n$$$$\n")


def test_merge_sdf_and_errors(tmp_path):
    a, b, dest = tmp_path / "a.sdf", tmp_path / "b.sdf", tmp_path / "m.sdf"
    a.write_text(_record(0, 0) + _record(0, 1) + _record(2, 0) + _record(5, 0))
    b.write_text(_record(1, 0) + _record(3, 0) + _record(3, 1) + _record(3, 2))
    assert merge_sdf([a, b], dest) == (5, 8)
    ids = [(m.GetProp("mol_id"), m.GetProp("conf_id")) for m in Chem.SDMolSupplier(str(dest))]
    assert ids == [("0", "0"), ("0", "1"), ("1", "0"), ("2", "0"), ("3", "0"), ("3", "1"), ("3", "2"), ("5", "0")]

    e0, e1, err = tmp_path / "e0.tsv", tmp_path / "e1.tsv", tmp_path / "err.tsv"
    e0.write_text('mol_id\tinput\terror\n4\tx\t"two\tcolumns"\n')
    e1.write_text("mol_id\tinput\terror\n1\ty\tbad\n9\tz\tworse\n")
    assert merge_errors([e0, e1, tmp_path / "missing.tsv"], err, always=False) == 3
    assert err.read_text() == 'mol_id\tinput\terror\n1\ty\tbad\n4\tx\t"two\tcolumns"\n9\tz\tworse\n'
    e0.write_text("mol_id\tinput\terror\n")
    assert merge_errors([e0], err, always=False) == 0 and not err.exists()  # no errors: stale file removed
    assert merge_errors([e0], err, always=True) == 0 and err.read_text() == "mol_id\tinput\terror\n"


def test_iter_inputs_parses_only_kept_records(tmp_path):
    from confgf_fast.cli import iter_inputs

    sdf = tmp_path / "in.sdf"
    w = Chem.SDWriter(str(sdf))
    for smi in ("CCO", "CN", "CC(=O)N"):
        mol = mol_from_smiles(smi)
        AllChem.EmbedMolecule(mol, randomSeed=0)
        w.write(mol)
    w.close()
    items = list(iter_inputs(str(sdf), 2, keep=lambda k: k != 1))
    assert [isinstance(m.source, Chem.Mol) for m in items] == [True, False, True]
    assert items[1].source is None and items[2].given() == "CC(N)=O"
    smi = tmp_path / "in.smi"
    smi.write_text("CCO\n# comment\n\nCN 3\nCC\n")
    assert [m.source for m in iter_inputs(str(smi), 2, keep=lambda k: k % 2 == 0)] == ["CCO", None, "CC"]
