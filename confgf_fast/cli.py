"""The `confgf-fast` command: argument parsing and the commands (generate, train, evaluate,
build-qm9, build-drugs, export-weights, import-official).

Reading INPUT, writing the SDF and the errors file, --resume and the exit codes of `generate`
(listed there; the other commands use 0, 1, 2 and 130) are in pipeline/io.py.

The SDF is written as the run goes: a molecule's records are written, in input order, as soon as
all its conformers are done, and flushed, so a crash or an interrupt leaves a valid file. What
happens to each kind of bad molecule (invalid SMILES, salts, unknown elements, single atoms, size
limit, NaN during sampling) is written down in prepare.py's and pipeline/generate.py's docstrings and docs/cli.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# The generate command's files and exit codes; re-exported, as callers import them from here.
from . import threads as threads_mod
from .config import RELAX_AUTO, RELAX_METHODS, Schedule
from .pipeline.io import (  # noqa: F401 (re-exports)
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    CountedInputs,
    ErrorLog,
    InputError,
    ResumeError,
    SdfStream,
    checked_against,
    count_inputs,
    input_kind,
    iter_inputs,
    read_inputs,
    remove_if_empty,
    scan_for_resume,
)

if TYPE_CHECKING:
    from .distributed import Shard
    from .model.loaded import LoadedModel
    from .pipeline.request import GenerateRequest
    from .sampling.prepare import MolOutcome


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `signum` says which (for the exit code)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _SignalGuard:
    """Turns SIGINT / SIGTERM into Interrupted, but never in the middle of writing a molecule: a
    signal inside `critical()` is held until the molecule is on disk."""

    def __init__(self):
        self.pending: int | None = None
        self.inside = False
        self.previous: dict[int, object] = {}

    def __enter__(self) -> _SignalGuard:
        if threading.current_thread() is threading.main_thread():  # signal() only works there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.inside:
            self.pending = signum
        else:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self.inside = True
        try:
            yield
        finally:
            self.inside = False
        if self.pending is not None:
            raise Interrupted(self.pending)


def relax_methods(per_model) -> str:
    """The relax methods of a run (one RelaxOptions per model), as the summary names them: "none",
    "mmff", or e.g. "mmff, xtb"."""
    active = sorted({o.method for o in per_model if o.active})
    return ", ".join(active) if active else "none"


def run_stats_line(stats, method: str) -> str:
    """The closing summary's second line: per-stage time and the quality / relax counts (RunStats).
    method: relax_methods() of the run."""
    line = f"stages: sampling {stats.sample_s:.1f} s"
    if method != "none":
        line += f", relaxing ({method}) {stats.relax_s:.1f} s for {stats.relaxed} conformers"
    line += (f"; broken conformers: {stats.broken_resampled} resampled, {stats.broken_written} written flagged "
             "quality=broken")
    if method != "none":
        said = {"bonds_changed": "bonds changed", "failed": "relax failed", "energy_window": "--energy-window",
                "prune_rms": "--prune-rms"}
        parts = [f"{n} {said.get(k, k)}" for k, n in sorted(stats.dropped.items()) if n]
        line += f"; dropped after relaxing: {', '.join(parts) if parts else 'none'}"
        if stats.fallback:
            line += f"; {stats.fallback} molecule(s) not relaxed with MMFF (UFF or none, see warnings)"
    if stats.beyond_trained_size:  # said only when it happened: most runs stay within the training sizes
        line += (f"; {stats.beyond_trained_size} molecule(s) larger than any the weights were trained on "
                 "(see warnings)")
    return line


def sampler_tag(schedule: Schedule, loaded: LoadedModel, seed: int) -> str:
    """The `sampler` SDF property: key=value words saying how the conformers were made, e.g.
    `sampler=project schedule=quick nfe=44 weights=qm9_small.pt step=148250 seed=0`: the resolved
    schedule's own words (config.Schedule.describe: every field that differs from its preset), then
    the network evaluations per conformer, the weights (their file name, loaded.meta) and the seed."""
    from .sampling.sampler import num_evaluations

    step = loaded.meta.trained_steps
    return (f"{schedule.describe()} nfe={num_evaluations(loaded.noise, schedule)} weights={loaded.meta.name} "
            f"step={step if step is not None else 'unknown'} seed={seed}")


def cli_wording(message: str) -> str:
    """A per-molecule error as the CLI says it: the Python keyword arguments it names
    (pipeline.API_TO_CLI, e.g. allow_unknown_elements=True) become the flags (--allow-unknown-elements)."""
    from .pipeline.generate import API_TO_CLI

    for api, flag in API_TO_CLI.items():
        message = message.replace(api, flag)
    return message


# ---- commands ---------------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    """`confgf-fast generate`: parse (argparse) -> request (GenerateRequest.from_args: every option
    checked before anything is read) -> run (_GenerateRun: environment, weights, outputs, the
    streamed loop) -> summary. Exit codes: pipeline/io.py."""
    from . import distributed
    from .chem.relax import RelaxError
    from .pipeline.request import GenerateRequest, RequestError

    # Under torchrun (WORLD_SIZE > 1) distributed.py runs this command once per rank on that
    # rank's share of the input (`args.shard`), then merges the shards into --out.
    shard: distributed.Shard | None = getattr(args, "shard", None)
    if shard is None and distributed.world_size() > 1:
        return distributed.generate_sharded(args, cmd_generate)
    t0 = time.time()
    try:
        request = GenerateRequest.from_args(args)
    except RequestError as exc:
        return _error(exc, EXIT_FATAL if exc.fatal else EXIT_USAGE)
    except RelaxError as exc:  # e.g. --relax xtb without tblite
        return _error(exc, EXIT_USAGE)
    run = _GenerateRun(args, request, shard)
    code = run.prepare()
    if code is not None:
        return code
    code = run.stream()
    return run.summary(code, time.time() - t0)


def _error(message: object, code: int) -> int:
    """Say `error: message` on stderr; return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


