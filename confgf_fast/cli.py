"""The `confgf-fast` command: generate, train, evaluate, build-qm9.

Exit codes: 0 success; 1 fatal error (bad weights, unreadable input, ...); 2 usage error;
3 finished but some input molecules failed (each one is reported on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _repo_shared_heldout() -> Path | None:
    """../shared/data/qm9_heldout_smiles.csv beside the repo checkout, if present."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data" / "qm9_heldout_smiles.csv"
        if (parent / ".git").exists() and cand.is_file():
            return cand
    return None


# ---- input parsing --------------------------------------------------------------------------------
def read_inputs(spec: str, default_count: int) -> list[tuple[str, object, int]]:
    """INPUT -> [(smiles_as_given, smiles_or_mol, num_confs)].

    INPUT is an .sdf file (one molecule per record), a text file with one SMILES per line and an
    optional second column (whitespace or comma separated) giving that molecule's conformer count,
    or else a SMILES string. Blank lines and lines starting with '#' are skipped.
    """
    path = Path(spec)
    if path.suffix.lower() == ".sdf" and path.is_file():
        from rdkit import Chem

        out = []
        for rec in Chem.SDMolSupplier(str(path), removeHs=False):
            if rec is None:
                out.append(("", "", default_count))  # unreadable record: reported as invalid
                continue
            smi = rec.GetProp("smiles") if rec.HasProp("smiles") else Chem.MolToSmiles(Chem.RemoveHs(rec))
            out.append((smi, rec, default_count))
        return out
    if path.is_file():
        out = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p for p in re.split(r"[,\s]+", line) if p]
            count = default_count
            if len(parts) >= 2:
                try:
                    count = int(parts[1])
                except ValueError:
                    pass  # a second column that is not a count (e.g. a name) is ignored
            out.append((parts[0], parts[0], count))
        return out
    return [(spec, spec, default_count)]


# ---- commands ---------------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    import torch
    from rdkit import Chem

    from .checkpoint import WeightsError, load_model
    from .chem import write_sdf
    from .config import SamplerConfig
    from .pipeline import generate

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but no CUDA device is available", file=sys.stderr)
        return EXIT_FATAL
    try:
        model, noise = load_model(args.weights, args.device)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    sampler = SamplerConfig.preset(args.schedule)
    if args.levels is not None:
        sampler.levels = args.levels
    if args.steps_per_level is not None:
        sampler.steps_per_level = args.steps_per_level
    if args.eps is not None:
        sampler.eps = args.eps
    sampler.backend = args.backend
    items = read_inputs(args.input, args.num_confs)
    if not items:
        print(f"error: no molecules in {args.input}", file=sys.stderr)
        return EXIT_FATAL
    result = generate([x for _, x, _ in items], [c for _, _, c in items], model=model, noise=noise,
                      sampler=sampler, device=args.device, seed=args.seed, max_atoms=args.max_atoms,
                      progress=not args.quiet)
    writer = Chem.SDWriter(args.out)
    written = 0
    for k, (given, _, _) in enumerate(items):
        mol = result.mols[k]
        if mol is None:
            continue
        mol.SetProp("_Name", f"mol{k}")
        written += write_sdf(writer, mol, props={"smiles": given, "mol_id": k},
                             conf_props=[{"conf_id": c} for c in range(mol.GetNumConformers())])
    writer.close()
    for k, why in sorted(result.errors.items()):
        print(f"error: molecule {k} ({items[k][0]!r}): {why}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {written} conformers of {len(items) - len(result.errors)}/{len(items)} molecules to {args.out}",
              file=sys.stderr)
    return EXIT_PARTIAL if result.errors else EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from .config import ModelConfig, NoiseConfig, TrainConfig
    from .train import train_from_files

    model_cfg = ModelConfig.preset(args.preset)
    if args.hidden:
        model_cfg.hidden_dim = args.hidden
    if args.layers:
        model_cfg.num_layers = args.layers
    train_cfg = TrainConfig(batch_size=args.batch_size, lr=args.lr, max_steps=args.steps,
                            val_every=args.val_every, save_every=args.save_every, seed=args.seed)
    train_from_files(args.data, args.out, model_cfg, NoiseConfig(), train_cfg, device=args.device,
                     resume=args.resume, val_fraction=args.val_fraction, log_path=args.log,
                     progress=not args.quiet, time_limit_s=args.time_limit, threads=args.threads)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_files, format_table

    result = evaluate_files(args.generated, args.reference, threshold=args.threshold, workers=args.workers,
                            progress=not args.quiet)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return EXIT_OK


