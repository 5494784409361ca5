"""Denoising score-matching loss, training/resume, and the Langevin sampler on tiny models."""

import math

import pytest
import torch
from oracle import OracleScore
from rdkit import Chem
from rdkit.Chem import AllChem

from confgf_fast.chem.molecule import conformer_positions, featurize, mol_from_smiles
from confgf_fast.config import ModelConfig, NoiseConfig, Runtime, TrainConfig, resolve_schedule
from confgf_fast.data.dataset import ConformerDataset
from confgf_fast.graph import PackedGraphs
from confgf_fast.model.network import ScoreNet
from confgf_fast.ops import reference
from confgf_fast.sampling.sampler import (
    langevin_sample,
    level_indices,
    level_plan,
    num_evaluations,
    parse_bands,
    plan_batches,
)
from confgf_fast.train import Trainer, dsm_loss, symmetric_noise


def paper(**overrides):
    """The paper's Langevin schedule with `overrides` (config.resolve_schedule), e.g. a few levels for speed."""
    return resolve_schedule("paper", overrides=overrides)



def embedded(smiles, n=3, seed=0):
    mol = mol_from_smiles(smiles)
    AllChem.EmbedMultipleConfs(mol, n, randomSeed=seed)
    return mol


@pytest.fixture(scope="module")
def tiny_dataset():
    return ConformerDataset.from_mols([embedded(s, 3, k) for k, s in enumerate(["CCO", "c1ccoc1", "CC(=O)N", "CCCC"])])


class ZeroScore(torch.nn.Module):
    def forward(self, z, edge_index, edge_type, d, sigma, half_edges=None, edge_pair=None):
        return torch.zeros_like(d)


def test_symmetric_noise(tiny_dataset):
    gb, _ = tiny_dataset.batch(torch.arange(6))
    eps = symmetric_noise(gb, torch.Generator().manual_seed(0))
    assert torch.equal(eps, eps[gb.rev])
    # one independent draw per undirected pair
    src, dst = gb.edge_index
    assert eps[src < dst].unique().numel() == int((src < dst).sum())


def test_edge_pairing(tiny_dataset):
    gb, _ = tiny_dataset.batch(torch.arange(tiny_dataset.num_conformers))
    src, dst = gb.edge_index
    assert gb.half_edges.numel() * 2 == gb.num_edges
    assert bool((src[gb.half_edges] < dst[gb.half_edges]).all())
    assert torch.equal(gb.edge_pair, gb.edge_pair[gb.rev])  # both directions share one pair
    k = gb.half_edges[gb.edge_pair]  # the src < dst edge of each edge's pair
    assert torch.equal(torch.minimum(src, dst), src[k]) and torch.equal(torch.maximum(src, dst), dst[k])


def test_half_edge_forward_equals_directed(tiny_dataset):
    """The edge MLPs run once per undirected pair; on symmetric inputs the output, and the gradient
    of a loss through it, equal the official per-directed-edge evaluation."""
    torch.manual_seed(0)
    model = ScoreNet(ModelConfig(hidden_dim=16, num_layers=2)).double()
    with torch.no_grad():  # non-trivial embeddings, so h_i * h_j is far from zero
        model.node_emb.weight.normal_()
        model.edge_emb.weight.normal_()
    gb, pos = tiny_dataset.batch(torch.arange(tiny_dataset.num_conformers))
    d = reference.pairwise_distance(pos.double() + 0.1 * torch.randn_like(pos.double()), gb.edge_index)
    sigma = torch.rand(gb.num_graphs, dtype=torch.float64)[gb.edge_graph] + 0.1
    args = (gb.z, gb.edge_index, gb.edge_type, d, sigma)
    directed = model(*args)
    grads_directed = torch.autograd.grad(directed.square().sum(), list(model.parameters()))
    half = model(*args, gb.half_edges, gb.edge_pair)
    grads_half = torch.autograd.grad(half.square().sum(), list(model.parameters()))
    torch.testing.assert_close(half, directed, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_half, grads_directed):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_dsm_loss_target_formula(tiny_dataset):
    gb, pos = tiny_dataset.batch(torch.arange(tiny_dataset.num_conformers))
    sigmas = NoiseConfig().sigmas()
    d0 = reference.pairwise_distance(pos, gb.edge_index)
    # The exact score of the Gaussian kernel, -(d~ - d)/sigma^2 = -eps/sigma, has zero loss.
    loss = dsm_loss(OracleScore(d0), gb, pos, sigmas, torch.Generator().manual_seed(1))
    assert loss.shape == (gb.num_graphs,)
    assert float(loss.abs().max()) < 1e-6
    # A zero score pays 1/2 sigma^2 (eps/sigma)^2 = eps^2/2 per edge: E[loss_g] = E_g / 2.
    losses = torch.stack([dsm_loss(ZeroScore(), gb, pos, sigmas, torch.Generator().manual_seed(s)) for s in range(300)])
    n_edges = torch.bincount(gb.edge_graph, minlength=gb.num_graphs).float()
    rel = (losses.mean(0) - n_edges / 2) / (n_edges / 2)
    # Each loss_g is 1/2 * 2 * chi^2 over E_g/2 pairs (symmetric noise counts each pair twice);
    # its mean over 300 draws has relative sd sqrt(2 / (E_g/2) / 300) < 0.02 here.
    assert float(rel.abs().max()) < 0.1


