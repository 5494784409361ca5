"""Probe (issue 30): what MMFF94 changes in our from-noise drug samples vs ETKDGv3 (bond, angle, rotatable and ring torsion changes).

    OMP_NUM_THREADS=1 python bench/probes/drug_noise_diag.py 10   # first 10 drug dev molecules x 8
"""
import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from common import etkdg
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign
from rdkit.Chem import rdMolTransforms as T

from confgf_fast.pipeline.generate import generate

sup = Chem.SDMolSupplier(str(__import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "drugs_xtb_dev.sdf"), removeHs=False)
mols, seen = [], set()
for m in sup:
    s = m.GetProp("smiles")
    if s in seen: continue
    seen.add(s); mols.append(m)
    if len(mols) >= int(sys.argv[1]): break
N = 8

def geom(m, cid):
    c = m.GetConformer(cid)
    bonds = np.array([T.GetBondLength(c, b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in m.GetBonds()])
    angs = []
    for a in m.GetAtoms():
        nb = [x.GetIdx() for x in a.GetNeighbors()]
        for i in range(len(nb)):
            for j in range(i+1, len(nb)):
                angs.append(T.GetAngleDeg(c, nb[i], a.GetIdx(), nb[j]))
    tors_rot, tors_ring = [], []
    ri = m.GetRingInfo()
    for b in m.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        ni = [x.GetIdx() for x in m.GetAtomWithIdx(i).GetNeighbors() if x.GetIdx() != j and x.GetAtomicNum() > 1]
        nj = [x.GetIdx() for x in m.GetAtomWithIdx(j).GetNeighbors() if x.GetIdx() != i and x.GetAtomicNum() > 1]
        if not ni or not nj: continue
        t = T.GetDihedralDeg(c, ni[0], i, j, nj[0])
        (tors_ring if b.IsInRing() else tors_rot).append(t)
    return bonds, np.array(angs), np.array(tors_rot), np.array(tors_ring)

def tdiff(a, b):
    d = np.abs(a - b) % 360
    return np.minimum(d, 360 - d)

def analyse(m, label):
    mm = Chem.Mol(m)
    props = AllChem.MMFFGetMoleculeProperties(mm)
    out = {"rmsd": [], "bond": [], "angle": [], "rot": [], "rot_big": [], "ring": []}
    heavy = Chem.RemoveHs(m)
    for conf in m.GetConformers():
        cid = conf.GetId()
        b0, a0, r0, g0 = geom(m, cid)
        ff = AllChem.MMFFGetMoleculeForceField(mm, props, confId=cid)
        ff.Minimize(maxIts=2000)
        b1, a1, r1, g1 = geom(mm, cid)
        p = Chem.RemoveHs(Chem.Mol(m, confId=cid)); q = Chem.RemoveHs(Chem.Mol(mm, confId=cid))
        out["rmsd"].append(rdMolAlign.GetBestRMS(p, q))
        out["bond"].append(np.sqrt(np.mean((b0 - b1) ** 2)))
        out["angle"].append(np.sqrt(np.mean((a0 - a1) ** 2)))
        if len(r0):
            d = tdiff(r0, r1); out["rot"].append(d.mean()); out["rot_big"].append((d > 30).mean())
        if len(g0): out["ring"].append(tdiff(g0, g1).mean())
    return {k: float(np.mean(v)) if v else None for k, v in out.items()}

res = {"ours": [], "etkdg": []}
for k, ref in enumerate(mols):
    m = Chem.Mol(ref); m.RemoveAllConformers()
    ours = generate([m], N, schedule="noise", relax="none", threads=1, seed=k).mols[0]
    et = etkdg(m, N, seed=k)
    for name, x in (("ours", ours), ("etkdg", et)):
        if x is None or x.GetNumConformers() == 0: continue
        r = analyse(x, name); res[name].append(r)
    print(k, {n: {kk: round(vv, 3) for kk, vv in res[n][-1].items() if vv is not None} for n in res}, flush=True)
for n in res:
    print(n, {kk: round(float(np.mean([r[kk] for r in res[n] if r[kk] is not None])), 3) for kk in res[n][0]})
