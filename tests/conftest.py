"""Shared pytest setup: the Triton interpreter on CPU machines, pinned seeds, shared fixtures.

TRITON_INTERPRET selects Triton's CPU interpreter and is read when Triton is imported, so it is
set here, before any test module can import Triton, on machines without a CUDA GPU (an explicit
setting in the environment wins).
"""

import os
import random
import zlib

import numpy as np
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest

# The base of every seed a test draws without choosing one: CONFGF_TEST_SEED (.ci/run pins it), else 0.
# Modules that draw fresh inputs on purpose (test_ops_*.py, test_gine_aggregate.py) read the same
# variable for their own generators.
BASE_SEED = int(os.environ.get("CONFGF_TEST_SEED", "0"))


@pytest.fixture(autouse=True)
def _seed_global_rngs(request):
    """Seed torch's, numpy's and Python's global generators before every test, from the base seed
    and the test's id: a test that draws from a global generator (torch.randn without a
    generator, a model's initialisation) gets the same numbers whatever ran before it, so a
    failure reproduces when the test runs alone."""
    seed = (BASE_SEED + zlib.crc32(request.node.nodeid.encode())) % 2**32
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@pytest.fixture(scope="session")
def ref_sdf(tmp_path_factory):
    """Reference SDF: CCO and CC(=O)N x 3 ETKDG conformers, props smiles/mol_id/conf_id."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from confgf_fast.chem.molecule import mol_from_smiles

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
