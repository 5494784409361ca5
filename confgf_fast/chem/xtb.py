"""Optional GFN2-xTB refinement of training conformers, with the PyPI package tblite.

ETKDG + MMFF94 conformers sit in MMFF minima; the benchmark's references are GFN2-xTB minima.
Refining the training conformers with the same method moves the training distances towards the
level of theory the model is judged against. It is optional (`confgf-fast build-qm9 --xtb`,
data/build.refine_with_xtb: every conformer kept after the MMFF-level dedup, the DFT geometry
included): one GFN2-xTB geometry optimisation costs ~0.2 s per QM9 conformer on one CPU core
(tens of single points of a few ms each), ~0.5 s per molecule: ~6-9 minutes per chunk of 1000
molecules, ~4 CPU-hours for the 27 chunks of the QM9 model's data, ~18 for all of QM9.

The optimiser is scipy's L-BFGS-B on the energy with tblite's analytic gradient, in atomic units
internally; a conformer whose bonds break or whose atoms clash during the optimisation is
rejected (returned as None), so a proton transfer or a fragmentation never enters the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOHR = 0.529177210903  # angstrom per bohr
HARTREE_EV = 27.211386245988  # eV per hartree (CODATA 2018)


@dataclass
class XTBResult:
    pos: np.ndarray  # [n, 3] angstrom
    energy: float  # hartree
    grad_max: float  # hartree / bohr, largest gradient component at the end
    converged: bool
    evaluations: int


def available() -> bool:
    try:
        import tblite.interface  # noqa: F401
    except ImportError:
        return False
    return True


def one_openmp_thread() -> None:
    """omp_set_num_threads(1) for the calling thread, in the OpenMP runtime tblite uses (libgomp).

    tblite parallelises each single point with OpenMP. On a QM9-size molecule that costs far more
    than it saves: one GFN2-xTB single point of CO took 3.2 s with 2 OpenMP threads on a busy
    2-core machine and 5 ms with one. Callers run conformers in parallel instead (relax: one per
    worker thread; the data builders: one chunk per process), and OpenMP's thread count is a
    per-thread setting, so xtb_optimize sets it in whichever thread it runs."""
    import ctypes
    import os

    try:
        lib = ctypes.CDLL("libgomp.so.1", mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LOCAL)
    except OSError:  # not loaded (another OpenMP runtime, or none): leave it as it is
        return
    lib.omp_set_num_threads(1)


def xtb_optimize(z: np.ndarray, pos: np.ndarray, charge: int = 0, max_steps: int = 300,
                 grad_tol: float = 1e-3) -> XTBResult:
    """Minimise the GFN2-xTB energy from pos.

    z: [n] atomic numbers; pos: [n, 3] angstrom; charge: total charge (0 for QM9's neutral
    molecules); grad_tol: largest gradient component (hartree/bohr) at convergence, the level of
    xtb's own `--opt normal` (1e-3).
    """
    from scipy.optimize import minimize
    from tblite.interface import Calculator

    one_openmp_thread()  # after the import, which loads libgomp
    z = np.asarray(z, dtype=np.int32)
    x0 = np.asarray(pos, dtype=np.float64).reshape(-1) / BOHR
    calc = Calculator("GFN2-xTB", z, x0.reshape(-1, 3), charge=float(charge))
    calc.set("verbosity", 0)
    count = 0

    def energy_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal count
        count += 1
        calc.update(x.reshape(-1, 3))
        res = calc.singlepoint()
        return float(res.get("energy")), np.asarray(res.get("gradient"), dtype=np.float64).reshape(-1)

    out = minimize(energy_and_grad, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_steps, "gtol": grad_tol, "ftol": 1e-12})
    energy, grad = energy_and_grad(out.x)
    gmax = float(np.abs(grad).max()) if grad.size else 0.0
    return XTBResult(pos=out.x.reshape(-1, 3) * BOHR, energy=energy, grad_max=gmax,
                     converged=gmax <= grad_tol, evaluations=count)


@dataclass
class XTBSinglePoint:
    energy: float  # hartree, GFN2-xTB total energy
    gap: float  # hartree, HOMO-LUMO gap (NaN when there is no LUMO)


def homo_lumo_gap(orbital_energies: np.ndarray, occupations: np.ndarray) -> float:
    """HOMO-LUMO gap from tblite's `orbital-energies` [norb] and `orbital-occupations` [norb]
    (spin-restricted: 0..2 electrons per orbital, Fermi-smeared at tblite's 300 K).

    With n = round(sum of occupations) electrons and the orbitals in ascending energy, the HOMO is
    orbital ceil(n / 2) (1-based: the highest doubly occupied one for even n, the singly occupied
    one for odd n) and the LUMO the next: gap = e[HOMO + 1] - e[HOMO]. Counting electrons rather
    than thresholding occupations keeps the answer right when the smearing makes occupations
    fractional (a small gap). NaN when the LUMO does not exist (no virtual orbital) or n is 0."""
    e = np.sort(np.asarray(orbital_energies, dtype=np.float64).reshape(-1))
    n_el = round(float(np.asarray(occupations, dtype=np.float64).sum()))
    homo = (n_el + 1) // 2 - 1  # 0-based
    if n_el <= 0 or homo + 1 >= e.size:
        return float("nan")
    return float(e[homo + 1] - e[homo])


def xtb_singlepoints(z: np.ndarray, positions: np.ndarray, charge: int = 0) -> list[XTBSinglePoint | None]:
    """GFN2-xTB single points (energy and HOMO-LUMO gap) of conformers of one molecule.

    z: [n] atomic numbers; positions: [C, n, 3] (or [n, 3]) angstrom; charge: total charge.
    One tblite Calculator is reused (calc.update per conformer); every SCF starts from tblite's
    own guess, not from the previous conformer, so a result does not depend on the order. A
    conformer whose SCF fails (tblite raises) or gives a non-finite energy is None."""
    from tblite.interface import Calculator

    one_openmp_thread()  # after the import, which loads libgomp
    z = np.asarray(z, dtype=np.int32)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, len(z), 3) / BOHR
    out: list[XTBSinglePoint | None] = []
    calc = None
    for x in pos:
        try:
            if calc is None:
                calc = Calculator("GFN2-xTB", z, x, charge=float(charge))
                calc.set("verbosity", 0)
            else:
                calc.update(x)
            res = calc.singlepoint()
            energy = float(res.get("energy"))
            gap = homo_lumo_gap(res.get("orbital-energies"), res.get("orbital-occupations"))
        except Exception:  # tblite raises on SCF failure (or on atoms on top of each other)
            calc = None  # a failed Calculator is not reused
            out.append(None)
            continue
        out.append(XTBSinglePoint(energy=energy, gap=gap) if np.isfinite(energy) else None)
    return out


def topology_kept(mol, pos: np.ndarray, tolerance: float = 0.3, clash: float = 0.7) -> bool:
    """pos: [n, 3] angstrom. True when every bond of `mol` stays within (1 +- tolerance) x the sum
    of covalent radii and no two non-bonded atoms come closer than `clash` x that sum."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRcovalent(a.GetAtomicNum()) for a in mol.GetAtoms()])
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    ref = radii[:, None] + radii[None, :]
    bonded = np.zeros_like(d, dtype=bool)
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bonded[i, j] = bonded[j, i] = True
    ratio = d / ref
    if np.any(np.abs(ratio[bonded] - 1.0) > tolerance):
        return False
    off = ~bonded & ~np.eye(len(radii), dtype=bool)
    return not np.any(ratio[off] < clash)


def refine_conformer(mol, conf_id: int, **kwargs) -> XTBResult | None:
    """Optimise conformer conf_id of `mol` (all H) with GFN2-xTB in place. Returns the result, or
    None (conformer untouched) when the optimisation fails or changes the bonding."""
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    conf = mol.GetConformer(conf_id)
    charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    try:
        res = xtb_optimize(z, conf.GetPositions(), charge=charge, **kwargs)
    except Exception:  # tblite raises on SCF failure; such a conformer is simply not refined
        return None
    if not np.all(np.isfinite(res.pos)) or not topology_kept(mol, res.pos):
        return None
    for i, p in enumerate(res.pos):
        conf.SetAtomPosition(i, p.tolist())
    return res


class XTBForces:
    """GFN2-xTB energy and forces of one molecule along a trajectory (data/iso17.py's MD).

    z: [n] atomic numbers; charge: total charge. Calling it with pos [n, 3] angstrom returns
    (energy in eV, forces [n, 3] in eV/angstrom). One tblite Calculator is kept, and each SCF
    starts from the previous step's wavefunction (tblite's restart), which saves SCF iterations
    when consecutive geometries are close (an MD step). `calls` counts single points.
    RuntimeError (tblite's) when an SCF fails."""

    def __init__(self, z: np.ndarray, charge: int = 0):
        from tblite.interface import Calculator

        one_openmp_thread()  # after the import, which loads libgomp
        self.z = np.asarray(z, dtype=np.int32)
        self._calc_cls = Calculator
        self._charge = float(charge)
        self._calc = None
        self._res = None
        self.calls = 0

    def __call__(self, pos: np.ndarray) -> tuple[float, np.ndarray]:
        x = np.asarray(pos, dtype=np.float64).reshape(-1, 3) / BOHR
        if self._calc is None:
            self._calc = self._calc_cls("GFN2-xTB", self.z, x, charge=self._charge)
            self._calc.set("verbosity", 0)
        else:
            self._calc.update(x)
        self._res = self._calc.singlepoint(self._res)
        self.calls += 1
        energy = float(self._res.get("energy")) * HARTREE_EV
        forces = -np.asarray(self._res.get("gradient"), dtype=np.float64).reshape(-1, 3) * (HARTREE_EV / BOHR)
        return energy, forces