class _GenerateRun:
    """One `generate` command after its request is built: what it loaded, opened and counted."""

    def __init__(self, args: argparse.Namespace, request: GenerateRequest, shard: Shard | None):
        from .pipeline.generate import RunStats

        self.args, self.request, self.shard = args, request, shard
        self.out_path = Path(args.out)
        self.errors_path = Path(args.errors) if args.errors else Path(str(self.out_path) + ".errors.tsv")
        self.done: dict[int, int] = {}
        self.stats = RunStats()
        self.counts = Counter()  # molecules: in, ok, partial, failed, broken; conformers: confs

    def prepare(self) -> int | None:
        """Check the environment (device, backend, input), set the thread budget, load the weights,
        resolve the relax methods and open the outputs; an exit code if any of that fails."""
        args = self.args
        why = device_problem(args.device)
        if why is not None:
            return _error(why, EXIT_FATAL)
        why = backend_problem(args.backend, args.device)
        if why is not None:
            return _error(why, EXIT_USAGE)
        try:
            input_kind(args.input)
        except InputError as exc:
            return _error(exc, EXIT_FATAL)
        try:  # a --count-column that is not there is said now, before the model loads (reads one line)
            next(iter_inputs(args.input, 1, keep=lambda k: False, count_column=args.count_column), None)
        except InputError as exc:
            return _error(exc, EXIT_USAGE if "--count-column" in str(exc) else EXIT_FATAL)
        # One budget for torch, the C++ kernels' OpenMP and RDKit (threads.py): --threads, else the
        # cores available to this process minus those other processes keep busy. For the whole process.
        try:
            self.budget = threads_mod.resolve(args.threads)
        except ValueError as exc:  # a malformed CONFGF_THREADS
            return _error(exc, EXIT_USAGE)
        threads_mod.apply(self.budget)
        return self._load() or self._open()

    def _load(self) -> int | None:
        from .chem.relax import RelaxError, relax_per_model
        from .model.checkpoint import WeightsError, load_models

        r, args = self.request, self.args
        try:
            self.models = load_models(args.weights, args.device)
        except WeightsError as exc:
            return _error(exc, EXIT_FATAL)
        try:
            self.relax = relax_per_model(r.relax, [m.meta.relax_default for m in self.models],
                                         r.prune_rms, r.energy_window, r.sort_energy, threads=self.budget.threads)
        except RelaxError as exc:
            if r.needs_energy:  # --relax auto, and some weights do not relax
                lazy = [m.meta.name for m in self.models if m.meta.relax_default == "none"]
                return _error(f"{r.name('energy')} work on energies: add --relax mmff or xtb (--relax auto leaves "
                              f"the molecules of {', '.join(lazy)} unrelaxed)", EXIT_USAGE)
            return _error(f"--relax {r.relax}: {exc}", EXIT_USAGE)  # e.g. a relax_default of xtb, no tblite
        for m in self.models:
            if m.meta.trained_elements_assumed:
                print(f"note: {m.meta.name} does not record its training elements; assuming H, C, N, O, F (QM9)",
                      file=sys.stderr)
        return None

    def _open(self) -> int | None:
        from .pipeline.generate import tuned_schedule

        args, out_path, shard = self.args, self.out_path, self.shard
        if shard is None and out_path.is_file() and out_path.stat().st_size > 0 and not args.resume and not args.force:
            # Said after every option check (those errors are the more useful) and before anything is
            # written; a 0-byte file holds nothing to lose.
            return _error(f"{out_path} already exists: add --resume to keep its complete molecules and append the "
                          "rest, or --force to overwrite it", EXIT_USAGE)
        if args.resume and out_path.is_file():
            try:
                self.done = scan_for_resume(out_path)
            except (ResumeError, OSError) as exc:
                return _error(f"cannot resume: {exc}", EXIT_FATAL)
            print(f"resume: {len(self.done)} molecules already complete in {out_path}", file=sys.stderr)
        if shard is not None:
            try:
                self.done = shard.adopt(self.done)  # plus this rank's molecules complete in a resumed --out
            except ResumeError as exc:
                return _error(f"cannot resume: {exc}", EXIT_FATAL)
        try:
            # Each record names the weights that sampled it (one `sampler` tag per model, with the
            # checkpoint's own sampler settings, pipeline.tuned_schedule).
            tags = [sampler_tag(tuned_schedule(self.request.schedule, m), m, args.seed) for m in self.models]
            self.sdf = SdfStream(out_path, append=bool(args.resume and out_path.is_file()),
                                 model_props=[{"sampler": t} for t in tags])
            self.errlog = ErrorLog(self.errors_path, always=args.errors is not None)
        except OSError as exc:
            return _error(f"cannot write output: {exc}", EXIT_FATAL)
        return None

    def stream(self) -> int:
        """Generate and write, molecule by molecule, as generate_iter yields them; the exit code so far."""
        import dataclasses

        from .pipeline.generate import generate_iter

        args, shard, done = self.args, self.shard, self.done

        def note(msg: str) -> None:
            if shard is None or shard.rank == 0:
                print(f"note: {msg}", file=sys.stderr)

        items = checked_against(iter_inputs(args.input, args.num_confs, shard and shard.owns,
                                             count_column=args.count_column, note=note), done, self.out_path)
        total = None if args.quiet else count_inputs(args.input)
        if total is not None:  # the progress bar's total: the molecules this run will yield
            skipped = shard.skip(done) if shard else done
            items = CountedInputs(items, sum(k not in skipped for k in range(total)))
        # A shard's chunks span world_size times the positions, so each rank samples ~chunk_size per chunk.
        request = dataclasses.replace(self.request, chunk_size=args.chunk_size * (shard.world if shard else 1),
                                      relax=tuple(self.relax))
        code = EXIT_OK
        try:
            with _SignalGuard() as guard:
                for res in generate_iter(items, model=self.models, skip=shard.skip(done) if shard else done,
                                         stats=self.stats, threads=self.budget, request=request):
                    with guard.critical():
                        self._write(res)
        except KeyboardInterrupt as exc:
            code = EXIT_SIGTERM if getattr(exc, "signum", signal.SIGINT) == signal.SIGTERM else EXIT_SIGINT
            if not args.quiet:
                print(file=sys.stderr)  # end the progress bar's line
            print(f"interrupted: {self.out_path} holds complete records of the molecules finished so far; "
                  "run the same command with --resume to complete it", file=sys.stderr)
        except (InputError, ResumeError, OSError) as exc:
            code = _error(exc, EXIT_FATAL)
        except Exception as exc:  # anything else mid-run: keep what is written valid and say how to go on
            code = _error(f"generation stopped: {type(exc).__name__}: {exc}\n{self.out_path} holds complete records "
                          "of the molecules finished so far; --resume continues after them", EXIT_FATAL)
        finally:
            self.sdf.close()
            self.errlog.close()
        return code

    def _write(self, res: MolOutcome) -> None:
        """One molecule's outcome: its warnings and error on stderr, its records, its count."""
        n = self.counts
        n["in"] += 1
        for w in res.warnings:
            print(f"warning: molecule {res.index} ({res.text!r}): {w}", file=sys.stderr)
        if res.mol is not None:
            n["confs"] += self.sdf.write(res)
        if res.error is not None:
            why = cli_wording(res.error)
            print(f"error: molecule {res.index} ({res.text!r}): {why}", file=sys.stderr)
            self.errlog.add(res.index, res.text, why)
        if res.error is None and res.mol is not None and _all_broken(res.conf_flags):
            n["broken"] += 1  # written, flagged, but not one usable conformer: not "ok"
        elif res.error is None:
            n["ok"] += 1
        elif res.mol is not None:
            n["partial"] += 1
        else:
            n["failed"] += 1

    def summary(self, code: int, elapsed: float) -> int:
        """The closing lines on stderr; the final exit code."""
        from .sampling.sampler import num_evaluations

        args, n, done, shard, schedule = self.args, self.counts, self.done, self.shard, self.request.schedule
        # No record written (every molecule failed, no molecules, an early interrupt): no 0-byte OUT is
        # left behind. A shard's file stays for the merge (distributed.py).
        dropped_out = shard is None and remove_if_empty(self.out_path)
        if code == EXIT_OK and n["in"] == 0 and not done and shard is None:  # a shard may be empty: checked globally
            return _error(f"no molecules in {args.input} (empty, or only blank and comment lines)", EXIT_FATAL)
        # Molecules whose every conformer is flagged broken are never counted "ok" in the summary. They
        # make the exit partial under --allow-unknown-elements (the model was asked to sample elements it
        # never saw, and broken output is that request failing); otherwise exit 0 stays "every molecule
        # has its records" as before, with the count in the summary.
        if code == EXIT_OK and (n["failed"] or n["partial"] or (n["broken"] and args.allow_unknown_elements)):
            code = EXIT_PARTIAL
        resumed = f" (+{len(done)} already there)" if done else ""
        state = "stopped" if code in (EXIT_SIGINT, EXIT_SIGTERM, EXIT_FATAL) else "done"
        nfe = "/".join(sorted({str(num_evaluations(m.noise, schedule)) for m in self.models}))
        broken = f", {n['broken']} with every conformer flagged quality=broken" if n["broken"] else ""
        summary = (f"{state}: {n['ok']} ok, {n['partial']} with missing conformers{broken}, {n['failed']} failed of "
                   f"{n['in']} molecules{resumed}; {n['confs']} conformers written to {self.out_path}"
                   f"{' (no records: the file was not kept)' if dropped_out else ''} in {elapsed:.1f} s "
                   f"({n['confs'] / max(elapsed, 1e-9):.2f} conformers/s, {nfe} network "
                   f"evaluations per conformer, {schedule.sampler} sampler, schedule {schedule.name})")
        if len(self.models) > 1:
            summary += "; molecules per weights: " + ", ".join(
                f"{m.meta.name} {self.stats.per_model[i]}" for i, m in enumerate(self.models))
        if self.errlog.count:
            summary += f"; errors in {self.errors_path}"
        print(summary, file=sys.stderr)
        print(run_stats_line(self.stats, relax_methods(self.relax)) + f"; threads: {self.budget.describe()}",
              file=sys.stderr)
        return code


