"""Regenerate tests/data/geom_rdkit_folder (a tiny GEOM rdkit_folder look-alike).

    python tests/data/make_geom_fixture.py

Contents (QM9 part):
  CCO               3 conformers (weights 0.2, 0.5, 0.3)
  CC(N)=O           2 conformers
  C[C@H](N)C(=O)O   4 conformers
  OCCO              2 conformers, the second with its C-C bond removed (bonding mismatch)
  CCC               summary entry whose pickle file is absent
  CC#N              summary entry without pickle_path
Drugs part: Oc1ccccc1 with 2 conformers.
The pickles hold the dict layout of GEOM ({"smiles", "conformers": [{"rd_mol", "boltzmannweight",
"totalenergy", ...}]}), protocol 4.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from rdkit import Chem
from rdkit.Chem import AllChem

ROOT = Path(__file__).resolve().parent / "geom_rdkit_folder"


def conformer_mols(smiles: str, n: int, seed: int) -> list[Chem.Mol]:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    ids = AllChem.EmbedMultipleConfs(mol, numConfs=n, randomSeed=seed)
    out = []
    for cid in ids:
        m = Chem.Mol(mol, confId=cid)
        # Fewer decimals keep the pickles small; still far below any RMSD we test.
        conf = m.GetConformer()
        for i in range(m.GetNumAtoms()):
            p = conf.GetAtomPosition(i)
            conf.SetAtomPosition(i, (round(p.x, 4), round(p.y, 4), round(p.z, 4)))
        out.append(m)
    return out


def write_molecule(folder: str, name: str, smiles: str, mols: list[Chem.Mol], weights: list[float]) -> str:
    rel = f"{folder}/{name}.pickle"
    confs = [{"rd_mol": m, "boltzmannweight": w, "totalenergy": -10.0 - k * 0.001, "geom_id": 1000 + k}
             for k, (m, w) in enumerate(zip(mols, weights))]
    data = {"smiles": smiles, "uniqueconfs": len(confs), "totalconfs": len(confs), "conformers": confs}
    (ROOT / folder).mkdir(parents=True, exist_ok=True)
    with open(ROOT / rel, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return rel


def main() -> None:
    summary: dict[str, dict] = {}
    for name, smi, n, w in (("ethanol", "CCO", 3, [0.2, 0.5, 0.3]), ("acetamide", "CC(N)=O", 2, [0.6, 0.4]),
                            ("alanine", "C[C@H](N)C(=O)O", 4, [0.1, 0.4, 0.3, 0.2])):
        rel = write_molecule("qm9", name, smi, conformer_mols(smi, n, seed=7), w)
        summary[smi] = {"pickle_path": rel, "uniqueconfs": n, "totalconfs": n, "charge": 0}
    good, broken = conformer_mols("OCCO", 2, seed=7)
    rw = Chem.RWMol(broken)
    rw.RemoveBond(1, 2)  # C-C: a "reacted" CREST conformer
    broken = rw.GetMol()
    Chem.SanitizeMol(broken)
    summary["OCCO"] = {"pickle_path": write_molecule("qm9", "glycol", "OCCO", [good, broken], [0.7, 0.3]),
                       "uniqueconfs": 2, "totalconfs": 2, "charge": 0}
    summary["CCC"] = {"pickle_path": "qm9/propane.pickle", "uniqueconfs": 1, "totalconfs": 1, "charge": 0}
    summary["CC#N"] = {"uniqueconfs": 0, "totalconfs": 0, "charge": 0}
    (ROOT / "summary_qm9.json").write_text(json.dumps(summary, indent=1))

    rel = write_molecule("drugs", "phenol", "Oc1ccccc1", conformer_mols("Oc1ccccc1", 2, seed=7), [0.5, 0.5])
    (ROOT / "summary_drugs.json").write_text(
        json.dumps({"Oc1ccccc1": {"pickle_path": rel, "uniqueconfs": 2, "totalconfs": 2, "charge": 0}}, indent=1))


if __name__ == "__main__":
    main()
