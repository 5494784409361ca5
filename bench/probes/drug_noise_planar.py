"""Probe (issue 30): aromatic-ring planarity (rms out of the best plane, ring atoms + first neighbours) of ours, ETKDGv3, references.

    OMP_NUM_THREADS=1 python bench/probes/drug_noise_planar.py 10
"""
import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from common import etkdg
from rdkit import Chem

from confgf_fast.pipeline.generate import generate

sup = Chem.SDMolSupplier(str(__import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "drugs_xtb_dev.sdf"), removeHs=False)
refs = {}
for m in sup:
    refs.setdefault(m.GetProp("smiles"), []).append(m)
keys = list(refs)[: int(sys.argv[1])]

def planarity(m):
    ri = m.GetRingInfo()
    rings = [r for r in ri.AtomRings() if all(m.GetAtomWithIdx(i).GetIsAromatic() for i in r)]
    sp2 = [a.GetIdx() for a in m.GetAtoms() if a.GetHybridization() == Chem.HybridizationType.SP2 and a.GetDegree() == 3]
    out_r, out_s = [], []
    for c in m.GetConformers():
        x = c.GetPositions()
        for r in rings:
            idx = set(r)
            for i in r:
                idx |= {n.GetIdx() for n in m.GetAtomWithIdx(i).GetNeighbors()}
            p = x[sorted(idx)]; p = p - p.mean(0)
            out_r.append(np.linalg.svd(p, compute_uv=False)[-1] / np.sqrt(len(p)))
        for i in sp2:
            nb = [n.GetIdx() for n in m.GetAtomWithIdx(i).GetNeighbors()]
            p = x[[i] + nb]; p = p - p.mean(0)
            out_s.append(np.linalg.svd(p, compute_uv=False)[-1] / 2)
    return np.mean(out_r) if out_r else np.nan, np.mean(out_s) if out_s else np.nan

if __name__ == "__main__":
    rows = {"ours": [], "etkdg": [], "ref": []}
    for k, smi in enumerate(keys):
        ref = Chem.Mol(refs[smi][0])
        for r in refs[smi][1:]:
            ref.AddConformer(r.GetConformer(), assignId=True)
        m = Chem.Mol(ref); m.RemoveAllConformers()
        ours = generate([m], 8, schedule="noise", relax="none", threads=1, seed=k).mols[0]
        rows["ours"].append(planarity(ours)); rows["etkdg"].append(planarity(etkdg(m, 8, seed=k))); rows["ref"].append(planarity(ref))
        print(k, {n: np.round(v[-1], 3).tolist() for n, v in rows.items()}, flush=True)
    for n, v in rows.items():
        print(n, "aromatic ring RMS out-of-plane A, sp2 centre:", np.round(np.nanmean(np.array(v), 0), 3))
