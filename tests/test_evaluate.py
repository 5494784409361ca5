"""COV/MAT evaluation: RDKit-based RMSD matrix vs an independent Kabsch + brute-force-symmetry
computation, COV/MAT by hand, noise response, thresholds, grouping, stereo checks."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import canonical_smiles
from confgf_fast.evaluation.evaluate import (
    SUMMARY_KEYS,
    EvalResult,
    MolEval,
    closest_distances,
    coverage_from_closest,
    coverage_matching,
    evaluate,
    evaluate_files,
    format_table,
    group_by_molecule,
    molecule_key,
    rmsd_matrix,
    stereo_match_rate,
    stereo_matches,
)

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "geom_drugs_10.sdf"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_file(), reason=f"{FIXTURE} not present")


@pytest.fixture(scope="module")
def drugs() -> OrderedDict[int, list[Chem.Mol]]:
    """The GEOM-Drugs fixture as {mol_id: [records]} (all H, one conformer per record)."""
    out: OrderedDict[int, list[Chem.Mol]] = OrderedDict()
    for m in Chem.SDMolSupplier(str(FIXTURE), removeHs=False):
        out.setdefault(int(m.GetProp("mol_id")), []).append(m)
    return out


def renumbered(mol: Chem.Mol, rng: np.random.Generator) -> Chem.Mol:
    """The same record with its atoms in a random order (props kept)."""
    out = Chem.RenumberAtoms(mol, [int(i) for i in rng.permutation(mol.GetNumAtoms())])
    for k, v in mol.GetPropsAsDict().items():
        out.SetProp(k, str(v))
    return out


def noisy(mol: Chem.Mol, sigma: float, rng: np.random.Generator) -> Chem.Mol:
    """Copy with N(0, sigma^2) added to every coordinate of every atom."""
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    xyz = conf.GetPositions() + rng.normal(scale=sigma, size=(out.GetNumAtoms(), 3))
    for i, p in enumerate(xyz):
        conf.SetAtomPosition(i, p.tolist())
    return out


# ---- independent RMSD: Kabsch + every automorphism, no RDKit alignment -----------------------

def kabsch_rmsd(x: np.ndarray, y: np.ndarray) -> float:
    """min over proper rotations R and translations of the RMSD between x and R y + t (SVD)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    u, s, vt = np.linalg.svd(yc.T @ xc)
    # Reflection guard: flip the smallest singular direction when det < 0 (proper rotation only).
    if np.linalg.det(u @ vt) < 0:
        s[-1] = -s[-1]
    msd = (np.sum(xc**2) + np.sum(yc**2) - 2.0 * np.sum(s)) / len(x)
    return math.sqrt(max(msd, 0.0))


def brute_force_rmsd(ref: Chem.Mol, gen: Chem.Mol) -> float:
    """Heavy-atom RMSD minimised over every atom map of ref onto gen (graph automorphisms)."""
    hr, hg = Chem.RemoveHs(ref), Chem.RemoveHs(gen)
    x, y = hr.GetConformer().GetPositions(), hg.GetConformer().GetPositions()
    maps = hg.GetSubstructMatches(hr, uniquify=False, useChirality=False, maxMatches=100_000)
    assert maps, "the two records must be the same molecule"
    return min(kabsch_rmsd(x, y[list(mp)]) for mp in maps)


def test_kabsch_helper_sanity():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # a proper rotation
    assert kabsch_rmsd(x, x @ q.T + 3.0) < 1e-9
    assert kabsch_rmsd(x, -x) > 0.1  # a reflection is not a rotation


@needs_fixture
@pytest.mark.parametrize("mol_id", [2, 5, 6, 1])
def test_rmsd_matrix_matches_brute_force(drugs, mol_id):
    rng = np.random.default_rng(mol_id)
    recs = drugs[mol_id]
    refs = recs[:3]
    gens = [renumbered(m, rng) for m in recs[3:7]]  # different atom order on the generated side
    # symmetrize_terminal=False: the brute force knows only true graph automorphisms (in a nitro
    # group, N=O and N-O[-] differ), as GetBestRMS without its terminal-group symmetrisation.
    d = rmsd_matrix(refs, gens, symmetrize_terminal=False)
    expected = np.array([[brute_force_rmsd(r, g) for g in gens] for r in refs])
    assert d.shape == (3, 4)
    np.testing.assert_allclose(d, expected, atol=1e-4)
    # Symmetrising terminal groups only adds atom maps, so it can only lower the RMSD
    # (molecule 1 has a nitro group; the others have none and must not change).
    d_sym = rmsd_matrix(refs, gens)
    assert np.all(d_sym <= d + 1e-9)
    if mol_id != 1:
        np.testing.assert_allclose(d_sym, d, atol=1e-9)


