"""Score-network forward on QM9-size batches: every directed edge (the official way) vs the edge
MLPs once per atom pair, with the GINE sums in PyTorch or in the C++ kernel (ops.gine_aggregate),
eager vs torch.compile. Prints ms per forward and conformer-evaluations/s, then a training step
(DSM loss forward + backward on a 128-conformer QM9-like batch) with either GINE path.

    OMP_NUM_THREADS=1 python bench/probes/forward_ab.py [--confs 20 55] [--reps 20]

The same numbers are checked for equality (max |difference| printed). Shipped weights; CPU, 1 thread.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from confgf_fast import ops
from confgf_fast.model.checkpoint import load_model
from confgf_fast.chem.molecule import featurize, mol_from_smiles
from confgf_fast.graph import PackedGraphs
from confgf_fast.model.network import ScoreNet
from confgf_fast.train import dsm_loss


def set_gine_backend(model: ScoreNet, backend: str) -> None:
    for layer in model.layers:
        layer.backend = backend


def timed(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smiles", default="CC(C)C1=CC=CO1")
    ap.add_argument("--confs", type=int, nargs="+", default=[20, 55])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--train-smiles", nargs="+", default=["CC(C)C1=CC=CO1", "OCC1CC1C#N", "CC(=O)NC1=CC=CC=C1",
                                                            "CC1(C)OC1C=O"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(None, "cpu")
    model, noise = loaded.model.eval(), loaded.noise
    compiled = torch.compile(model, dynamic=True)
    sigma = noise.sigmas("cpu")[10]
    graph = featurize(mol_from_smiles(args.smiles))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread")

    def directed(*a):
        return ScoreNet._forward_directed(model, *a[:5])

    for nc in args.confs:
        b = PackedGraphs([graph]).batch(torch.zeros(nc, dtype=torch.long))
        pos = torch.randn(b.num_atoms, 3, generator=torch.Generator().manual_seed(0))
        inputs = (b.z, b.edge_index, b.edge_type, ops.pairwise_distance(pos, b.edge_index), sigma,
                  b.half_edges, b.edge_pair)
        with torch.no_grad():
            ref = directed(*inputs)

            def pairs_torch(*a):
                set_gine_backend(model, "reference")
                try:
                    return model(*a)
                finally:
                    set_gine_backend(model, "auto")

            variants = (("directed eager", directed), ("pairs eager, torch GINE", pairs_torch),
                        ("pairs eager, C++ GINE", model), ("pairs compiled", compiled))
            for name, fn in variants:
                out = fn(*inputs)
                dt = timed(lambda fn=fn, inputs=inputs: fn(*inputs), args.reps)
                print(f"{b.num_atoms:5d} atoms  {name:24s} {dt * 1e3:7.2f} ms  {nc / dt:6.0f} conf-evals/s  "
                      f"max|diff| {float((out - ref).abs().max()):.1e}")

    # one training step: 128 conformers drawn from a few QM9-size molecules
    graphs = [featurize(mol_from_smiles(s)) for s in args.train_smiles]
    mol_of = torch.arange(128) % len(graphs)
    b = PackedGraphs(graphs).batch(mol_of)
    pos = torch.randn(b.num_atoms, 3, generator=torch.Generator().manual_seed(1))
    model.train()
    for backend in ("reference", "auto"):
        set_gine_backend(model, backend)

        def step():
            loss = dsm_loss(model, b, pos, noise.sigmas("cpu"), torch.Generator().manual_seed(2)).mean()
            model.zero_grad(set_to_none=True)
            loss.backward()
            return loss

        dt = timed(step, max(args.reps // 2, 5))
        name = "torch GINE" if backend == "reference" else "C++ GINE"
        print(f"train step, 128 conformers ({b.num_atoms} atoms, {b.num_edges} edges), {name:10s} "
              f"{dt * 1e3:7.1f} ms  loss {float(step()):.4f}")
    set_gine_backend(model, "auto")


if __name__ == "__main__":
    main()
