"""Sampler throughput: conformers per second, ours against the official way and against RDKit ETKDG.

Three ways to get the same conformers (M molecules x K conformers each):
- ours:  confgf_fast.sampling.tensors.generate_tensors on all M x K at once (featurise, stereo constraints,
         batches of generate's default max_atoms for the device, the edge MLPs once per undirected
         pair, fused ops, quality flags), only the state kept; the network eager ("ours_eager"),
         torch.compile'd ("ours_compiled"), compiled with bf16 autocast ("ours_compiled_bf16") and,
         on CUDA, compiled with every level's step replayed as a CUDA graph ("ours_compiled_cuda_graphs");
- eager: a faithful per-molecule loop like the official ConfGF (DefaultRunner.generate_samples_
         from_testset + position_Langevin_Dynamics): one molecule at a time, its K conformers as one
         repeated graph, eager PyTorch ops (distance, chain rule with index_add_ = torch_scatter's
         scatter_add, clip_norm), a Python loop and, as the official code does, the whole
         trajectory kept (a list of every step's positions, stacked at the end). Same network,
         same shipped weights;
- ETKDG: RDKit EmbedMultipleConfs(ETKDGv3) per molecule, numThreads=1 and numThreads=0 (all cores),
         no force-field clean-up.
Workloads (as bench_ops.py): "qm9" = 50 x 20 conformers of CC(C)C1=CC=CO1 (18 atoms with H),
"drugs" = 20 x 20 conformers of metoprolol (44 atoms). Speed does not depend on model quality,
so the shipped weights (checkpoint.default_weights_path()) are used.

Real workloads (test_real, `-k real`): the benchmarks' own molecules, not one easy molecule: a
seeded 50 of the 190 QM9 dev molecules x 10 conformers ("qm9_dev") and the 40 drug dev molecules x
5 ("drugs_dev"), SMILES in, Mols out through pipeline.generate with the shipped set of weights
(each molecule to its model, as a user gets it), unrelaxed, one round each: the from-noise mode
(`noise`, its 4x oversampling and selection counted), `quick`, the warm default (`warm`: its ETKDG
embedding, 3x, and selection counted) and plain RDKit ETKDGv3 on the same thread. Each row has the
network's matmul FLOPs per output conformer (torch's FlopCounterMode on one evaluation of every
molecule's graph, times the network evaluations per conformer) and the rate they were done at,
against a large single-thread matmul timed in the same run (the ceiling of that work here).

The Langevin runs use a short schedule (default 5 levels x 10 steps = 50 network evaluations) and
report conformer-steps per second; the summary extrapolates to the paper schedule (5000
evaluations per conformer: conformers/s = conformer-steps/s / 5000) and to the `fast` schedule
(966). The timed runs include featurisation and set-up, so the extrapolation is slightly
pessimistic for both samplers.

Memory: peak bytes of the tensors alive during sampling steps (counted exactly with a
TorchDispatchMode: every storage an op creates, until it is freed), per atom, for ours (one
max-size batch) and for the eager loop (one molecule's batch), plus the state that persists
between steps (positions, graph index tensors) and, for the eager loop, the trajectory
(12 bytes per atom per step: 60 KB per atom at 5000 steps).

    pytest bench/bench_sampler.py --bench-threads=1                  # writes bench/results/sampler_cpu_<date>.json
    pytest bench/bench_sampler.py --bench-threads=1 --bench-levels=5 --bench-steps=10 --benchmark-columns=median
    pytest bench/bench_sampler.py --bench-threads=1 -k real --bench-rounds=1   # the real workloads only
See bench/README.md.
"""

from __future__ import annotations

import functools
import os
import time
import weakref
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from confgf_fast import ops
from confgf_fast.config import LangevinSchedule, NoiseConfig, Runtime, Schedule, resolve_schedule
from confgf_fast.graph import GraphBatch, PackedGraphs
from confgf_fast.model.checkpoint import default_weights_path, load_model
from confgf_fast.sampling.sampler import default_max_atoms, level_indices, num_evaluations
from confgf_fast.sampling.tensors import generate_tensors

