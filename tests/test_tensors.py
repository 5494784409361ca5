"""generate_tensors: conformers as device tensors (shapes, offsets, seeds, RDKit-free MolGraph input)."""

import subprocess
import sys
import textwrap

import pytest
import torch

from confgf_fast.chem.molecule import featurize, mol_from_smiles
from confgf_fast.config import ModelConfig, Runtime, resolve_schedule
from confgf_fast.graph import extended_graph
from confgf_fast.model.checkpoint import load_model
from confgf_fast.model.network import ScoreNet
from confgf_fast.pipeline.generate import generate
from confgf_fast.sampling import batch as batch_sampling
from confgf_fast.sampling.tensors import TensorConformers, generate_tensors

FAST = resolve_schedule("paper", overrides=dict(levels=3, steps_per_level=3))
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def _check_layout(res: TensorConformers, atoms: dict[int, int], counts: dict[int, int]) -> None:
    """atoms[k], counts[k]: atoms per conformer and conformers of every input k that succeeded."""
    expected_index = [k for k in sorted(counts) for _ in range(counts[k])]
    assert res.mol_index.tolist() == expected_index
    assert res.num_conformers == len(expected_index)
    sizes = [atoms[k] for k in expected_index]
    assert res.atom_ptr.tolist() == [sum(sizes[:g]) for g in range(len(sizes) + 1)]
    assert res.pos.shape == (sum(sizes), 3) and res.pos.dtype == torch.float32
    assert res.z.shape == (sum(sizes),) and res.z.dtype == torch.long
    assert res.ok.shape == res.stereo_ok.shape == (len(sizes),) and res.ok.dtype == torch.bool


def test_shapes_offsets_errors_and_lone_atoms(shipped):
    model, noise = shipped.model, shipped.noise
    smiles = ["CCO", "[Na+]", "C[C@H](N)C(=O)O", "not_a_smiles", "c1ccccc1O", "CBr"]
    res = generate_tensors(smiles, [2, 3, 2, 1, 2, 1], model=model, noise=noise, schedule=FAST, seed=3, max_atoms=30)
    _check_layout(res, atoms={0: 9, 1: 1, 2: 13, 4: 13}, counts={0: 2, 1: 3, 2: 2, 4: 2})
    assert set(res.errors) == {3, 5} and "invalid SMILES" in res.errors[3] and "Br" in res.errors[5]
    ptr = res.atom_ptr.tolist()
    # Conformers of input 0 start with its heavy atoms C, C, O (the Mol's atom order, H last).
    assert res.z[ptr[0]:ptr[0] + 3].tolist() == [6, 6, 8]
    # The lone sodium sits at the origin, not sampled, and counts as ok.
    na = res.pos[ptr[2]:ptr[5]]
    assert res.z[ptr[2]:ptr[5]].tolist() == [11] * 3 and (na == 0).all() and res.ok[2:5].all()
    assert torch.isfinite(res.pos).all()


def test_same_coordinates_as_generate(shipped):
    """The tensors path shares prepare_entry / sample_batch with generate: same seed, same numbers."""
    model, noise = shipped.model, shipped.noise
    smiles = ["CCO", "C[C@H](N)C(=O)O", "[He]", "c1ccccc1O"]
    kw = dict(model=model, noise=noise, schedule=FAST, seed=11, max_atoms=40)
    res = generate_tensors(smiles, 3, **kw)
    ref = generate(smiles, 3, **kw)
    assert ref.errors == {} and res.errors == {}
    ptr = res.atom_ptr.tolist()
    g = 0
    for mol in ref.mols:
        for conf in mol.GetConformers():
            expected = torch.tensor(conf.GetPositions(), dtype=torch.float32)
            torch.testing.assert_close(res.pos[ptr[g]:ptr[g + 1]], expected, rtol=0, atol=1e-6)
            g += 1
    assert g == res.num_conformers


def test_seeded(shipped):
    model, noise = shipped.model, shipped.noise
    graphs = [featurize(mol_from_smiles(s)) for s in ("CCO", "CC(=O)N")]
    run = lambda seed, max_atoms=20_000: generate_tensors(  # noqa: E731
        graphs, [3, 2], model=model, noise=noise, schedule=FAST, seed=seed, max_atoms=max_atoms)
    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a.pos, b.pos) and torch.equal(a.ok, b.ok)
    assert not torch.equal(a.pos, c.pos)
    # Several batches: same layout (the coordinates differ, the noise is drawn in another order).
    d = run(5, max_atoms=20)
    for name in ("atom_ptr", "mol_index", "z"):
        assert torch.equal(getattr(a, name), getattr(d, name))


