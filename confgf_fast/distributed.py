"""`confgf-fast generate` sharded over processes with torch.distributed (launched by torchrun).

    torchrun --nproc_per_node 4 -m confgf_fast.cli generate in.smi -n 10 -o out.sdf [--device cuda]

(`python -m torch.distributed.run` is the same launcher; several nodes: torchrun's --nnodes /
--rdzv-* options and a shared file system for OUT). With WORLD_SIZE > 1 in the environment,
cli.cmd_generate hands over to generate_sharded:

1. Rank r samples the input molecules with index k % world_size == r. Round-robin rather than
   contiguous blocks: inputs are often sorted (by size, by series), and interleaving gives every
   rank the same mix, so the ranks finish at about the same time. Every rank streams the input but
   parses only its own records; mol_id stays the global input index.
2. Rank r writes OUT.rank{r}.sdf (OUT's stem + ".rank{r}" + its suffix) and OUT.rank{r}.sdf.errors.tsv
   exactly as a single-process run writes OUT: streaming, in input order, flushed per molecule,
   --resume per shard. Device: cuda:{LOCAL_RANK} with --device cuda (process group backend nccl),
   else the CPU (gloo); set OMP_NUM_THREADS so that ranks x threads fits the cores.
   Seeds: rank r seeds its sampler with derive(--seed, r, world_size), so ranks never share noise
   and a run is reproducible for a given world size (the conformers differ from a single-process
   run's, whose noise is drawn in another order; which molecules, counts and order do not).
   --chunk-size counts each rank's molecules (a rank's chunk spans world_size x chunk-size inputs).
3. The ranks agree on an exit code (one all_reduce; before it, one broadcast of rank 0's input and
   --resume checks). If every rank finished (exit 0 or 3), rank 0 merges the shards into OUT in
   mol_id order by a k-way stream merge (one record per shard in memory), the errors files likewise
   (into --errors, default OUT.errors.tsv, written only when there are errors unless --errors is
   given), each into a temporary file renamed over the target, then removes the shards. If a rank
   failed or was interrupted, nothing is merged and the shards stay: the same command, with the
   same number of processes and --resume, completes them and merges.
   --resume with an existing OUT (an earlier finished or single-process run): its complete molecules
   are skipped and it is merged with the new shards.

Exit codes: rank 0 exits with the run's code, as a single-process run would (and prints the merged
summary); the other ranks exit 0 when the run finished (0 or 3) and with the agreed code otherwise.
torchrun itself exits 1 (with its ChildFailedError report) when any rank exits non-zero, so a run
with failed molecules (3) shows up as a failed launch: read the summary and the errors file.
"""

from __future__ import annotations

import argparse
import copy
import csv
import heapq
import itertools
import os
import re
import sys
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch

from .pipeline.io import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    InputError,
    ResumeError,
    input_kind,
    iter_inputs,
    scan_for_resume,
    sdf_records,
)
from .seeds import SHARD_PURPOSE, derive_seed

# Collectives wait for the slowest rank; generation can take days, so the process group's
# timeout (default 30 min in torch) must be long. Override with CONFGF_DIST_TIMEOUT_S.
DEFAULT_TIMEOUT_S = 7 * 24 * 3600
_MOL_ID = re.compile(rb"^>[^\n]*<mol_id>[^\n]*\n([^\r\n]*)", re.MULTILINE)


def world_size() -> int:
    """WORLD_SIZE from the environment (torchrun sets it), 1 outside a distributed launch."""
    return int(os.environ.get("WORLD_SIZE", "1") or "1")


def shard_path(out: Path, rank: int) -> Path:
    """OUT.rank{r}.sdf for OUT.sdf: the SDF rank r writes."""
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def shard_errors_path(out: Path, rank: int) -> Path:
    """Rank r's errors file (the single-process default name of its shard's)."""
    return Path(str(shard_path(out, rank)) + ".errors.tsv")


def shard_seed(seed: int, rank: int, world: int) -> int:
    """A well-mixed 64-bit seed of rank `rank` of `world` for a run with base `seed`."""
    return derive_seed(seed, rank, world, purpose=SHARD_PURPOSE)