WORKLOADS = {
    # name: (smiles, molecules, conformers per molecule)
    "qm9": ("CC(C)C1=CC=CO1", 50, 20),
    "drugs": ("COCCc1ccc(OCC(O)CNC(C)C)cc1", 20, 20),
}
# evaluations per conformer of the paper and fast Langevin presets (966 for fast)
PAPER_EVALS = num_evaluations(NoiseConfig(), resolve_schedule("paper"))
FAST_EVALS = num_evaluations(NoiseConfig(), resolve_schedule("fast"))
MAX_ATOMS = 20_000  # the batch test_memory measures: generate's default on a GPU
BENCH = Path(__file__).resolve().parent
# name: (reference file, molecules: a seeded sample of the file's (None: all), conformers per molecule,
# the `noise` settings of the quality tables for that set: bench/v2_suite.sh, bench/eval_drugs.py)
REAL_WORKLOADS = {
    "qm9_dev": (BENCH / "refs_v2" / "qm9_dev_v2.sdf.gz", 50, 10, {}),
    "drugs_dev": (BENCH / "refs_v2" / "drugs_dev_v2.sdf.gz", None, 5, {"repel": 1.0, "sigma_max": 4.0}),
}
REAL_METHODS = ("noise", "quick", "warm", "etkdg")


@functools.cache
def shipped(device: str):
    loaded = load_model(default_weights_path(), device)
    return loaded.model.eval(), loaded.noise


@functools.cache
def shipped_loaded(device: str):
    """The shipped QM9 weights with their checkpoint's metadata, as generate gets them by default."""
    return load_model(default_weights_path(), device)


def schedule(config) -> LangevinSchedule:
    """The paper's Langevin schedule cut to --bench-levels x --bench-steps (timings extrapolate)."""
    return langevin(config.getoption("--bench-levels"), config.getoption("--bench-steps"))


def langevin(levels: int, steps: int) -> LangevinSchedule:
    return resolve_schedule("paper", overrides={"levels": levels, "steps_per_level": steps})


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- the official way -----------------------------------------------------------------------------
def eager_official(model, noise, smiles: str, num_confs: int, cfg: LangevinSchedule, device: str,
                   generator: torch.Generator, keep_traj: bool = True) -> torch.Tensor:
    """One molecule, the official position_Langevin_Dynamics: K repeated graphs, eager ops, Python
    loop, every step's positions appended to a list (stacked at the end). Returns [K * n, 3]."""
    from confgf_fast.chem.molecule import featurize, mol_from_smiles

    graph = featurize(mol_from_smiles(smiles))  # the official smiles_to_data + repeat_data
    batch = PackedGraphs([graph]).batch(torch.zeros(num_confs, dtype=torch.long)).to(device)
    src, dst = batch.edge_index
    sigmas = noise.sigmas(device)
    idx = level_indices(noise.num_levels, cfg.levels)
    pos = torch.randn(batch.num_atoms, 3, generator=generator, device=device)
    traj = []
    with torch.no_grad():
        for li in idx:
            sigma = sigmas[li]
            alpha = cfg.eps * (sigma / sigmas[-1]) ** 2  # a tensor, as in the official code
            for _ in range(cfg.steps_per_level):
                d = (pos[src] - pos[dst]).norm(dim=-1)  # utils.get_d_from_pos
                noise_z = torch.randn(pos.shape, generator=generator, device=device) * torch.sqrt(alpha * 2)
                score_d = model(batch.z, batch.edge_index, batch.edge_type, d, sigma).unsqueeze(-1)
                dd_dr = (1.0 / d).unsqueeze(-1) * (pos[src] - pos[dst])  # convert_score_d
                score_pos = torch.zeros_like(pos).index_add_(0, src, dd_dr * score_d)
                norm = score_pos.norm(dim=-1, keepdim=True)  # utils.clip_norm
                score_pos = score_pos * torch.where(norm > cfg.clip, cfg.clip / norm, torch.ones_like(norm))
                pos = pos + alpha * score_pos + noise_z
                if keep_traj:
                    traj.append(pos)
    return torch.stack(traj)[-1] if keep_traj else pos


# ---- memory ---------------------------------------------------------------------------------------
class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of every storage created by an op inside the mode until it is freed;
    `peak` is the most alive at once. Tensors created before entering are not counted."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                key, nbytes = st.data_ptr(), st.nbytes()
                if nbytes == 0 or key in self._seen:
                    continue  # a view or an in-place result: already counted
                self._seen.add(key)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(st, self._free, key, nbytes)
        return out