def test_training_reduces_loss_and_resumes(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, lr=3e-3, val_every=20, save_every=20, log_every=10, val_batches=2)
    tr = Trainer(tiny_dataset, tiny_dataset, ModelConfig(32, 2), NoiseConfig(), cfg)
    before = tr.validate()
    ck = tmp_path / "ck.pt"
    tr.train(60, ck, tmp_path / "log.jsonl", progress=False)
    after = tr.validate()
    assert after < before
    assert [h["step"] for h in tr.history] == [20, 40, 60]
    # resume continues the step count, curve and optimizer state
    tr2 = Trainer(tiny_dataset, tiny_dataset, ModelConfig(32, 2), NoiseConfig(), cfg)
    tr2.load(ck)
    assert tr2.step == 60 and len(tr2.history) == 3
    for a, b in zip(tr.model.parameters(), tr2.model.parameters()):
        assert torch.equal(a, b)
    assert tr2.opt.state_dict()["state"][0]["step"] == tr.opt.state_dict()["state"][0]["step"]
    tr2.train(80, ck, progress=False)
    assert tr2.step == 80 and tr2.history[-1]["step"] == 80
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3


def test_init_fine_tunes_from_weights_with_a_fresh_run(tiny_dataset, tmp_path):
    """train --init: the weights, shape and trained elements of the source, but step 0, an empty
    curve and a fresh optimizer; the new data's elements are added (S here, as drug data adds)."""
    from confgf_fast.model.checkpoint import load_model, read_checkpoint
    from confgf_fast.train import train_from_files

    cfg = TrainConfig(batch_size=8, lr=3e-3, val_every=20, save_every=20, log_every=10, val_batches=2)
    src = tmp_path / "src.pt"
    Trainer(tiny_dataset, tiny_dataset, ModelConfig(32, 2), NoiseConfig(), cfg).train(20, src, progress=False)
    drug_like = tmp_path / "s.pt"
    ConformerDataset.from_mols([embedded("CSC(=O)N", 3, 0), embedded("CCSC", 3, 1)]).save(drug_like)
    out = tmp_path / "ft.pt"
    cfg.max_steps = 0
    tr = train_from_files([str(drug_like)], str(out), None, None, cfg, init=str(src), val_fraction=0, progress=False)
    assert tr.step == 0 and tr.history == [] and not tr.opt.state_dict()["state"]
    assert tr.model.config.hidden_dim == 32
    for a, b in zip(tr.model.parameters(), load_model(src).model.parameters()):
        assert torch.equal(a, b)
    assert 16 in tr.trained_elements and {1, 6, 7, 8}.issubset(tr.trained_elements)
    # The largest molecule trained on (heavy atoms) is recorded, and a fine-tune keeps the larger of
    # its source's and its own data's: ethanol (3) from the furan-trained source (5) says 5.
    assert read_checkpoint(src)["trained_max_heavy_atoms"] == 5
    small = Trainer(ConformerDataset.from_mols([embedded("CCO", 2, 0)]), None, ModelConfig(32, 2), NoiseConfig(), cfg)
    assert small.trained_max_heavy_atoms == 3
    small.init_from(src)
    assert small.trained_max_heavy_atoms == 5
    with pytest.raises(ValueError, match="exclude each other"):
        train_from_files([str(drug_like)], str(out), train_cfg=cfg, init=str(src), resume=str(src))
    # resuming the fine-tune keeps naming the weights it started from
    cfg.max_steps = 2
    train_from_files([str(drug_like)], str(out), None, None, cfg, init=str(src), val_fraction=0, progress=False)
    assert read_checkpoint(out)["init_from"] == str(src)
    again = tmp_path / "ft2.pt"
    cfg.max_steps = 4
    train_from_files([str(drug_like)], str(again), None, None, cfg, resume=str(out), val_fraction=0, progress=False)
    assert read_checkpoint(again)["init_from"] == str(src) and read_checkpoint(again)["step"] == 4