@dataclass
class Shard:
    """One rank's share of the input: molecule k belongs to rank k % world.

    resumed: {mol_id: fingerprint of its smiles} of the molecules complete in a resumed OUT (all
    ranks'; each rank adopts its own).
    """

    rank: int
    world: int
    resumed: dict[int, int] = field(default_factory=dict)

    def owns(self, k: int) -> bool:
        return k % self.world == self.rank

    def adopt(self, done: dict[int, int]) -> dict[int, int]:
        """The molecules this rank need not sample: `done` (complete in its own shard file, from
        pipeline.io.scan_for_resume) plus its molecules complete in a resumed OUT. A shard holding another
        rank's molecule was written with another world size: ResumeError (it would be duplicated)."""
        foreign = next((k for k in done if not self.owns(k)), None)
        if foreign is not None:
            raise ResumeError(f"the shard of rank {self.rank} holds molecule {foreign}, which belongs to rank "
                              f"{foreign % self.world} of {self.world}: it was written by a run with another number "
                              "of processes; resume with that number, or drop --resume")
        return {**{k: fp for k, fp in self.resumed.items() if self.owns(k)}, **done}

    def skip(self, done: Container[int]) -> Container[int]:
        """generate_iter's `skip`: other ranks' molecules and this rank's finished ones."""
        return _Skip(self, done)


class _Skip:
    def __init__(self, shard: Shard, done: Container[int]):
        self.shard, self.done = shard, done

    def __contains__(self, k: object) -> bool:
        return not self.shard.owns(k) or k in self.done  # type: ignore[arg-type]


