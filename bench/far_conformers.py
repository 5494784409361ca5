"""Why precision is low without relaxing: classify the far generated conformers.

A generated conformer is *far* when its heavy-atom best RMSD (GetBestRMS, evaluate.rmsd_matrix) to
every reference conformer of its molecule is > delta (0.5 A): it is what COV-P misses. Each far
conformer gets the first class whose test it passes:

1. broken    -- the quality.py tests (relax.check_conformers: bond lengths, 1-3/1-4 clashes, van der
                Waals overlaps, new bonds) flag it. Fix: resample / reject (generate flags them).
2. strained  -- right basin, wrong local geometry: after MMFF94 minimisation (relax.relax_conformers)
                it is within delta of some reference. Fix: relax (MMFF or xTB).
3. pucker    -- wrong ring conformation: the molecule has a non-aromatic ring and, aligned on one
                non-aromatic ring system and the heavy atoms bonded to it (so an axial / equatorial
                flip counts), some system is > RING_RMSD A from the nearest reference (nearest by the
                full heavy-atom RMSD). Fix: more / better sampling.
4. rotamer   -- wrong rotamer: some rotatable bond (RDKit's Lipinski.RotatableBondSmarts on the
                heavy-atom graph, so bonds to CH3 / OH / NH2 / halogens do not count) has a heavy-atom
                dihedral > TORSION_DEG away from the nearest reference's. Fix: more / better sampling.
5. other     -- none of these (e.g. several torsions each off by < 60 deg, or bond angles).

The ring and torsion comparisons try every atom map of the heavy-atom graph onto the reference
(substructure matches, as GetBestRMS does) and keep the best; terminal atoms of the same element
on one atom (the two O of a carboxyl / nitro group) count as interchangeable in a dihedral, as
GetBestRMS's symmetrizeConjugatedTerminalGroups treats them. Side figures per method: how many
broken conformers MMFF would also bring within delta; how many strained ones MMFF had to move by
more than a threshold in a torsion or a ring (so they were strictly in another basin, one MMFF
leaves downhill); how many far conformers are off their nearest reference by more than the ring /
torsion threshold whatever their class; how many wrong-rotamer ones match some other reference's
torsions (the rotamer exists in the ensemble but is not the nearest one); and the class counts at
other ring / torsion thresholds.

    python bench/far_conformers.py                      # 40 molecules, ours and ETKDG
    python bench/far_conformers.py --sample 10 --method ours --json /tmp/far.json

Molecules: a seeded random sample of ../shared/benchmarks/qm9_xtb_dev.sdf picked as
`eval_dev.py --sample N --sample-seed S` picks it; 2K conformers for K references, ours by
`generate`'s default path (ETKDG warm start + projected sampler, schedule `warm`), ETKDG with
eval_dev's seeds. The ETKDG baseline is biased towards `strained`: the references were optimised
from ETKDG+MMFF starts (../shared/benchmarks/README.md), so MMFF brings ETKDG conformers into
reference basins by construction.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import Lipinski

from confgf_fast.evaluation.evaluate import closest_distances, heavy_copy, rmsd_matrix

import common

DEFAULT_JSON = common.RESULTS / "far_conformers_s40.json"

# The COV threshold of the QM9 benchmark (DESIGN.md, "Evaluation").
DELTA = 0.5
# Ring-system RMSD (A; aligned on one non-aromatic ring system and its first heavy substituents)
# above which a ring conformation counts as different. Chosen from the committed run
# (bench/results/far_conformers_s40.json, histograms over RING_BINS): between distinct reference
# conformers of the 40 molecules the distribution has its minimum at 0.25-0.3 A (12 of 1,980 pairs,
# against 36 in 0.2-0.25 and 42 in 0.3-0.4); neighbouring 5-ring pseudorotation minima lie mostly
# below it, distinct 6-/7-ring puckers and axial/equatorial flips mostly above. The classes do not
# hinge on the value: every far conformer that is neither broken nor strained is < 0.1 A from its
# nearest reference on its rings, and 0.15-0.3 A give the same counts ("sensitivity" block).
RING_RMSD = 0.25
# Rotamer wells of an sp3-sp3 bond are 120 deg apart, of a conjugated bond 180: a torsion more than
# half a well spacing away (60 deg) is in another well; thermal spread within a well is ~+-20 deg.
TORSION_DEG = 60.0
# Atom maps of the heavy-atom graph tried in the ring / torsion comparisons (evaluate caps
# GetBestRMS at 10,000; QM9 molecules have at most a few hundred).
MAX_MAPS = 1000

CLASSES = ("broken", "strained", "pucker", "rotamer", "other")
FIXES = {
    "broken": "resampling / rejection (generate's quality flag names them)",
    "strained": "relax (MMFF94 brings it within delta)",
    "pucker": "more or better sampling of ring conformations",
    "rotamer": "more or better sampling of torsions",
    "other": "unclear: inspect (several small torsion / angle errors)",
}
_ROTATABLE = Lipinski.RotatableBondSmarts  # query Mol [!$(*#*)&!D1]-&!@[!$(*#*)&!D1]


# ---- geometry helpers ----------------------------------------------------------------------------

def positions(mol: Chem.Mol) -> np.ndarray:
    """[C, n, 3] coordinates of every conformer of `mol`, in conformer order."""
    return np.stack([c.GetPositions() for c in mol.GetConformers()]) if mol.GetNumConformers() else \
        np.zeros((0, mol.GetNumAtoms(), 3))


def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD of point sets a, b [n, 3] after the optimal proper rotation and translation."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    s = np.ones(3)
    s[2] = np.sign(np.linalg.det(u @ vt)) or 1.0  # no reflection: a mirrored pucker is another pucker
    rot = (u * s) @ vt
    return float(np.sqrt(((a @ rot - b) ** 2).sum(1).mean()))


def dihedral(p: np.ndarray) -> float:
    """Dihedral angle (deg) of four points p [4, 3]."""
    b0, b1, b2 = p[0] - p[1], p[2] - p[1], p[3] - p[2]
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - (b0 @ b1) * b1
    w = b2 - (b2 @ b1) * b1
    return float(np.degrees(np.arctan2(np.cross(b1, v) @ w, v @ w)))


def angle_diff(a: float, b: float) -> float:
    """|a - b| in degrees, modulo 360, in [0, 180]."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


