"""The ISO17-style set (data/iso17.py: Langevin / velocity-Verlet MD, the builder) and the
distance-distribution MMD (distance_mmd.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from confgf_fast.data.iso17 import KB_EV, kinetic_temperature, langevin_md
from confgf_fast.evaluation.distance_mmd import distance_mmd, gaussian_mmd, heavy_atom_pairs, pair_distances, summarize

HELDOUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "qm9_heldout_smiles.csv"


# ---- MMD --------------------------------------------------------------------------------------

def test_mmd_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(50, 3))
    assert abs(gaussian_mmd(x, x)) < 1e-12
    assert gaussian_mmd(np.ones((4, 2)), np.ones((6, 2))) == 0.0  # all points equal: no width needed


def test_mmd_exact_two_points():
    # one point each side, one kernel of width 1: MMD^2 = 1 + 1 - 2 exp(-s^2)
    for s in (0.1, 0.5, 1.0, 2.0):
        got = gaussian_mmd(np.array([[0.0]]), np.array([[s]]), kernel_num=1, bandwidth=1.0)
        assert got == pytest.approx(2.0 * (1.0 - np.exp(-s * s)), rel=1e-12)
    # the default mixture: widths w / 4 .. 4 w summed (w = the given base width)
    s = 0.7
    want = sum(2.0 * (1.0 - np.exp(-s * s / (2.0 ** (i - 2)))) for i in range(5))
    assert gaussian_mmd(np.array([0.0]), np.array([s]), bandwidth=1.0) == pytest.approx(want, rel=1e-12)


def test_mmd_grows_with_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    y0 = rng.normal(size=400)
    values = [gaussian_mmd(x, y0 + shift, bandwidth=1.0) for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert values[0] < 0.05  # two samples of one distribution: close to 0
    assert all(b > a for a, b in itertools.pairwise(values)), values
    assert values[-1] > 20 * values[0]


def test_distance_mmd_pairs_and_joint():
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles("CCCO"))
    z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    pairs = heavy_atom_pairs(z)
    assert len(pairs) == 6 and all(z[i] > 1 and z[j] > 1 and i < j for i, j in pairs)
    assert len(heavy_atom_pairs(z, mol, max_hops=1)) == 3  # the three heavy-atom bonds
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(60, len(z), 3))
    same = distance_mmd(ref, ref, z)
    assert same.mean == pytest.approx(0.0, abs=1e-12) and same.joint == pytest.approx(0.0, abs=1e-12)
    gen = ref.copy()
    gen[:, 0] += np.array([3.0, 0.0, 0.0])  # atom 0 moved away: only its pairs change
    res = distance_mmd(ref, gen, z, two=True)
    moved = [k for k, (i, j) in enumerate(res.pairs) if 0 in (i, j)]
    assert all(res.per_pair[k] > 0.1 for k in moved)
    assert all(abs(res.per_pair[k]) < 1e-12 for k in range(len(res.pairs)) if k not in moved)
    assert res.joint > 0.1 and res.median <= res.mean
    # two distances jointly: 15 of them, zero exactly where neither distance involves atom 0
    assert len(res.per_two) == 15
    both_still = [k for k, (p, q) in enumerate((p, q) for p in range(6) for q in range(p + 1, 6))
                  if p not in moved and q not in moved]
    assert len(both_still) == 3 and all(abs(res.per_two[k]) < 1e-12 for k in both_still)
    assert sum(v > 0.1 for v in res.per_two) == 12
    d = pair_distances(ref, pairs)
    assert d.shape == (60, 6)
    assert np.allclose(d[:, 0], np.linalg.norm(ref[:, pairs[0, 0]] - ref[:, pairs[0, 1]], axis=1))
    s = summarize([same, res])
    assert s["single_pairs"] == 12 and s["joint_mean"] == pytest.approx(res.joint / 2)


# ---- MD ----------------------------------------------------------------------------------------

def harmonic(k: float = 5.0):
    """Independent 3D harmonic wells at the origin, E = k/2 |x|^2 (eV, angstrom)."""
    def f(x):
        return 0.5 * k * float(np.sum(x * x)), -k * x
    return f


def test_velocity_verlet_conserves_energy_on_harmonic_toy():
    rng = np.random.default_rng(3)
    masses = rng.uniform(1.0, 16.0, size=20)
    x0 = rng.normal(scale=0.1, size=(20, 3))
    spread = {}
    for dt in (0.5, 0.25):
        n = round(10.0 / dt)
        out = langevin_md(harmonic(), x0, masses, n, dt=dt, temperature=500.0, friction=0.0,
                          rng=np.random.default_rng(4))
        e = out["potential"] + out["kinetic"]
        spread[dt] = e.max() - e.min()
        assert spread[dt] < 1e-3 * e.mean()
    # velocity Verlet: the energy error is O(dt^2), so halving dt divides it by ~4
    assert 3.0 < spread[0.5] / spread[0.25] < 5.0


def test_langevin_thermostat_reaches_target_temperature():
    rng = np.random.default_rng(5)
    masses = rng.uniform(1.0, 16.0, size=200)
    out = langevin_md(harmonic(), np.zeros((200, 3)), masses, 2000, dt=0.5, temperature=500.0, friction=0.05,
                      vel=np.zeros((200, 3)), rng=rng, every=10)
    late = out["temperature"][100:].mean()  # after 1 ps = 50 relaxation times
    assert out["temperature"][0] < 200.0  # it started cold
    assert late == pytest.approx(500.0, rel=0.05)
    assert kinetic_temperature(np.zeros((3, 3)), np.ones(3)) == 0.0
    # the potential energy of a harmonic well is kT/2 per degree of freedom too
    assert out["potential"][100:].mean() / (3 * 200 * 0.5 * KB_EV) == pytest.approx(500.0, rel=0.05)


def test_velocity_verlet_with_xtb_conserves_energy():
    pytest.importorskip("tblite.interface")
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from confgf_fast.chem.xtb import XTBForces

    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    masses = np.array([a.GetMass() for a in mol.GetAtoms()])
    out = langevin_md(XTBForces(z), mol.GetConformer().GetPositions(), masses, 20, dt=0.5, temperature=500.0,
                      friction=0.0, rng=np.random.default_rng(6))
    e = out["potential"] + out["kinetic"]
    # the kinetic energy moves by a large fraction of itself while the total stays put
    assert np.ptp(out["kinetic"]) > 20 * np.ptp(e)
    assert np.ptp(e) < 5e-3  # eV


def test_builder_one_isomer_writes_a_readable_file(tmp_path):
    pytest.importorskip("tblite.interface")
    from confgf_fast.data import iso17

    try:
        from confgf_fast.data.qm9 import qm9pack_data_dir
        qm9pack_data_dir()
    except RuntimeError:
        pytest.skip("qm9pack is not installed")
    cfg = iso17.ISO17Config(equil_fs=2.5, production_fs=10.0, snapshot_fs=2.5)  # 5 + 20 steps
    heldout = HELDOUT if HELDOUT.exists() else None
    paths = iso17.build_iso17(tmp_path / "cache", 1, heldout, cfg, progress=False)
    assert len(paths) == 1 and paths[0].exists()
    it = iso17.load_isomer(paths[0])
    assert it["pos"].shape == (4, 19, 3) and sorted(np.bincount(it["z"]).nonzero()[0]) == [1, 6, 8]
    assert it["mol"].GetNumAtoms() == 19 and it["intact"].all() and np.isfinite(it["potential"]).all()
    mtime = paths[0].stat().st_mtime_ns
    assert iso17.build_iso17(tmp_path / "cache", 1, heldout, cfg, progress=False) == paths  # resumed: skipped
    assert paths[0].stat().st_mtime_ns == mtime
    summary = iso17.write_set(paths, tmp_path / "set.npz")
    assert summary["snapshots"] == 4
    (back,) = iso17.load_set(tmp_path / "set.npz")
    assert np.array_equal(back["pos"], it["pos"]) and back["smiles"] == it["smiles"]
