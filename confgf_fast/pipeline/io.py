"""The files of `confgf-fast generate`: reading INPUT, the streamed SDF, --resume, the errors file,
and the exit codes the run ends with.

Split from cli.py so that distributed.py (which runs the same command once per rank and merges
the shards) and cli.py both use these pieces without importing each other. cli.py keeps the
argument parsing and the commands.

Exit codes of `confgf-fast generate` (the other commands use 0, 1, 2 and 130):
  0    every input molecule got all its conformers (warnings, e.g. a dropped salt counter-ion, allowed);
  1    fatal: missing / corrupt / mismatched weights, missing or unreadable input, no molecules in
       the input, --resume on an SDF that does not belong to this input, or an unexpected failure
       mid-run (the SDF then holds complete records of the molecules finished so far);
  2    usage error (bad options);
  3    finished, but some molecules failed or miss conformers: each is named on stderr and in the
       errors file (mol_id, input, error);
  130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: the SDF holds complete records of every
       molecule finished so far; run again with --resume to complete it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from ..sampling.prepare import MolInput
    from .generate import MolOutcome

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + signal number, the shell convention

# Suffixes that mark INPUT as a file name (so a missing file is reported as missing, not as an
# invalid SMILES): none of them can end a valid SMILES.
_FILE_SUFFIXES = {".smi", ".smiles", ".txt", ".csv", ".tsv", ".sdf", ".sd", ".mol"}


# Bounds on what one line / record of INPUT may cost (issue 26: input from files we did not write).
# A text line is read at most MAX_LINE_CHARS characters at a time; a longer one (e.g. a whole file
# without newlines) is skipped in bounded pieces and becomes one molecule's error. The per-molecule
# limits (SMILES length, atoms, SDF record bytes) are chem.molecule.MAX_SMILES_CHARS, chem.molecule.MAX_ATOMS and
# chem.molecule.MAX_SDF_RECORD_BYTES; a line may be longer than a SMILES (names, counts), hence its own bound.
MAX_LINE_CHARS = 100_000
_LABEL_CHARS = 60  # how much of an oversized input is quoted in its error (stderr, errors file)


class InputError(RuntimeError):
    """INPUT cannot be read at all (fatal), as opposed to one bad molecule in it."""


def _clip(text: str, n: int = _LABEL_CHARS) -> str:
    return text if len(text) <= n else text[:n] + "..."


@dataclass
class _Overlong:
    """A text line longer than MAX_LINE_CHARS: its first characters and its length (not kept)."""

    head: str
    length: int


def _bounded_lines(fh: IO, limit: int) -> Iterator[str | _Overlong]:
    """The lines of `fh` (text or binary), each read at most `limit` characters / bytes at a time:
    a line up to `limit` comes back whole, a longer one as _Overlong after the rest of it has been
    skipped in `limit`-sized pieces. Memory is O(limit) whatever the file holds."""
    nl = "\n" if isinstance(fh, io.TextIOBase) else b"\n"
    while True:
        line = fh.readline(limit)
        if not line:
            return
        if len(line) < limit or line.endswith(nl):
            yield line
            continue
        length, piece = len(line), fh.readline(limit)
        if not piece:
            yield line  # exactly `limit` long, at the end of the file
            return
        while piece:
            length += len(piece)
            if piece.endswith(nl):
                length -= 1  # the newline is not part of the line
                break
            piece = fh.readline(limit)
        head = line[:_LABEL_CHARS]
        yield _Overlong(head if isinstance(head, str) else head.decode("utf-8", "replace"), length)


# ---- input parsing --------------------------------------------------------------------------------
def input_kind(spec: str) -> str:
    """'sdf', 'text' or 'smiles' for INPUT; InputError if it names a file that cannot be read."""
    path = Path(spec)
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError:  # e.g. ENAMETOOLONG: a (long) SMILES on the command line is no file name
        is_dir = is_file = False
    if is_dir:
        raise InputError(f"input {spec} is a directory")
    if is_file:
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot read input file {spec}: permission denied")
        return "sdf" if path.suffix.lower() in (".sdf", ".sd", ".mol") else "text"
    if path.suffix.lower() in _FILE_SUFFIXES:
        raise InputError(f"input file not found: {spec}")
    return "smiles"


# Header names recognised in a text input's first line (case-insensitive): the SMILES column (any
# name ending in "smiles" also counts) and a name column.
_SMILES_HEADERS = ("smiles", "smi", "canonical_smiles", "isomeric_smiles")
_NAME_HEADERS = ("name", "title", "id", "mol_name", "molecule", "molecule_name", "compound", "compound_id",
                 "identifier")
_COUNT_HINTS = ("count", "n_conformers", "num_confs", "n_confs", "num_conformers", "confs", "conformers")


def _parses_as_smiles(text: str) -> bool:
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(text, sanitize=False) is not None


def _split_fields(line: str, delimiter: str | None) -> list[str]:
    """A line's fields: split on `delimiter` (',' or tab, csv quoting), or None: on any run of
    commas and whitespace (a header-less file, as earlier versions read it)."""
    if delimiter is None:
        return [p for p in re.split(r"[,\s]+", line) if p]
    return [f.strip() for f in next(csv.reader([line], delimiter=delimiter))]


@dataclass
class _Columns:
    """Where a text input keeps what (0-based column indices)."""

    delimiter: str | None = None  # see _split_fields
    smiles: int = 0
    name: int | None = None  # None: no name with a header, else the rest of the line (but the count)
    header: bool = False
    count: int | None = None  # an explicit count column; None: see auto_count
    count_label: str = ""
    auto_count: bool = False  # header-less `SMILES [count] [name]`: an integer second field is the count
    announce: Callable[[str], None] | None = None  # told once, at the first count read (auto_count)

    def parse(self, line: str, default_count: int) -> MolInput:
        from ..sampling.prepare import MolInput

        fields = _split_fields(line, self.delimiter)
        smi = fields[self.smiles] if self.smiles < len(fields) else ""
        count, error, count_at = default_count, None, self.count
        if self.auto_count and len(fields) >= 2 and re.fullmatch(r"[+-]?\d+", fields[1]):
            count_at = 1
            if self.announce is not None:
                self.announce(f"the second column holds numbers: read as each molecule's conformer count, in place "
                              f"of -n {default_count} (--count-column none reads it as the name instead)")
                self.announce = None
        if count_at is not None and count_at < len(fields) and fields[count_at]:
            try:
                count = int(fields[count_at])
            except ValueError:
                error = f"count column {self.count_label}: {fields[count_at]!r} is not an integer"
        if self.name is not None:
            name = fields[self.name] if self.name < len(fields) else ""
        elif self.header:
            name = ""
        else:
            name = " ".join(f for i, f in enumerate(fields) if i not in (self.smiles, count_at))
        return MolInput(smi, count, name=name, error=error)


def _columns(first: str, spec: str, count_column: str | None,
             note: Callable[[str], None] | None) -> tuple[_Columns, bool]:
    """A text input's layout from its first line -> (columns, whether that line is a header).

    A header is a first line whose first field does not parse as a SMILES and which names a SMILES
    column (_SMILES_HEADERS, or a name ending in "smiles"). count_column: None or "auto" (a file
    without a header: an integer second field is the count, announced through `note`; with a
    header: no counts, with a note on a column that looks like them), "none" (no counts), a 1-based
    column number, or (with a header) a column name. InputError for a column that is not there."""
    delimiter = "\t" if "\t" in first else "," if "," in first else None
    fields = _split_fields(first, delimiter)
    lower = [f.lower() for f in fields]
    smiles_col = next((i for i, f in enumerate(lower) if f in _SMILES_HEADERS), None)
    if smiles_col is None:
        smiles_col = next((i for i, f in enumerate(lower) if f.endswith("smiles")), None)
    header = smiles_col is not None and not _parses_as_smiles(fields[0])
    cols = _Columns() if not header else _Columns(
        delimiter=delimiter, smiles=smiles_col, name=next((i for i, f in enumerate(lower) if f in _NAME_HEADERS), None),
        header=True)
    mode = (count_column or "auto").lower()
    if mode == "auto":
        if not header:
            cols.auto_count, cols.count_label = True, "2"
            cols.announce = None if note is None else (lambda msg: note(f"{spec}: {msg}"))
        elif note is not None:
            hint = next((f for f in fields if f.lower() in _COUNT_HINTS), None)
            if hint is not None:
                note(f"column {hint!r} of {spec} is not read as conformer counts (every molecule gets -n); "
                     f"--count-column {hint} reads it")
    elif mode == "none":
        pass
    elif mode.isdigit():
        cols.count = int(mode) - 1
        if cols.count < 0 or cols.count == cols.smiles:
            raise InputError(f"--count-column {count_column}: not a column apart from the SMILES (columns are "
                             "numbered from 1)")
        cols.count_label = mode + (f" ({fields[cols.count]})" if header and cols.count < len(fields) else "")
    elif not header:
        raise InputError(f"--count-column {count_column}: {spec} has no header line naming its columns; give "
                         "the column's number (e.g. --count-column 2)")
    elif mode in lower:
        cols.count = lower.index(mode)
        cols.count_label = repr(fields[cols.count])
    else:
        raise InputError(f"--count-column {count_column}: no such column in the header of {spec} "
                         f"({', '.join(fields)})")
    if cols.count is not None and cols.name == cols.count:
        cols.name = None
    return cols, header


@dataclass
class SdfBlock:
    """One SDF record as read from the file: `data` (its bytes, None when it was longer than the
    reader's byte limit and so not kept), `size` (its length in bytes) and `title` (its first line)."""

    data: bytes | None
    size: int
    title: str


def sdf_blocks(path: Path, max_bytes: int | None = None) -> Iterator[SdfBlock]:
    """The records of an SDF, one at a time, in O(max_bytes) memory: a record longer than max_bytes
    (None: no limit) is skipped to its `$$$$` line and comes back with data None, so one huge
    record costs its reading time but not its size in memory. Lines are read in pieces of at most
    64 KiB, so a record without newlines is bounded too."""
    block: list[bytes] = []
    size, title, kept, at_line_start = 0, None, True, True
    with open(path, "rb") as fh:
        while line := fh.readline(1 << 16):
            if title is None:
                title = line.split(b"\n", 1)[0].decode("utf-8", "replace").strip()[:_LABEL_CHARS]
            size += len(line)
            kept = kept and (max_bytes is None or size <= max_bytes)
            if kept:
                block.append(line)
            else:
                block = []
            if at_line_start and line.rstrip(b"\r\n") == b"$$$$":
                yield SdfBlock(b"".join(block) if kept else None, size, title)
                block, size, title, kept = [], 0, None, True
            at_line_start = line.endswith(b"\n")
    if not kept or any(x.strip() for x in block):  # a last record without its $$$$ terminator
        yield SdfBlock(b"".join(block) if kept else None, size, title or "")


def sdf_records(path: Path) -> Iterator[bytes]:
    """The raw records of an SDF, one at a time (streaming: never the whole file in memory). For
    SDFs we wrote ourselves (--resume, the merge of shards); INPUT is read by sdf_blocks with a
    byte limit."""
    for b in sdf_blocks(path):
        assert b.data is not None  # no limit given
        yield b.data


_V2000_COUNTS = re.compile(rb"^\s*(\d{1,3})")
_V3000_COUNTS = re.compile(rb"^M  V30 COUNTS (\d+)", re.MULTILINE)


def _declared_atoms(block: bytes) -> int | None:
    """The atom count an SDF record's header declares (V2000 counts line or V3000 COUNTS), read
    before RDKit parses anything; None when there is none to read (RDKit will say why)."""
    m = _V3000_COUNTS.search(block, 0, 4096)
    if m:
        return int(m.group(1))
    lines = block.split(b"\n", 4)
    if len(lines) > 3:
        counts = lines[3]
        m = _V2000_COUNTS.match(counts[:3])
        if m and b"V3000" not in counts:
            return int(m.group(1))
    return None


def _read_sdf_record(k: int, block: bytes, default_count: int) -> MolInput:
    from rdkit import Chem

    from ..chem.molecule import atom_count_error
    from ..sampling.prepare import MolInput

    title = block.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    label = f"SDF record {k}" + (f" ({_clip(title)})" if title else "")
    declared = _declared_atoms(block)
    too_large = atom_count_error(declared) if declared is not None else None
    if too_large is not None:  # said before RDKit builds a Mol of that size
        return MolInput(None, default_count, text=label, name=_clip(title), error=f"{label}: {too_large}; not read")
    rec = next(Chem.ForwardSDMolSupplier(io.BytesIO(block), removeHs=False), None)
    if rec is None:
        # Read it again unsanitised only to say why RDKit refused it.
        raw = next(Chem.ForwardSDMolSupplier(io.BytesIO(block), removeHs=False, sanitize=False), None)
        why = "malformed record (atom/bond block or counts line)"
        if raw is not None:
            try:
                Chem.SanitizeMol(raw)
            except Exception as exc:  # valence / kekulisation problems, as RDKit words them
                why = str(exc)
        return MolInput(None, default_count, text=label, name=title, error=f"unreadable {label}: {why}")
    too_large = atom_count_error(rec.GetNumAtoms())
    if too_large is not None:  # a counts line that under-declared
        return MolInput(None, default_count, text=label, name=_clip(title), error=f"{label}: {too_large}")
    if rec.HasProp("smiles"):
        # One line: it is written back as an SDF property, and --resume reads only first lines.
        text = " ".join(rec.GetProp("smiles").splitlines())
    else:
        try:
            text = Chem.MolToSmiles(Chem.RemoveHs(rec))
        except Exception:  # RemoveHs can refuse odd hydrogens; the SMILES is only a label here
            text = Chem.MolToSmiles(rec)
    return MolInput(rec, default_count, text=text, name=title)


def _oversized_sdf_record(k: int, b: SdfBlock, default_count: int) -> MolInput:
    from ..chem.molecule import MAX_SDF_RECORD_BYTES
    from ..sampling.prepare import MolInput

    label = f"SDF record {k}" + (f" ({_clip(b.title)})" if b.title else "")
    return MolInput(None, default_count, text=label, name=_clip(b.title),
                    error=f"{label}: {b.size:,} bytes, more than the limit of {MAX_SDF_RECORD_BYTES:,} for one record "
                          "(chem.molecule.MAX_SDF_RECORD_BYTES); not read")


def _checked_smiles(m: MolInput) -> MolInput:
    """m, or in its place an error for a SMILES over chem.molecule.MAX_SMILES_CHARS (never parsed)."""
    from ..chem.molecule import smiles_length_error

    if isinstance(m.source, str):
        too_long = smiles_length_error(len(m.source))
        if too_long is not None:
            return type(m)(None, m.num_confs, text=_clip(m.source), name=_clip(m.name), error=too_long)
    return m


def _overlong_line(line: _Overlong, default_count: int) -> MolInput:
    from ..sampling.prepare import MolInput

    return MolInput(None, default_count, text=line.head.strip() + "...",
                    error=f"input line of {line.length:,} characters, more than the limit of {MAX_LINE_CHARS:,} "
                          "(pipeline.io.MAX_LINE_CHARS); not read")


def iter_inputs(spec: str, default_count: int, keep: Callable[[int], bool] | None = None, *,
                count_column: str | None = None, note: Callable[[str], None] | None = None) -> Iterator[MolInput]:
    """INPUT -> MolInput per molecule, streaming (a file is read one line / record at a time).

    Bounded: a line over MAX_LINE_CHARS, a SMILES over chem.molecule.MAX_SMILES_CHARS, an SDF record over
    chem.molecule.MAX_SDF_RECORD_BYTES or one declaring more than chem.molecule.MAX_ATOMS atoms becomes that
    molecule's error (MolInput.error) without being parsed, and the input goes on; memory is
    O(those limits), not O(file).

    INPUT is an .sdf file (one molecule per record; unreadable records become per-molecule errors),
    a text file with one SMILES per line, or else a SMILES string. Text files: blank lines and lines
    starting with '#' are skipped and do not count as molecules. A first line that names its
    columns (a header: its first field is no SMILES and one field is `smiles`, see _columns) is
    read as such, not as a molecule: the columns are then split at its delimiter (comma, tab or
    whitespace), the SMILES come from the `smiles` column and names from a `name` / `id` / `title`
    column. Without a header the line is `SMILES [count] [name]`: an integer second field is that
    molecule's conformer count (announced once through `note`), the rest of the line the name.
    count_column (--count-column): None / "auto" as just said, "none" (no counts: the second
    field is part of the name), or the column, by 1-based number or header name, that holds each
    molecule's conformer count (an empty field: default_count). With a header, counts are read
    only from a named count column; `note` hears of a column that looks like counts.
    keep(k) False: molecule k is yielded as an unparsed placeholder (a sharded run's other ranks'
    molecules: positions stay global, and no rank parses every SDF record).
    """
    from ..sampling.prepare import MolInput

    kind = input_kind(spec)
    if (count_column or "auto").lower() not in ("auto", "none") and kind != "text":
        what = "an SDF file" if kind == "sdf" else "a SMILES string"
        raise InputError(f"--count-column applies to a text file of SMILES, not to {what}")
    placeholder = MolInput(None, default_count, text="", error="not read (another shard's molecule)")
    if kind == "smiles":
        yield _checked_smiles(MolInput(spec, default_count)) if keep is None or keep(0) else placeholder
    elif kind == "sdf":
        from ..chem.molecule import MAX_SDF_RECORD_BYTES

        for k, b in enumerate(sdf_blocks(Path(spec), MAX_SDF_RECORD_BYTES)):
            if keep is not None and not keep(k):
                yield placeholder
            elif b.data is None:
                yield _oversized_sdf_record(k, b, default_count)
            else:
                yield _read_sdf_record(k, b.data, default_count)
    else:
        # errors="replace": a stray non-UTF-8 byte makes that line an invalid SMILES, not a crash.
        with open(spec, encoding="utf-8", errors="replace") as fh:
            k, cols = 0, None
            for line in _bounded_lines(fh, MAX_LINE_CHARS):
                if isinstance(line, _Overlong):  # one molecule's error; takes no part in the layout
                    if line.head.lstrip().startswith("#"):
                        continue  # a (long) comment
                    yield _overlong_line(line, default_count) if keep is None or keep(k) else placeholder
                    k += 1
                    continue
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if cols is None:
                    cols, header = _columns(line, spec, count_column, note)
                    if header:
                        continue
                yield _checked_smiles(cols.parse(line, default_count)) if keep is None or keep(k) else placeholder
                k += 1


def count_sdf_records(path: Path, block_size: int = 1 << 24) -> int:
    """The records of an SDF as sdf_records reads them, counted in large blocks: `$$$$` lines, plus
    a last record without its terminator."""
    n, carry = 0, b"\n"  # carry: the end of the previous block, so a terminator split across blocks is seen
    with open(path, "rb") as fh:
        while block := fh.read(block_size):
            data = carry + block
            for term in (b"\n$$$$\n", b"\n$$$$\r\n"):
                n += data.count(term) - carry.count(term)  # those inside `carry` were counted before
            carry = data[-6:]
    if carry.endswith((b"\n$$$$", b"\n$$$$\r")):
        n += 1  # the last terminator has no newline
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - (1 << 20)))
        end = b"\n" + fh.read()
    cut = max(end.rfind(b"\n$$$$\n"), end.rfind(b"\n$$$$\r\n"), end.rfind(b"\n$$$$"))
    rest = end[cut + 5:] if cut >= 0 else end
    if (cut >= 0 or n == 0 or size > 1 << 20) and rest.strip():
        n += 1  # a last record without $$$$
    return n