def test_level_indices_and_evaluations():
    assert level_indices(50, None) == list(range(50))
    idx = level_indices(50, 10)
    assert idx[0] == 0 and idx[-1] == 49 and len(idx) == 10
    assert num_evaluations(NoiseConfig(), resolve_schedule("paper")) == 5000
    assert num_evaluations(NoiseConfig(), paper(levels=10, steps_per_level=20)) == 200


def test_bands_plan():
    noise = NoiseConfig()
    sig = noise.sigmas().tolist()
    plan = level_plan(noise, paper(bands="2:6x20,0.1:21x36,0:6x20"))
    levels = [i for i, _ in plan]
    assert levels == sorted(set(levels)) and levels[0] == 0 and levels[-1] == 49
    for i, steps in plan:  # each visited level gets its band's step count
        assert steps == (20 if sig[i] > 2 or sig[i] <= 0.1 else 36)
    assert sum(1 for i, _ in plan if 0.1 < sig[i] <= 2) == 21  # all 21 levels of the middle band
    assert sum(1 for i, _ in plan if sig[i] > 2) == 6 and sum(1 for i, _ in plan if sig[i] <= 0.1) == 6
    assert num_evaluations(noise, paper(bands="2:6x20,0.1:21x36,0:6x20")) == 12 * 20 + 21 * 36
    # one band over every level is the uniform schedule
    assert level_plan(noise, paper(bands="0:50x7")) == level_plan(noise, paper(steps_per_level=7))
    for bad in ("", "0.1:3", "0.1:0x5", "0.1:3x5,0.5:2x2", "a:1x1"):
        with pytest.raises(ValueError):
            parse_bands(bad)
    with pytest.raises(ValueError, match="select none"):
        level_plan(noise, paper(bands="20:3x3"))


def test_bands_sample_like_uniform_schedule():
    """A one-band spec over all levels must reproduce the uniform schedule exactly (same steps,
    same random stream)."""
    model = ScoreNet(ModelConfig(16, 2)).eval()
    g = featurize(mol_from_smiles("CCO"))
    batch = PackedGraphs([g]).batch(torch.zeros(2, dtype=torch.long))
    noise = NoiseConfig(num_levels=4)
    gen = [torch.Generator().manual_seed(1) for _ in range(2)]
    a = langevin_sample(model, batch, noise, paper(steps_per_level=3), generator=gen[0])
    b = langevin_sample(model, batch, noise, paper(bands="0:4x3"), generator=gen[1])
    assert torch.equal(a, b)


def test_plan_batches_covers_all_jobs():
    sizes, counts = [10, 40, 7], [5, 3, 100]
    plan = plan_batches(sizes, counts, max_atoms=100)
    per_mol = [0, 0, 0]
    for b in plan:
        assert sum(sizes[m] * c for m, c in b) <= 100
        for m, c in b:
            per_mol[m] += c
    assert per_mol == counts
    # a molecule larger than max_atoms still gets sampled, one conformer per batch
    assert sum(c for b in plan_batches([500], [3], 100) for _, c in b) == 3


