"""CI smoke run of every maintained benchmark in bench/ (bench/README.md lists them) on a tiny input,
and the dirty-tree guard of bench/common.py that every result writer goes through.

The pytest-benchmark suites run in a subprocess with --benchmark-disable on their smallest cases
(bench_sampler.py timed once instead, with a 1-step schedule, so its JSON writer runs too); the
eval scripts' main() runs in this process on one molecule with two reference conformers cut from
the committed v2 benchmarks (bench/refs_v2), writing to tmp_path with --allow-dirty. bench/doc_tables.py
--check runs in tests/test_doc_tables.py. What is checked is that each one runs end to end and
writes what its tables read, not any figure.
"""

from __future__ import annotations

import fnmatch
import gzip
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
QM9_V2 = BENCH / "refs_v2" / "qm9_dev_v2.sdf.gz"
DRUGS_V2 = BENCH / "refs_v2" / "drugs_dev_v2.sdf.gz"
METRICS = ("cov_r_mean", "mat_r_mean", "cov_p_mean", "mat_p_mean")


@pytest.fixture
def bench(monkeypatch):
    """Import a bench script by name (bench/ on sys.path, as when it runs as python bench/x.py); the
    torch thread count the scripts set is restored afterwards."""
    monkeypatch.syspath_prepend(str(BENCH))
    threads = torch.get_num_threads()
    yield importlib.import_module
    torch.set_num_threads(threads)


def _tiny_reference(src: Path, out: Path, confs: int = 2) -> Path:
    """The first molecule of a reference SDF (.sdf.gz) with its first `confs` conformers and
    budget_k 1: 2 conformers generated per method."""
    from rdkit import Chem

    records = []
    with gzip.open(src) as fh:
        for rec in Chem.ForwardSDMolSupplier(fh, removeHs=False):
            if rec is None:
                continue
            if records and rec.GetProp("mol_id") != records[0].GetProp("mol_id"):
                break
            records.append(rec)
            if len(records) == confs:
                break
    with Chem.SDWriter(str(out)) as w:
        for rec in records:
            rec.SetProp("budget_k", "1")
            w.write(rec)
    return out


@pytest.fixture(scope="module")
def tiny_qm9(tmp_path_factory):
    return _tiny_reference(QM9_V2, tmp_path_factory.mktemp("refs") / "tiny_qm9.sdf")


@pytest.fixture(scope="module")
def tiny_drugs(tmp_path_factory):
    return _tiny_reference(DRUGS_V2, tmp_path_factory.mktemp("refs") / "tiny_drugs.sdf")


def _load(path: Path) -> dict:
    d = json.loads(path.read_text())
    prov = d["provenance"]
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    assert prov["allow_dirty"] is True and "command" in prov
    return d


# ---- the dirty-tree guard ---------------------------------------------------------------------------------
@pytest.fixture
def dirty(bench, monkeypatch):
    common = bench("common")
    monkeypatch.setattr(common, "dirty_files", lambda: ["confgf_fast/sampling/sampler.py"])
    return common


def test_a_dirty_tree_is_refused_before_the_run(dirty, tmp_path):
    out = tmp_path / "r.json"
    with pytest.raises(dirty.DirtyTreeError, match="--allow-dirty") as exc:
        dirty.provenance("cpu", allow_dirty=False, output=out)
    assert "confgf_fast/sampling/sampler.py" in str(exc.value) and "Commit" in str(exc.value)
    assert dirty.provenance("cpu")["git_dirty"] is True  # nothing to write: a record, no refusal
    # a script refuses at once, before it reads or samples anything (the reference does not even exist)
    with pytest.raises(SystemExit, match="--allow-dirty"):
        bench_main = importlib.import_module("eval_dev").main
        bench_main(["--ref", str(tmp_path / "missing.sdf"), "--json", str(out)])
    assert not out.exists()


def test_allow_dirty_is_recorded_and_write_json_checks_the_block(dirty, tmp_path):
    prov = dirty.provenance("cpu", allow_dirty=True, output=tmp_path / "r.json")
    assert prov["git_dirty"] is True and prov["allow_dirty"] is True
    dirty.write_json(tmp_path / "sub" / "r.json", {"provenance": prov, "x": 1})
    assert json.loads((tmp_path / "sub" / "r.json").read_text())["provenance"]["allow_dirty"] is True
    with pytest.raises(dirty.DirtyTreeError, match="--allow-dirty"):
        dirty.write_json(tmp_path / "s.json", {"provenance": {**prov, "allow_dirty": False}})
    with pytest.raises(ValueError, match="provenance"):
        dirty.write_json(tmp_path / "t.json", {"x": 1})
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "t.json").exists()


def test_a_clean_tree_needs_no_flag(bench, monkeypatch, tmp_path):
    common = bench("common")
    monkeypatch.setattr(common, "dirty_files", lambda: [])
    prov = common.provenance("cpu", output=tmp_path / "r.json")
    assert prov["git_dirty"] is False and prov["allow_dirty"] is False
    common.write_json(tmp_path / "r.json", {"provenance": prov})
    monkeypatch.setattr(common, "dirty_files", lambda: None)  # no git (a copied tree): unknown, not refused
    assert common.provenance("cpu", output=tmp_path / "r.json")["git_dirty"] is None


