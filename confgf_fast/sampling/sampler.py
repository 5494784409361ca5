"""Samplers over atomic coordinates, batched over molecules x conformers: annealed Langevin
dynamics (the official ConfGF sampler, below) and projected denoising (project_sample: one
network evaluation per noise level, ~20x fewer than Langevin's `fast`) and the paper's two-stage
ablation ConfGFDist (dist_sample: Langevin on the distances, then a 3D embedding). sample() runs
the one the schedule's family names (config.Schedule.sampler). Every sampler takes what to
produce (a config.Schedule, built by config.resolve_schedule) and how to run the network (a
config.Runtime) separately.

Annealed Langevin dynamics:

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
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import ops
from ..chem.quality import far_pair_index, hbond_pairs, vdw_radii
from ..config import (
    NUM_EDGE_TYPES,
    DistSchedule,
    LangevinSchedule,
    NoiseConfig,
    ProjectSchedule,
    Runtime,
    Schedule,
    parse_bands,
)
from ..graph import GraphBatch, rowptr_from_sorted
from ..model.network import ScoreNet
from .planarity import PlanarGroups


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


def level_plan(noise: NoiseConfig, cfg: LangevinSchedule) -> list[tuple[int, int]]:
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


def num_evaluations(noise: NoiseConfig, cfg: Schedule) -> int:
    """Network evaluations per output conformer for this schedule, oversampling from noise included
    (cfg.oversample samples per output conformer when cfg.init == "random")."""
    per = cfg.oversample if cfg.init == "random" else 1
    if cfg.sampler == "project":
        plan = project_plan(noise, cfg)
        return per * (len(plan) + cfg.corrector_steps * sum(1 for _, nxt in plan if nxt > 0 and cfg.noise_scale > 0))
    return per * sum(steps for _, steps in level_plan(noise, cfg))


SAMPLERS = ("langevin", "project", "dist")


def sample(model: ScoreNet, batch: GraphBatch, noise: NoiseConfig, cfg: Schedule,
           runtime: Runtime | None = None, generator: torch.Generator | None = None, pos_init: Tensor | None = None,
           callback: Callable[[int, int], None] | None = None,
           guidance: Callable[[Tensor, float, int], Tensor | None] | None = None) -> Tensor:
    """Run the sampler of the schedule's family (cfg.sampler) on one GraphBatch; pos [N, 3]. Same
    arguments as langevin_sample."""
    if cfg.sampler == "langevin":
        return langevin_sample(model, batch, noise, cfg, runtime, generator, pos_init, callback, guidance)
    if cfg.sampler == "project":
        return project_sample(model, batch, noise, cfg, runtime, generator, pos_init, callback, guidance)
    if cfg.sampler == "dist":
        return dist_sample(model, batch, noise, cfg, runtime, generator, pos_init, callback, guidance)
    raise ValueError(f"unknown sampler {cfg.sampler!r}; choose from {SAMPLERS}")


def project_grid(noise: NoiseConfig, cfg: ProjectSchedule) -> list[float]:
    """The noise levels of the projected sampler, largest first: num_steps values from
    cfg.sigma_max to the model's smallest sigma, geometric (rho = 0) or Karras-spaced,
    sigma_k = (a + k / (K - 1) (b - a))^rho with a = sigma_max^(1/rho), b = sigma_min^(1/rho)."""
    k_n, hi, lo = cfg.num_steps, cfg.sigma_max, cfg.sigma_min or noise.sigma_end
    if k_n < 1:
        raise ValueError("num_steps must be >= 1")
    if k_n == 1:
        return [lo]
    if cfg.rho <= 0:
        return [hi * (lo / hi) ** (k / (k_n - 1)) for k in range(k_n)]
    a, b = hi ** (1 / cfg.rho), lo ** (1 / cfg.rho)
    return [(a + k / (k_n - 1) * (b - a)) ** cfg.rho for k in range(k_n)]


def project_plan(noise: NoiseConfig, cfg: ProjectSchedule) -> list[tuple[float, float]]:
    """[(sigma of the evaluation, sigma of the noise added after it)] of project_sample, one entry
    per network evaluation: the project_grid levels, each re-noised to the next (none after the
    last, none where the next is <= quiet_below), then final_steps noise-free evaluations at
    final_sigma (default: the last level)."""
    grid = project_grid(noise, cfg)
    plan = [(s, nxt if nxt > cfg.quiet_below else 0.0) for s, nxt in zip(grid, [*grid[1:], 0.0])]
    return plan + [(cfg.final_sigma or grid[-1], 0.0)] * cfg.final_steps


# Tweedie targets below this (angstrom) are raised to it: no two atoms of a molecule are closer
# than ~0.9 A, and a target near 0 would leave the pair's direction undefined.
MIN_TARGET_DISTANCE = 0.5


def project_distances(pos: Tensor, edge_index: Tensor, target: Tensor, degree: Tensor, iters: int,
                      backend: str = "auto", rowptr: Tensor | None = None) -> Tensor:
    """Move pos towards coordinates whose edge lengths are `target`: `iters` damped Jacobi sweeps of
    stress majorisation (Guttman transform) on sum_edges (|r_i - r_j| - t_ij)^2,
    r_i <- r_i + (1 / (2 deg_i)) sum_j (t_ij - d_ij) (r_i - r_j) / d_ij.
    The 1/2 damping makes the sweep converge (undamped, two atoms joined by one edge would each
    move the whole correction and overshoot forever). No network evaluation: O(E) per sweep.

    pos: [N, D] (D = 3: the fused op; other D, e.g. 4 while project_sample embeds in 4D: plain
    torch); edge_index: [2, E] sorted by source; target: [E]; degree: [N, 1] edges per atom.
    """
    step = 0.5 / degree
    if pos.shape[1] == 3:  # all sweeps in one fused call (ops.project_sweeps)
        return ops.project_sweeps(pos, edge_index, target, step, iters, backend, rowptr=rowptr, validate=False)
    src, dst = edge_index
    for _ in range(iters):
        diff = pos[src] - pos[dst]  # [E, D]
        d = diff.norm(dim=1)
        w = torch.where(d > 0, (target - d) / d.clamp_min(1e-12), torch.zeros_like(d))
        pos = pos + step * torch.zeros_like(pos).index_add_(0, src, w.unsqueeze(1) * diff)
    return pos


# Hydrogen-bond pairs (quality.hbond_atoms) are held to this fraction of their vdW sum instead of
# ProjectSchedule.repel: the closest real ones reach 0.51 W (a salt bridge in GEOM-Drugs, quality.py).
HBOND_REPEL = 0.5


class FarContacts:
    """The atom pairs no edge of the extended graph joins (>= 4 bonds apart) with their lower
    bounds b_ij = repel * (R_vdw(i) + R_vdw(j)) (HBOND_REPEL for hydrogen-bond pairs): what the
    score model cannot see. The network only scores 1-2, 1-3 and 1-4 distances, so from noise
    nothing keeps two distant parts of a drug-size molecule from passing through each other; on
    the 10 GEOM-Drugs molecules 85-95 % of the unguarded samples failed the vdw and connectivity
    tests of quality.py. Like distance geometry's lower bounds (ETKDG's bounds matrix), a pair
    only acts while it is closer than its bound, as an extra edge of target b_ij in the stress
    majorisation sweeps (add_active).

    Built once per batch on the host (quality.far_pair_index), O(sum n_g^2) pairs."""

    def __init__(self, batch: GraphBatch, repel: float):
        parts = list(far_pair_index(batch, below=NUM_EDGE_TYPES)) or [(np.zeros(0, np.int64),) * 2]
        src, dst = (torch.from_numpy(np.concatenate(p)).to(batch.z.device) for p in zip(*parts))
        rv = vdw_radii(batch.z)
        hbond = hbond_pairs(batch, src, dst)
        self.pairs = torch.stack([src, dst])  # [2, P]
        self.bound = torch.where(hbond, HBOND_REPEL, repel) * (rv[src] + rv[dst])  # [P]
        self.num_atoms = batch.num_atoms

    def add_active(self, pos: Tensor, edge_index: Tensor, target: Tensor, rowptr: Tensor, degree: Tensor,
                   backend: str = "auto") -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """pos: [N, D]; edge_index: [2, E] sorted by source; target: [E]; rowptr: [N + 1]; degree:
        [N, 1] -> (edge_index [2, E + 2A], target, rowptr, degree) with the A pairs now closer than
        their bound added in both directions at target = bound, sorted by source (the fused
        sweeps' contract: each atom's graph edges, then its active pairs); the inputs themselves
        where no pair is inside its bound."""
        src, dst = self.pairs
        # the fused distance op: ~9x faster than gather + norm over the ~10^5 pairs of a drug batch
        act = (edge_lengths(pos, self.pairs, backend) < self.bound).nonzero().squeeze(1)
        if act.numel() == 0:
            return edge_index, target, rowptr, degree
        # Merge without sorting all E + 2A edges: a Jacobi sweep only needs each atom's edges
        # contiguous, so the 2A active ones (sorted, A is small) go after each atom's graph edges.
        a_ei = torch.cat([torch.stack([src[act], dst[act]]), torch.stack([dst[act], src[act]])], 1)
        b = self.bound[act].repeat(2)
        order = torch.argsort(a_ei[0])
        a_ei, b = a_ei[:, order], b[order]
        a_rowptr = rowptr_from_sorted(a_ei[0], self.num_atoms)
        new_rowptr = rowptr + a_rowptr
        g_src, a_src = edge_index[0], a_ei[0]
        at_g = torch.arange(g_src.numel(), device=g_src.device) - rowptr[g_src] + new_rowptr[g_src]
        at_a = (torch.arange(a_src.numel(), device=a_src.device) - a_rowptr[a_src] + new_rowptr[a_src]
                + (rowptr[1:] - rowptr[:-1])[a_src])
        ei = edge_index.new_empty(2, g_src.numel() + a_src.numel())
        ei[:, at_g], ei[:, at_a] = edge_index, a_ei
        tgt = target.new_empty(ei.shape[1])
        tgt[at_g], tgt[at_a] = target, b
        degree = (new_rowptr[1:] - new_rowptr[:-1]).clamp_min(1).to(pos.dtype).unsqueeze(1)
        return ei, tgt, new_rowptr, degree


def edge_lengths(pos: Tensor, edge_index: Tensor, backend: str = "auto") -> Tensor:
    """[E] |r_src - r_dst| for pos [N, D]: the fused op for D = 3, plain torch otherwise."""
    if pos.shape[1] == 3:
        return ops.pairwise_distance(pos, edge_index, backend=backend, validate=False)
    return (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=1)


@torch.no_grad()
def project_sample(model: ScoreNet, batch: GraphBatch, noise: NoiseConfig, cfg: ProjectSchedule,
                   runtime: Runtime | None = None, generator: torch.Generator | None = None,
                pos_init: Tensor | None = None,
                   callback: Callable[[int, int], None] | None = None,
                   guidance: Callable[[Tensor, float, int], Tensor | None] | None = None) -> Tensor:
    """Projected denoising. Per entry (sigma_k, sigma_next) of project_plan, one network
    evaluation gives the Tweedie estimate of every edge length,
        d_hat = d + c sigma_k^2 s(d, sigma_k)        (c = cfg.tweedie),
    the posterior mean of the clean distance for c = 1, since the network was trained on distances
    perturbed by N(0, sigma^2). project_distances then moves the coordinates to those lengths:
    the stiff bond and angle modes, which bound Langevin's step size (alpha_l = 0.024 sigma_l^2 at
    the paper schedule) and make it take hundreds of steps per level, are settled by cheap sweeps
    instead of network evaluations. The stereo force, if any, acts as stereo_gain * sigma_k^2 * F;
    then fresh coordinate noise noise_scale * sigma_next * z re-noises the state for the next
    level (ancestral sampling; 0.71 would make the distance noise ~sigma_next). Returns pos [N, 3].

    Why the network is told sigma_k: its raw output s * sigma does not depend on sigma (the model
    divides by sigma at the end), so sigma sets the length of the Tweedie step, sigma * output.
    Measured on 30 dev molecules (xTB conformers with coordinate noise sigma / sqrt(2)), one
    step at c = 1 cut the rms distance error to 0.20-0.35 of the noise for sigma in 0.1-2 A, and
    the error-minimising c was 1.06-1.16; at sigma = 0.01 the step barely helps (0.96).
    """
    runtime = runtime or Runtime()
    dev = batch.z.device
    plan = project_plan(noise, cfg)
    # Extra dimensions (embed_dims > 3) while sigma > squash_sigma, shrunk linearly to 0 over
    # those levels: atoms can pass each other there instead of locking into a wrong local minimum
    # of the distance fit (a partly mirrored centre, a wrong rotamer), as in ETKDG's 4D embedding.
    wide = sum(1 for sig, _ in plan if sig > cfg.squash_sigma) if cfg.embed_dims > 3 else 0
    dims = cfg.embed_dims if wide else 3
    if pos_init is not None:  # a warm start (cfg.init = "etkdg"): noised to the first level
        pos = pos_init + (cfg.noise_scale * plan[0][0]) * torch.randn(pos_init.shape, generator=generator, device=dev)
        pos = torch.cat([pos, pos.new_zeros(pos.shape[0], dims - 3)], 1)
    else:
        pos = cfg.init_scale * torch.randn(batch.num_atoms, dims, generator=generator, device=dev)
    degree = (batch.rowptr[1:] - batch.rowptr[:-1]).clamp_min(1).to(pos.dtype).unsqueeze(1)  # [N, 1]
    score = score_function(model, runtime, pos.device, len(plan) * batch.num_graphs)
    contacts = FarContacts(batch, cfg.repel) if cfg.repel > 0 else None
    planes = PlanarGroups(batch) if cfg.planar > 0 else None
    for k, (sig, sig_next) in enumerate(plan):
        pos_prev = pos
        pos = projected_denoise(pos, batch, score, sig * cfg.eval_scale, cfg, degree, contacts, runtime.backend)
        keep = max(0.0, 1.0 - (k + 1) / wide) if wide else 0.0
        if pos.shape[1] > 3:
            pos = torch.cat([pos[:, :3], keep * pos[:, 3:]], 1) if keep > 0 else pos[:, :3].contiguous()
        if planes is not None and pos.shape[1] == 3:
            pos = planes.flatten(pos, cfg.planar)
        extra = guidance(pos[:, :3], sig, k) if guidance is not None else None
        if extra is not None:
            pos = pos + (cfg.stereo_gain * sig * sig) * F.pad(extra, (0, pos.shape[1] - 3))
        if sig_next > 0 and cfg.noise_scale > 0:
            z_noise = torch.randn(pos.shape, generator=generator, device=dev)
            if pos.shape[1] > 3:  # the extra dimensions get noise in proportion to their size
                z_noise[:, 3:] *= keep
            fresh = cfg.noise_scale * sig_next * min(cfg.eta, 1.0)
            if cfg.eta < 1 and pos_prev.shape == pos.shape:  # DDIM: keep part of the noise present
                pos = pos + ((1 - cfg.eta**2) ** 0.5 * sig_next / sig) * (pos_prev - pos) + fresh * z_noise
            else:
                pos = pos + fresh * z_noise
            for _ in range(cfg.corrector_steps):
                pos = _langevin_corrector(pos, batch, score, sig_next * cfg.eval_scale, cfg.snr, runtime.backend,
                                          generator)
        if callback is not None:
            callback(k + 1, len(plan))
    return pos


def projected_denoise(pos: Tensor, batch: GraphBatch, score: ScoreFn, sig: float, cfg: ProjectSchedule,
                      degree: Tensor, contacts: FarContacts | None = None, backend: str = "auto") -> Tensor:
    """One evaluation of project_sample's denoiser: the network told sigma = sig gives the Tweedie
    edge lengths d + cfg.tweedie sig^2 s (floored at MIN_TARGET_DISTANCE), and cfg.inner_iters
    sweeps of project_distances move pos [N, D] to them. degree: [N, 1] edges per atom (>= 1).
    With contacts, the far pairs closer than their bound join the sweeps as extra edges,
    re-chosen every cfg.repel_every sweeps."""
    ei = batch.edge_index
    sigma = torch.tensor(sig, dtype=torch.float32, device=pos.device)
    d = edge_lengths(pos, ei, backend)
    s = score(batch.z, ei, batch.edge_type, d, sigma, batch.half_edges, batch.edge_pair)
    # sigma^2 s = sigma * (network output): the step length is set by the sigma the network is told
    target = (d + (cfg.tweedie * sigma * sigma) * s).clamp_min(MIN_TARGET_DISTANCE)
    return fit_distances(pos, batch, target, degree, cfg.inner_iters, cfg.repel_every, contacts, backend)


def fit_distances(pos: Tensor, batch: GraphBatch, target: Tensor, degree: Tensor, iters: int, repel_every: int,
                  contacts: FarContacts | None = None, backend: str = "auto") -> Tensor:
    """`iters` sweeps of project_distances moving pos [N, D] towards edge lengths target [E] on
    batch's edges; with contacts, the far pairs closer than their bound join the sweeps as extra
    edges, re-chosen every `repel_every` sweeps. degree: [N, 1] edges per atom (>= 1)."""
    ei = batch.edge_index
    if contacts is None:
        return project_distances(pos, ei, target, degree, iters, backend, batch.rowptr)
    left = iters
    while left > 0:
        n = min(repel_every, left)
        ei2, t2, rowptr2, degree2 = contacts.add_active(pos, ei, target, batch.rowptr, degree, backend)
        pos = project_distances(pos, ei2, t2, degree2, n, backend, rowptr2)
        left -= n
    return pos


def _langevin_corrector(pos: Tensor, batch: GraphBatch, score: ScoreFn, sig: float, snr: float, backend: str,
                        generator: torch.Generator | None) -> Tensor:
    """One Langevin corrector step at noise level sig with a per-conformer step size set by the
    signal-to-noise ratio (Song et al. 2021, Algorithm 5): alpha_g = 2 (snr |z_g| / |S_g|)^2 over
    conformer g's atoms, x <- x + alpha S + sqrt(2 alpha) z, where
    S_i = sum_j s_ij (r_i - r_j) / d_ij is the coordinate score. pos: [N, D]; D > 3 moves only xyz."""
    xyz = pos[:, :3].contiguous()
    ei = batch.edge_index
    sigma = torch.tensor(sig, dtype=torch.float32, device=pos.device)
    d = ops.pairwise_distance(xyz, ei, backend=backend, validate=False)
    s = score(batch.z, ei, batch.edge_type, d, sigma, batch.half_edges, batch.edge_pair)
    grad = ops.coord_score(xyz, ei, s, backend=backend, rowptr=batch.rowptr, validate=False)  # [N, 3]
    zn = torch.randn(xyz.shape, generator=generator, device=pos.device)
    g = batch.num_graphs
    grad_sq = torch.zeros(g, device=pos.device).index_add_(0, batch.node_graph, grad.square().sum(1))
    z_sq = torch.zeros(g, device=pos.device).index_add_(0, batch.node_graph, zn.square().sum(1))
    alpha = (2 * snr**2 * z_sq / grad_sq.clamp_min(1e-12))[batch.node_graph].unsqueeze(1)  # [N, 1]
    xyz = xyz + alpha * grad + (2 * alpha).sqrt() * zn
    return torch.cat([xyz, pos[:, 3:]], 1) if pos.shape[1] > 3 else xyz


# torch.compile pays for itself above about this many conformer-evaluations in a batch. On the dev
# CPU (1 thread, QM9 batches of 360-990 atoms) the compiled forward ran 3.5-4x faster than eager
# (~2,000-2,500 conformer-evaluations/s), but compiling costs 15-20 s with a warm inductor cache and
# more when cold. At 50k (10 paracetamol conformers, paper schedule) eager took 27 s
# and compiled 36 s (warm cache, loaded 2-core machine, 2026-11-24), so the bar is 150k, where eager
# needs ~60-75 s.
COMPILE_MIN_EVALS = 150_000
PRECISIONS = ("fp32", "bf16", "tf32")

ScoreFn = Callable[..., Tensor]


def score_function(model: ScoreNet, cfg: Runtime, device: torch.device, evals: int) -> ScoreFn:
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
def langevin_sample(model: ScoreNet, batch: GraphBatch, noise: NoiseConfig, cfg: LangevinSchedule,
                    runtime: Runtime | None = None, generator: torch.Generator | None = None,
                pos_init: Tensor | None = None,
                    callback: Callable[[int, int], None] | None = None,
                    guidance: Callable[[Tensor, float, int], Tensor | None] | None = None) -> Tensor:
    """Run the schedule on one GraphBatch (already on the model's device). Returns pos [N, 3].

    model is called as model(z, edge_index, edge_type, d, sigma, half_edges, edge_pair) (the
    ScoreNet signature; a custom score model may ignore the last two) through score_function, so
    runtime.compile and runtime.precision apply (runtime None: Runtime(), the defaults).

    callback(done_steps, total_steps) is called once per level (for progress bars).
    guidance(pos, sigma_l, l) -> F [N, 3] or None: an extra force (e.g. stereo.StereoGuidance),
    evaluated at the same positions as the score; the step becomes
    R <- langevin_step(R) + alpha_l F, i.e. F is added outside the fused kernel and after the
    clip (the clip bounds the network score only). None, as argument or as return value, leaves the
    step exactly as without guidance.
    """
    runtime = runtime or Runtime()
    dev = batch.z.device
    sigmas = noise.sigmas(dev)
    host_sigmas = noise.sigmas("cpu").tolist()  # python floats without a device sync
    plan = level_plan(noise, cfg)
    sigma_min = host_sigmas[-1]
    pos = pos_init if pos_init is not None else torch.randn(batch.num_atoms, 3, generator=generator, device=dev)
    ei, et, z = batch.edge_index, batch.edge_type, batch.z
    total = sum(steps for _, steps in plan)
    score = score_function(model, runtime, pos.device, total * batch.num_graphs)
    graphs = runtime.cuda_graphs and dev.type == "cuda"
    noise_z = torch.empty_like(pos) if graphs else None
    if graphs:
        pos = pos.clone()  # the graphs update it in place; never the caller's pos_init
    done = 0
    for li, steps in plan:
        sigma, sigma_f = sigmas[li], host_sigmas[li]
        alpha = step_size(cfg, sigma_f, sigma_min)

        def step(pos: Tensor, noise_z: Tensor, sigma=sigma, sigma_f=sigma_f, alpha=alpha, li=li) -> Tensor:
            d = ops.pairwise_distance(pos, ei, backend=runtime.backend, validate=False)
            s = score(z, ei, et, d, sigma, batch.half_edges, batch.edge_pair)
            extra = guidance(pos, sigma_f, li) if guidance is not None else None
            out = ops.langevin_step(pos, ei, s, noise_z, alpha, cfg.clip, backend=runtime.backend, rowptr=batch.rowptr,
                                     validate=False)
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


@torch.no_grad()
def dist_sample(model: ScoreNet, batch: GraphBatch, noise: NoiseConfig, cfg: DistSchedule,
                runtime: Runtime | None = None, generator: torch.Generator | None = None,
                pos_init: Tensor | None = None,
                callback: Callable[[int, int], None] | None = None,
                guidance: Callable[[Tensor, float, int], Tensor | None] | None = None) -> Tensor:
    """ConfGFDist, the paper's ablation (ConfGF, ICML 2021, section 5): sample the distances
    themselves, then embed them. Per edge pair d starts U(0, 1) (as the official code), and each
    step of the Langevin schedule (level_plan: the same levels, steps and
    alpha_l = eps (sigma_l / sigma_L)^2 as langevin_sample) moves
        d <- d + alpha_l clip(s(d, sigma_l)) + sqrt(2 alpha_l) z,   z ~ N(0, 1) per undirected pair,
    where s is the network's output (already divided by sigma), clipped per edge to |s| <= clip
    as the official clip_norm of an [E, 1] vector does. Then cfg.inner_iters stress-majorisation
    sweeps (project_distances, the fused project_sweeps op in 3D: a distance-geometry embedding, as
    the official Embed3D's gradient descent on sum (|r_i - r_j| - d_ij)^2) embed the final
    distances from N(0, init_scale^2) coordinates (or pos_init); with cfg.embed_dims > 3 the first
    half of the sweeps fit in that many dimensions, the extra ones shrunk to 0 in 10 steps (ETKDG's
    4D trick: fewer wrong local minima); with cfg.repel > 0 the far pairs are held apart there as
    in project_sample. The paper found this two-stage method worse than
    ConfGF's sampling in coordinates: distances sampled edge by edge need not be embeddable.

    The stereo force needs coordinates, so `guidance` is not used (the mirror fix after sampling
    still applies); callback(done_steps, total_steps) is called once per level. Returns pos [N, 3].
    """
    runtime = runtime or Runtime()
    dev = batch.z.device
    d_half = sample_distances(model, batch, noise, cfg, runtime, generator, callback)
    target = d_half[batch.edge_pair].clamp_min(MIN_TARGET_DISTANCE)  # [E] symmetric
    dims = max(3, cfg.embed_dims)
    pos = cfg.init_scale * torch.randn(batch.num_atoms, dims, generator=generator, device=dev)
    if pos_init is not None:
        pos[:, :3] = pos_init
    degree = (batch.rowptr[1:] - batch.rowptr[:-1]).clamp_min(1).to(pos.dtype).unsqueeze(1)  # [N, 1]
    contacts = FarContacts(batch, cfg.repel) if cfg.repel > 0 else None
    if dims > 3:  # ETKDG's trick: fit in 4D first, the extra coordinate shrunk to 0 over half the sweeps
        blocks, per = 10, cfg.inner_iters // 20
        for b in range(blocks):
            pos = fit_distances(pos, batch, target, degree, per, cfg.repel_every, contacts, runtime.backend)
            pos[:, 3:] *= 1 - (b + 1) / blocks
        pos = pos[:, :3].contiguous()
    rest = cfg.inner_iters - (cfg.inner_iters // 20) * 10 if dims > 3 else cfg.inner_iters
    return fit_distances(pos, batch, target, degree, rest, cfg.repel_every, contacts, runtime.backend)


@torch.no_grad()
def sample_distances(model: ScoreNet, batch: GraphBatch, noise: NoiseConfig, cfg: LangevinSchedule,
                     runtime: Runtime | None = None, generator: torch.Generator | None = None,
                     callback: Callable[[int, int], None] | None = None) -> Tensor:
    """dist_sample's first stage: annealed Langevin dynamics on the edge lengths themselves.
    Returns d [E/2], one length per undirected pair (batch.half_edges; d[batch.edge_pair] is the
    symmetric [E] vector)."""
    runtime = runtime or Runtime()
    dev = batch.z.device
    sigmas = noise.sigmas(dev)
    host_sigmas = noise.sigmas("cpu").tolist()
    plan = level_plan(noise, cfg)
    total = sum(steps for _, steps in plan)
    half, pair = batch.half_edges, batch.edge_pair  # [E/2] one edge per undirected pair; [E] -> its pair
    ei, et, z = batch.edge_index, batch.edge_type, batch.z
    score = score_function(model, runtime, dev, total * batch.num_graphs)
    d_half = torch.rand(half.numel(), generator=generator, device=dev)  # [E/2], U(0, 1) as the official code
    done = 0
    for li, steps in plan:
        alpha = step_size(cfg, host_sigmas[li], host_sigmas[-1])
        for _ in range(steps):
            s = score(z, ei, et, d_half[pair], sigmas[li], half, pair)[half].clamp(-cfg.clip, cfg.clip)
            d_half = d_half + alpha * s + (2 * alpha) ** 0.5 * torch.randn(d_half.shape, generator=generator,
                                                                            device=dev)
        done += steps
        if callback is not None:
            callback(done, total)
    return d_half


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


def step_size(cfg: LangevinSchedule, sigma: float, sigma_min: float) -> float:
    """alpha_l = eps * (sigma_l / sigma_L)^2."""
    return cfg.eps * (sigma / sigma_min) ** 2