def test_sampler_recovers_distances_with_oracle_score():
    """With the exact score of the perturbed distances around a real conformer, the last levels of
    annealed Langevin must pull a nearby start onto that conformer's distances."""
    mol = embedded("CC(=O)NC", 1, 7)
    g = featurize(mol)
    batch = PackedGraphs([g]).batch(torch.zeros(4, dtype=torch.long))
    pos0 = conformer_positions(mol)[0].repeat(4, 1)
    d0 = reference.pairwise_distance(pos0, batch.edge_index)
    gen = torch.Generator().manual_seed(0)
    start = pos0 + 0.2 * torch.randn(pos0.shape, generator=gen)
    low = NoiseConfig(sigma_begin=0.1, sigma_end=0.01, num_levels=5)
    out = langevin_sample(OracleScore(d0), batch, low, paper(steps_per_level=200), generator=gen,
                          pos_init=start)
    d = reference.pairwise_distance(out, batch.edge_index)
    d_start = reference.pairwise_distance(start, batch.edge_index)
    assert torch.isfinite(out).all()
    assert float((d_start - d0).abs().max()) > 0.2
    # At the last level the target density has width sigma_L = 0.01 A per distance: measured
    # mean |d - d0| 0.0075, max 0.026 after 200 steps per level (0.0069 / 0.026 after 800).
    assert float((d - d0).abs().mean()) < 0.015
    assert float((d - d0).abs().max()) < 0.06


def test_sampler_seeded_and_finite():
    model = ScoreNet(ModelConfig(16, 2)).eval()
    g = featurize(mol_from_smiles("CCO"))
    batch = PackedGraphs([g]).batch(torch.zeros(3, dtype=torch.long))
    cfg = paper(levels=3, steps_per_level=4)
    a = langevin_sample(model, batch, NoiseConfig(), cfg, generator=torch.Generator().manual_seed(5))
    b = langevin_sample(model, batch, NoiseConfig(), cfg, generator=torch.Generator().manual_seed(5))
    c = langevin_sample(model, batch, NoiseConfig(), cfg, generator=torch.Generator().manual_seed(6))
    assert a.shape == (batch.num_atoms, 3) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dataset_roundtrip(tiny_dataset, tmp_path):
    p = tmp_path / "ds.pt"
    tiny_dataset.save(p)
    ds = ConformerDataset.load(p)
    assert ds.num_conformers == tiny_dataset.num_conformers == 12
    gb, pos = ds.batch(torch.tensor([4, 11]))
    assert torch.equal(pos[: gb.atom_ptr[1]], tiny_dataset.conformers(1)[1])
    tr, va = ds.split(0.25, seed=0)
    assert tr.num_molecules == 3 and va.num_molecules == 1
    assert set(tr.smiles) | set(va.smiles) == set(ds.smiles)
    assert math.isclose(tr.num_conformers + va.num_conformers, 12)
    assert Chem.MolFromSmiles(ds.smiles[0]) is not None


def _tiny_batch():
    graphs = [featurize(mol_from_smiles(s)) for s in ("CCO", "c1ccoc1")]
    return PackedGraphs(graphs).batch(torch.tensor([0, 1, 1]))


def test_score_function_compiled_and_bf16_match_eager():
    from confgf_fast.sampling.sampler import score_function

    torch.manual_seed(0)
    model = ScoreNet(ModelConfig(hidden_dim=16, num_layers=2)).eval()
    gb = _tiny_batch()
    d = reference.pairwise_distance(torch.randn(gb.num_atoms, 3), gb.edge_index)
    args = (gb.z, gb.edge_index, gb.edge_type, d, torch.tensor(0.5), gb.half_edges, gb.edge_pair)
    with torch.no_grad():
        ref = model(*args)
        fn = score_function(model, Runtime(compile="on"), torch.device("cpu"), 1)
        torch.testing.assert_close(fn(*args), ref, rtol=1e-5, atol=1e-6)
        low = score_function(model, Runtime(compile="off", precision="bf16"), torch.device("cpu"), 1)(*args)
    assert low.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: a relative error of a few 1e-3 per matmul, measured ~1e-2 on the
    # whole network output (shipped model, QM9 batch).
    assert float((low - ref).norm() / ref.norm()) < 5e-2
    # "auto" compiles only above the threshold; bad settings are refused.
    from confgf_fast.sampling import sampler as sampler_mod

    assert score_function(model, Runtime(), torch.device("cpu"), 1).__name__ == "eager"
    big = score_function(model, Runtime(), torch.device("cpu"), sampler_mod.COMPILE_MIN_EVALS)
    assert big.__name__ == "compiled"
    with pytest.raises(ValueError, match="tf32"):
        score_function(model, Runtime(precision="tf32"), torch.device("cpu"), 1)
    with pytest.raises(ValueError, match="precision"):
        score_function(model, Runtime(precision="fp16"), torch.device("cpu"), 1)