def count_inputs(spec: str) -> int | None:
    """How many molecules INPUT holds, by a cheap pass over the file (SDF: its `$$$$` lines plus
    an unterminated last record; text: non-blank, non-comment lines less a header), for the
    progress bar's total; None if the file cannot be read."""
    try:
        kind = input_kind(spec)
        if kind == "smiles":
            return 1
        if kind == "sdf":
            return count_sdf_records(Path(spec))
        n, header_checked = 0, False
        with open(spec, "rb") as fh:
            for raw in _bounded_lines(fh, MAX_LINE_CHARS):
                if isinstance(raw, _Overlong):  # one molecule (its error), as iter_inputs yields it
                    n += not raw.head.lstrip().startswith("#")
                    continue
                line = raw.strip()
                if not line or line.startswith(b"#"):
                    continue
                if not header_checked:
                    header_checked = True
                    if _columns(line.decode("utf-8", "replace"), spec, None, None)[1]:
                        continue
                n += 1
        return n
    except (OSError, InputError):
        return None


class CountedInputs:
    """An iterator that knows its length (so generate_iter's progress bar shows a total)."""

    def __init__(self, items: Iterator[MolInput], n: int):
        self.items, self.n = items, n

    def __iter__(self) -> CountedInputs:
        return self

    def __next__(self) -> MolInput:
        return next(self.items)

    def __len__(self) -> int:
        return self.n


