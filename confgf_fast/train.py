"""Denoising score matching on interatomic distances, as the official ConfGF.

For each conformer g draw one level sigma_g uniformly from the L noise levels. Perturb each
undirected pair once: d~_ij = d_ij + sigma_g * eps_ij with eps_ij = eps_ji ~ N(0, 1). The target
score of the Gaussian kernel is -(d~ - d) / sigma^2 = -eps / sigma. The loss of conformer g is
  sum over its directed edges of 1/2 sigma_g^2 (s_ij - target_ij)^2,
and a step minimises its mean over the conformers of the batch.

With TrainConfig.coord_noise = p > 0, a fraction p of the conformers is perturbed in coordinates
instead: r~_i = r_i + c sigma_g z_i (c = coord_noise_scale, z_i ~ N(0, I_3)), d~ = |r~_i - r~_j|,
and the target is (d - d~) / sigma^2, so sigma^2 s regresses the posterior mean of the clean
distance given the whole noisy geometry (Tweedie). That is what the samplers feed the network: a
noisy but embeddable geometry, while the official distance noise is independent per pair and
mostly not embeddable in 3D. c = 0.8 matches the projected sampler's re-noising (config.py).

Alongside the raw weights w the trainer keeps their exponential moving average (WeightAverage),
  a <- a + (1 - beta_n) (w - a),  beta_n = min(decay, (1 + n) / (10 + n)),
updated after every optimizer step (n counts the updates since the average started), the standard
companion of score-based training (Song & Ermon 2020): the average smooths the last steps' noise
out of the weights. Validation reports both; export-weights ships the average by default.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from .config import (
    DEFAULT_GRAPH_ORDER,
    EDGE_DIHEDRAL,
    ModelConfig,
    NoiseConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    edge_types_for_order,
)
from .data.dataset import ConformerDataset
from .graph import GraphBatch
from .model.checkpoint import WeightsError, read_checkpoint, save_checkpoint, trained_max_heavy_atoms
from .model.elements import heavy_atom_mask
from .model.network import ScoreNet
from .ops import reference


def symmetric_noise(batch: GraphBatch, generator: torch.Generator | None = None) -> Tensor:
    """[E] standard normal noise with eps[e] == eps[rev[e]] (one draw per undirected pair)."""
    src, dst = batch.edge_index
    eps = torch.randn(batch.num_edges, generator=generator, device=generator.device if generator else None)
    eps = eps.to(src.device)
    return torch.where(src < dst, eps, eps[batch.rev])


def dsm_loss(model: ScoreNet, batch: GraphBatch, pos: Tensor, sigmas: Tensor,
             generator: torch.Generator | None = None, coord_noise: float = 0.0,
             coord_noise_scale: float = 0.8) -> Tensor:
    """Per-conformer denoising score-matching loss [G] (see module docstring).

    batch, pos: [N, 3] on the model's device; sigmas: [L] noise levels on the same device;
    coord_noise: fraction of conformers perturbed in coordinates (scale coord_noise_scale * sigma).
    """
    dev = pos.device
    G = batch.num_graphs
    gdev = generator.device if generator else None
    level = torch.randint(0, sigmas.numel(), (G,), generator=generator, device=gdev).to(dev)
    sigma_edge = sigmas[level][batch.edge_graph]  # [E]
    d = reference.pairwise_distance(pos, batch.edge_index)  # [E]
    eps = symmetric_noise(batch, generator).to(dev)
    d_tilde = d + sigma_edge * eps
    if coord_noise > 0:
        in_coords = (torch.rand(G, generator=generator, device=gdev) < coord_noise).to(dev)  # [G]
        z = torch.randn(pos.shape, generator=generator, device=gdev).to(dev)
        node_graph = batch.node_graph
        pos_t = pos + (coord_noise_scale * sigmas[level][node_graph]).unsqueeze(1) * z
        d_tilde = torch.where(in_coords[batch.edge_graph], reference.pairwise_distance(pos_t, batch.edge_index),
                              d_tilde)
    target = (d - d_tilde) / sigma_edge.pow(2)  # = -eps / sigma for distance noise
    s = model(batch.z, batch.edge_index, batch.edge_type, d_tilde, sigma_edge, batch.half_edges, batch.edge_pair)
    per_edge = 0.5 * sigma_edge.pow(2) * (s - target).pow(2)
    return torch.zeros(G, device=dev, dtype=per_edge.dtype).index_add_(0, batch.edge_graph, per_edge)


class WeightAverage:
    """Exponential moving average of a model's state_dict (see module docstring).

    Floating-point entries are averaged; integer buffers (counters) are copied. `n` counts the
    updates: the warm-up beta_n = min(decay, (1 + n) / (10 + n)) lets a fresh average follow the
    weights closely at first instead of remembering the initial weights for ~1/(1 - decay) steps.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.n = 0
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        beta = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, v in model.state_dict().items():
            a = self.weights[k]
            if a.is_floating_point():
                a.lerp_(v.detach(), 1.0 - beta)
            else:
                a.copy_(v)
        self.n += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.n, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        """Take a saved average (the decay in force stays the configured one)."""
        self.n = int(state["updates"])
        self.weights = {k: v.clone() for k, v in state["weights"].items()}

    @contextmanager
    def swapped_into(self, model: torch.nn.Module) -> Iterator[None]:
        """Within the block the model holds the averaged weights; the raw ones come back after."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.weights)
        try:
            yield
        finally:
            model.load_state_dict(raw)


def max_heavy_atoms(ds: ConformerDataset) -> int:
    """Heavy atoms (Z > 1) of the dataset's largest molecule; 0 for an empty dataset. Vectorised
    (a cumulative count read at the molecule boundaries): training sets hold ~10^5 molecules."""
    ptr = ds.graphs.atom_ptr.long()
    if ptr.numel() < 2:
        return 0
    cum = torch.cat([torch.zeros(1, dtype=torch.long), heavy_atom_mask(ds.graphs.z).long().cumsum(0)])
    return int((cum[ptr[1:]] - cum[ptr[:-1]]).max())


def grown_edge_embedding(model_state: dict, num_edge_types: int) -> dict:
    """A state dict whose edge-type embedding has `num_edge_types` rows: fine-tuning a model of
    graph order 3 into one of higher order (ModelConfig.graph_order). The rows it has are kept; each
    new row (a pair 4, 5, ... bonds apart) starts as a copy of the EDGE_DIHEDRAL row, so the network
    first reads a long-range pair as the nearest kind of pair it was trained on, not as noise."""
    w = model_state["edge_emb.weight"]  # [T, H]
    if w.shape[0] >= num_edge_types:
        return model_state
    extra = w[EDGE_DIHEDRAL].expand(num_edge_types - w.shape[0], -1)
    return {**model_state, "edge_emb.weight": torch.cat([w, extra.clone()])}


class Trainer:
    """Owns model, optimizer, data and the resumable loop. Checkpoints carry config, step,
    optimizer/scheduler/RNG state and the learning curve (history)."""

    def __init__(self, train_set: ConformerDataset, val_set: ConformerDataset | None, model_cfg: ModelConfig,
                 noise_cfg: NoiseConfig, train_cfg: TrainConfig, device: str = "cpu"):
        self.train_set, self.val_set = train_set, val_set
        self.noise_cfg, self.cfg, self.device = noise_cfg, train_cfg, torch.device(device)
        torch.manual_seed(train_cfg.seed)
        self.model = ScoreNet(model_cfg).to(self.device)
        self.sigmas = noise_cfg.sigmas(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
        # As the official run: reduce lr x0.6 when validation stalls, down to 1e-4.
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, factor=0.6, patience=10, min_lr=1e-4)
        self.gen = torch.Generator().manual_seed(train_cfg.seed)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        # Recorded in checkpoints so generation can refuse elements the network never saw.
        self.trained_elements: list[int] = sorted(int(z) for z in torch.unique(train_set.graphs.z).tolist())
        # Likewise the size of the largest training molecule: generation warns beyond it.
        self.trained_max_heavy_atoms: int = max_heavy_atoms(train_set)
        self.ema = WeightAverage(self.model, train_cfg.ema_decay) if train_cfg.ema_decay > 0 else None

    # ---- resume -----------------------------------------------------------------------------
    def load(self, path: str | Path, reset_optimizer: bool = False) -> None:
        state = read_checkpoint(path)
        self.model.load_state_dict(state["model_state"])
        if not reset_optimizer and "optimizer_state" in state:
            self.opt.load_state_dict(state["optimizer_state"])
            self.sched.load_state_dict(state["scheduler_state"])
        if "rng_state" in state:
            self.gen.set_state(state["rng_state"])
        self.step = int(state.get("step", 0))
        self.elapsed = float(state.get("elapsed_s", 0.0))
        self.history = list(state.get("history", []))
        # A resumed run has seen the earlier data's elements and molecules as well as this data's.
        self.trained_elements = sorted(set(self.trained_elements) | set(state.get("trained_elements", [])))
        self.trained_max_heavy_atoms = max(self.trained_max_heavy_atoms, trained_max_heavy_atoms(state) or 0)
        if state.get("init_from"):  # a resumed fine-tune still names the weights it started from
            self.init_source = state["init_from"]
        if self.ema is not None:
            # A run saved without an average (or before averages existed) starts one from the
            # weights it resumes with.
            self.ema = WeightAverage(self.model, self.cfg.ema_decay)
            if state.get("ema_state"):
                self.ema.load_state_dict(state["ema_state"])

    def init_from(self, path: str | Path) -> None:
        """Start from another checkpoint's weights (fine-tuning, e.g. a QM9 model on drug-like data):
        the weights and the elements and largest molecule they were trained on are taken, the
        optimizer, scheduler, step and learning curve start fresh."""
        state = read_checkpoint(path)
        self.model.load_state_dict(grown_edge_embedding(state["model_state"], self.model.config.num_edge_types))
        self.trained_elements = sorted(set(self.trained_elements) | set(state.get("trained_elements", [])))
        self.trained_max_heavy_atoms = max(self.trained_max_heavy_atoms, trained_max_heavy_atoms(state) or 0)
        self.init_source = str(path)
        if self.ema is not None:
            self.ema = WeightAverage(self.model, self.cfg.ema_decay)

    def save(self, path: str | Path) -> None:
        save_checkpoint(
            path, self.model, self.noise_cfg,
            train_config=config_to_dict(self.cfg), optimizer_state=self.opt.state_dict(),
            scheduler_state=self.sched.state_dict(), rng_state=self.gen.get_state(), step=self.step,
            elapsed_s=self.elapsed, history=self.history, device=str(self.device),
            trained_elements=self.trained_elements, trained_max_heavy_atoms=self.trained_max_heavy_atoms,
            init_from=getattr(self, "init_source", None),
            ema_state=self.ema.state_dict() if self.ema is not None else None,
            data_meta={k: v for k, v in self.train_set.meta.items() if k != "qm9_index"}
            | {"train_molecules": self.train_set.num_molecules, "train_conformers": self.train_set.num_conformers},
        )

    # ---- loop ---------------------------------------------------------------------------------
    def _anneal(self, max_steps: int) -> bool:
        """Within the last cfg.anneal_steps steps before max_steps, set the learning rate of step s
        (counted from the decay's start a = max_steps - anneal_steps, n = anneal_steps) to

            lr(s) = lr_end + (lr_0 - lr_end) * (1 + cos(pi * (s - a) / n)) / 2,

        lr_0 being the rate in force at the decay's first step. lr_0 is kept in the optimizer's
        param group ("anneal_lr0"), so it is saved with the optimizer state and a resumed run
        continues the same curve. True while annealing (the plateau scheduler then stays still).
        Outside the window a finished decay is undone (lr = lr_0 again): a run resumed from the end
        of an anneal with more steps and no new window would otherwise train at a rate of ~0."""
        n = self.cfg.anneal_steps
        start = max_steps - n
        if n <= 0 or self.step < start:
            for g in self.opt.param_groups:
                if "anneal_lr0" in g:
                    g["lr"] = g.pop("anneal_lr0")
            return False
        frac = (self.step - start) / n
        for g in self.opt.param_groups:
            lr0 = g.setdefault("anneal_lr0", g["lr"])
            g["lr"] = self.cfg.anneal_to + (lr0 - self.cfg.anneal_to) * 0.5 * (1.0 + math.cos(math.pi * frac))
        return True

    def _batch(self, ds: ConformerDataset, gen: torch.Generator):
        ids = torch.randint(0, ds.num_conformers, (self.cfg.batch_size,), generator=gen)
        gb, pos = ds.batch(ids)
        return gb.to(self.device), pos.to(self.device)

    @torch.no_grad()
    def validate_ema(self) -> float:
        """validate() with the averaged weights (nan without an average)."""
        if self.ema is None:
            return float("nan")
        with self.ema.swapped_into(self.model):
            return self.validate()

    @torch.no_grad()
    def validate(self) -> float:
        """Mean per-conformer loss on fixed validation batches (same conformers and noise every
        time, so values are comparable across steps)."""
        if self.val_set is None or self.val_set.num_conformers == 0:
            return float("nan")
        self.model.eval()
        gen = torch.Generator().manual_seed(12345)
        total, count = 0.0, 0
        for _ in range(self.cfg.val_batches):
            gb, pos = self._batch(self.val_set, gen)
            loss = dsm_loss(self.model, gb, pos, self.sigmas, gen if self.device.type == "cpu" else None,
                            self.cfg.coord_noise, self.cfg.coord_noise_scale)
            total += float(loss.sum())
            count += loss.numel()
        self.model.train()
        return total / max(count, 1)

    def train(self, max_steps: int, ckpt_path: str | Path, log_path: str | Path | None = None,
              progress: bool = True, time_limit_s: float | None = None) -> None:
        from tqdm import tqdm

        self.model.train()
        bar = tqdm(total=max_steps, initial=self.step, desc="train", disable=not progress, file=sys.stderr)
        log = open(log_path, "a") if log_path else None  # noqa: SIM115 (kept open across the loop)
        t0 = time.time()
        started = t0  # for time_limit_s; t0 restarts at every save (it meters `elapsed`)
        window: list[float] = []
        norms: list[float] = []
        while self.step < max_steps:
            annealing = self._anneal(max_steps)
            gb, pos = self._batch(self.train_set, self.gen)
            loss = dsm_loss(self.model, gb, pos, self.sigmas, self.gen if self.device.type == "cpu" else None,
                            self.cfg.coord_noise, self.cfg.coord_noise_scale).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            # The norm is logged either way (grad_norm_max): the mixed QM9 + drugs run blew up at
            # step ~15,000 without clipping (training loss 20 -> 1.6e6 in 200 steps).
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                  self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf)
            norms.append(float(norm))
            self.opt.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            window.append(float(loss.detach()))
            bar.update(1)
            now = time.time()
            if self.step % self.cfg.log_every == 0:
                bar.set_postfix(loss=f"{sum(window) / len(window):.3f}", lr=self.opt.param_groups[0]["lr"])
            is_val = self.step % self.cfg.val_every == 0 or self.step == max_steps
            if is_val:
                val = self.validate()
                if not math.isnan(val) and not annealing:
                    self.sched.step(val)
                rec = {"step": self.step, "train_loss": sum(window) / len(window), "val_loss": val,
                       "lr": self.opt.param_groups[0]["lr"], "elapsed_s": self.elapsed + (now - t0)}
                if self.ema is not None:
                    rec["val_loss_ema"] = self.validate_ema()
                rec["grad_norm_max"] = max(norms) if norms else math.nan
                norms = []
                self.history.append(rec)
                window = []
                if log:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
            out_of_time = time_limit_s is not None and now - started > time_limit_s
            if self.step % self.cfg.save_every == 0 or self.step == max_steps or out_of_time:
                self.elapsed += now - t0
                t0 = now
                self.save(ckpt_path)
            if out_of_time:
                break
        bar.close()
        if log:
            log.close()


def train_from_files(data: list[str], out: str, model_cfg: ModelConfig | None = None,
                     noise_cfg: NoiseConfig | None = None, train_cfg: TrainConfig | None = None,
                     device: str = "cpu", resume: str | None = None, val_fraction: float = 0.02,
                     log_path: str | None = None, progress: bool = True, time_limit_s: float | None = None,
                     threads: int | None = None, init: str | None = None,
                     graph_order: int | None = None) -> Trainer:
    """Train from featurised datasets (.pt from the data builders) or SDF files.

    With `resume`, model shape, noise levels and optimizer state come from that checkpoint. With
    `init`, model shape, noise levels and weights come from that checkpoint and the optimizer,
    step and curve start fresh (Trainer.init_from). `graph_order` (None: the model's) sets the
    graph's order for a new run or a fine-tune (growing the edge-type embedding,
    grown_edge_embedding); a resumed run keeps its own.
    """
    if resume and init:
        raise ValueError("resume and init exclude each other: resume continues a run, init starts a new one")
    if threads:
        torch.set_num_threads(threads)
    parts = [ConformerDataset.load(p) if p.endswith(".pt") else ConformerDataset.from_sdf(p) for p in data]
    ds = parts[0] if len(parts) == 1 else ConformerDataset.concat(parts, meta={"sources": data})
    train_set, val_set = ds.split(val_fraction, seed=0) if val_fraction > 0 else (ds, None)
    train_cfg = train_cfg or TrainConfig()
    model_cfg = model_cfg or ModelConfig()
    if resume or init:
        state = read_checkpoint(resume or init)
        model_cfg = config_from_dict(ModelConfig, state["model_config"])
        noise_cfg = config_from_dict(NoiseConfig, state["noise_config"])
    if graph_order is not None and graph_order != model_cfg.graph_order:
        if resume:
            raise WeightsError(f"{resume} was trained on a graph of order {model_cfg.graph_order}; a resumed run "
                             f"keeps it (start a new one with init= to change the order)")
        # The messages stay on the graph the weights were trained with (ModelConfig.message_order).
        model_cfg = replace(model_cfg, graph_order=graph_order,
                            message_order=min(model_cfg.message_order, graph_order),
                            num_edge_types=max(model_cfg.num_edge_types, edge_types_for_order(graph_order)))
    if model_cfg.graph_order != DEFAULT_GRAPH_ORDER:  # dataset files hold order-3 graphs
        train_set = train_set.at_graph_order(model_cfg.graph_order)
        val_set = val_set.at_graph_order(model_cfg.graph_order) if val_set is not None else None
    trainer = Trainer(train_set, val_set, model_cfg, noise_cfg or NoiseConfig(), train_cfg, device)
    if resume:
        trainer.load(resume)
    elif init:
        trainer.init_from(init)
    trainer.train(train_cfg.max_steps, out, log_path, progress, time_limit_s)
    return trainer