def test_score_function_falls_back_to_eager_when_compile_fails(monkeypatch):
    from confgf_fast.sampling.sampler import score_function

    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = ScoreNet(ModelConfig(hidden_dim=8, num_layers=1)).eval()
    gb = _tiny_batch()
    d = reference.pairwise_distance(torch.randn(gb.num_atoms, 3), gb.edge_index)
    args = (gb.z, gb.edge_index, gb.edge_type, d, torch.tensor(0.5), gb.half_edges, gb.edge_pair)
    fn = score_function(model, Runtime(compile="on"), torch.device("cpu"), 1)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="running it eager"):
        out = fn(*args)
    torch.testing.assert_close(out, model(*args).detach())
    # remembered: later calls go eager without trying (and warning) again
    assert score_function(model, Runtime(compile="on"), torch.device("cpu"), 1).__name__ == "eager"


class CaptureInput(torch.nn.Module):
    """Returns a zero score and keeps the distances the loss fed it."""

    def forward(self, z, edge_index, edge_type, d, sigma, half_edges=None, edge_pair=None):
        self.d, self.sigma = d.clone(), sigma.clone()
        return torch.zeros_like(d)


def test_dsm_loss_coordinate_noise(tiny_dataset):
    gb, pos = tiny_dataset.batch(torch.arange(tiny_dataset.num_conformers))
    sigmas = NoiseConfig().sigmas()
    d0 = reference.pairwise_distance(pos, gb.edge_index)
    src, dst = gb.edge_index
    # Coordinate noise gives distances of a real geometry: symmetric, and the triangle inequality
    # holds on every 1-2 / 2-3 / 1-3 triple, which independent distance noise breaks at large sigma.
    cap = CaptureInput()
    broken = {}
    for frac in (0.0, 1.0):
        bad = 0
        for seed in range(20):
            dsm_loss(cap, gb, pos, sigmas, torch.Generator().manual_seed(seed), coord_noise=frac)
            assert torch.equal(cap.d, cap.d[gb.rev])
            lookup = {(int(a), int(b)): float(x) for a, b, x in zip(src, dst, cap.d)}
            for (a, b), dab in lookup.items():
                for (b2, c), dbc in lookup.items():
                    if b2 == b and c != a and (a, c) in lookup:
                        bad += lookup[(a, c)] > dab + dbc + 1e-4
        broken[frac] = bad
    assert broken[1.0] == 0 and broken[0.0] > 100
    # The target is (d - d~) / sigma^2 in both modes: the oracle has zero loss.
    loss = dsm_loss(OracleScore(d0), gb, pos, sigmas, torch.Generator().manual_seed(3), coord_noise=1.0)
    assert float(loss.abs().max()) < 1e-6
    # coord_noise = 0.5: about half of the conformers keep the official noise, drawn as without it.
    same = []
    for seed in range(20):
        dsm_loss(cap, gb, pos, sigmas, torch.Generator().manual_seed(seed))
        d_dist = cap.d
        dsm_loss(cap, gb, pos, sigmas, torch.Generator().manual_seed(seed), coord_noise=0.5)
        eq = torch.zeros(gb.num_graphs).index_add_(0, gb.edge_graph, (cap.d == d_dist).float())
        same.append(eq == torch.bincount(gb.edge_graph, minlength=gb.num_graphs))
    share = float(torch.stack(same).float().mean())
    assert 0.3 < share < 0.7  # 240 draws: sd 0.03


def test_time_limit_counts_from_the_start_not_from_the_last_save(tiny_dataset, tmp_path):
    """--time-limit stops a run whose saves come more often than the limit (before the fix every
    save restarted the clock, so such a run went on until one step-and-save interval alone took
    longer than the limit: measured 1,246 steps instead of 2 at a 0.3 s limit)."""
    import time

    cfg = TrainConfig(batch_size=4, val_every=10**6, save_every=1, log_every=10**6)
    tr = Trainer(tiny_dataset, None, ModelConfig(16, 1), NoiseConfig(), cfg)
    t0 = time.perf_counter()
    tr.train(10**6, tmp_path / "t.pt", progress=False, time_limit_s=0.5)
    # a few ms per step and save: well under a second when the limit counts from the start
    assert 1 <= tr.step < 10**6 and time.perf_counter() - t0 < 20