# ---- the molecule's rings, torsions and atom maps ------------------------------------------------

def ring_systems(mol_h: Chem.Mol) -> list[list[int]]:
    """Atom indices of each non-aromatic ring system of a heavy-atom Mol (rings with at least one
    non-aromatic bond, merged when they share atoms: fused, bridged, spiro) together with the heavy
    atoms bonded to it: the ring atoms alone cannot tell an axial from an equatorial substituent
    when the molecule's symmetry maps the flipped chair onto itself (methylcyclohexane)."""
    ri = mol_h.GetRingInfo()
    rings = [set(a) for a, b in zip(ri.AtomRings(), ri.BondRings())
             if not all(mol_h.GetBondWithIdx(i).GetIsAromatic() for i in b)]
    systems: list[set[int]] = []
    for r in rings:
        touching = [s for s in systems if s & r]
        for s in touching:
            systems.remove(s)
            r |= s
        systems.append(r)
    return [sorted(s | {n.GetIdx() for a in s for n in mol_h.GetAtomWithIdx(a).GetNeighbors()}) for s in systems]


def torsion_quads(mol_h: Chem.Mol) -> list[tuple[list[int], int, int, list[int]]]:
    """([i and its equivalents], j, k, [l and its equivalents]) per rotatable bond j-k of a heavy-atom
    Mol: i the lowest-index heavy neighbour of j other than k (l likewise of k); when i is terminal,
    the other terminal neighbours of j of the same element are equivalent to it (carboxyl, nitro)."""
    def ends(a: int, other: int) -> list[int]:
        nbrs = sorted(n.GetIdx() for n in mol_h.GetAtomWithIdx(a).GetNeighbors() if n.GetIdx() != other)
        first = mol_h.GetAtomWithIdx(nbrs[0])
        if first.GetDegree() != 1:
            return nbrs[:1]
        return [n for n in nbrs if mol_h.GetAtomWithIdx(n).GetDegree() == 1
                and mol_h.GetAtomWithIdx(n).GetAtomicNum() == first.GetAtomicNum()]

    out = []
    for j, k in mol_h.GetSubstructMatches(_ROTATABLE):
        out.append((ends(j, k), j, k, ends(k, j)))
    return out


