"""Score-network forward on QM9-size batches: every directed edge (the official way) vs the edge
MLPs once per atom pair, eager vs torch.compile. Prints ms per forward and conformer-evaluations/s.

    OMP_NUM_THREADS=1 python bench/forward_ab.py [--confs 20 55] [--reps 20]

The same numbers are checked for equality (max |difference| printed). Shipped weights; CPU, 1 thread.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from confgf_fast import ops
from confgf_fast.checkpoint import load_model
from confgf_fast.chem import featurize, mol_from_smiles
from confgf_fast.graph import PackedGraphs
from confgf_fast.model import ScoreNet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smiles", default="CC(C)C1=CC=CO1")
    ap.add_argument("--confs", type=int, nargs="+", default=[20, 55])
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, noise = load_model(None, "cpu")
    model.eval()
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
            for name, fn in (("directed eager", directed), ("pairs eager", model), ("pairs compiled", compiled)):
                out = fn(*inputs)
                for _ in range(3):
                    fn(*inputs)
                t = time.perf_counter()
                for _ in range(args.reps):
                    fn(*inputs)
                dt = (time.perf_counter() - t) / args.reps
                print(f"{b.num_atoms:5d} atoms  {name:15s} {dt * 1e3:7.2f} ms  {nc / dt:6.0f} conf-evals/s  "
                      f"max|diff| {float((out - ref).abs().max()):.1e}")


if __name__ == "__main__":
    main()
