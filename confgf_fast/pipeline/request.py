"""What one generate run is asked to do, built once by either front end and validated once.

`confgf-fast generate` builds its GenerateRequest from the parsed command line (from_args) and the
Python API from its keyword arguments (from_api: pipeline.generate / generate_iter); both then run
the same request (pipeline.run_request). Errors say what is wrong in the caller's own terms: the
request carries which vocabulary that is (`vocabulary`: "cli" names --chunk-size, "python" names
chunk_size=), so one check serves both.

What is not part of a request is where it runs and what it runs on: the inputs, the models, the
thread budget, the resumed set of molecules and the stats to fill (generate_iter's other arguments).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..chem.relax import RelaxOptions
from ..config import RELAX_AUTO, Runtime, Schedule, api_schedule, resolve_schedule
from ..model.elements import DEFAULT_MAX_HEAVY_ATOMS

DEFAULT_CHUNK_SIZE = 1000
DEFAULT_RETRIES = 2

# How each caller names a setting: (Python keyword, CLI flag).
_NAMES = {
    "num_confs": ("num_confs", "--num-confs"),
    "chunk_size": ("chunk_size", "--chunk-size"),
    "retries": ("retries", "--retries"),
    "precision": ("runtime precision", "--precision"),
    "energy": ("prune_rms, energy_window and sort_energy", "--prune-rms, --energy-window and --sort-energy"),
    "relax": ("relax", "--relax"),
}
# The CLI's schedule flags and the schedule field each sets (resolve_schedule's overrides).
LANGEVIN_FLAGS = {"--levels": "levels", "--steps-per-level": "steps_per_level", "--eps": "eps", "--bands": "bands"}
PROJECT_FLAGS = {"--num-steps": "num_steps", "--noise-scale": "noise_scale", "--init-oversample": "init_oversample"}


class RequestError(ValueError):
    """A request that cannot run, worded for its caller. `fatal`: the CLI exits 1 (EXIT_FATAL), not
    2 (EXIT_USAGE); only a malformed --bands is, as it always was."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


