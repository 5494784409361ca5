"""Probe (issue 12, item 1): the probability-flow ODE of the variance-exploding process, solved
with Heun's 2nd-order method on a Karras sigma grid (rho 7), optional stochastic churn, run
through eval_dev.py (the whole pipeline: batching, stereo guidance and reflection, evaluation).

Our network scores distances, so the coordinate denoiser is the projected Tweedie estimate of
sampler.project_sample: D(x; sigma) = project_distances(x, d + sigma^2 s(d, sigma)). The ODE is
dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. 2022, eq. 3 with their D), and a step from
sigma_i to sigma_{i+1} is
    k1 = (x - D(x; sigma_i)) / sigma_i,  x' = x + (sigma_{i+1} - sigma_i) k1,
    k2 = (x' - D(x'; sigma_{i+1})) / sigma_{i+1},  x <- x + (sigma_{i+1} - sigma_i) (k1 + k2) / 2
(Euler on the last step, to sigma = 0), then the 4 polish steps of the quick preset. With churn
gamma > 0, each step first raises sigma_i to sigma_i (1 + gamma) by adding coordinate noise
0.8 sqrt(sigma_hat^2 - sigma_i^2) z. Evaluations: 2 N - 1 + 4.

It is a probe, not a sampler of the package: it swaps sampling.batch.sample for the Heun loop and
then runs eval_dev.main with the remaining arguments, e.g.

    python bench/probes/heun_probe.py --steps 20 --churn 0 -- --sample 60 --compile off --no-etkdg \
        --paired bench/results/dev_full_paper_step148250.json --json bench/results/fewstep_sweep/s60_heun20.json

The JSON gets a `label` naming the probe and its settings, and `network_evaluations` is corrected.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: eval_dev.py and common.py
import eval_dev
from common import write_json

import confgf_fast.sampling.batch as batch_sampling
from confgf_fast.config import Runtime, resolve_schedule
from confgf_fast.sampling.sampler import project_grid, projected_denoise, score_function

POLISH_SIGMA, POLISH_STEPS, NOISE_SCALE = 0.05, 4, 0.8


def heun_sampler(steps: int, churn: float, rho: float):
    @torch.no_grad()
    def sample(model, batch, noise, cfg, runtime=None, generator=None, pos_init=None, callback=None, guidance=None):
        degree = (batch.rowptr[1:] - batch.rowptr[:-1]).clamp_min(1).float().unsqueeze(1)
        score = score_function(model, runtime or Runtime(), batch.z.device,
                               (2 * steps + POLISH_STEPS) * batch.num_graphs)

        def denoise(pos, sig):  # the projected Tweedie denoiser of project_sample
            return projected_denoise(pos, batch, score, sig, cfg, degree)

        levels = resolve_schedule("quick", overrides={"num_steps": steps, "rho": rho, "sigma_max": 2.0})
        grid = [*project_grid(noise, levels), 0.0]
        x = NOISE_SCALE * grid[0] * torch.randn(batch.num_atoms, 3, generator=generator, device=batch.z.device)
        for i in range(steps):
            s0, s1 = grid[i], grid[i + 1]
            if churn > 0 and s1 > 0:
                s_hat = s0 * (1 + churn)
                x = x + NOISE_SCALE * (s_hat**2 - s0**2) ** 0.5 * torch.randn(x.shape, generator=generator,
                                                                              device=x.device)
                s0 = s_hat
            k1 = (x - denoise(x, s0)) / s0
            x_new = x + (s1 - s0) * k1
            if s1 > 0:
                x_new = x + (s1 - s0) * 0.5 * (k1 + (x_new - denoise(x_new, s1)) / s1)
            x = x_new
            # the stereo force of project_sample, at the level just reached
            extra = guidance(x, s1 if s1 > 0 else grid[i], i) if guidance is not None else None
            if extra is not None:
                x = x + cfg.stereo_gain * grid[i] ** 2 * extra
        for _ in range(POLISH_STEPS):
            x = denoise(x, POLISH_SIGMA)
        return x

    return sample


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--churn", type=float, default=0.0)
    ap.add_argument("--rho", type=float, default=7.0)
    args = ap.parse_args(argv[:split])
    rest = argv[split + 1:]
    batch_sampling.sample = heun_sampler(args.steps, args.churn, args.rho)
    rc = eval_dev.main(["--sampler", "project", *rest])
    if "--json" in rest:
        path = rest[rest.index("--json") + 1]
        d = json.loads(Path(path).read_text())
        d["label"] = f"Heun PF-ODE: {args.steps} steps, rho {args.rho:g}, churn {args.churn:g}"
        d["network_evaluations"] = 2 * args.steps - 1 + POLISH_STEPS
        d["sampler_tag"] = f"heun_probe steps={args.steps} rho={args.rho:g} churn={args.churn:g}"
        write_json(path, d)
    return rc


if __name__ == "__main__":
    sys.exit(main())