@needs_fixture
def test_rmsd_matrix_accepts_one_multiconformer_mol(drugs):
    recs = drugs[2][:4]
    multi = Chem.Mol(recs[0])
    multi.RemoveAllConformers()
    for r in recs:
        multi.AddConformer(Chem.Conformer(r.GetConformer()), assignId=True)
    d_records = rmsd_matrix(recs[:2], recs)
    d_multi = rmsd_matrix(recs[:2], multi)
    np.testing.assert_allclose(d_multi, d_records, atol=1e-9)
    assert d_records[0, 0] < 1e-4 and d_records[1, 1] < 1e-4


def test_coverage_matching_by_hand():
    d = np.array([[0.1, 0.6],
                  [0.5, 0.7],
                  [0.9, 1.2]])
    got = coverage_matching(d, threshold=0.5)
    # rows: min 0.1, 0.5, 0.9 -> 2 of 3 within 0.5 (inclusive); columns: min 0.1, 0.6.
    assert got["cov_r"] == pytest.approx(100 * 2 / 3)
    assert got["mat_r"] == pytest.approx(0.5)
    assert got["cov_p"] == pytest.approx(50.0)
    assert got["mat_p"] == pytest.approx(0.35)
    # A pair that could not be aligned (NaN) counts as infinitely far.
    d_nan = d.copy()
    d_nan[0, 0] = np.nan
    got = coverage_matching(d_nan, threshold=0.5)
    assert got["cov_r"] == pytest.approx(100 / 3)  # rows now: 0.6, 0.5, 0.9
    assert got["mat_r"] == pytest.approx((0.6 + 0.5 + 0.9) / 3)
    assert got["mat_p"] == pytest.approx((0.5 + 0.6) / 2)
    with pytest.raises(ValueError):
        coverage_matching(np.zeros((0, 3)), 0.5)


@needs_fixture
def test_coverage_matches_numpy_loops(drugs):
    rng = np.random.default_rng(1)
    refs = drugs[9][:5]
    gens = [noisy(m, 0.15, rng) for m in drugs[9][2:9]]
    d = rmsd_matrix(refs, gens)
    for thr in (0.0, 0.2, 0.3, 1.25):
        got = coverage_matching(d, thr)
        row_min = [min(d[k, m] for m in range(d.shape[1])) for k in range(d.shape[0])]
        col_min = [min(d[k, m] for k in range(d.shape[0])) for m in range(d.shape[1])]
        assert got["cov_r"] == pytest.approx(100 * sum(v <= thr for v in row_min) / len(row_min))
        assert got["mat_r"] == pytest.approx(sum(row_min) / len(row_min))
        assert got["cov_p"] == pytest.approx(100 * sum(v <= thr for v in col_min) / len(col_min))
        assert got["mat_p"] == pytest.approx(sum(col_min) / len(col_min))


@needs_fixture
def test_self_evaluation_is_perfect(drugs):
    """The whole fixture against itself (about 4 s): COV 100 %, MAT 0 for every figure."""
    s = evaluate_files(FIXTURE, FIXTURE, threshold=0.5, progress=False)
    for key in SUMMARY_KEYS:
        if key.startswith("cov"):
            assert s[key] == pytest.approx(100.0), key
        else:
            assert s[key] < 1e-4, key
    assert s["n_mols"] == 10 and s["n_missing"] == 0 and s["n_extra"] == 0
    assert s["threshold"] == 0.5
    # One record of molecule 7 has a broken P-C bond in the GEOM data: dropped on both sides.
    assert s["n_invalid_ref_confs"] == 1 and s["n_invalid_gen_confs"] == 1
    assert s["n_ref_confs"] == 502
    table = format_table(s)
    for label in ("COV-R", "MAT-R", "COV-P", "MAT-P", "mean", "median"):
        assert label in table


