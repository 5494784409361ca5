"""Annealed Langevin dynamics over atomic coordinates, batched over molecules x conformers.

R ~ N(0, I) per atom (angstrom). For each noise level l (largest sigma first), step size
alpha_l = eps * (sigma_l / sigma_L)^2 with sigma_L the model's smallest level; each step:
  d_ij = |r_i - r_j| over the extended graph's edges,
  s = scorenet(d, sigma_l),
  S_i = sum_j s_ij (r_i - r_j) / d_ij, clipped to |S_i| <= clip,
  R <- R + alpha_l S + sqrt(2 alpha_l) z,  z ~ N(0, I).
Only the current state is kept (the official code stores the whole trajectory).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from . import ops
from .config import NoiseConfig, SamplerConfig, parse_bands
from .graph import GraphBatch
from .model import ScoreNet


def level_indices(num_levels: int, levels: int | None) -> list[int]:
    """Which of the model's L levels a schedule visits: all, or `levels` evenly spaced from the
    first (largest sigma) to the last (smallest)."""
    if levels is None or levels >= num_levels:
        return list(range(num_levels))
    if levels < 1:
        raise ValueError("levels must be >= 1")
    if levels == 1:
        return [num_levels - 1]
    return sorted({round(k * (num_levels - 1) / (levels - 1)) for k in range(levels)})


def level_plan(noise: NoiseConfig, cfg: SamplerConfig) -> list[tuple[int, int]]:
    """[(level index, steps)] in the order the sampler visits them (largest sigma first).

    Uniform schedules visit level_indices(L, cfg.levels) with cfg.steps_per_level steps each;
    cfg.bands spends a different number of levels and steps in each sigma band. A band always
    includes its smallest-sigma level, so the last band ends on the model's last level when its
    floor is below sigma_L."""
    if cfg.bands is None:
        return [(i, cfg.steps_per_level) for i in level_indices(noise.num_levels, cfg.levels)]
    sig = noise.sigmas("cpu").tolist()
    plan, ceiling = [], float("inf")
    for floor, n, steps in parse_bands(cfg.bands):
        members = [i for i, s in enumerate(sig) if floor < s <= ceiling]
        ceiling = floor
        if not members:
            continue
        # evenly spaced, always keeping the band's smallest sigma (its last member)
        picks = [members[i] for i in level_indices(len(members), n)] if n < len(members) else members
        plan += [(i, steps) for i in picks]
    if not plan:
        raise ValueError(f"bands {cfg.bands!r} select none of the {noise.num_levels} noise levels")
    return plan


def num_evaluations(noise: NoiseConfig, cfg: SamplerConfig) -> int:
    """Network evaluations per conformer for this schedule."""
    return sum(steps for _, steps in level_plan(noise, cfg))


# torch.compile pays for itself above about this many conformer-evaluations in a batch. On the dev
# CPU (1 thread, QM9 batches of 360-990 atoms) the compiled forward ran 3.5-4x faster than eager
# (~2,000-2,500 conformer-evaluations/s), but compiling costs 15-20 s with a warm inductor cache and
# more when cold. At 50k (the README's 10 paracetamol conformers, paper schedule) eager took 27 s
# and compiled 36 s (warm cache, loaded 2-core machine, 2026-11-24), so the bar is 150k, where eager
# needs ~60-75 s.
COMPILE_MIN_EVALS = 150_000
PRECISIONS = ("fp32", "bf16", "tf32")

ScoreFn = Callable[..., Tensor]


def score_function(model: ScoreNet, cfg: SamplerConfig, device: torch.device, evals: int) -> ScoreFn:
    """The network as the sampler calls it, fn(z, edge_index, edge_type, d, sigma, half, pair) ->
    s [E] float32: eager or torch.compile'd (cfg.compile, with `evals` = conformer-evaluations of
    the batch for "auto"), in cfg.precision. Compiled functions are cached per model and precision;
    if compiling fails (no C++ compiler, an unsupported platform) the sampler warns once and runs
    eager."""
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {cfg.precision!r}")
    if cfg.precision == "tf32" and device.type != "cuda":
        raise ValueError("precision 'tf32' is a CUDA matmul mode; on a CPU use 'fp32' or 'bf16'")
    if cfg.compile not in ("auto", "on", "off"):
        raise ValueError(f"compile must be 'auto', 'on' or 'off', not {cfg.compile!r}")

    bf16 = cfg.precision == "bf16"
    # The matmul mode is a global flag, so it is set around the call, never inside compiled code.
    mode = _tf32 if cfg.precision == "tf32" else contextlib.nullcontext

    def net(*args: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(*args).float()

    def eager(*args: Tensor) -> Tensor:
        with mode():
            return net(*args)

    use = cfg.compile == "on" or (cfg.compile == "auto" and evals >= COMPILE_MIN_EVALS)
    if not use:
        return eager
    # {precision: compiled callable, or None once compiling failed}, kept on the model itself (a
    # reference cycle the garbage collector frees with the model).
    cache = model.__dict__.setdefault("_confgf_compiled", {})
    if cfg.precision not in cache:
        cache[cfg.precision] = torch.compile(net, dynamic=True)
    if cache[cfg.precision] is None:
        return eager

    def compiled(*args: Tensor) -> Tensor:
        fn = cache.get(cfg.precision)
        if fn is None:
            return eager(*args)
        try:
            with mode():
                return fn(*args)
        except Exception as exc:  # the compiler stack can fail in many ways; eager is always right
            warnings.warn(f"torch.compile of the score network failed ({type(exc).__name__}: {exc}); "
                          "running it eager", RuntimeWarning, stacklevel=2)
            cache[cfg.precision] = None
            return eager(*args)

    return compiled


@contextlib.contextmanager
def _tf32():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@torch.no_grad()
def langevin_sample(model: ScoreNet, batch: GraphBatch, noise: NoiseConfig, cfg: SamplerConfig,
                    generator: torch.Generator | None = None, pos_init: Tensor | None = None,
                    callback: Callable[[int, int], None] | None = None,
                    guidance: Callable[[Tensor, float, int], Tensor | None] | None = None) -> Tensor:
    """Run the schedule on one GraphBatch (already on the model's device). Returns pos [N, 3].

    model is called as model(z, edge_index, edge_type, d, sigma, half_edges, edge_pair) (the
    ScoreNet signature; a custom score model may ignore the last two) through score_function, so
    cfg.compile and cfg.precision apply.

    callback(done_steps, total_steps) is called once per level (for progress bars).
    guidance(pos, sigma_l, l) -> F [N, 3] or None: an extra force (e.g. stereo.StereoGuidance),
    evaluated at the same positions as the score; the step becomes
    R <- langevin_step(R) + alpha_l F, i.e. F is added outside the fused kernel and after the
    clip (the clip bounds the network score only). None, as argument or as return value, leaves the
    step exactly as without guidance.
    """
    dev = batch.z.device
    sigmas = noise.sigmas(dev)
    host_sigmas = noise.sigmas("cpu").tolist()  # python floats without a device sync
    plan = level_plan(noise, cfg)
    sigma_min = host_sigmas[-1]
    pos = pos_init if pos_init is not None else torch.randn(batch.num_atoms, 3, generator=generator, device=dev)
    ei, et, z = batch.edge_index, batch.edge_type, batch.z
    total = sum(steps for _, steps in plan)
    score = score_function(model, cfg, pos.device, total * batch.num_graphs)
    graphs = cfg.cuda_graphs and dev.type == "cuda"
    noise_z = torch.empty_like(pos) if graphs else None
    if graphs:
        pos = pos.clone()  # the graphs update it in place; never the caller's pos_init
    done = 0
    for li, steps in plan:
        sigma, sigma_f = sigmas[li], host_sigmas[li]
        alpha = step_size(cfg, sigma_f, sigma_min)

        def step(pos: Tensor, noise_z: Tensor, sigma=sigma, sigma_f=sigma_f, alpha=alpha, li=li) -> Tensor:
            d = ops.pairwise_distance(pos, ei, backend=cfg.backend)
            s = score(z, ei, et, d, sigma, batch.half_edges, batch.edge_pair)
            extra = guidance(pos, sigma_f, li) if guidance is not None else None
            out = ops.langevin_step(pos, ei, s, noise_z, alpha, cfg.clip, backend=cfg.backend, rowptr=batch.rowptr)
            return out if extra is None else out + alpha * extra

        replay = _capture_level(step, pos, noise_z) if graphs else None
        if replay is None:
            for _ in range(steps):
                pos = step(pos, torch.randn(pos.shape, generator=generator, device=dev))
        else:
            for _ in range(steps):
                torch.randn(pos.shape, generator=generator, device=dev, out=noise_z)
                replay()  # pos <- step(pos, noise_z), in place, one graph launch
        done += steps
        if callback is not None:
            callback(done, total)
    return pos


def _capture_level(step: Callable[[Tensor, Tensor], Tensor], pos: Tensor, noise_z: Tensor) -> Callable[[], None] | None:
    """Record one Langevin step, pos <- step(pos, noise_z), as a CUDA graph over the static buffers
    pos and noise_z (updated in place). One graph per level, since sigma and alpha are constants of
    the step; replaying it costs one launch instead of the ~40 kernels of the network and the
    fused update, and never waits on the host. Returns replay(), or None (after one warning) if the
    step cannot be captured, e.g. because an op syncs with the host; the level then runs eager."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside capture: lazy init, cuBLAS workspaces, compilation
            step(pos, noise_z)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            pos.copy_(step(pos, noise_z))
    except Exception as exc:  # capture is all-or-nothing; eager is always right
        warnings.warn(f"could not capture the Langevin step as a CUDA graph ({type(exc).__name__}: {exc}); "
                      "running eager", RuntimeWarning, stacklevel=3)
        return None
    return graph.replay


def default_max_atoms(device: torch.device | str) -> int:
    """Atoms per sampling batch when the caller gives none. On a CPU the score network's
    activations (~25 kB per atom per step) must stay in cache: measured on the 2-core dev machine
    (bench/bench_sampler.py, 1 thread), 1,000-atom batches ran 2.4x (QM9-size) and 2.3x
    (drug-size) more conformer-steps/s than 20,000-atom ones. A GPU wants large batches."""
    return 20_000 if torch.device(device).type == "cuda" else 1_000


def plan_batches(sizes: list[int], counts: list[int], max_atoms: int) -> list[list[tuple[int, int]]]:
    """Split (molecule, conformer) jobs into batches of at most `max_atoms` atoms (a molecule bigger
    than max_atoms gets a batch of its own). Returns batches of (mol_index, num_confs) pieces."""
    batches: list[list[tuple[int, int]]] = []
    cur: list[tuple[int, int]] = []
    cur_atoms = 0
    for m, (n, c) in enumerate(zip(sizes, counts)):
        left = c
        while left > 0:
            fit = max(0, max_atoms - cur_atoms) // max(n, 1)
            if fit == 0:
                if not cur:  # bigger than max_atoms on its own: one conformer per batch
                    fit = 1
                else:
                    batches.append(cur)
                    cur, cur_atoms = [], 0
                    continue
            take = min(fit, left)
            cur.append((m, take))
            cur_atoms += take * n
            left -= take
    if cur:
        batches.append(cur)
    return batches


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="conf", disable=not enabled, file=sys.stderr)


def step_size(cfg: SamplerConfig, sigma: float, sigma_min: float) -> float:
    """alpha_l = eps * (sigma_l / sigma_L)^2."""
    return cfg.eps * (sigma / sigma_min) ** 2