def read_inputs(spec: str, default_count: int, count_column: str | None = None) -> list[tuple[str, object, int]]:
    """INPUT -> [(smiles_as_given, smiles_or_mol, num_confs)] (all of it in memory; see iter_inputs)."""
    return [(m.given(), m.source, m.num_confs) for m in iter_inputs(spec, default_count, count_column=count_column)]


# ---- output: streaming SDF, errors file, resume ---------------------------------------------------
def input_fingerprint(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "replace"))


class ResumeError(RuntimeError):
    """--resume on an output that was not written by `generate` for this input."""


def scan_for_resume(path: Path) -> dict[int, int]:
    """Molecules complete in an SDF written by `generate`, as {mol_id: fingerprint of its smiles}.

    Records of one molecule are consecutive and carry mol_id and num_confs. The file is cut after
    the longest prefix of complete molecules (a molecule with all num_confs records and no mol_id
    seen before), dropping a half-written tail, so appending to it yields no duplicates and no
    truncated record. Files without num_confs (older versions): the last molecule is redone.
    """
    done: dict[int, int] = {}
    keep_end = 0  # byte offset after the last molecule of the complete prefix
    group: dict | None = None  # the molecule being read: id, fingerprint, records, expected, end
    prefix_ok = True

    def close_group(at_eof: bool) -> None:
        nonlocal keep_end, prefix_ok
        if group is None or not prefix_ok:
            return
        exp = group["expected"]
        complete = group["n"] == exp if exp is not None else not at_eof
        if complete and group["id"] not in done:
            done[group["id"]] = group["fp"]
            keep_end = group["end"]
        else:
            prefix_ok = False

    offset, in_data, key, props = 0, False, None, {}
    with open(path, "rb") as fh:
        for line in fh:
            offset += len(line)
            s = line.rstrip(b"\r\n")
            if s == b"$$$$":
                if "mol_id" not in props:
                    raise ResumeError(f"{path} has a record without a mol_id property: not written by "
                                      "`confgf-fast generate`; use another --out or drop --resume")
                try:
                    mol_id = int(props["mol_id"])
                    expected = int(props["num_confs"]) if "num_confs" in props else None
                except ValueError as exc:
                    raise ResumeError(f"{path}: unreadable mol_id/num_confs property ({exc})") from None
                if group is None or group["id"] != mol_id:
                    close_group(at_eof=False)
                    given = props.get("input_smiles", props.get("smiles", ""))  # the input as given
                    group = {"id": mol_id, "fp": input_fingerprint(given), "n": 0, "expected": expected}
                group["n"] += 1
                group["end"] = offset
                in_data, key, props = False, None, {}
            elif key is not None:
                props[key] = s.decode("utf-8", "replace")  # first line of the value is all we write
                key = None
            elif s.startswith(b"M  END"):
                in_data = True  # data items follow the mol block; a title starting with '>' is not one
            elif in_data and s.startswith(b">"):
                m = re.match(rb">.*?<([^>]*)>", s)
                key = m.group(1).decode("utf-8", "replace") if m else None
    close_group(at_eof=True)
    if keep_end < offset:
        os.truncate(path, keep_end)
    return done