@needs_fixture
def test_noise_shifts_mat(drugs):
    """Generated = references + N(0, sigma^2) per coordinate. For the noisy copy of a conformer with
    n heavy atoms, E[aligned MSD] = sigma^2 (3n - 6) / n (6 rigid degrees of freedom are fitted away),
    so MAT ~ sigma sqrt(3 - 6/n) (a little less: closer copies of other conformers or symmetry may win)."""
    ids = [2, 5, 9]
    refs = {i: drugs[i][:6] for i in ids}
    n_heavy = np.array([Chem.RemoveHs(drugs[i][0]).GetNumAtoms() for i in ids])
    mats = {}
    for sigma in (0.05, 0.2):
        rng = np.random.default_rng(7)
        gen = {i: [noisy(m, sigma, rng) for m in refs[i]] for i in ids}
        res = evaluate(gen, refs, threshold=0.5, progress=False)
        s = res.summary()
        expected = float(np.mean(sigma * np.sqrt(3 - 6 / n_heavy)))
        assert 0.8 * expected < s["mat_r_mean"] < 1.1 * expected, (sigma, s["mat_r_mean"], expected)
        assert 0.8 * expected < s["mat_p_mean"] < 1.1 * expected, (sigma, s["mat_p_mean"], expected)
        mats[sigma] = s["mat_r_mean"]
        # Thresholds: COV is a step function of delta, 0 below every RMSD, 100 above all of them.
        covs = [evaluate(gen, refs, threshold=t, progress=False).summary()["cov_r_mean"]
                for t in (0.0, 0.5 * expected, expected, 2 * expected, 10.0)]
        assert covs[0] == 0.0 and covs[-1] == 100.0
        assert np.all(np.diff(covs) >= 0)
    assert mats[0.2] > 3.0 * mats[0.05]


@needs_fixture
def test_grouping_ignores_order_and_atom_numbering(drugs):
    rng = np.random.default_rng(3)
    ids = [0, 2, 5, 6, 7]  # 0: its smiles property does not parse (GEOM '_' for '/')
    ref_records = [m for i in ids for m in drugs[i][:4]]
    gen_pairs = [(i, m) for i in ids for m in drugs[i][4:9]]
    gen_records = [renumbered(m, rng) for _, m in gen_pairs]
    order = rng.permutation(len(gen_records))
    shuffled = [gen_records[j] for j in order]

    base = evaluate({i: [m for j, m in gen_pairs if j == i] for i in ids},
                    {i: drugs[i][:4] for i in ids}, threshold=1.25, progress=False)
    res = evaluate(shuffled, ref_records, threshold=1.25, progress=False)
    assert [r.key for r in res.rows] == [canonical_smiles(drugs[i][0]) for i in ids]
    for a, b in zip(base.rows, res.rows):
        assert (a.n_ref, a.n_gen, a.status) == (b.n_ref, b.n_gen, b.status)
        for name in ("cov_r", "mat_r", "cov_p", "mat_p"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-6)
    assert res.summary()["n_mols"] == len(ids)

    # Missing and extra molecules: reported, excluded from the means.
    key6 = molecule_key(drugs[6][0])
    partial = [m for m in shuffled if molecule_key(m) != key6]
    extra = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(extra, randomSeed=0)
    with pytest.warns(UserWarning, match="no \\(valid\\) generated"):
        res2 = evaluate([*partial, extra], ref_records, threshold=1.25, progress=False)
    s2 = res2.summary()
    assert s2["n_missing"] == 1 and s2["n_extra"] == 1 and s2["n_mols"] == len(ids) - 1
    assert res2.extra_keys == ["CCO"]
    assert [r.status for r in res2.rows if r.key == key6] == ["missing"]
    ok = [r for i, r in zip(ids, base.rows) if i != 6]  # base is keyed by mol_id
    assert s2["mat_r_mean"] == pytest.approx(np.mean([r.mat_r for r in ok]), abs=1e-6)


@needs_fixture
def test_group_keys(drugs):
    groups = group_by_molecule(m for recs in drugs.values() for m in recs)
    assert len(groups) == 10
    assert [len(v) for v in groups.values()] == [len(v) for v in drugs.values()]
    # The broken record of molecule 7 still belongs to molecule 7 via its smiles property.
    assert len({canonical_smiles(m) for m in drugs[7]}) == 2


@needs_fixture
def test_workers_match_serial(drugs, tmp_path):
    recs = [m for i in (2, 5, 6) for m in drugs[i][:4]]
    w = Chem.SDWriter(str(tmp_path / "ref.sdf"))
    for m in recs:
        w.write(m)
    w.close()
    gen = tmp_path / "gen.sdf"
    rng = np.random.default_rng(0)
    w = Chem.SDWriter(str(gen))
    for m in recs:
        w.write(noisy(m, 0.2, rng))
    w.close()
    serial = evaluate_files(gen, tmp_path / "ref.sdf", progress=False, rows_csv=tmp_path / "rows.csv")
    parallel = evaluate_files(gen, tmp_path / "ref.sdf", workers=2, progress=False)
    assert serial == pytest.approx(parallel)
    assert len((tmp_path / "rows.csv").read_text().splitlines()) == 1 + 3


# ---- several thresholds from one RMSD matrix ------------------------------------------------