def test_weight_average_follows_its_formula_and_is_saved_resumed_and_exported(tiny_dataset, tmp_path):
    """The EMA is a <- a + (1 - beta_n)(w - a) with beta_n = min(decay, (1+n)/(10+n)), checked against
    a hand-kept average over real optimizer steps; it survives a resume, and export-weights ships it
    (or the raw weights with average=False) and says which."""
    from confgf_fast.model.checkpoint import export_weights, load_model, read_checkpoint

    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, lr=3e-3, val_every=5, save_every=5, log_every=5, val_batches=1, ema_decay=0.9)
    tr = Trainer(tiny_dataset, tiny_dataset, ModelConfig(32, 2), NoiseConfig(), cfg)
    name = "embed.weight" if "embed.weight" in tr.model.state_dict() else next(iter(tr.model.state_dict()))
    hand = tr.model.state_dict()[name].clone()
    n = 0
    orig_step = tr.opt.step

    def step_and_track(*a, **k):
        nonlocal hand, n
        out = orig_step(*a, **k)
        beta = min(0.9, (1 + n) / (10 + n))
        hand = beta * hand + (1 - beta) * tr.model.state_dict()[name]
        n += 1
        return out

    tr.opt.step = step_and_track
    ck = tmp_path / "ck.pt"
    tr.train(10, ck, progress=False)
    avg = tr.ema.weights[name]
    assert torch.allclose(avg, hand, atol=1e-6)
    assert not torch.allclose(avg, tr.model.state_dict()[name])  # a real average, not a copy
    assert all("val_loss_ema" in h and math.isfinite(h["val_loss_ema"]) for h in tr.history)
    # validation with the average swapped in leaves the raw weights in place
    raw = tr.model.state_dict()[name].clone()
    tr.validate_ema()
    assert torch.equal(tr.model.state_dict()[name], raw)
    # resume: the average and its update count come back
    tr2 = Trainer(tiny_dataset, tiny_dataset, ModelConfig(32, 2), NoiseConfig(), cfg)
    tr2.load(ck)
    assert tr2.ema.n == 10 and torch.equal(tr2.ema.weights[name], avg)
    # export: average by default, raw on request
    export_weights(ck, tmp_path / "ema.pt")
    export_weights(ck, tmp_path / "raw.pt", average=False)
    e, r = read_checkpoint(tmp_path / "ema.pt"), read_checkpoint(tmp_path / "raw.pt")
    assert e["weights_kind"] == "ema" and e["ema"] == {"decay": 0.9, "updates": 10} and "ema_state" not in e
    assert r["weights_kind"] == "raw" and "ema_state" not in r
    assert torch.equal(load_model(tmp_path / "ema.pt").model.state_dict()[name], avg)
    assert torch.equal(load_model(tmp_path / "raw.pt").model.state_dict()[name], raw)
    # a checkpoint written without an average starts one from the weights it resumes with
    old = read_checkpoint(ck)
    old.pop("ema_state")
    torch.save(old, tmp_path / "old.pt")
    tr3 = Trainer(tiny_dataset, tiny_dataset, ModelConfig(32, 2), NoiseConfig(), cfg)
    tr3.load(tmp_path / "old.pt")
    assert tr3.ema.n == 0 and torch.equal(tr3.ema.weights[name], raw)