def atom_maps(gen_h: Chem.Mol, ref_h: Chem.Mol, max_maps: int = MAX_MAPS) -> list[tuple[int, ...]]:
    """Every map of gen_h's atoms onto ref_h's (map[i] = reference atom of generated atom i) that the
    heavy-atom graph allows (symmetries included; at most max_maps)."""
    maps = ref_h.GetSubstructMatches(gen_h, uniquify=False, useChirality=False, maxMatches=max_maps)
    return list(maps) or [tuple(range(gen_h.GetNumAtoms()))]


def ring_rmsd(g: np.ndarray, r: np.ndarray, systems: list[list[int]], maps: list[tuple[int, ...]]) -> float:
    """min over atom maps of max over ring systems of the ring-atom-aligned RMSD between the
    generated coordinates g [n, 3] and the reference r [n, 3]; NaN without a non-aromatic ring."""
    if not systems:
        return float("nan")
    return min(max(kabsch_rmsd(g[s], r[list(m[i] for i in s)]) for s in systems) for m in maps)


def torsion_deviation(g: np.ndarray, r: np.ndarray, quads: list, maps: list[tuple[int, ...]]) -> float:
    """min over atom maps of max over rotatable bonds of |dihedral(g) - dihedral(r)| (deg, mod 360,
    equivalent terminal atoms tried); NaN without rotatable bonds."""
    if not quads:
        return float("nan")
    gen_t = [dihedral(g[[ii[0], j, k, ll[0]]]) for ii, j, k, ll in quads]
    best = float("inf")
    for m in maps:
        worst = 0.0
        for t, (ii, j, k, ll) in zip(gen_t, quads):
            worst = max(worst, min(angle_diff(t, dihedral(r[[m[i], m[j], m[k], m[l_]]])) for i in ii for l_ in ll))
            if worst >= best:
                break
        best = min(best, worst)
    return best


# ---- classification -----------------------------------------------------------------------------