class SdfStream:
    """Appends whole molecules to the output SDF: each molecule's records go out in one write and
    are flushed, so the file is valid after every molecule."""

    def __init__(self, path: Path, append: bool, run_props: dict | None = None,
                 model_props: Sequence[dict] = ()):
        self.fh = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.run_props = run_props or {}  # the same on every record
        # model_props[g]: on the records of molecules sampled by the run's model g (MolOutcome.model),
        # e.g. the `sampler` provenance naming those weights.
        self.model_props = list(model_props)

    def write(self, out: MolOutcome) -> int:
        from rdkit import Chem

        from ..chem.molecule import write_sdf
        from .generate import center_conformers

        mol = center_conformers(Chem.Mol(out.mol))  # written centred at the origin (centroid of all atoms)
        mol.SetProp("_Name", out.name or f"mol{out.index}")
        props = {"smiles": out.sampled_smiles or out.text, "mol_id": out.index, "num_confs": mol.GetNumConformers(),
                 **self.run_props, **(self.model_props[out.model] if out.model < len(self.model_props) else {})}
        if out.sampled_smiles is not None:  # a salt's kept fragment was sampled: the input is kept beside it
            props["input_smiles"] = out.text
        if out.warnings:
            props["warnings"] = "; ".join(out.warnings)
        buf = io.StringIO()
        writer = Chem.SDWriter(buf)
        flags = out.conf_flags or [{} for _ in range(mol.GetNumConformers())]
        n = write_sdf(writer, mol, props=props, conf_props=[{"conf_id": c, **f} for c, f in enumerate(flags)])
        writer.flush()
        self.fh.write(buf.getvalue())
        writer.close()
        self.fh.flush()
        return n

    def close(self) -> None:
        self.fh.close()