# ---- the pytest-benchmark suites ---------------------------------------------------------------------------
def _pytest(*args: str) -> str:
    cmd = [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider", "--bench-threads=1"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
    return run.stdout


@pytest.mark.parametrize("suite, select", [
    ("bench_ops.py", "qm9 and (reference-cpu or cpp)"),
    ("bench_project_sweeps.py", "qm9x64 and not compiled"),
    ("bench_threads.py", ""),
    ("bench_sampler.py", "qm9 and test_etkdg and 1thread"),
])
def test_benchmark_suite_runs_untimed(suite, select):
    _pytest(f"bench/{suite}", "--benchmark-disable", *(["-k", select] if select else []))


def test_sampler_benchmark_writes_its_json(tmp_path):
    out = tmp_path / "sampler.json"
    _pytest("bench/bench_sampler.py", "-k", "qm9 and (ours_eager or eager_official or memory)",
            "--bench-rounds=1", "--bench-levels=1", "--bench-steps=1", f"--bench-json={out}", "--allow-dirty")
    d = _load(out)
    assert {"ours_eager", "eager_official"} <= set(d["results"]["qm9"]) and "qm9" in d["memory"]
    assert d["speedups"]["qm9"]["ours_eager_vs_eager_official"] > 0


def test_real_workload_benchmark_writes_its_json(tmp_path):
    """test_real on each workload's first molecule: every method's row, FLOPs where a network runs."""
    out = tmp_path / "real.json"
    _pytest("bench/bench_sampler.py", "-k", "test_real", "--bench-real-mols=1", "--bench-rounds=1",
            f"--bench-json={out}", "--allow-dirty")
    d = _load(out)
    for name in ("qm9_dev", "drugs_dev"):
        rows = d["results"][name]
        assert set(rows) == {"noise", "quick", "warm", "etkdg"} and d["workloads"][name]["molecules"] == 1
        assert rows["noise"]["network_evaluations_per_conformer"] > rows["quick"]["network_evaluations_per_conformer"]
        assert rows["noise"]["network_gflop_per_conformer"] > rows["quick"]["network_gflop_per_conformer"] > 0
        assert "network_gflop_per_conformer" not in rows["etkdg"]
        assert d["speedups"][name]["noise_vs_etkdg"] > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="bench_ops.py --json times the GPU backends")