def classify(gen: Chem.Mol, ref: Chem.Mol, delta: float = DELTA, ring_threshold: float = RING_RMSD,
             torsion_threshold: float = TORSION_DEG) -> list[dict]:
    """One record per generated conformer of `gen` (all H, one Mol holding them) against the
    reference conformers of `ref` (all H, one Mol holding them; the same molecule):

    {"rmsd": best heavy-atom RMSD to any reference, "far": rmsd > delta, "nearest": its reference,
     "ring_rmsd" / "torsion_dev": the ring and torsion differences from that reference (NaN where the
     molecule has no non-aromatic ring / rotatable bond), "class": one of CLASSES or None when not
     far; and for far conformers "defects" (quality.py test names), "relaxed_rmsd" (best RMSD after
     MMFF94), "torsion_dev_any" (smallest torsion difference over all references)}.
    """
    from confgf_fast.chem.relax import check_conformers, relax_conformers

    d = rmsd_matrix(ref, gen)  # [K, C]
    _, min_p = closest_distances(d)
    nearest = np.argmin(np.where(np.isnan(d), np.inf, d), axis=0)
    gen_h, ref_h = heavy_copy(gen), heavy_copy(ref)
    g_pos, r_pos = positions(gen_h), positions(ref_h)
    systems, quads, maps = ring_systems(gen_h), torsion_quads(gen_h), atom_maps(gen_h, ref_h)
    out = []
    for c in range(len(min_p)):
        r = r_pos[nearest[c]]
        out.append({"rmsd": float(min_p[c]), "far": bool(min_p[c] > delta), "nearest": int(nearest[c]),
                    "ring_rmsd": ring_rmsd(g_pos[c], r, systems, maps),
                    "torsion_dev": torsion_deviation(g_pos[c], r, quads, maps), "class": None})
    far = [c for c, rec in enumerate(out) if rec["far"]]
    if not far:
        return out
    defects = check_conformers(gen)[1]
    sub = Chem.Mol(gen)
    sub.RemoveAllConformers()
    confs = list(gen.GetConformers())
    for c in far:
        sub.AddConformer(Chem.Conformer(confs[c]), assignId=True)
    relaxed = relax_conformers(sub, "mmff", threads=1)  # MMFF keeps every conformer, in order
    _, relaxed_rmsd = closest_distances(rmsd_matrix(ref, relaxed.mol))
    relaxed_pos = positions(heavy_copy(relaxed.mol))
    same = [tuple(range(gen_h.GetNumAtoms()))]
    for n, c in enumerate(far):
        rec = out[c]
        rec["defects"] = defects[c]
        rec["relaxed_rmsd"] = float(relaxed_rmsd[n])
        # how far MMFF moved the conformer's rings and torsions (same atoms, no map needed)
        rec["relax_ring_move"] = ring_rmsd(g_pos[c], relaxed_pos[n], systems, same)
        rec["relax_torsion_move"] = torsion_deviation(g_pos[c], relaxed_pos[n], quads, same)
        rec["torsion_dev_any"] = min(torsion_deviation(g_pos[c], r, quads, maps) for r in r_pos) \
            if quads else float("nan")
        rec["class"] = assign_class(rec, delta, ring_threshold, torsion_threshold)
    return out


def assign_class(rec: dict, delta: float = DELTA, ring_threshold: float = RING_RMSD,
                 torsion_threshold: float = TORSION_DEG) -> str | None:
    """The class of one classify() record (None when it is not far): the first test it passes."""
    if not rec["far"]:
        return None
    if rec["defects"]:
        return "broken"
    if rec["relaxed_rmsd"] <= delta:
        return "strained"
    if rec["ring_rmsd"] > ring_threshold:  # NaN (no non-aromatic ring) compares False
        return "pucker"
    if rec["torsion_dev"] > torsion_threshold:  # NaN (no rotatable bond) compares False
        return "rotamer"
    return "other"


def reference_ring_rmsd(ref: Chem.Mol) -> list[float]:
    """Ring-system RMSD between every pair of distinct reference conformers of one molecule (the
    scale of a real pucker difference, for choosing RING_RMSD); empty without a non-aromatic ring."""
    ref_h = heavy_copy(ref)
    systems = ring_systems(ref_h)
    if not systems:
        return []
    pos, maps = positions(ref_h), atom_maps(ref_h, ref_h)
    return [ring_rmsd(pos[a], pos[b], systems, maps) for a in range(len(pos)) for b in range(a + 1, len(pos))]


# ---- summary ------------------------------------------------------------------------------------

# Bin edges (A) of the ring-RMSD histograms in the result file: the data RING_RMSD was chosen from.
RING_BINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 10.0)


def _histogram(x: list[float]) -> list[int]:
    x = np.asarray([v for v in x if np.isfinite(v)])
    return np.histogram(x, bins=RING_BINS)[0].tolist()