class ErrorLog:
    """The errors file: TSV with columns mol_id, input, error (csv quoting for tabs / newlines).
    Opened at the first error, or at start when `always` (an explicit --errors PATH)."""

    def __init__(self, path: Path, always: bool):
        self.path, self.fh, self.writer, self.count = path, None, None, 0
        if always:
            self._open()
        elif path.exists():
            path.unlink()  # a stale errors file of an earlier run would describe another output

    def _open(self) -> None:
        self.fh = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed in close())
        self.writer = csv.writer(self.fh, delimiter="\t", lineterminator="\n")
        self.writer.writerow(["mol_id", "input", "error"])

    def add(self, mol_id: int, text: str, error: str) -> None:
        if self.fh is None:
            self._open()
        self.writer.writerow([mol_id, text, error])
        self.fh.flush()
        self.count += 1

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def checked_against(items: Iterator[MolInput], done: dict[int, int], out: Path) -> Iterator[MolInput]:
    """Pass inputs through, checking that molecules already in the resumed SDF are the same inputs
    (by their `smiles` as given) and that the SDF has no molecule beyond the end of the input."""
    k = -1
    for k, inp in enumerate(items):
        if k in done and done[k] != input_fingerprint(inp.given()):
            raise ResumeError(f"{out} does not belong to this input: its molecule {k} is not {inp.given()!r}; "
                              "use another --out or drop --resume")
        yield inp
    if done and max(done) > k:
        raise ResumeError(f"{out} does not belong to this input: it has molecule {max(done)}, the input only "
                          f"{k + 1} molecules; use another --out or drop --resume")


def remove_if_empty(path: Path) -> bool:
    """Delete `path` if it is a 0-byte file; True if it was deleted."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()
            return True
    except OSError:
        pass  # e.g. a read-only directory: the empty file stays, which is harmless
    return False