def test_molgraph_checks_and_counts(shipped):
    model, noise = shipped.model, shipped.noise
    z = torch.tensor([6, 35, 1, 1, 1])  # CH3Br: bromine is not a QM9 element
    bonds = torch.tensor([[0, 0, 0, 0], [1, 2, 3, 4]])
    brome = extended_graph(z, bonds, torch.zeros(4, dtype=torch.long))
    methanol = featurize(mol_from_smiles("CO"))
    res = generate_tensors([brome, methanol, methanol], [2, 0, 2], model=model, noise=noise, schedule=FAST)
    _check_layout(res, atoms={2: 6}, counts={2: 2})
    assert "Br" in res.errors[0] and "at least 1" in res.errors[1]
    ok = generate_tensors([brome], 2, model=model, noise=noise, schedule=FAST, allow_unknown_elements=True)
    _check_layout(ok, atoms={0: 5}, counts={0: 2})
    assert ok.stereo_ok.all()  # a MolGraph has no stereo information: nothing to get wrong


def test_no_progress_callback_in_the_loop(shipped, monkeypatch):
    """The sampler loop only syncs with the host through its callback: the tensors path passes none."""
    model, noise = shipped.model, shipped.noise
    seen = []
    real = batch_sampling.sample

    def spy(*args, **kwargs):
        seen.append(kwargs.get("callback"))
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_sampling, "sample", spy)
    generate_tensors(["CCO", "CN"], 2, model=model, noise=noise, schedule=FAST, max_atoms=10)
    assert len(seen) >= 2 and all(cb is None for cb in seen)


def test_molgraph_path_imports_no_rdkit(tmp_path):
    """A GPU box without RDKit: MolGraphs built from bonds, model from a state dict, no RDKit import.
    Without RDKit the bond/clash test (covalent radii from RDKit) is skipped: ok = finite."""
    code = textwrap.dedent("""
        import sys
        sys.modules["rdkit"] = None  # any `import rdkit...` now raises ImportError
        import torch
        from confgf_fast.config import ModelConfig, resolve_schedule
        from confgf_fast.graph import extended_graph
        from confgf_fast.model.network import ScoreNet
        from confgf_fast.sampling.tensors import generate_tensors

        torch.manual_seed(0)
        model = ScoreNet(ModelConfig.preset("tiny"))
        # ethanol C-C-O with hydrogens: C0 H3..5, C1 H6..7, O2 H8
        z = torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1])
        bonds = torch.tensor([[0, 1, 0, 0, 0, 1, 1, 2], [1, 2, 3, 4, 5, 6, 7, 8]])
        g = extended_graph(z, bonds, torch.zeros(8, dtype=torch.long))
        fast = resolve_schedule("paper", overrides={"levels": 2, "steps_per_level": 2})
        res = generate_tensors([g, g], [2, 1], model=model, schedule=fast)
        assert res.pos.shape == (27, 3) and res.atom_ptr.tolist() == [0, 9, 18, 27]
        assert res.mol_index.tolist() == [0, 0, 1] and res.ok.all() and res.errors == {}
        assert not any(m.startswith("rdkit") for m in sys.modules if sys.modules[m] is not None)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")
def test_cuda_stays_on_device_without_sync_in_loop(monkeypatch):
    """On a GPU: outputs on the device, and torch's sync debug mode raises on any synchronising
    call inside the sampler loop."""
    model = ScoreNet(ModelConfig.preset("tiny")).cuda()
    real = batch_sampling.sample

    def strict(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return real(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(batch_sampling, "sample", strict)
    graphs = [featurize(mol_from_smiles(s)) for s in ("CCO", "CC(=O)N")]
    res = generate_tensors(graphs, 4, model=model, schedule=FAST, device="cuda", max_atoms=40)
    for name in ("pos", "atom_ptr", "mol_index", "z", "ok", "stereo_ok"):
        assert getattr(res, name).is_cuda, name
    assert res.pos.shape == (4 * 9 + 4 * 9, 3)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")
@pytest.mark.parametrize("compile_mode", ["off", "on"])
def test_cuda_graphs_match_eager(shipped, compile_mode):
    """CUDA-graph replay of each level's step gives the conformers of the eager loop (same seed,
    same noise sequence), stereo guidance included (a chiral centre and an E double bond)."""
    model = ScoreNet(shipped.model.config).cuda().eval()
    model.load_state_dict(shipped.model.state_dict())
    smiles = ["C[C@H](N)C(=O)O", "C/C=C/C"]
    base = resolve_schedule("paper", overrides={"levels": 6, "steps_per_level": 5, "stereo_sigma_max": 10.0})
    eager = generate_tensors(smiles, 3, model=model, noise=shipped.noise, schedule=base,
                             runtime=Runtime(compile=compile_mode), device="cuda", seed=5)
    graphed = generate_tensors(smiles, 3, model=model, noise=shipped.noise, schedule=base,
                               runtime=Runtime(compile=compile_mode, cuda_graphs=True), device="cuda", seed=5)
    torch.testing.assert_close(graphed.pos, eager.pos, rtol=1e-4, atol=1e-4)
    assert torch.equal(graphed.stereo_ok, eager.stereo_ok)
