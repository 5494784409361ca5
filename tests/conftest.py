"""Shared pytest setup.

TRITON_INTERPRET selects Triton's CPU interpreter and is read when Triton is imported, so it is
set here, before any test module can import Triton, on machines without a CUDA GPU (an explicit
setting in the environment wins).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest


@pytest.fixture(scope="session")
def ref_sdf(tmp_path_factory):
    """Reference SDF: CCO and CC(=O)N x 3 ETKDG conformers, props smiles/mol_id/conf_id."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from confgf_fast.chem import mol_from_smiles

    path = tmp_path_factory.mktemp("ref") / "ref.sdf"
    w = Chem.SDWriter(str(path))
    for k, smi in enumerate(["CCO", "CC(=O)N"]):
        mol = mol_from_smiles(smi)
        AllChem.EmbedMultipleConfs(mol, 3, randomSeed=k)
        for c in mol.GetConformers():
            mol.SetProp("smiles", smi)
            mol.SetProp("mol_id", str(k))
            mol.SetProp("conf_id", str(c.GetId()))
            w.write(mol, confId=c.GetId())
    w.close()
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(ref_sdf, tmp_path_factory):
    """A tiny model (32 x 2) trained 6 steps on ref_sdf: for speed and plumbing tests, not quality.
    trained_elements = H, C, N, O."""
    from confgf_fast.cli import EXIT_OK, main

    out = tmp_path_factory.mktemp("ck") / "tiny.pt"
    rc = main(["train", "--data", str(ref_sdf), "--out", str(out), "--preset", "tiny", "--steps", "6",
               "--batch-size", "4", "--val-fraction", "0", "--save-every", "3", "--val-every", "3", "-q"])
    assert rc == EXIT_OK
    return out
