"""The result tables in README.md, docs/, bench/README.md and the model card are what
bench/doc_tables.py generates from the committed result files: a figure copied by hand, or a
result file changed without regenerating the docs, fails here."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_doc_tables_match_result_files():
    run = subprocess.run([sys.executable, str(REPO / "bench" / "doc_tables.py"), "--check"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# ---- the `drugs` table (bench/eval_drugs.py results), on a small synthetic result ---------------

def _doc_tables():
    sys.path.insert(0, str(REPO / "bench"))
    import doc_tables

    return doc_tables


def _summary(cov_r: float, mat_r: float, cov_p: float, mat_p: float) -> dict:
    """An EvalResult.summary()-like dict whose medians are the mean + 1 (so the two are told apart)."""
    out = {}
    for key, v in (("cov_r", cov_r), ("mat_r", mat_r), ("cov_p", cov_p), ("mat_p", mat_p)):
        out[f"{key}_mean"], out[f"{key}_median"] = v, v + 1
    return out


def _method(cov_lo: float, cov_hi: float, mat: float, without: int, per_s: float) -> dict:
    return {"by_threshold": {"0.75": _summary(cov_lo, mat, cov_lo / 2, mat + 0.5),
                             "1.25": _summary(cov_hi, mat, cov_hi / 2, mat + 0.5)},
            "stereo_match": 0.987, "n_without_output": without, "conformers_per_s": per_s}


def _pair(d_cov_lo: float, d_cov_hi: float, n: int) -> dict:
    def at(d_cov: float) -> dict:
        return {"cov_r": {"mean": d_cov, "se": 0.25, "n": n}, "mat_r": {"mean": -0.0425, "se": 0.01, "n": n},
                "cov_p": {"mean": -d_cov, "se": 0.5, "n": n}, "mat_p": {"mean": 0.1, "se": 0.02, "n": n}}
    return {"0.75": at(d_cov_lo), "1.25": at(d_cov_hi)}


SYNTHETIC = {
    "thresholds": [0.75, 1.25], "weights": "w.pt", "weights_step": 12345, "trained_elements": "H, C, N, O",
    "sampler_tag": "sampler=project schedule=warm", "network_evaluations": 24,
    "threads": {"torch": 1, "etkdg_embed": 1, "mmff": 1, "ours_etkdg_warm_start": 1},
    "provenance": {"git_commit": "abcdef0123", "git_dirty": False, "machine": "test box"},
    "benchmarks": {
        "drugs": {"n_mols": 3, "n_ref_confs": 50,
                  "methods": {"ours": _method(40.0, 80.0, 1.0, 1, 12.5), "etkdg": _method(30.0, 70.0, 1.1, 0, 40.0),
                              "etkdg_mmff": _method(60.0, 75.0, 0.9, 0, 10.0)},
                  "paired": {"ours - etkdg": _pair(1.5, -2.0, 2), "ours - etkdg_mmff": _pair(float("nan"), 3.0, 1)},
                  "ours_without_output": [{"mol_id": "7", "smiles": "CCP", "reason": "element(s) P not known; more"}]},
        "geom": {"n_mols": 2, "n_ref_confs": 20, "methods": {"ours": _method(50.0, 90.0, 0.8, 0, 9.0)},
                 "paired": {}},
    },
}


def test_drugs_table_renders_a_synthetic_result():
    t = _doc_tables()
    text = t.drugs_table_from(SYNTHETIC, "syn.json")
    lines = text.splitlines()
    assert lines[0].startswith("`syn.json`: weights `w.pt` (step 12,345, elements H, C, N, O)")
    assert "commit abcdef0" in lines[0] and "(dirty)" not in lines[0] and "test box" in lines[0]
    rows = [ln for ln in lines if ln.startswith("| ")]
    head = rows[0].strip("| ").split(" | ")
    assert head == ["benchmark", "method", "COV-R δ 0.75 Å", "COV-R δ 1.25 Å", "MAT-R Å", "COV-P δ 0.75 Å",
                    "COV-P δ 1.25 Å", "MAT-P Å", "stereo kept", "without output", "conf/s"]
    body = [r.strip("| ").split(" | ") for r in rows[1:5]]  # 3 drugs methods + 1 geom method
    ours = dict(zip(head, body[0]))
    assert ours["method"] == "ours (warm start)" and ours["benchmark"].startswith("drug dev set")
    assert ours["COV-R δ 0.75 Å"] == "40.0 % / 41.0 %" and ours["COV-R δ 1.25 Å"] == "80.0 % / 81.0 %"
    assert ours["MAT-R Å"] == "1.000 / 2.000" and ours["MAT-P Å"] == "1.500 / 2.500"
    assert ours["COV-P δ 0.75 Å"] == "20.0 % / 21.0 %" and ours["COV-P δ 1.25 Å"] == "40.0 % / 41.0 %"
    assert (ours["stereo kept"], ours["without output"], ours["conf/s"]) == ("98.7 %", "1", "12.50")
    assert [r[1] for r in body] == ["ours (warm start)", "RDKit ETKDGv3", "ETKDGv3 + MMFF94", "ours (warm start)"]
    assert body[3][0].startswith("GEOM-Drugs") and "(2 mol., 20 ref.)" in body[3][0]
    # The paired table: one row per benchmark x difference present in the file.
    dhead = rows[5].strip("| ").split(" | ")
    pairs = [dict(zip(dhead, r.strip("| ").split(" | "))) for r in rows[6:]]
    assert len(pairs) == 2
    assert pairs[0]["difference"] == "ours (warm start) \N{MINUS SIGN} RDKit ETKDGv3" and pairs[0]["molecules"] == "2"
    assert pairs[0]["ΔCOV-R δ 0.75"] == "+1.5 ± 0.2" and pairs[0]["ΔCOV-R δ 1.25"] == "-2.0 ± 0.2"
    assert pairs[0]["ΔMAT-R Å"] == "-0.043 ± 0.010" and pairs[0]["ΔCOV-P δ 1.25"] == "+2.0 ± 0.5"
    assert pairs[1]["ΔCOV-R δ 0.75"] == "—" and pairs[1]["ΔCOV-R δ 1.25"] == "+3.0 ± 0.2"  # NaN: n < 2
    assert lines[-1] == "Ours made no conformers for: drug dev set (GFN2-xTB) mol_id 7 (element(s) P not known)."


def test_drugs_table_region_is_filled_from_the_result_file(tmp_path, monkeypatch):
    t = _doc_tables()
    monkeypatch.setattr(t, "RESULTS", tmp_path)
    region = "before\n<!-- table:drugs -->\nold\n<!-- /table:drugs -->\nafter"
    assert "no bench/eval_drugs.py result" in t.render(region)
    (tmp_path / t.DRUGS_RESULT).write_text(json.dumps(SYNTHETIC))
    out = t.render(region)
    assert out.startswith("before\n<!-- table:drugs -->\n`" + t.DRUGS_RESULT + "`") and out.endswith("after")
    assert t.drugs_table_from(SYNTHETIC, t.DRUGS_RESULT) in out


def test_drugs_table_names_the_mmff_row_the_default_when_the_weights_relax_by_default():
    """generate's default relax "auto" writes MMFF94-relaxed conformers for weights exported with
    relax_default mmff: the table must then call that row the default, and only then."""
    dt = _doc_tables()
    relaxing = {"weights_models": [{"name": "a.pt", "molecules": 0, "relax_default": "none"},
                                   {"name": "b.pt", "molecules": 40, "relax_default": "mmff"}]}
    labels = dt.drugs_method_labels(relaxing)
    assert "default" in labels["ours_mmff"] and "--relax none" in labels["ours"]
    for d in ({}, {"weights_models": [{"name": "b.pt", "molecules": 40}]},
              {"weights_models": [{"name": "a.pt", "molecules": 3, "relax_default": "none"},
                                  {"name": "b.pt", "molecules": 40, "relax_default": "mmff"}]}):
        assert dt.drugs_method_labels(d) == dt.DRUGS_METHOD_LABELS