def _all_broken(flags: list[dict]) -> bool:
    """Every written conformer of a molecule is flagged broken (quality.py): the molecule has no
    usable conformer, whatever the summary would otherwise count it as."""
    return bool(flags) and all(f.get("quality", "ok") != "ok" for f in flags)


def device_problem(device: str) -> str | None:
    """Why `--device DEVICE` cannot run here (one line naming the fix), or None. Said before the
    weights load, so `cuda:0` or a typo fails as cleanly as `cuda` on a machine without a GPU."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"--device {device}: not a device; use cpu, cuda or cuda:N"
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        return f"--device {device}: only cpu and cuda (cuda:N) are supported"
    if not torch.cuda.is_available():
        return f"--device {device} requested but no CUDA device is available (use --device cpu)"
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        return (f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return None


def backend_problem(backend: str, device: str) -> str | None:
    """Why `--backend BACKEND` cannot run on DEVICE (one line naming the fix), or None: said before
    the run starts, not as a mid-run failure that suggests --resume."""
    if backend in ("auto", "reference"):
        return None
    import torch

    from . import ops

    usable = ops.available_backends(device)
    if backend in usable:
        return None
    why = ops._why_unavailable(backend, torch.device(device))
    return (f"--backend {backend} cannot run on --device {device}: {why}; use --backend auto "
            f"(here: {' or '.join(usable)})")


def cmd_train(args: argparse.Namespace) -> int:
    from .config import ModelConfig, NoiseConfig, TrainConfig
    from .train import train_from_files

    if args.resume and args.init:
        print("error: --resume continues a run and --init starts a new one from weights: give one", file=sys.stderr)
        return EXIT_USAGE
    model_cfg = ModelConfig.preset(args.preset)
    if args.hidden:
        model_cfg.hidden_dim = args.hidden
    if args.layers:
        model_cfg.num_layers = args.layers
    train_cfg = TrainConfig(batch_size=args.batch_size, lr=args.lr, max_steps=args.steps,
                            val_every=args.val_every, save_every=args.save_every, seed=args.seed,
                            coord_noise=args.coord_noise, coord_noise_scale=args.coord_noise_scale,
                            ema_decay=args.ema_decay, grad_clip=args.grad_clip,
                            anneal_steps=args.anneal_steps, anneal_to=args.anneal_to)
    from .data.dataset import DatasetFileError
    from .model.checkpoint import WeightsError

    try:
        train_from_files(args.data, args.out, model_cfg, NoiseConfig(), train_cfg, device=args.device,
                         resume=args.resume, val_fraction=args.val_fraction, log_path=args.log,
                         progress=not args.quiet, time_limit_s=args.time_limit,
                         threads=threads_mod.resolve(args.threads).threads, init=args.init,
                         graph_order=args.graph_order)
    except (WeightsError, DatasetFileError) as exc:  # a bad --data / --resume / --init file: one line
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import EvalInputError, evaluate_files, format_table

    props = None
    if args.properties:  # before the RMSDs, so a missing tblite or mismatched sets fail at once
        from .evaluation.properties import evaluate_properties_files, format_properties_table, tblite_problem

        problem = tblite_problem()
        if problem:
            print(f"error: --properties: {problem}", file=sys.stderr)
            return EXIT_FATAL
        try:
            props = evaluate_properties_files(args.generated, args.reference, margin=args.margin,
                                              max_confs=args.max_confs, workers=args.workers,
                                              progress=not args.quiet).summary(per_molecule=True)
        except EvalInputError as exc:  # incl. PropertyInputError: a molecule whose two sets do not match
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FATAL
    try:
        result = evaluate_files(args.generated, args.reference, threshold=args.threshold, workers=args.workers,
                                progress=not args.quiet)
    except EvalInputError as exc:  # missing / empty / unreadable file, or no molecule in common
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    print(format_table(result))
    if props is not None:
        result["properties"] = props
        print(format_properties_table(props))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result, indent=2))
        except OSError as exc:
            print(f"error: cannot write --json {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FATAL
    if result["n_mols"] == 0:  # shared molecules, but none with valid conformers on both sides
        print("error: no molecule could be evaluated: every shared molecule lacks valid generated or reference "
              "conformers (see the note above)", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_OK


def cmd_build_qm9(args: argparse.Namespace) -> int:
    from .data.exclusions import default_qm9_heldout
    from .data.qm9 import QM9BuildConfig, build_qm9

    heldout = args.heldout or default_qm9_heldout()
    if heldout is None:
        print("error: --heldout is required (the csv of molecules never to train on)", file=sys.stderr)
        return EXIT_USAGE
    if args.xtb:
        from .chem.xtb import available

        if not available():
            print("error: --xtb needs the tblite package (pip install tblite)", file=sys.stderr)
            return EXIT_USAGE
    cfg = QM9BuildConfig(extra_confs=args.extra_confs, seed=args.seed, xtb=args.xtb)
    stats = build_qm9(args.out, heldout, num_chunks=args.chunks, workers=args.workers, cache_dir=args.cache_dir,
                      cfg=cfg, progress=not args.quiet)
    print(json.dumps(stats))
    return EXIT_OK


def cmd_build_refs(args: argparse.Namespace) -> int:
    from .chem.xtb import available
    from .data.reference_search import SearchSettings, build_union

    if not available():
        print("error: build-refs needs the tblite package (pip install tblite)", file=sys.stderr)
        return EXIT_USAGE
    if not Path(args.ref).is_file():
        print(f"error: reference SDF not found: {args.ref}", file=sys.stderr)
        return EXIT_USAGE
    settings = SearchSettings(starts=args.starts, noise=args.noise, window=args.window, dedup=args.dedup,
                              seed=args.seed)
    cache = args.cache_dir or str(Path(args.out).parent / (Path(args.out).name.split(".")[0] + "_cache"))
    summary = build_union(args.ref, args.out, cache, settings, mol_ids=args.mol_id or None,
                          progress=not args.quiet)
    print(json.dumps(summary["totals"]))
    return EXIT_OK


def cmd_build_drugs(args: argparse.Namespace) -> int:
    from .data.build import format_composition
    from .data.drugs import DrugsBuildConfig, build_drugs
    from .data.exclusions import default_exclusion_files

    exclude = args.exclude if args.exclude else default_exclusion_files()
    if not exclude and not args.no_exclude:
        print("error: no exclusion files found ($CONFGF_FAST_SHARED, or ../shared beside a git checkout: "
              "data/drugs_test_smiles.csv, ...): pass --exclude FILE ... (or --no-exclude)", file=sys.stderr)
        return EXIT_USAGE
    if args.xtb:
        from .chem.xtb import available

        if not available():
            print("error: --xtb needs the tblite package (pip install tblite)", file=sys.stderr)
            return EXIT_USAGE
    cfg = DrugsBuildConfig(confs=args.confs, dedup_rmsd=args.dedup_rmsd, chunk_size=args.chunk_size, seed=args.seed,
                           embed_timeout=args.embed_timeout, xtb=args.xtb)
    try:
        stats, ds = build_drugs(args.out, exclude, num_chunks=args.chunks, workers=args.workers,
                                cache_dir=args.cache_dir, cfg=cfg, wheel=args.wheel, progress=not args.quiet)
    except RuntimeError as exc:  # the molsets wheel cannot be found or downloaded
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    print(f"wrote {args.out}: conformers by {ds.meta['conformer_method']}", file=sys.stderr)
    print(format_composition(ds.meta["composition"]), file=sys.stderr)
    print(json.dumps(stats))
    return EXIT_OK


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def cmd_export_weights(args: argparse.Namespace) -> int:
    from .model.checkpoint import WeightsError, export_weights

    defaults: dict = {}
    for item in args.sampler_default or []:
        key, sep, value = item.partition("=")
        schedule, dot, name = key.partition(".")
        try:
            if not (sep and dot and schedule and name):
                raise ValueError("expected SCHEDULE.FIELD=VALUE, e.g. warm.sigma_max=0.15")
            defaults.setdefault(schedule, {})[name] = float(value)
        except ValueError as exc:
            print(f"error: --sampler-default {item!r}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        state = export_weights(args.checkpoint, args.out, average=not args.raw, sampler_defaults=defaults,
                               relax_default=args.relax_default)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except ValueError as exc:  # an invalid --sampler-default
        print(f"error: --sampler-default: {exc}", file=sys.stderr)
        return EXIT_USAGE
    kind = state["weights_kind"]
    if kind == "ema":
        kind += f" (decay {state['ema']['decay']}, {state['ema']['updates']} updates)"
    tuned = "; ".join(f"{sch}: " + ", ".join(f"{k}={v:g}" for k, v in t.items())
                      for sch, t in (state.get("sampler_defaults") or {}).items())
    relax = state.get("relax_default")
    print(f"wrote {args.out} (step {state.get('step', '?')}, {kind} weights"
          f"{'; sampler defaults ' + tuned if tuned else ''}{'; relax default ' + relax if relax else ''})",
          file=sys.stderr)
    return EXIT_OK


def cmd_import_official(args: argparse.Namespace) -> int:
    from .model.official import OfficialImportError, import_official

    try:
        meta = import_official(args.checkpoint, args.out, dataset=args.dataset)
    except OfficialImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    print(f"wrote {args.out} ({meta['source']}, config {meta['official_config']}, data {meta['official_dataset']}, "
          f"sigmas {meta['sigma_begin']:g}..{meta['sigma_end']:g} x {meta['num_levels']})", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="confgf-fast", description="Fast ConfGF molecular conformer generation.")
    p.add_argument("--version", action="version", version=f"confgf-fast {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate conformers for SMILES / SDF input, write SDF")
    g.add_argument("input", help="a SMILES string, an .sdf file, or a text file: SMILES [name] per line, or a CSV / "
                                 "TSV with a header line naming a smiles column")
    g.add_argument("--num-confs", "-n", type=_positive, default=10, help="conformers per molecule (default 10)")
    g.add_argument("--count-column", default="auto", metavar="COL",
                   help="text input: the column (number from 1, or header name) holding each molecule's conformer "
                        "count, which replaces -n for that molecule; none: no count column; auto (default): an "
                        "integer second column of a file without a header line (announced on stderr)")
    g.add_argument("--out", "-o", required=True,
                   help="output SDF, all hydrogens, title = name; properties smiles (what was sampled), input_smiles "
                        "(a salt's input, when a fragment was kept), mol_id, conf_id, num_confs, sampler, stereo_ok, "
                        "quality, quality_reasons (broken ones), warnings (where any); energy, relative_energy, "
                        "energy_method with --relax")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    g.add_argument("--backend", default="auto", choices=["auto", "reference", "cpp", "cuda", "triton"],
                   help="geometric-op backend (default auto)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--weights", action="append", default=None, metavar="CKPT",
                   help="checkpoint; repeat it to give several, and each molecule is sampled by the first trained on "
                        "its elements and size (default: the shipped QM9 model, then the shipped drug-like model)")
    g.add_argument("--sampler", default=None, choices=["langevin", "project", "dist"],
                   help="langevin: annealed Langevin dynamics, as the paper; project: projected denoising, one "
                        "network evaluation per noise level (the default, with --schedule warm; see docs/samplers.md); "
                        "dist: the paper's ConfGFDist ablation (Langevin on the distances, then a 3D embedding)")
    g.add_argument("--schedule", default=None, choices=["paper", "fast", "quick", "warm", "noise", "dist"],
                   help="project: warm (24 network evaluations from ETKDG conformers, the default), noise (from "
                        "noise: 4 x 24 evaluations and a diverse selection weighted by MMFF94 energy, what "
                        "--init random alone gives) or quick (44, from noise, one sample per conformer); langevin: "
                        "paper (5000, from noise, the sampler's default) or fast (966); dist: dist (5000, on the "
                        "distances)")
    g.add_argument("--init", default=None, choices=["random", "etkdg"],
                   help="where sampling starts: etkdg (RDKit ETKDGv3 conformers noised to 0.5 A and refined by the "
                        "project sampler: the default, schedule warm) or random (noise, as the paper; alone it means "
                        "the from-noise schedule noise; --schedule paper for the paper's). Every SDF record names "
                        "it in its sampler property")
    g.add_argument("--init-oversample", type=_positive, default=None, metavar="N",
                   help="warm start: embed N x as many ETKDG conformers and keep the most diverse (farthest-point "
                        "on heavy-atom RMSD; default 3, 1 = off, faster: +6.5 COV-R on the QM9 dev benchmark)")
    g.add_argument("--num-steps", type=_positive, default=None,
                   help="project sampler: noise levels (one network evaluation each)")
    g.add_argument("--noise-scale", type=float, default=None,
                   help="project sampler: re-noising between levels, as a fraction of the next sigma")
    g.add_argument("--levels", type=_positive, default=None, help="use this many of the noise levels (evenly spaced)")
    g.add_argument("--steps-per-level", type=_positive, default=None)
    g.add_argument("--eps", type=float, default=None, help="base step size (paper 2.4e-6)")
    g.add_argument("--bands", default=None, metavar="SPEC",
                   help="levels and steps per sigma band, largest sigma first, e.g. '2:6x20,0.1:21x36,0:6x20' "
                        "(floor:NxS = N levels with sigma above floor, S steps each); replaces --levels and "
                        "--steps-per-level")
    g.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the score network: auto = when a batch has >= 150k conformer-evaluations "
                        "(compiling takes ~15 s once; 3-4x faster forward measured on CPU)")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "tf32"],
                   help="score-network arithmetic: fp32 (default), bf16 autocast (CPU/CUDA), tf32 matmuls (CUDA); "
                        "measured quality effect in MODEL_CARD.md")
    g.add_argument("--cuda-graphs", action="store_true",
                   help="on CUDA, replay each level's Langevin step as a CUDA graph (experimental: not yet measured)")
    g.add_argument("--no-stereo", action="store_true",
                   help="no stereo guidance / mirror fix (the official ConfGF: random handedness)")
    g.add_argument("--max-atoms", type=_positive, default=None,
                   help="atoms per sampling batch (default 1000 on CPU, 20000 on CUDA: measured best)")
    g.add_argument("--max-heavy-atoms", type=_non_negative, default=100,
                   help="molecules with more heavy (non-H) atoms fail with an error; 0 = no limit (default 100)")
    g.add_argument("--allow-unknown-elements", action="store_true",
                   help="sample molecules with elements absent from the model's training data (else an error)")
    g.add_argument("--largest-fragment", action=argparse.BooleanOptionalAction, default=True,
                   help="multi-fragment inputs (salts): keep the largest fragment with a warning (default), "
                        "or with --no-largest-fragment fail them")
    g.add_argument("--retries", type=_non_negative, default=2,
                   help="resample conformers with NaN/inf or exploded coordinates, or broken ones (quality flags: "
                        "bond lengths, clashes, changed connectivity), this many times (default 2)")
    g.add_argument("--relax", default=RELAX_AUTO, choices=[RELAX_AUTO, *RELAX_METHODS],
                   help="relax every conformer after sampling: mmff = RDKit MMFF94 (UFF where MMFF has no "
                        "parameters), mmff94s = the MMFF94s variant, xtb = GFN2-xTB (needs tblite; conformers whose "
                        "bonds change are dropped). Records get energy (kcal/mol), relative_energy, energy_method. "
                        "auto (default): what the weights that sample the molecule were measured best with "
                        "(shipped: none for qm9_small.pt, mmff for drugs_small.pt)")
    g.add_argument("--prune-rms", type=_non_negative_float, default=None, metavar="R",
                   help="after --relax: drop conformers within R A heavy-atom RMSD of a lower-energy one")
    g.add_argument("--energy-window", type=_non_negative_float, default=None, metavar="E",
                   help="after --relax: drop conformers more than E kcal/mol above the molecule's lowest")
    g.add_argument("--sort-energy", action="store_true",
                   help="after --relax: write each molecule's conformers lowest energy first")
    g.add_argument("--errors", default=None, metavar="PATH",
                   help="TSV of failures: mol_id, input, error (default OUT.errors.tsv, only when there are any)")
    g.add_argument("--resume", action="store_true",
                   help="keep the complete molecules of an existing OUT (from an interrupted run) and append the rest")
    g.add_argument("--chunk-size", type=_positive, default=1000,
                   help="molecules read and sampled at a time (bounds memory; default 1000)")
    g.add_argument("--force", "--overwrite", action="store_true",
                   help="overwrite an existing OUT (without it, or --resume, an existing OUT is an error)")
    g.add_argument("--threads", type=_positive, default=None,
                   help="CPU threads shared by torch, the C++ kernels' OpenMP and RDKit (default: the cores this "
                        "process may use minus those other processes keep busy; env CONFGF_THREADS also sets it)")
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
    t.add_argument("--init", default=None,
                   help="start from this checkpoint's weights (shape, noise levels, trained elements) with a fresh "
                        "optimizer and step 0: fine-tuning, e.g. the shipped QM9 model on drug-like data")
    t.add_argument("--graph-order", type=_positive, default=None, metavar="K",
                   help="score the distances of all pairs within K bonds (default: the --init/--resume model's, "
                        "else 3, ConfGF's bonds, angles and torsions); with --init a higher K grows the edge-type "
                        "embedding, each new hop count starting as a copy of the torsion type")
    t.add_argument("--val-fraction", type=float, default=0.02, help="molecules held out for validation loss")
    t.add_argument("--val-every", type=int, default=1000)
    t.add_argument("--save-every", type=int, default=1000)
    t.add_argument("--log", default=None, help="append the learning curve here (JSON lines)")
    t.add_argument("--time-limit", type=float, default=None, help="stop (and save) after this many seconds")
    t.add_argument("--threads", type=_positive, default=None,
                   help="torch CPU threads (default: the cores available minus those other processes keep busy)")
    t.add_argument("--seed", type=int, default=2021)
    t.add_argument("--coord-noise", type=float, default=0.0, metavar="FRACTION",
                   help="share of conformers perturbed in coordinates instead of per distance (0 = the official "
                        "objective; see train.py)")
    t.add_argument("--coord-noise-scale", type=float, default=0.8,
                   help="coordinate noise as a fraction of sigma (0.8 = the project sampler's re-noising)")
    t.add_argument("--grad-clip", type=float, default=0.0, metavar="NORM",
                   help="clip the gradient's total norm to NORM (0 = off, as the official code; each logged "
                        "validation record has the window's largest norm, grad_norm_max)")
    t.add_argument("--ema-decay", type=float, default=0.999,
                   help="decay of the weights' exponential moving average kept for export-weights (0 = none)")
    t.add_argument("--anneal-steps", type=_non_negative, default=0, metavar="N",
                   help="cosine-decay the learning rate over the last N steps before --steps, from the rate in "
                        "force then to --anneal-to, so the run ends converged (0 = plateau schedule throughout)")
    t.add_argument("--anneal-to", type=float, default=0.0, help="learning rate at the end of --anneal-steps")
    t.add_argument("--quiet", "-q", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="COV/MAT of generated conformers against reference ensembles")
    e.add_argument("generated")
    e.add_argument("reference")
    e.add_argument("--threshold", type=float, default=0.5, help="COV threshold in angstrom (0.5 QM9, 1.25 Drugs)")
    e.add_argument("--json", default=None, help="also write the figures as JSON")
    e.add_argument("--workers", type=int, default=1)
    e.add_argument("--quiet", "-q", action="store_true")
    e.add_argument("--properties", action="store_true",
                   help="also ensemble properties: GFN2-xTB single points (tblite) of every conformer, the MAE (eV) "
                        "of mean/lowest energy and mean/lowest/highest HOMO-LUMO gap against the references, and "
                        "outliers (confgf_fast/evaluation/properties.py)")
    e.add_argument("--margin", type=_non_negative_float, default=0.1,
                   help="--properties: a conformer whose removal moves E_min or the highest gap by more than this "
                        "(eV) is an outlier (default 0.1)")
    e.add_argument("--max-confs", type=_positive, default=None,
                   help="--properties: at most this many conformers per ensemble, a seeded random subset (the "
                        "paper used 50; default: all)")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("build-qm9", help="build the featurised QM9 training set from the qm9pack package")
    b.add_argument("--out", required=True)
    b.add_argument("--heldout", default=None,
                   help="csv of molecules never to train on (default: data/qm9_heldout_smiles.csv of "
                        "$CONFGF_FAST_SHARED or of ../shared beside a git checkout)")
    b.add_argument("--chunks", type=int, default=None, help="chunks of 1000 molecules (default all of QM9)")
    b.add_argument("--workers", type=int, default=0, help="processes (default all cores)")
    b.add_argument("--cache-dir", default=None)
    b.add_argument("--extra-confs", type=int, default=4, help="ETKDG+MMFF conformers tried per molecule")
    b.add_argument("--seed", type=int, default=2021)
    b.add_argument("--xtb", action="store_true",
                   help="refine every kept conformer (the DFT geometry too) with GFN2-xTB "
                        "(tblite; ~0.2 s per QM9 conformer per core)")
    b.add_argument("--quiet", "-q", action="store_true")
    b.set_defaults(func=cmd_build_qm9)

    r = sub.add_parser("build-refs", help="v2 reference ensembles: references + minima of a search without ETKDG "
                                          "(random torsions + noise, GFN2-xTB)")
    r.add_argument("ref", help="reference SDF (records grouped by mol_id, property energy_kcal)")
    r.add_argument("--out", required=True, help="union SDF to write (.sdf.gz compresses); summary beside it as .json")
    r.add_argument("--cache-dir", default=None, help="per-molecule results; a rerun resumes (default beside --out)")
    r.add_argument("--starts", type=_positive, default=24, help="random starts per molecule (~2 s each, QM9 size)")
    r.add_argument("--noise", type=float, default=0.25, help="Gaussian noise (angstrom) on every atom of a start")
    r.add_argument("--window", type=float, default=6.0, help="energy window, kcal/mol")
    r.add_argument("--dedup", type=float, default=0.125, help="duplicate threshold, heavy-atom RMSD (angstrom)")
    r.add_argument("--seed", type=int, default=1000, help="molecule k of the file uses seed + k")
    r.add_argument("--mol-id", action="append", default=[], help="only this molecule (repeatable)")
    r.add_argument("--quiet", "-q", action="store_true")
    r.set_defaults(func=cmd_build_refs)

    d = sub.add_parser("build-drugs", help="build the featurised drug-like training set (MOSES SMILES, ETKDG+MMFF)")
    d.add_argument("--out", required=True)
    d.add_argument("--chunks", type=_positive, default=None, help="chunks of --chunk-size molecules (default all)")
    d.add_argument("--chunk-size", type=_positive, default=500, help="molecules per cached chunk")
    d.add_argument("--workers", type=_non_negative, default=0, help="processes (default all cores)")
    d.add_argument("--cache-dir", default=None, help="folder of the cached chunks (default beside --out)")
    d.add_argument("--confs", type=_positive, default=5, help="ETKDGv3+MMFF94 conformers tried per molecule")
    d.add_argument("--dedup-rmsd", type=float, default=0.5, help="heavy-atom RMSD (A) below which a conformer "
                   "is a duplicate")
    d.add_argument("--embed-timeout", type=_non_negative, default=10,
                   help="seconds per ETKDG embedding call of one molecule (0: none)")
    d.add_argument("--seed", type=int, default=2024)
    d.add_argument("--exclude", nargs="+", default=None,
                   help="csv/sdf files of molecules never to include (default: drugs_test_smiles.csv, "
                        "qm9_heldout_smiles.csv, geom_drugs_10.sdf of $CONFGF_FAST_SHARED or of ../shared beside a "
                        "git checkout)")
    d.add_argument("--no-exclude", action="store_true", help="allow a build without any exclusion file")
    d.add_argument("--wheel", default=None, help="the molsets 0.3.1 wheel (default: data_cache/wheels, "
                   "downloaded with pip if missing)")
    d.add_argument("--xtb", action="store_true",
                   help="refine the kept conformers with GFN2-xTB (tblite; several s per drug-size conformer per core)")
    d.add_argument("--quiet", "-q", action="store_true")
    d.set_defaults(func=cmd_build_drugs)

    x = sub.add_parser("export-weights", help="sampling-only copy of a training checkpoint (for shipping)")
    x.add_argument("checkpoint")
    x.add_argument("out")
    x.add_argument("--raw", action="store_true",
                   help="ship the raw weights, not their moving average (the default when the checkpoint has one)")
    x.add_argument("--sampler-default", action="append", default=None, metavar="SCHEDULE.FIELD=VALUE",
                   help="a sampler setting measured best for these weights, stored with them and used when they "
                        "sample unless the user changes that field (e.g. warm.sigma_max=0.15); repeatable")
    x.add_argument("--relax-default", default=None, choices=list(RELAX_METHODS),
                   help="the relax method measured best for what these weights sample: generate's default "
                        "--relax auto applies it to the molecules they sample (default: the checkpoint's, else none)")
    x.set_defaults(func=cmd_export_weights)

    o = sub.add_parser("import-official", help="convert a checkpoint of the official ConfGF code to our format")
    o.add_argument("checkpoint", help="official checkpoint file (e.g. checkpoint284 of qm9_default)")
    o.add_argument("--out", required=True, help="confgf_fast checkpoint to write")
    o.add_argument("--dataset", choices=["qm9", "drugs", "iso17"], default=None,
                   help="training data of the model, when the checkpoint holds no config naming it")
    o.set_defaults(func=cmd_import_official)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from rdkit import RDLogger

        RDLogger.DisableLog("rdApp.*")  # per-molecule problems are reported by us, once, on stderr
    except ImportError:
        pass  # `train` on featurised .pt data needs no RDKit (e.g. on a GPU box without it)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C outside generate's own handling (e.g. while loading)
        print("\ninterrupted", file=sys.stderr)
        return EXIT_SIGINT


if __name__ == "__main__":
    sys.exit(main())