def test_gpu_op_timings_json(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, "bench/bench_ops.py", "--json", str(out), "--allow-dirty"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert _load(out)["results"]


# ---- the eval scripts ---------------------------------------------------------------------------------------
def test_eval_dev_and_schedule_table(bench, tiny_qm9, tmp_path, capsys):
    out = tmp_path / "dev.json"
    assert bench("eval_dev").main(["--ref", str(tiny_qm9), "--compile", "off", "--quiet", "--json", str(out),
                                   "--allow-dirty"]) == 0
    d = _load(out)
    assert d["n_mols"] == 1 and all(k in d["ours"] and k in d["etkdg"] for k in METRICS)
    assert d["ours"]["conformers"] == 2 and d["per_molecule"]["ours"][0]["status"] == "ok"
    assert bench("schedule_table").main([str(out), "--baseline-method", "etkdg"]) == 0
    assert "| dev |" in capsys.readouterr().out


def test_eval_relax(bench, tiny_qm9, tmp_path):
    out = tmp_path / "relax.json"
    assert bench("eval_relax").main(["--ref", str(tiny_qm9), "--schedule", "quick", "--threads", "1",
                                     "--json", str(out), "--allow-dirty"]) == 0
    d = _load(out)
    assert {"ours", "etkdg", "ours_mmff", "etkdg_mmff"} <= set(d["methods"])
    assert "ours_mmff - etkdg_mmff" in d["paired"]


def test_eval_drugs(bench, tiny_drugs, tmp_path):
    out = tmp_path / "drugs.json"
    assert bench("eval_drugs").main(["--bench", "drugs", "--drugs-ref", str(tiny_drugs), "--quiet",
                                     "--json", str(out), "--allow-dirty"]) == 0
    b = _load(out)["benchmarks"]["drugs"]
    assert b["n_mols"] == 1 and json.dumps(b).count("cov_r_mean") >= 5


def test_eval_properties(bench, tiny_qm9, tmp_path):
    pytest.importorskip("tblite.interface")
    out = tmp_path / "properties.json"
    assert bench("eval_properties").main(["--ref", str(tiny_qm9), "--max-confs", "2", "--quiet",
                                          "--json", str(out), "--allow-dirty"]) == 0
    assert "provenance" in _load(out)


def _tiny_iso17(path: Path, snapshots: int = 6) -> Path:
    """A packed ISO17-style set of one C7O2H10 isomer whose "MD snapshots" are ETKDG conformers (no
    xTB and no QM9 needed): the file format of data/iso17.write_set."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from confgf_fast.data import iso17

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)OC1CCCC1"))
    AllChem.EmbedMultipleConfs(mol, snapshots + 1, randomSeed=7)
    pos = np.stack([c.GetPositions() for c in mol.GetConformers()]).astype(np.float32)
    first = Chem.Mol(mol, confId=0)
    iso = path.parent / "isomer.npz"
    np.savez_compressed(iso, z=np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int8), pos=pos[1:],
                        potential=np.zeros(snapshots), temperature=np.full(snapshots, 500.0, dtype=np.float32),
                        intact=np.ones(snapshots, dtype=bool), seconds=np.float64(0.0), singlepoints=np.int64(0),
                        qm9_index=np.int64(0), smiles=np.str_(Chem.MolToSmiles(Chem.RemoveHs(mol))),
                        molblock=np.str_(Chem.MolToMolBlock(first)), config=np.str_(json.dumps({"synthetic": True})))
    iso17.write_set([iso], path)
    return path


def test_eval_iso17(bench, tmp_path):
    data, out = _tiny_iso17(tmp_path / "set.npz"), tmp_path / "iso17.json"
    assert bench("eval_iso17").main(["--data", str(data), "--methods", "md_split,etkdg,noise", "--num-confs", "3",
                                     "--json", str(out), "--allow-dirty"]) == 0
    d = _load(out)
    assert set(d["methods"]) == {"md_split", "etkdg", "noise"} and d["isomers"] == 1


def test_noise_selection(bench, tiny_qm9, tmp_path):
    out = tmp_path / "noise.json"
    assert bench("noise_selection").main(["--ref", str(tiny_qm9), "--oversample", "2", "--set", "num_steps=4",
                                          "--selections", "first,fps,win10", "--etkdg-pool", "2",
                                          "--json", str(out), "--allow-dirty"]) == 0
    assert {"first", "fps", "win10", "etkdg:fps"} <= set(_load(out)["selections"])


def test_far_conformers(bench, tiny_qm9, tmp_path):
    out = tmp_path / "far.json"
    assert bench("far_conformers").main(["--ref", str(tiny_qm9), "--quiet", "--json", str(out),
                                         "--allow-dirty"]) == 0
    assert set(_load(out)["methods"]) == {"ours", "etkdg"}


def test_etkdg_pool(bench, tiny_qm9, tmp_path):
    out = tmp_path / "pool.json"
    assert bench("etkdg_pool").main(["--ref", str(tiny_qm9), "--json", str(out), "--allow-dirty"]) == 0
    assert "fps" in _load(out)["summary"]


def test_threads_table(bench, tmp_path):
    out = tmp_path / "threads.json"
    bench("threads_table").main(["--only", "quick start", "--passes", "1", "--settings", "default,threads 1",
                                 "--out", str(out), "--allow-dirty"])
    rows = _load(out)["rows"]
    assert [r["setting"] for r in rows] == ["default", "threads 1"] and all(r["conformers_per_s"] > 0 for r in rows)


# ---- every result file is one a document, table or script refers to -----------------------------------------
def _mentions(text: str) -> tuple[set[str], set[str], set[str]]:
    """(words that may be paths, globs such as `dev_s10_*` or `..._session2.jsonl`, `folder/` names) in a text."""
    words = set(re.findall(r"[\w./-]+\.(?:json|jsonl|txt|png)\b", text))
    globs = {g.strip("./") for g in re.findall(r"[\w./{}*-]*\*[\w./*-]*", text)
             if "**" not in g and len(re.sub(r"\W", "", re.sub(r"\.(json|jsonl|txt|png)$", "", g.split("/")[-1]))) >= 3}
    globs |= {"*" + g for g in re.findall(r"\.\.\.(_[\w.-]+)", text)}
    folders = set(re.findall(r"`([\w./-]+/)`", text))
    return words, globs, folders


def test_every_result_file_is_referenced():
    """A file under bench/results is kept when a tracked text file outside it (docs, READMEs, the model
    card, bench scripts incl. doc_tables.py's names and globs, tests) names it, its path, a glob or a
    folder that matches it. What nothing refers to documents nothing: delete it or say where it counts."""
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout")
    files = [f for f in tracked.stdout.splitlines() if (REPO / f).is_file()]
    results = [f.removeprefix("bench/results/") for f in files if f.startswith("bench/results/")]
    words, globs, folders = set(), set(), set()
    for f in files:
        if f.startswith("bench/results/") or (REPO / f).stat().st_size > 2_000_000:
            continue
        try:
            w, g, d = _mentions((REPO / f).read_text())
        except (UnicodeDecodeError, OSError):
            continue
        words |= {x.removeprefix("bench/results/") for x in w}
        globs |= {x.removeprefix("bench/results/") for x in g}
        folders |= {x.removeprefix("bench/results/") for x in d} - {"", "bench/results/", "v2/"}
    names = {Path(w).name for w in words}

    def referenced(rel: str) -> bool:
        if rel in words or Path(rel).name in names or any(rel.startswith(d) for d in folders):
            return True
        return any(fnmatch.fnmatch(rel if "/" in g else Path(rel).name, g) for g in globs)

    unreferenced = [r for r in results if not referenced(r)]
    assert not unreferenced, f"bench/results files nothing refers to (git rm, or record what they show): {unreferenced}"