@dataclass(frozen=True)
class GenerateRequest:
    """One generate run's settings, resolved and checked.

    num_confs: conformers per molecule (an input's own count wins). schedule / runtime: what the
    sampler produces and how the network runs (config.resolve_schedule, config.Runtime); each
    model's own tuned settings are applied per model when the run starts (pipeline.tuned_schedule).
    device, seed, max_atoms (atoms per sampling batch; None: sampler.default_max_atoms),
    chunk_size (molecules read and sampled at a time), retries (resamplings of failed conformers),
    max_heavy_atoms (None: no limit), allow_unknown_elements, largest_fragment, trained_elements
    (atomic numbers the models know; None: each model's own): the per-molecule policy of
    prepare.py and pipeline/generate.py. relax, prune_rms, energy_window, sort_energy: relax.py ("auto":
    per model, its checkpoint's relax_default). progress: a progress bar on stderr.
    vocabulary: "python" or "cli", how errors name the settings.
    """

    num_confs: int = 10
    schedule: Schedule | None = None  # None: resolve_schedule()'s default, the `warm` schedule
    runtime: Runtime = field(default_factory=Runtime)
    device: str | torch.device = "cpu"
    seed: int = 0
    max_atoms: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    retries: int = DEFAULT_RETRIES
    max_heavy_atoms: int | None = DEFAULT_MAX_HEAVY_ATOMS
    allow_unknown_elements: bool = False
    largest_fragment: bool = True
    trained_elements: tuple[int, ...] | None = None
    relax: str | RelaxOptions | tuple[RelaxOptions, ...] = RELAX_AUTO
    prune_rms: float | None = None
    energy_window: float | None = None
    sort_energy: bool = False
    progress: bool = False
    vocabulary: str = "python"

    def __post_init__(self) -> None:
        if self.vocabulary not in ("python", "cli"):
            raise ValueError(f"vocabulary must be 'python' or 'cli', not {self.vocabulary!r}")
        if self.schedule is None:
            object.__setattr__(self, "schedule", resolve_schedule())
        if self.trained_elements is not None and not isinstance(self.trained_elements, tuple):
            object.__setattr__(self, "trained_elements", tuple(self.trained_elements))
        if not isinstance(self.relax, (str, RelaxOptions)):
            object.__setattr__(self, "relax", tuple(self.relax))
        if self.chunk_size < 1:
            raise RequestError(f"{self.name('chunk_size')} must be >= 1")
        if self.retries < 0:
            raise RequestError(f"{self.name('retries')} must be >= 0")
        if self.runtime.precision == "tf32" and not str(self.device).startswith("cuda"):
            fp32, bf16 = self.said("precision", "fp32", bare=True), self.said("precision", "bf16", bare=True)
            raise RequestError(f"{self.said('precision', 'tf32')} needs a CUDA device (on a CPU use {fp32} or {bf16})")
        if self.relax == "none" and self.needs_energy:
            raise RequestError(f"{self.name('energy')} work on energies: add "
                               f"{self.said('relax', 'mmff')} or {self.said('relax', 'xtb', bare=True)}")
        if isinstance(self.relax, str) and self.relax != RELAX_AUTO:
            # said before any weights load (RelaxError, e.g. xtb without tblite); "auto" is resolved
            # per weights when the run starts
            RelaxOptions(self.relax, self.prune_rms, self.energy_window, self.sort_energy)

    # ---- wording ------------------------------------------------------------------------------------
    def name(self, key: str) -> str:
        """How this request's caller names setting `key` (a keyword or a flag)."""
        python, cli = _NAMES.get(key, (key, "--" + key.replace("_", "-")))
        return cli if self.vocabulary == "cli" else python

    def said(self, key: str, value: str, bare: bool = False) -> str:
        """Setting `key` = `value` as the caller writes it: `--relax mmff`, `relax='mmff'` (bare:
        the value alone, as the second of two alternatives)."""
        if self.vocabulary == "cli":
            return value if bare else f"{self.name(key)} {value}"
        return repr(value) if bare else f"{self.name(key)}={value!r}"

    @property
    def needs_energy(self) -> bool:
        """An energy option is set (they need a relax method)."""
        return self.prune_rms is not None or self.energy_window is not None or self.sort_energy

    # ---- the two front ends -------------------------------------------------------------------------
    @classmethod
    def from_api(cls, num_confs: int = 10, *, sampler: Any = None, schedule: str | Schedule | None = None,
                 runtime: Runtime | None = None, caller: str = "generate", **options: Any) -> GenerateRequest:
        """The request of the Python API's keyword arguments (pipeline.generate / generate_iter).
        sampler / schedule as the CLI's --sampler / --schedule names, or schedule= a Schedule
        (config.api_schedule); the other keywords are the fields of this class. An unknown keyword
        is the TypeError Python raises for one, naming `caller`."""
        known = {f.name for f in fields(cls)} - {"schedule", "runtime", "vocabulary", "num_confs"}
        for key in options:
            if key not in known:
                raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")
        resolved, rt = api_schedule(sampler, schedule, runtime)
        return cls(num_confs=num_confs, schedule=resolved, runtime=rt, vocabulary="python", **options)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GenerateRequest:
        """The request of `confgf-fast generate`'s parsed command line (cli.build_parser).
        RequestError or RelaxError for options that cannot run, said before
        anything is read or loaded."""
        langevin = {flag: getattr(args, field) for flag, field in LANGEVIN_FLAGS.items()}
        project = {flag: getattr(args, field) for flag, field in PROJECT_FLAGS.items()}
        family = args.sampler
        if family is None and args.schedule is None and args.init is None:
            # Langevin-only options without a sampler named ask for Langevin (the default is project)
            family = "langevin" if any(v is not None for v in langevin.values()) else None
        try:
            preset = resolve_schedule(args.schedule, sampler=family, init=args.init)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        # dist runs the Langevin schedule (on distances): the Langevin options apply to it
        wrong = [k for k, v in (project if preset.sampler in ("langevin", "dist") else langevin).items()
                 if v is not None]
        if wrong:
            raise RequestError(f"{', '.join(wrong)} do not apply to the {preset.sampler} sampler")
        if args.init_oversample is not None and preset.init != "etkdg":
            raise RequestError("--init-oversample applies to the ETKDG warm start (--init etkdg) only")
        overrides = {LANGEVIN_FLAGS.get(k) or PROJECT_FLAGS[k]: v for k, v in {**langevin, **project}.items()
                     if v is not None}
        if args.no_stereo:
            overrides["stereo"] = False
        try:
            schedule = resolve_schedule(preset, overrides=overrides)
        except ValueError as exc:  # a malformed --bands
            raise RequestError(f"--bands: {exc}", fatal=True) from None
        runtime = Runtime(backend=args.backend, compile=args.compile, precision=args.precision,
                          cuda_graphs=args.cuda_graphs)
        return cls(num_confs=args.num_confs, schedule=schedule, runtime=runtime, device=args.device, seed=args.seed,
                   max_atoms=args.max_atoms, chunk_size=args.chunk_size, retries=args.retries,
                   max_heavy_atoms=args.max_heavy_atoms or None, allow_unknown_elements=args.allow_unknown_elements,
                   largest_fragment=args.largest_fragment, relax=args.relax, prune_rms=args.prune_rms,
                   energy_window=args.energy_window, sort_energy=args.sort_energy, progress=not args.quiet,
                   vocabulary="cli")


__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_RETRIES", "GenerateRequest", "RequestError"]