def test_coverage_from_closest_by_hand():
    d = np.array([[0.1, np.nan],
                  [0.5, 0.7],
                  [np.nan, np.nan]])
    min_r, min_p = closest_distances(d)
    np.testing.assert_array_equal(min_r, [0.1, 0.5, np.inf])  # an all-NaN row: never covered
    np.testing.assert_array_equal(min_p, [0.1, 0.7])
    for thr in (0.0, 0.1, 0.6, 1.0):
        assert coverage_from_closest(min_r, min_p, thr) == coverage_matching(d, thr)
    got = coverage_from_closest(min_r, min_p, 0.6)
    assert got["cov_r"] == pytest.approx(100 * 2 / 3) and got["cov_p"] == pytest.approx(50.0)
    assert got["mat_r"] == math.inf and got["mat_p"] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        closest_distances(np.zeros((2, 0)))


@pytest.fixture(scope="module")
def noisy_run(drugs):
    """(gen, ref) groups: 3 molecules, 5 references each, 6 copies with noise between the two
    drug thresholds (MAT ~ 0.45 sqrt(3) ~ 0.8 A), and one reference molecule never generated."""
    rng = np.random.default_rng(5)
    ids = [2, 5, 9]
    refs = {i: drugs[i][:5] for i in [*ids, 6]}
    gen = {i: [noisy(m, 0.45, rng) for m in drugs[i][1:7]] for i in ids}
    return gen, refs


@needs_fixture
def test_at_threshold_equals_separate_runs(noisy_run):
    """One evaluation re-thresholded gives exactly the rows and summary of a separate evaluation
    at that threshold (COV from the stored closest distances, MAT and counts untouched)."""
    gen, refs = noisy_run
    with pytest.warns(UserWarning, match="no \\(valid\\) generated"):
        base = evaluate(gen, refs, threshold=0.75, progress=False)
        singles = {t: evaluate(gen, refs, threshold=t, progress=False) for t in (0.5, 1.25)}
    before = base.row_dicts()
    for t, single in singles.items():
        multi = base.at_threshold(t)
        assert multi.threshold == t
        assert multi.row_dicts() == single.row_dicts()
        assert multi.summary() == single.summary()
    assert base.row_dicts() == before and base.threshold == 0.75  # the source result is unchanged
    # Round trip, and the test is not vacuous: COV differs between the thresholds, MAT does not.
    assert base.at_threshold(1.25).at_threshold(0.75).row_dicts() == before
    lo, hi = base.summary(), base.at_threshold(1.25).summary()
    assert lo["cov_r_mean"] < hi["cov_r_mean"] and lo["cov_p_mean"] < hi["cov_p_mean"]
    assert lo["mat_r_mean"] == hi["mat_r_mean"] and lo["mat_p_mean"] == hi["mat_p_mean"]
    assert lo["n_missing"] == hi["n_missing"] == 1


@needs_fixture
def test_closest_distances_are_the_matrix_minima(noisy_run):
    gen, refs = noisy_run
    with pytest.warns(UserWarning):
        res = evaluate(gen, refs, threshold=0.75, progress=False)
    assert set(res.closest) == {r.key for r in res.rows if r.status == "ok"} == set(gen)
    for key, (min_r, min_p) in res.closest.items():
        d = rmsd_matrix(refs[key], gen[key])
        np.testing.assert_array_equal(min_r, d.min(axis=1))
        np.testing.assert_array_equal(min_p, d.min(axis=0))
        assert min_r.shape == (5,) and min_p.shape == (6,)


@needs_fixture
def test_at_threshold_after_parallel_evaluation(noisy_run):
    gen, refs = noisy_run
    with pytest.warns(UserWarning):
        serial = evaluate(gen, refs, threshold=0.75, progress=False)
        parallel = evaluate(gen, refs, threshold=0.75, workers=2, progress=False)
    # Worker processes get pickled Mols (coordinates round to ~1e-8 A), hence approx for the floats.
    for a, b in zip(parallel.at_threshold(1.25).row_dicts(), serial.at_threshold(1.25).row_dicts(), strict=True):
        assert a == pytest.approx(b, nan_ok=True)
    assert parallel.at_threshold(1.25).summary()["cov_r_mean"] > parallel.summary()["cov_r_mean"]


def test_at_threshold_needs_stored_distances():
    by_hand = EvalResult([MolEval("CCO", "ok", n_ref=1, n_gen=2, cov_r=100.0, mat_r=0.1, cov_p=50.0, mat_p=0.6),
                          MolEval("CCC", "missing", n_ref=3)], threshold=0.5)
    with pytest.raises(ValueError, match="CCO"):
        by_hand.at_threshold(1.0)
    only_missing = EvalResult([MolEval("CCC", "missing", n_ref=3)], threshold=0.5).at_threshold(1.0)
    assert only_missing.threshold == 1.0 and only_missing.rows[0].status == "missing"