def summarise(per_mol: list[tuple[str, list[dict]]], delta: float = DELTA, ring_threshold: float = RING_RMSD,
              torsion_threshold: float = TORSION_DEG) -> dict:
    """Counts and shares per class over the molecules' classify() records, side figures, the
    ring-RMSD histograms (bins RING_BINS) and the class counts at other ring / torsion thresholds."""
    recs = [r for _, rs in per_mol for r in rs]
    far = [r for r in recs if r["far"]]
    counts = Counter(r["class"] for r in far)
    n, nf = len(recs), len(far)
    mol_far = [100.0 * sum(r["far"] for r in rs) / len(rs) for _, rs in per_mol if rs]
    strained = [r for r in far if r["class"] == "strained"]

    def recount(ring_t: float, tors_t: float) -> dict:
        return dict(Counter(assign_class(r, delta, ring_t, tors_t) for r in far))

    return {
        "n_mols": len(per_mol),
        "n_generated": n,
        "n_far": nf,
        "far_percent": 100.0 * nf / max(1, n),  # pooled over conformers
        "far_percent_mol_mean": float(np.mean(mol_far)) if mol_far else float("nan"),  # = 100 - mean COV-P
        "classes": {c: {"count": counts[c], "percent_of_far": 100.0 * counts[c] / max(1, nf),
                        "percent_of_generated": 100.0 * counts[c] / max(1, n), "fix": FIXES[c]} for c in CLASSES},
        "broken_defects": dict(Counter(d for r in far if r["class"] == "broken" for d in r["defects"])),
        # side figures (see the module docstring)
        "broken_also_fixed_by_mmff": sum(r["class"] == "broken" and r["relaxed_rmsd"] <= delta for r in far),
        "strained_relax_moved_torsion": sum(r["relax_torsion_move"] > torsion_threshold for r in strained),
        "strained_relax_moved_ring": sum(r["relax_ring_move"] > ring_threshold for r in strained),
        "far_ring_beyond_threshold": sum(r["ring_rmsd"] > ring_threshold for r in far),
        "far_torsion_beyond_threshold": sum(r["torsion_dev"] > torsion_threshold for r in far),
        "rotamer_present_in_ensemble": sum(r["class"] == "rotamer" and r["torsion_dev_any"] <= torsion_threshold
                                           for r in far),
        "ring_rmsd_histogram": {"near": _histogram([r["ring_rmsd"] for r in recs if not r["far"]]),
                                "far": _histogram([r["ring_rmsd"] for r in far])},
        "sensitivity": {"ring_threshold": {str(t): recount(t, torsion_threshold) for t in (0.15, 0.2, 0.25, 0.3)},
                        "torsion_threshold": {str(t): recount(ring_threshold, t) for t in (45.0, 60.0, 90.0)}},
        "far_conformers": [{"smiles": s, "conf": c, **{k: (round(v, 4) if isinstance(v, float) else v)
                                                       for k, v in r.items() if k != "far"}}
                           for s, rs in per_mol for c, r in enumerate(rs) if r["far"]],
    }


