"""Probe: a more diverse ETKDG start. Embed OVERSAMPLE x n ETKDGv3 conformers and keep n of them by
farthest-point selection on heavy-atom RMSD (Kabsch-aligned, atom order as embedded, no symmetry
search), for our warm start and, separately (--baseline), for the ETKDGv3 baseline: duplicates
waste a 2K budget, so both may cover more references.

    OMP_NUM_THREADS=1 python bench/diverse_probe.py --oversample 3 -- --init etkdg --compile off --quiet \
        --paired bench/results/dev_full_project_warm_step220000.json --json OUT.json

Everything after `--` goes to bench/eval_dev.py, whose warm start (chem.etkdg_coordinates) and
ETKDG baseline (eval_dev.etkdg) are patched for the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rdkit import Chem

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_dev

from confgf_fast import chem, pipeline
from confgf_fast.chem import conformer_positions


def kabsch_rmsd(x: torch.Tensor) -> torch.Tensor:
    """[C, n, 3] -> [C, C] RMSD after optimal superposition of every pair (double precision)."""
    x = x.double() - x.double().mean(1, keepdim=True)
    n = x.shape[1]
    h = torch.einsum("ani,bnj->abij", x, x)  # [C, C, 3, 3] covariance of a onto b
    u, s, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(u @ vt))  # reflection fix
    s = s.clone()
    s[..., 2] = s[..., 2] * d
    sq = (x.pow(2).sum((1, 2))[:, None] + x.pow(2).sum((1, 2))[None, :] - 2 * s.sum(-1)) / n
    return sq.clamp_min(0).sqrt()


def farthest_points(d: torch.Tensor, k: int) -> list[int]:
    """k indices chosen greedily: start at 0, then always the one farthest from those chosen."""
    chosen = [0]
    near = d[0].clone()
    while len(chosen) < min(k, d.shape[0]):
        nxt = int(near.argmax())
        chosen.append(nxt)
        near = torch.minimum(near, d[nxt])
    return chosen


def heavy_index(mol: Chem.Mol) -> torch.Tensor:
    return torch.tensor([a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1])


def select(pos: torch.Tensor, heavy: torch.Tensor, k: int) -> list[int]:
    return farthest_points(kabsch_rmsd(pos[:, heavy]), k)


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oversample", type=int, default=3)
    ap.add_argument("--baseline", action="store_true", help="also select the ETKDG baseline's conformers")
    args = ap.parse_args(argv[:split])
    orig_coords, orig_etkdg = chem.etkdg_coordinates, eval_dev.etkdg

    def coords(mol: Chem.Mol, n: int, seed: int):
        pos, note = orig_coords(mol, args.oversample * n, seed)
        if pos is None or pos.shape[0] <= n:
            return pos, note
        return pos[select(pos, heavy_index(mol), n)], note

    def baseline(mol: Chem.Mol, n: int, seed: int, threads: int = 1) -> Chem.Mol:
        m = orig_etkdg(mol, args.oversample * n, seed, threads)
        if m.GetNumConformers() <= n:
            return m
        pos = conformer_positions(m)
        return chem.set_conformers(m, [pos[i] for i in select(pos, heavy_index(m), n)])

    chem.etkdg_coordinates = coords
    pipeline.etkdg_coordinates = coords  # the warm start imports the name
    if args.baseline:
        eval_dev.etkdg = baseline
    return eval_dev.main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