# ---- stereo --------------------------------------------------------------------------------

def embedded(smiles: str, n: int = 3) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMultipleConfs(mol, numConfs=n, randomSeed=11)
    return mol


def mirrored(mol: Chem.Mol) -> Chem.Mol:
    out = Chem.Mol(mol)
    for conf in out.GetConformers():
        xyz = conf.GetPositions() * np.array([-1.0, 1.0, 1.0])
        for i, p in enumerate(xyz):
            conf.SetAtomPosition(i, p.tolist())
    return out


def test_stereo_match_rate_chirality():
    ala = embedded("C[C@H](N)C(=O)O")
    assert stereo_match_rate(ala, "C[C@H](N)C(=O)O") == 1.0
    assert stereo_match_rate(ala, "N[C@@H](C)C(O)=O") == 1.0  # same molecule, written differently
    assert stereo_match_rate(ala, "C[C@@H](N)C(=O)O") == 0.0
    assert stereo_match_rate(mirrored(ala), "C[C@H](N)C(=O)O") == 0.0
    assert stereo_match_rate(ala, "CC(N)C(=O)O") == 1.0  # input without stereo: anything goes
    # Mixed: one conformer of each hand.
    both = Chem.Mol(ala)
    both.RemoveAllConformers()
    both.AddConformer(Chem.Conformer(ala.GetConformer(0)), assignId=True)
    both.AddConformer(Chem.Conformer(mirrored(ala).GetConformer(0)), assignId=True)
    assert stereo_matches(both, "C[C@H](N)C(=O)O").tolist() == [True, False]
    assert stereo_match_rate(both, "C[C@H](N)C(=O)O") == 0.5


def test_stereo_match_rate_double_bond_and_partial():
    e = embedded("C/C=C/C", 2)
    assert stereo_match_rate(e, "C/C=C/C") == 1.0
    assert stereo_match_rate(e, "C/C=C\\C") == 0.0
    two = embedded("C[C@H](N)[C@@H](O)CC", 2)
    assert stereo_match_rate(two, "C[C@H](N)C(O)CC") == 1.0  # only the specified centre counts
    assert stereo_match_rate(two, "C[C@@H](N)C(O)CC") == 0.0
    assert stereo_match_rate(two, "C[C@H](N)[C@H](O)CC") == 0.0
    # The enumerable-but-unperceived aziridine N must not spoil a partly specified input.
    azi = embedded("CC(C)CN1C[C@H]1CO", 2)
    assert stereo_match_rate(azi, "CC(C)CN1C[C@H]1CO") == 1.0
    assert stereo_match_rate(azi, "CC(C)CN1C[C@@H]1CO") == 0.0
    # Unspecified double bond next to a specified centre, and the other way round.
    ene = embedded("C/C=C/[C@H](C)O", 2)
    assert stereo_match_rate(ene, "CC=C[C@H](C)O") == 1.0
    assert stereo_match_rate(ene, "CC=C[C@@H](C)O") == 0.0
    assert stereo_match_rate(ene, "C/C=C/C(C)O") == 1.0
    assert stereo_match_rate(ene, "C/C=C\\C(C)O") == 0.0
    diene = embedded("C/C=C/C=C\\CC", 2)  # clearing one double bond must keep the other
    assert stereo_match_rate(diene, "CC=C/C=C\\CC") == 1.0
    assert stereo_match_rate(diene, "C/C=C/C=CCC") == 1.0
    assert stereo_match_rate(diene, "CC=C/C=C/CC") == 0.0
    assert stereo_match_rate(diene, "C/C=C\\C=CCC") == 0.0
    # Symmetric (E,Z)-hexa-2,4-diene does have an E double bond: either atom map may serve.
    assert stereo_match_rate(embedded("C/C=C/C=C\\C", 2), "CC=C/C=C/C") == 1.0


def test_stereo_match_rate_per_record_smiles():
    recs = []
    for smi in ("C[C@H](N)C(=O)O", "C[C@@H](O)CC"):
        m = embedded(smi, 1)
        m.SetProp("smiles", smi)
        recs.append(m)
    assert stereo_match_rate(recs) == 1.0
    assert stereo_match_rate(recs, ["C[C@H](N)C(=O)O", "C[C@H](O)CC"]) == 0.5
    with pytest.raises(ValueError):
        stereo_match_rate(recs, ["C[C@H](N)C(=O)O"])