def markdown_table(result: dict) -> str:
    """The class table of a result file: count and share of the far conformers per class and method."""
    methods = [m for m in ("ours", "etkdg") if m in result.get("methods", {})]
    label = {"ours": "ours (warm)", "etkdg": "ETKDGv3"}
    head = "| class | " + " | ".join(f"{label[m]}: n | % of far | % of all" for m in methods) + " | fix |"
    lines = [head, "|---|" + "---|---|---|" * len(methods) + "---|"]
    for c in CLASSES:
        cells = []
        for m in methods:
            k = result["methods"][m]["classes"][c]
            cells.append(f"{k['count']} | {k['percent_of_far']:.0f} | {k['percent_of_generated']:.1f}")
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {FIXES[c]} |")
    cells = []
    for m in methods:
        s = result["methods"][m]
        cells.append(f"**{s['n_far']}** of {s['n_generated']} | 100 | **{s['far_percent']:.1f}**")
    lines.append("| all far (100 - COV-P, pooled) | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


# ---- command line -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=None, help="reference SDF (default: eval_dev's qm9_xtb_dev.sdf)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="both", choices=["ours", "etkdg", "both"])
    ap.add_argument("--threshold", type=float, default=DELTA)
    ap.add_argument("--ring-threshold", type=float, default=RING_RMSD)
    ap.add_argument("--torsion-threshold", type=float, default=TORSION_DEG)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", default=str(DEFAULT_JSON))
    ap.add_argument("--quiet", action="store_true")
    common.add_result_args(ap)
    args = ap.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    prov = common.provenance("cpu", args.allow_dirty, args.json)  # before the run: the commit that ran

    import torch

    from confgf_fast.config import resolve_schedule
    from confgf_fast.model.checkpoint import load_model
    from confgf_fast.pipeline.generate import generate

    torch.set_num_threads(args.threads)
    ref_path = Path(args.ref or common.DEV_SDF)
    # the subset eval_dev.py --sample picks
    refs = common.sample_subset(common.load_reference(ref_path), args.sample, args.sample_seed)
    counts = [2 * m.GetNumConformers() for _, m in refs]
    inputs, _ = common.benchmark_inputs(refs)
    out = {"benchmark": ref_path.name, "n_mols": len(refs), "sample": args.sample, "sample_seed": args.sample_seed,
           "seed": args.seed, "threshold": args.threshold, "ring_threshold": args.ring_threshold,
           "torsion_threshold": args.torsion_threshold, "classes": list(CLASSES), "fixes": FIXES, "methods": {},
           "provenance": prov}
    generated: dict[str, list] = {}
    if args.method in ("ours", "both"):
        loaded = load_model(args.weights, "cpu")
        sampler = resolve_schedule("warm")
        t0 = time.perf_counter()
        res = generate(inputs, counts, model=loaded, schedule=sampler, seed=args.seed, progress=not args.quiet)
        out["ours"] = {"weights": args.weights or "shipped", "weights_step": loaded.meta.trained_steps,
                       "sampler_tag": sampler.describe(), "seconds": time.perf_counter() - t0}
        generated["ours"] = res.mols
    if args.method in ("etkdg", "both"):
        generated["etkdg"] = [common.etkdg(x, n, args.seed + k) for k, (x, n) in enumerate(zip(inputs, counts))]
    out["ring_bins"] = list(RING_BINS)
    out["reference_ring_rmsd_histogram"] = _histogram([v for _, m in refs for v in reference_ring_rmsd(m)])
    for method, mols in generated.items():
        t0 = time.perf_counter()
        per_mol = []
        for (smi, ref), g in zip(refs, mols):
            if g is None or g.GetNumConformers() == 0:
                continue
            per_mol.append((smi, classify(g, ref, args.threshold, args.ring_threshold, args.torsion_threshold)))
        out["methods"][method] = summarise(per_mol, args.threshold, args.ring_threshold, args.torsion_threshold)
        out["methods"][method]["classify_seconds"] = time.perf_counter() - t0
        out["methods"][method]["n_mols_without_output"] = len(refs) - len(per_mol)
    print(f"far conformers (> {args.threshold} A from every reference), {len(refs)} molecules of {ref_path.name}")
    print(markdown_table(out))
    tt, rt = f"{args.torsion_threshold:g} deg", f"{args.ring_threshold:g} A"
    for method, s in out["methods"].items():
        print(f"{method}: far {s['far_percent']:.1f} % pooled, {s['far_percent_mol_mean']:.1f} % as the mean over "
              f"molecules (100 - COV-P); broken that MMFF also brings within delta: {s['broken_also_fixed_by_mmff']}; "
              f"strained where MMFF moved a torsion > {tt}: {s['strained_relax_moved_torsion']}, a ring > {rt}: "
              f"{s['strained_relax_moved_ring']}; far with a ring > {rt} / a torsion > {tt} off the nearest reference: "
              f"{s['far_ring_beyond_threshold']} / {s['far_torsion_beyond_threshold']}; wrong-rotamer ones whose "
              f"torsions match another reference: {s['rotamer_present_in_ensemble']}")
        print(f"  ring RMSD to the nearest reference, bins {list(RING_BINS)}: near {s['ring_rmsd_histogram']['near']}, "
              f"far {s['ring_rmsd_histogram']['far']}")
    print(f"reference vs reference ring RMSD, same bins: {out['reference_ring_rmsd_histogram']}")
    if args.json:
        common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