def cmd_build_qm9(args: argparse.Namespace) -> int:
    from .data.qm9 import QM9BuildConfig, build_qm9

    heldout = args.heldout or _repo_shared_heldout()
    if heldout is None:
        print("error: --heldout is required (the csv of molecules never to train on)", file=sys.stderr)
        return EXIT_USAGE
    cfg = QM9BuildConfig(extra_confs=args.extra_confs, seed=args.seed)
    stats = build_qm9(args.out, heldout, num_chunks=args.chunks, workers=args.workers, cache_dir=args.cache_dir,
                      cfg=cfg, progress=not args.quiet)
    print(json.dumps(stats))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="confgf-fast", description="Fast ConfGF molecular conformer generation.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate conformers for SMILES / SDF input, write SDF")
    g.add_argument("input", help="a SMILES string, an .sdf file, or a text file: SMILES [count] per line")
    g.add_argument("--num-confs", "-n", type=int, default=10, help="conformers per molecule (default 10)")
    g.add_argument("--out", "-o", required=True, help="output SDF (all hydrogens; props smiles, mol_id, conf_id)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    g.add_argument("--backend", default="auto", choices=["auto", "reference", "cpp", "cuda", "triton"],
                   help="geometric-op backend (default auto)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--weights", default=None, help="checkpoint (default: the shipped QM9 model)")
    g.add_argument("--schedule", default="paper", choices=["paper", "fast"],
                   help="paper: 50 levels x 100 steps; fast: fewer network evaluations")
    g.add_argument("--levels", type=int, default=None, help="use this many of the noise levels (evenly spaced)")
    g.add_argument("--steps-per-level", type=int, default=None)
    g.add_argument("--eps", type=float, default=None, help="base step size (paper 2.4e-6)")
    g.add_argument("--max-atoms", type=int, default=20_000, help="atoms per sampling batch")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("train", help="train a score network by denoising score matching on distances")
    t.add_argument("--data", nargs="+", required=True, help="featurised .pt datasets and/or SDF files")
    t.add_argument("--out", required=True, help="checkpoint to write (rewritten every --save-every steps)")
    t.add_argument("--preset", default="paper", choices=["paper", "small", "tiny"], help="model size preset")
    t.add_argument("--hidden", type=int, default=None)
    t.add_argument("--layers", type=int, default=None)
    t.add_argument("--steps", type=int, default=10_000, help="train until this total step count")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--device", default="cpu")
    t.add_argument("--resume", default=None, help="checkpoint to resume from (model, optimizer, step, curve)")
    t.add_argument("--val-fraction", type=float, default=0.02, help="molecules held out for validation loss")
    t.add_argument("--val-every", type=int, default=1000)
    t.add_argument("--save-every", type=int, default=1000)
    t.add_argument("--log", default=None, help="append the learning curve here (JSON lines)")
    t.add_argument("--time-limit", type=float, default=None, help="stop (and save) after this many seconds")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--seed", type=int, default=2021)
    t.add_argument("--quiet", "-q", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="COV/MAT of generated conformers against reference ensembles")
    e.add_argument("generated")
    e.add_argument("reference")
    e.add_argument("--threshold", type=float, default=0.5, help="COV threshold in angstrom (0.5 QM9, 1.25 Drugs)")
    e.add_argument("--json", default=None, help="also write the figures as JSON")
    e.add_argument("--workers", type=int, default=1)
    e.add_argument("--quiet", "-q", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("build-qm9", help="build the featurised QM9 training set from the qm9pack package")
    b.add_argument("--out", required=True)
    b.add_argument("--heldout", default=None, help="csv of molecules never to train on (default ../shared/data/)")
    b.add_argument("--chunks", type=int, default=None, help="chunks of 1000 molecules (default all of QM9)")
    b.add_argument("--workers", type=int, default=0, help="processes (default all cores)")
    b.add_argument("--cache-dir", default=None)
    b.add_argument("--extra-confs", type=int, default=4, help="ETKDG+MMFF conformers tried per molecule")
    b.add_argument("--seed", type=int, default=2021)
    b.add_argument("--quiet", "-q", action="store_true")
    b.set_defaults(func=cmd_build_qm9)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # per-molecule problems are reported by us, once, on stderr
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