# ---- merging ----------------------------------------------------------------------------------------
def _keyed_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(mol_id, raw record) for every record of an SDF written by `generate`, streaming."""
    for rec in sdf_records(path):
        m = _MOL_ID.search(rec, max(rec.find(b"M  END"), 0))  # data items follow the mol block
        if m is None:
            raise ValueError(f"{path}: a record without a mol_id property")
        yield int(m.group(1)), rec


def merge_sdf(sources: list[Path], dest: Path) -> tuple[int, int]:
    """Merge SDFs whose records are ordered by mol_id into `dest` in mol_id order.

    Each molecule's records are in one source, so a stable k-way merge keyed by mol_id keeps them
    together and in order; memory is one record per source. Written to a temporary file and
    renamed over dest, so an interrupted merge leaves dest and the sources as they were.
    Returns (molecules, records).
    """
    tmp = dest.with_name(dest.name + ".merging")
    n_mols = n_recs = 0
    last = None
    with open(tmp, "wb") as fh:
        for mol_id, rec in heapq.merge(*(_keyed_records(p) for p in sources), key=lambda x: x[0]):
            fh.write(rec)
            n_recs += 1
            if mol_id != last:
                n_mols, last = n_mols + 1, mol_id
    os.replace(tmp, dest)
    return n_mols, n_recs


def _error_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)  # header
        for row in reader:
            yield int(row[0]), row


def merge_errors(sources: list[Path], dest: Path, always: bool) -> int:
    """Merge errors TSVs (mol_id, input, error; ordered by mol_id) into `dest` in mol_id order.
    Without rows and not `always`, no file is written and a stale dest is removed (the
    single-process rule). Returns the number of rows."""
    rows = heapq.merge(*(_error_rows(p) for p in sources), key=lambda x: x[0])
    first = next(rows, None)
    if first is None and not always:
        dest.unlink(missing_ok=True)
        return 0
    tmp = dest.with_name(dest.name + ".merging")
    n = 0
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["mol_id", "input", "error"])
        for _, row in itertools.chain([first] if first is not None else [], rows):
            writer.writerow(row)
            n += 1
    os.replace(tmp, dest)
    return n


# ---- the run ----------------------------------------------------------------------------------------
def _checks(args: argparse.Namespace) -> tuple[str | None, dict[int, int], bool]:
    """Rank 0, before any sampling: (fatal message or None, complete molecules of a resumed OUT,
    whether OUT is resumed)."""
    try:
        input_kind(args.input)
        if next(iter_inputs(args.input, 1, keep=lambda k: False), None) is None:
            return f"no molecules in {args.input} (empty, or only blank and comment lines)", {}, False
    except (InputError, OSError) as exc:
        return str(exc), {}, False
    out = Path(args.out)
    if not (args.resume and out.is_file()):
        return None, {}, False
    try:
        done = scan_for_resume(out)
    except (ResumeError, OSError) as exc:
        return f"cannot resume: {exc}", {}, False
    print(f"resume: {len(done)} molecules already complete in {out}", file=sys.stderr)
    return None, done, True


def generate_sharded(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Run `run` (cli.cmd_generate) on this rank's shard, agree on the outcome, merge on rank 0."""
    import torch.distributed as dist
    rank, world = int(os.environ["RANK"]), world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    cuda = str(args.device).startswith("cuda")
    if cuda and not torch.cuda.is_available():  # every rank sees the same: they all stop here
        if rank == 0:
            print("error: --device cuda requested but no CUDA device is available", file=sys.stderr)
        return EXIT_FATAL
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=float(os.environ.get("CONFGF_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    try:
        # Rank 0 checks the input and scans a resumed OUT (it may truncate a half-written tail)
        # before any rank reads them; the verdict goes to every rank, so all take the same path.
        payload: list[object] = [None]
        if rank == 0:
            try:
                payload[0] = _checks(args)
            except Exception as exc:  # whatever it is, the other ranks must hear of it, not wait
                payload[0] = (f"{type(exc).__name__}: {exc}", {}, False)
        dist.broadcast_object_list(payload, src=0, device=device)
        fatal, resumed, from_out = payload[0]  # type: ignore[misc]
        if fatal is not None:
            if rank == 0:
                print(f"error: {fatal}", file=sys.stderr)
            return EXIT_FATAL
        code = _run_rank(args, run, Shard(rank, world, resumed), device)
        code = _agree(code, device)
        if rank == 0:
            return _finish(args, world, code, from_out)
        # The other ranks' work is done. They exit 0 when the run finished: torchrun stops every
        # worker as soon as one exits non-zero, which would kill rank 0 in the middle of its merge;
        # rank 0 reports the run's code (3 when some molecules failed).
        return EXIT_OK if code in (EXIT_OK, EXIT_PARTIAL) else code
    finally:
        dist.destroy_process_group()


def _run_rank(args: argparse.Namespace, run: Callable[[argparse.Namespace], int], shard: Shard,
              device: torch.device) -> int:
    """cli.cmd_generate on this rank's shard; never raises, so every rank reaches the agreement."""
    out = Path(args.out)
    ns = copy.copy(args)
    ns.shard = shard
    ns.out = str(shard_path(out, shard.rank))
    ns.errors = str(shard_errors_path(out, shard.rank))  # always written; the merge applies --errors' rule
    ns.seed = shard_seed(args.seed, shard.rank, shard.world)
    ns.quiet = args.quiet or shard.rank != 0  # one progress bar (rank 0's), not world_size of them
    ns.device = str(device)
    try:
        return run(ns)
    except KeyboardInterrupt:
        return EXIT_SIGINT
    except Exception as exc:  # keep the other ranks from waiting forever on this one
        print(f"error: rank {shard.rank}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FATAL


def _agree(code: int, device: torch.device) -> int:
    """The run's exit code from every rank's: interrupted > fatal > some molecules failed > ok."""
    import torch.distributed as dist
    order = [EXIT_OK, EXIT_PARTIAL, EXIT_FATAL, EXIT_SIGINT, EXIT_SIGTERM]
    t = torch.tensor([order.index(code) if code in order else order.index(EXIT_FATAL)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return order[int(t.item())]


def _finish(args: argparse.Namespace, world: int, code: int, from_out: bool) -> int:
    """Rank 0 after the agreement: merge the shards into OUT (and the errors files), or keep them."""
    out = Path(args.out)
    shards = [shard_path(out, r) for r in range(world)]
    errors = [shard_errors_path(out, r) for r in range(world)]
    if code not in (EXIT_OK, EXIT_PARTIAL):
        print(f"not merged: the shards {shards[0]} .. {shards[-1]} hold what each rank finished; run the same "
              f"command with {world} processes and --resume to complete and merge them", file=sys.stderr)
        return code
    errors_path = Path(args.errors) if args.errors else Path(str(out) + ".errors.tsv")
    try:
        n_mols, n_confs = merge_sdf(([out] if from_out else []) + [p for p in shards if p.is_file()], out)
        n_err = merge_errors(errors, errors_path, always=args.errors is not None)
    except (OSError, ValueError) as exc:
        print(f"error: merging the shards into {out} failed: {exc}; the shards are kept", file=sys.stderr)
        return EXIT_FATAL
    for p in shards + errors:
        p.unlink(missing_ok=True)
    summary = f"merged {world} shards: {n_mols} molecules, {n_confs} conformers in {out}"
    if n_err:
        summary += f"; {n_err} errors in {errors_path}"
    print(summary, file=sys.stderr)
    return code


__all__ = ["Shard", "generate_sharded", "merge_errors", "merge_sdf", "shard_path", "shard_seed", "world_size"]
