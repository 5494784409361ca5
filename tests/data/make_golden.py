"""Write tests/data/golden_outputs.sdf: conformers of a few molecules for fixed seeds and explicit
settings, from the code before issue 27's restructuring. tests/test_golden_outputs.py checks
that the same calls still give the same coordinates. Rerun only when a change is meant to
change the output (say so in the commit):

    OMP_NUM_THREADS=1 python tests/data/make_golden.py
"""

from pathlib import Path

from rdkit import Chem

from confgf_fast.config import resolve_schedule
from confgf_fast.pipeline.generate import generate

OUT = Path(__file__).with_name("golden_outputs.sdf")
# (SMILES, conformers, schedule): a QM9-size molecule and a drug-size one (the second shipped model)
CASES = [("CC(=O)Nc1ccc(O)cc1", 3, "quick"), ("CC(=O)Nc1ccc(O)cc1", 3, "warm"),
         ("OCC1OC(O)C(O)C1O", 2, "noise"), ("Cc1ccc(S(=O)(=O)N2CCCC2)cc1Cl", 2, "quick")]


def golden_mols():
    """[(case index, Mol with conformers)] as the test recomputes them."""
    out = []
    for k, (smi, n, schedule) in enumerate(CASES):
        res = generate([smi], n, schedule=resolve_schedule(schedule), relax="none", threads=1, seed=11 + k)
        out.append((k, res.mols[0]))
    return out


if __name__ == "__main__":
    w = Chem.SDWriter(str(OUT))
    for k, mol in golden_mols():
        for c in mol.GetConformers():
            m = Chem.Mol(mol, confId=c.GetId())
            m.SetIntProp("case", k)
            w.write(m, confId=c.GetId())
    w.close()
    print(f"wrote {OUT}")