def test_gradient_norm_is_logged_and_clipping_bounds_the_step(tiny_dataset, tmp_path):
    """Every validation record carries the window's largest gradient norm (before clipping); with
    grad_clip the gradients the optimizer steps with have at most that norm."""
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, lr=3e-3, val_every=2, save_every=2, log_every=1, val_batches=1, ema_decay=0)
    tr = Trainer(tiny_dataset, tiny_dataset, ModelConfig(32, 2), NoiseConfig(), cfg)
    tr.train(4, tmp_path / "a.pt", progress=False)
    assert [h["step"] for h in tr.history] == [2, 4]
    assert all(math.isfinite(h["grad_norm_max"]) and h["grad_norm_max"] > 0 for h in tr.history)
    # clipping: the gradients the optimizer sees have at most the clip norm
    cfg2 = TrainConfig(batch_size=8, lr=3e-3, val_every=1, save_every=1, log_every=1, val_batches=1, ema_decay=0,
                       grad_clip=1e-3)
    tr2 = Trainer(tiny_dataset, tiny_dataset, ModelConfig(32, 2), NoiseConfig(), cfg2)
    seen = []
    orig = tr2.opt.step

    def step(*a, **k):
        seen.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.grad) for p in tr2.model.parameters() if p.grad is not None]))))
        return orig(*a, **k)

    tr2.opt.step = step
    tr2.train(2, tmp_path / "b.pt", progress=False)
    assert seen and all(n <= 1e-3 * (1 + 1e-4) for n in seen)
    assert all(h["grad_norm_max"] > 1e-3 for h in tr2.history)  # the logged norm is before clipping


def test_anneal_decays_the_rate_by_its_cosine_and_resumes_on_the_same_curve(tiny_dataset, tmp_path):
    """Over the last anneal_steps steps the rate of step s is lr_end + (lr_0 - lr_end)(1 + cos(pi t))/2,
    t = (s - start) / n, lr_0 the rate in force when the decay began; the plateau scheduler is not
    stepped meanwhile, and a run resumed halfway through the decay continues the same curve."""
    cfg = TrainConfig(batch_size=4, lr=2e-3, val_every=2, save_every=2, log_every=1, val_batches=1, ema_decay=0,
                      anneal_steps=6, anneal_to=1e-5)

    def run(tr, max_steps, path, stop_after=None):
        seen = []
        orig = tr.opt.step

        def step(*a, **k):
            if stop_after is not None and len(seen) == stop_after:
                raise KeyboardInterrupt  # an interrupted run: its last checkpoint is the state to resume
            seen.append(tr.opt.param_groups[0]["lr"])
            return orig(*a, **k)

        tr.opt.step = step
        try:
            tr.train(max_steps, path, progress=False)
        except KeyboardInterrupt:
            pass
        return seen

    tr = Trainer(tiny_dataset, tiny_dataset, ModelConfig(16, 1), NoiseConfig(), cfg)
    seen = run(tr, 10, tmp_path / "a.pt")
    start, n = 10 - 6, 6
    want = [2e-3] * start + [1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * (s - start) / n))
                             for s in range(start, 10)]
    assert seen == pytest.approx(want, rel=1e-12)
    assert tr.sched.last_epoch == 2  # stepped at validations 2 and 4; not at 6, 8, 10 (inside the decay)
    # interrupted after 8 steps (checkpoint at step 8), resumed: steps 8 and 9 get the same rates
    tr_b = Trainer(tiny_dataset, tiny_dataset, ModelConfig(16, 1), NoiseConfig(), cfg)
    assert run(tr_b, 10, tmp_path / "b.pt", stop_after=8) == pytest.approx(want[:8], rel=1e-12)
    tr_c = Trainer(tiny_dataset, tiny_dataset, ModelConfig(16, 1), NoiseConfig(), cfg)
    tr_c.load(tmp_path / "b.pt")
    assert tr_c.step == 8 and tr_c.opt.param_groups[0]["anneal_lr0"] == pytest.approx(2e-3)
    assert run(tr_c, 10, tmp_path / "c.pt") == pytest.approx(want[8:], rel=1e-12)
    # resumed from the end of the decay with more steps and no new window: back to lr_0, not ~0
    plain = TrainConfig(batch_size=4, lr=2e-3, val_every=2, save_every=2, log_every=1, val_batches=1, ema_decay=0)
    tr_e = Trainer(tiny_dataset, tiny_dataset, ModelConfig(16, 1), NoiseConfig(), plain)
    tr_e.load(tmp_path / "c.pt")
    assert tr_e.opt.param_groups[0]["lr"] == pytest.approx(1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert run(tr_e, 12, tmp_path / "e.pt") == pytest.approx([2e-3, 2e-3], rel=1e-12)