def state_bytes(batch: GraphBatch) -> int:
    """Bytes that persist between Langevin steps: positions + graph (z, edge_index, edge_type,
    rev, rowptr, atom_ptr, node_graph, edge_graph, mol_index)."""
    return 12 * batch.num_atoms + sum(t.numel() * t.element_size() for t in vars(batch).values())


def step_peak_bytes(model, noise, batch: GraphBatch, official: bool) -> int:
    """Peak live tensor bytes of two Langevin steps (one network evaluation each) on `batch`."""
    pos = torch.randn(batch.num_atoms, 3, device=batch.z.device)
    sigma = noise.sigmas(batch.z.device)[noise.num_levels // 2]
    src, dst = batch.edge_index
    meter = LiveTensorBytes()
    with torch.no_grad(), meter:
        for _ in range(2):
            if official:
                d = (pos[src] - pos[dst]).norm(dim=-1)
                s = model(batch.z, batch.edge_index, batch.edge_type, d, sigma).unsqueeze(-1)
                score = torch.zeros_like(pos).index_add_(0, src, (1.0 / d).unsqueeze(-1) * (pos[src] - pos[dst]) * s)
                pos = pos + 1e-6 * score + torch.randn_like(pos)
            else:
                d = ops.pairwise_distance(pos, batch.edge_index)
                s = model(batch.z, batch.edge_index, batch.edge_type, d, sigma, batch.half_edges, batch.edge_pair)
                pos = ops.langevin_step(pos, batch.edge_index, s, torch.randn_like(pos), 1e-6, 1000.0,
                                        rowptr=batch.rowptr)
    return meter.peak


# ---- benchmarks -------------------------------------------------------------------------------------
DEVICE_PARAM = "--bench-sampler-device"


@pytest.fixture(scope="module")
def device(request) -> str:
    dev = request.config.getoption(DEVICE_PARAM)
    if dev.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return dev


def _record(sampler_results, size: str, method: str, benchmark, conformers: int, evals: int | None, **extra):
    """Store one timing (median of the rounds) for conftest's summary table and JSON. Nothing under
    --benchmark-disable (the CI smoke run: each workload ran once, untimed)."""
    if benchmark.disabled:
        return
    smiles, mols, confs = WORKLOADS[size]
    sampler_results.setdefault("workloads", {})[size] = {
        "smiles": smiles, "molecules": mols, "conformers_per_molecule": confs,
        "weights": default_weights_path().name}
    st = benchmark.stats.stats
    row = {"median_s": st.median, "min_s": st.min, "mean_s": st.mean, "rounds": st.rounds,
           "conformers": conformers, **extra}
    if evals is not None:
        row["network_evaluations_per_conformer"] = evals
        row["conformer_steps_per_s"] = conformers * evals / st.median
        row["paper_schedule_conformers_per_s"] = row["conformer_steps_per_s"] / PAPER_EVALS
        row["fast_schedule_conformers_per_s"] = row["conformer_steps_per_s"] / FAST_EVALS
    else:
        row["conformers_per_s"] = conformers / st.median
    sampler_results.setdefault("results", {}).setdefault(size, {})[method] = row


# name: (compile, precision, cuda_graphs). All at generate's default batch size for the device.
VARIANTS = {"ours_eager": ("off", "fp32", False), "ours_compiled": ("on", "fp32", False),
            "ours_compiled_bf16": ("on", "bf16", False), "ours_compiled_cuda_graphs": ("on", "fp32", True)}


def _time_generate(benchmark, request, device: str, size: str, cfg: Schedule, warm: Schedule,
                   runtime: Runtime):
    """Time generate_tensors on the workload with `cfg` (generate's batch size for the device),
    after one untimed run with `warm`: extension load, first-touch pages and, for compiled
    networks, compilation (one dynamic-shape graph per model and precision, reused afterwards)."""
    smiles, mols, confs = WORKLOADS[size]
    loaded = shipped_loaded(device)
    max_atoms = default_max_atoms(device)
    generate_tensors([smiles] * mols, confs, model=loaded, schedule=warm, runtime=runtime, device=device,
                     max_atoms=max_atoms)
    seed = iter(range(10**6))

    def run():
        res = generate_tensors([smiles] * mols, confs, model=loaded, schedule=cfg, runtime=runtime,
                               device=device, seed=next(seed), max_atoms=max_atoms)
        _sync(device)
        return res

    benchmark.group = f"sampler/{size}/{device}"
    res = benchmark.pedantic(run, rounds=request.config.getoption("--bench-rounds"), iterations=1)
    assert res.num_conformers == mols * confs and not res.errors
    return mols * confs, max_atoms


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("size", list(WORKLOADS))
def test_ours(benchmark, sampler_results, request, device, size, variant):
    compile_mode, precision, graphs = VARIANTS[variant]
    if graphs and not device.startswith("cuda"):
        pytest.skip("CUDA graphs need a CUDA device")
    cfg = schedule(request.config)
    runtime = Runtime(compile=compile_mode, precision=precision, cuda_graphs=graphs)
    n, max_atoms = _time_generate(benchmark, request, device, size, cfg, langevin(1, 1), runtime)
    evals = len(level_indices(shipped(device)[1].num_levels, cfg.levels)) * cfg.steps_per_level
    _record(sampler_results, size, variant, benchmark, n, evals, device=device,
            backend=ops._resolve("auto", torch.zeros(1, 3, device=device)),
            max_atoms=max_atoms, compile=compile_mode, precision=precision, cuda_graphs=graphs)


@pytest.mark.parametrize("name", ["quick", "quick_repel"])
@pytest.mark.parametrize("size", list(WORKLOADS))
def test_project(benchmark, sampler_results, request, device, size, name):
    """The projected-denoising sampler at a whole schedule preset (no extrapolation: it is short),
    compiled network, generate's batch size: conformers/s as a user gets them. `quick_repel`: the
    same with the far-pair lower bounds of sampler.FarContacts (repel 1.0, the drug-like weights'
    from-noise setting): its cost is the ratio of the two rows (the pair distances, a merge and sort
    of the active pairs every 10 sweeps, and one host sync for their count)."""
    preset = name.removesuffix("_repel")
    repel = {"repel": 1.0} if name.endswith("_repel") else {}
    cfg = resolve_schedule(preset, sampler="project", overrides=repel)
    warm = resolve_schedule(cfg, overrides={"num_steps": 1, "final_steps": 0})
    n, max_atoms = _time_generate(benchmark, request, device, size, cfg, warm, Runtime(compile="on"))
    _record(sampler_results, size, f"project_{name}_compiled", benchmark, n, None, device=device,
            network_evaluations_per_conformer=num_evaluations(shipped(device)[1], cfg), max_atoms=max_atoms)


@pytest.mark.parametrize("oversample", [3, 1])
@pytest.mark.parametrize("size", list(WORKLOADS))
def test_warm(benchmark, sampler_results, request, device, size, oversample):
    """The default of `generate`: ETKDG warm start + projected sampler (schedule warm), through
    pipeline.generate (RDKit in, Mols out: the ETKDG embedding, init_oversample conformers per
    conformer on one thread, and the diversity selection are part of the time), compiled network,
    generate's batch size. oversample 3 is the default; 1 the warm start without oversampling."""
    from confgf_fast.pipeline.generate import generate

    smiles, mols, confs = WORKLOADS[size]
    loaded = shipped_loaded(device)
    noise = loaded.noise
    cfg = resolve_schedule("warm", overrides={"init_oversample": oversample})
    runtime = Runtime(compile="on")
    # compile, first touch
    generate([smiles] * 2, 2, model=loaded, schedule=cfg, runtime=runtime, device=device)
    seed = iter(range(10**6))

    def run():
        res = generate([smiles] * mols, confs, model=loaded, schedule=cfg, runtime=runtime, device=device,
                       seed=next(seed))
        _sync(device)
        return res

    benchmark.group = f"sampler/{size}/{device}"
    res = benchmark.pedantic(run, rounds=request.config.getoption("--bench-rounds"), iterations=1)
    assert not res.errors and sum(m.GetNumConformers() for m in res.mols) == mols * confs
    name = "warm_etkdg_compiled" if oversample == 3 else f"warm_etkdg_os{oversample}_compiled"
    _record(sampler_results, size, name, benchmark, mols * confs, None, device=device,
            network_evaluations_per_conformer=num_evaluations(noise, cfg),
            includes=f"ETKDG embedding ({oversample}x) and selection" if oversample > 1 else "ETKDG embedding")


@pytest.mark.parametrize("size", list(WORKLOADS))
def test_eager_official(benchmark, sampler_results, request, device, size):
    smiles, mols, confs = WORKLOADS[size]
    model, noise = shipped(device)
    cfg = schedule(request.config)
    gen = torch.Generator(device=device).manual_seed(0)
    eager_official(model, noise, smiles, 2, langevin(1, 1), device, gen)  # warm-up

    def run():
        out = [eager_official(model, noise, smiles, confs, cfg, device, gen) for _ in range(mols)]
        _sync(device)
        return out

    benchmark.group = f"sampler/{size}/{device}"
    out = benchmark.pedantic(run, rounds=request.config.getoption("--bench-rounds"), iterations=1)
    assert len(out) == mols
    evals = len(level_indices(noise.num_levels, cfg.levels)) * cfg.steps_per_level
    _record(sampler_results, size, "eager_official", benchmark, mols * confs, evals, device=device,
            trajectory_kept=True)


@pytest.mark.parametrize("threads", [1, 0], ids=["1thread", "allcores"])
@pytest.mark.parametrize("size", list(WORKLOADS))
def test_etkdg(benchmark, sampler_results, request, size, threads):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    smiles, mols, confs = WORKLOADS[size]

    def run():
        n = 0
        for k in range(mols):
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
            params = AllChem.ETKDGv3()
            params.randomSeed = k
            params.numThreads = threads
            n += len(AllChem.EmbedMultipleConfs(mol, confs, params))
        return n

    benchmark.group = f"sampler/{size}/cpu"
    n = benchmark.pedantic(run, rounds=request.config.getoption("--bench-rounds"), iterations=1)
    assert n == mols * confs
    _record(sampler_results, size, "etkdg_1thread" if threads == 1 else "etkdg_allcores", benchmark, n, None,
            numThreads=threads, threads_used=1 if threads == 1 else os.cpu_count())


@pytest.mark.parametrize("size", list(WORKLOADS))
def test_memory(sampler_results, device, size):
    """Not timed: bytes per atom of the sampling state and of one network evaluation's activations."""
    from confgf_fast.chem.molecule import featurize, mol_from_smiles

    smiles, _, confs = WORKLOADS[size]
    model, noise = shipped(device)
    graph = featurize(mol_from_smiles(smiles))
    packed = PackedGraphs([graph])
    ours = packed.batch(torch.zeros(MAX_ATOMS // graph.num_atoms, dtype=torch.long)).to(device)
    eager = packed.batch(torch.zeros(confs, dtype=torch.long)).to(device)
    t0 = time.perf_counter()
    peak_ours = step_peak_bytes(model, noise, ours, official=False)
    peak_eager = step_peak_bytes(model, noise, eager, official=True)
    n = graph.num_atoms
    row = {
        "atoms_per_conformer": n,
        "edges_per_conformer": graph.num_edges,
        "hidden_dim": model.config.hidden_dim,
        "ours_batch_atoms": ours.num_atoms,
        "ours_step_peak_bytes_per_atom": peak_ours / ours.num_atoms,
        "ours_state_bytes_per_atom": state_bytes(ours) / ours.num_atoms,
        "ours_bytes_per_conformer": (peak_ours + state_bytes(ours)) / ours.num_atoms * n,
        "eager_batch_atoms": eager.num_atoms,
        "eager_step_peak_bytes_per_atom": peak_eager / eager.num_atoms,
        "eager_state_bytes_per_atom": state_bytes(eager) / eager.num_atoms,
        "eager_trajectory_bytes_per_atom_per_step": 12,
        "eager_trajectory_bytes_per_conformer_paper_schedule": 12 * n * PAPER_EVALS,
        "measured_in_s": time.perf_counter() - t0,
    }
    sampler_results.setdefault("memory", {})[size] = row
    assert peak_ours > 0 and peak_eager > 0


# ---- real workloads ----------------------------------------------------------------------------------
@functools.cache
def real_inputs(name: str) -> list:
    """The workload's molecules (Mols without coordinates), in file order."""
    from common import benchmark_inputs, load_reference, sample_subset

    path, count, _, _ = REAL_WORKLOADS[name]
    return benchmark_inputs(sample_subset(load_reference(path), count, seed=0))[0]


def network_flops(model, mols: list) -> float:
    """Matmul FLOPs of one network evaluation of one conformer of each of `mols`, summed over them
    (torch.utils.flop_counter: 2mnk per matmul; the element-wise work, a few % of it, is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from confgf_fast.chem.molecule import featurize
    from confgf_fast.sampling.batch import model_graphs

    batch = model_graphs([featurize(m) for m in mols], model).batch(torch.arange(len(mols)))
    d = torch.rand(batch.num_edges) + 1.0
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(batch.z, batch.edge_index, batch.edge_type, d, torch.tensor(1.0), batch.half_edges, batch.edge_pair)
    return float(counter.get_total_flops())


def matmul_ceiling_gflops(n: int = 1024, reps: int = 5) -> float:
    """GFLOP/s of an n x n float32 matmul on this thread: what the network's matmuls could reach here."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


@pytest.mark.parametrize("method", REAL_METHODS)
@pytest.mark.parametrize("name", list(REAL_WORKLOADS))
def test_real(benchmark, sampler_results, request, name, method):
    """One method on a real workload, end to end from the molecules (see the module docstring)."""
    from confgf_fast.model.checkpoint import default_weights_paths
    from confgf_fast.model.elements import Coverage, choose_model
    from confgf_fast.pipeline.generate import generate

    from common import etkdg

    if request.config.getoption(DEVICE_PARAM) != "cpu":
        pytest.skip("the real workloads time one CPU thread (gpu_suite.sh times the GPU's)")
    inputs = real_inputs(name)[:request.config.getoption("--bench-real-mols")]
    _, _, confs, noise_sets = REAL_WORKLOADS[name]
    loaded = [load_model(p, "cpu") for p in default_weights_paths()]
    if method == "etkdg":
        def run():
            return sum(etkdg(m, confs, seed=k, threads=1).GetNumConformers() for k, m in enumerate(inputs))

        evals, flops = None, None
    else:
        overrides = noise_sets if method == "noise" else {}
        cfg = resolve_schedule(method, overrides=overrides)
        generate(inputs[:2], 2, model=loaded, schedule=cfg, relax="none", seed=1)  # extension, compile
        evals = [num_evaluations(lm.noise, cfg) for lm in loaded]
        seed = iter(range(10**6))

        def run():
            res = generate(inputs, confs, model=loaded, schedule=cfg, relax="none", seed=next(seed))
            return sum(m.GetNumConformers() for m in res.mols if m is not None)

        # The FLOPs of each molecule's own model (both shipped models have one shape today, but
        # the sum is taken per model so a model of another shape or graph order counts right).
        coverages = [Coverage.of(lm) for lm in loaded]
        by_model: dict[int, list] = {}
        for m in inputs:
            zs = {a.GetAtomicNum() for a in m.GetAtoms()}
            by_model.setdefault(choose_model(zs, m.GetNumHeavyAtoms(), coverages), []).append(m)
        flops = sum(network_flops(loaded[k].model, ms) * evals[k] for k, ms in by_model.items()) / len(inputs)
    benchmark.group = f"sampler/{name}/cpu"
    n = benchmark.pedantic(run, rounds=request.config.getoption("--bench-rounds"), iterations=1)
    if benchmark.disabled:
        return
    st = benchmark.stats.stats
    row = {"median_s": st.median, "min_s": st.min, "mean_s": st.mean, "rounds": st.rounds, "conformers": n,
           "conformers_requested": len(inputs) * confs, "conformers_per_s": n / st.median,
           "schedule": method, "threads": torch.get_num_threads()}
    if flops is not None:
        row.update(network_evaluations_per_conformer=max(evals), network_gflop_per_conformer=flops / 1e9,
                   network_gflops=flops / 1e9 * n / st.median, matmul_ceiling_gflops=matmul_ceiling_gflops(),
                   overrides=overrides)
        row["network_fraction_of_ceiling"] = row["network_gflops"] / row["matmul_ceiling_gflops"]
    path, count, _, _ = REAL_WORKLOADS[name]
    sampler_results.setdefault("workloads", {})[name] = {
        "reference": path.name, "molecules": len(inputs), "sample": count, "sample_seed": 0,
        "conformers_per_molecule": confs, "weights": [p.name for p in default_weights_paths()], "relax": "none"}
    sampler_results.setdefault("results", {}).setdefault(name, {})[method] = row
