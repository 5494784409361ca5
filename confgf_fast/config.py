"""All configuration in one place: model shape, noise levels, training and sampling settings.

Defaults reproduce the official ConfGF QM9 setup (DeepGraphLearning/ConfGF, config/qm9_default.yml).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import ClassVar

import torch

# Edge-type vocabulary of the extended graph (see chem/molecule.py): 1-hop pairs carry their bond type,
# 2-hop ("angle") and 3-hop ("dihedral") pairs one type each. A graph of higher order (ModelConfig.
# graph_order) gives each further hop count h its own type, EDGE_ANGLE + h - 2, so "type < EDGE_ANGLE
# + k - 2" always means "within k - 1 bonds" whatever the order.
EDGE_SINGLE, EDGE_DOUBLE, EDGE_TRIPLE, EDGE_AROMATIC, EDGE_ANGLE, EDGE_DIHEDRAL = range(6)
NUM_EDGE_TYPES = 6
# ConfGF's graph: pairs within 3 bonds (bonds, angles, torsions), what both shipped models use.
DEFAULT_GRAPH_ORDER = 3


def hop_edge_type(hop: int) -> int:
    """Edge type of a pair `hop` >= 2 bonds apart (EDGE_ANGLE at 2, EDGE_DIHEDRAL at 3, then one per hop)."""
    if hop < 2:
        raise ValueError(f"hop_edge_type is for pairs at least 2 bonds apart (got {hop}); bonds carry their bond type")
    return EDGE_ANGLE + hop - 2


def edge_types_for_order(order: int) -> int:
    """Size of the edge-type vocabulary a graph of this order uses (6 for ConfGF's order 3)."""
    return hop_edge_type(order) + 1 if order >= 2 else EDGE_ANGLE
# Node input is the atomic number; the embedding table covers Z < 100 like the official code.
NUM_ATOM_TYPES = 100


@dataclass
class ModelConfig:
    """Shape of the score network (model.ScoreNet)."""

    hidden_dim: int = 256
    num_layers: int = 4
    num_atom_types: int = NUM_ATOM_TYPES
    num_edge_types: int = NUM_EDGE_TYPES
    # Pairs within this many bonds are the graph's edges (graph.extended_graph). 3 is ConfGF's; a
    # higher order also scores longer-range distances (1-5, 1-6 pairs: what fixes a rotamer against
    # the rest of a drug-size molecule), each hop count with an edge type of its own.
    graph_order: int = DEFAULT_GRAPH_ORDER
    # Messages of the GINE layers pass along the pairs within this many bonds only (ConfGF's graph);
    # the pairs beyond, up to graph_order, are scored from the node states, not summed into them.
    # Why: the node sums grow with the neighbour count (see model.ScoreNet's init), so a model of
    # order 3 fine-tuned with messages over its 2.4x as many order-6 pairs started at a loss ~1e9
    # instead of ~24 (drug data, measured); with messages on the order-3 pairs it starts where it was.
    message_order: int = DEFAULT_GRAPH_ORDER

    def __post_init__(self) -> None:
        if self.graph_order < 1:
            raise ValueError(f"graph_order must be at least 1 (got {self.graph_order})")
        if not 1 <= self.message_order <= self.graph_order:
            raise ValueError(f"message_order must be between 1 and graph_order={self.graph_order} "
                             f"(got {self.message_order})")
        need = edge_types_for_order(self.graph_order)
        if self.num_edge_types < need:
            raise ValueError(f"a graph of order {self.graph_order} has {need} edge types; "
                             f"num_edge_types is {self.num_edge_types}")

    @classmethod
    def preset(cls, name: str) -> ModelConfig:
        """`paper` = the official 256 x 4 network (~0.8 M parameters); `small` = 128 x 4."""
        presets = {"paper": cls(256, 4), "small": cls(128, 4), "tiny": cls(32, 2)}
        if name not in presets:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(presets)}")
        return presets[name]


@dataclass
class NoiseConfig:
    """Noise levels sigma_1 > ... > sigma_L, geometric from sigma_begin to sigma_end (angstrom)."""

    sigma_begin: float = 10.0
    sigma_end: float = 0.01
    num_levels: int = 50

    def sigmas(self, device: torch.device | str | None = None) -> torch.Tensor:
        """[L] float32, descending."""
        s = torch.logspace(
            math.log10(self.sigma_begin), math.log10(self.sigma_end), self.num_levels, dtype=torch.float64
        )
        return s.to(dtype=torch.float32, device=device)


# Relaxation after sampling (relax.py). A checkpoint may name one of these as its `relax_default`
# (export-weights --relax-default): what `relax="auto"`, generate's default, does to the molecules
# those weights sample.
RELAX_METHODS = ("none", "mmff", "mmff94s", "xtb")
RELAX_AUTO = "auto"


def check_relax_default(value: object) -> str:
    """`value` if it names a relax method (RELAX_METHODS), else ValueError."""
    if value not in RELAX_METHODS:
        raise ValueError(f"relax_default must be one of {', '.join(RELAX_METHODS)}, not {value!r}")
    return value


@dataclass
class TrainConfig:
    """Denoising score matching on distances (train.py)."""

    batch_size: int = 128  # conformers per step
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_steps: int = 10_000
    log_every: int = 100
    val_every: int = 1_000
    save_every: int = 1_000
    val_batches: int = 8
    grad_clip: float = 0.0  # 0 = off (the official code does not clip)
    # Fraction of conformers perturbed in coordinates instead of per distance (train.py); 0 = the
    # official objective.
    coord_noise: float = 0.0
    coord_noise_scale: float = 0.8
    # Exponential moving average of the weights kept alongside the raw ones (train.py): the
    # average is what export-weights ships by default. 0 = off.
    ema_decay: float = 0.999
    # Cosine decay of the learning rate over the run's last anneal_steps steps (0 = none): from the
    # rate in force when the decay starts down to anneal_to, so a run ends converged instead of
    # stopping at the plateau scheduler's floor. The plateau scheduler is not stepped meanwhile.
    anneal_steps: int = 0
    anneal_to: float = 0.0
    seed: int = 2021


def parse_bands(spec: str) -> list[tuple[float, int, int]]:
    """"2:6x20,0.1:21x36,0:6x20" -> [(2.0, 6, 20), (0.1, 21, 36), (0.0, 6, 20)] (LangevinSchedule.bands).
    Floors must decrease; N >= 1 levels and S >= 1 steps per item."""
    bands = []
    for item in spec.split(","):
        try:
            floor, rest = item.split(":")
            n, steps = rest.lower().split("x")
            band = (float(floor), int(n), int(steps))
        except ValueError:
            raise ValueError(f"bad band {item!r} in {spec!r}; expected 'floor:NxS', e.g. '0.1:21x36'") from None
        if band[1] < 1 or band[2] < 1:
            raise ValueError(f"band {item!r}: levels and steps must be >= 1")
        if bands and band[0] >= bands[-1][0]:
            raise ValueError(f"band floors must decrease left to right: {spec!r}")
        bands.append(band)
    if not bands:
        raise ValueError("empty bands spec")
    return bands


# ---- sampling: what a sampler produces (Schedule) and how it runs (Runtime) ------------------------
#
# A schedule is frozen: it is built once, by resolve_schedule (presets, the caller's overrides, a
# checkpoint's tuned settings), and handed to the sampler as it is. The one family field
# `sampler` (a class constant) says which sampler function runs it (sampler.sample).


@dataclass(frozen=True)
class Schedule:
    """What every sampler family shares: the preset `name` a schedule came from (provenance and
    the key of a checkpoint's tuned settings; "custom" for one built by hand from no preset) and
    the stereo guidance (stereo.py).

    Stereo guidance keeps the input's tetrahedral centres and double-bond cis/trans: at levels with
    sigma <= stereo_sigma_max the force -(stereo_strength / sigma^2) grad P of a flat-bottom stereo
    penalty P is added to each step, clipped to |F| <= clip per atom (clip also bounds the
    Langevin samplers' network score); afterwards mostly-inverted conformers are reflected.
    stereo=False samples exactly as without it.

    `explicit` (not compared, not in the tag) names the fields the caller set through
    resolve_schedule's overrides: a checkpoint's tuned settings never replace those.
    Subclasses are the families; build them with resolve_schedule, not by hand."""

    sampler: ClassVar[str] = ""
    name: str = "custom"
    clip: float = 1000.0
    stereo: bool = True
    stereo_strength: float = 5.0
    stereo_sigma_max: float = 0.5
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.name != "custom" and SCHEDULES.get(self.name) != self.sampler:
            mine = ", ".join(k for k, v in SCHEDULES.items() if v == self.sampler)
            raise ValueError(f"{type(self).__name__} name must be one of its presets ({mine}) or 'custom', "
                             f"not {self.name!r}")

    # Where the trajectory starts and how many samples make one output conformer: fields of the
    # projected family (ProjectSchedule), constants of the others, so generic code reads them alike.
    @property
    def init(self) -> str:
        return "random"

    @property
    def oversample(self) -> int:
        return 1

    @property
    def init_oversample(self) -> int:
        return 1

    @property
    def select_window(self) -> float | None:
        return None

    @property
    def select_temperature(self) -> float | None:
        return None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The settable fields of this family (what overrides may name), in tag order."""
        names = [f.name for f in fields(cls) if f.name not in ("name", "explicit")]
        return tuple(sorted(names, key=lambda n: _TAG_ORDER.index(n) if n in _TAG_ORDER else len(_TAG_ORDER)))

    def reference(self) -> Schedule:
        """The preset this schedule is compared with (its `name`'s; the family's defaults for "custom")."""
        return preset(self.name) if self.name in SCHEDULES else type(self)()

    def describe(self) -> str:
        """`key=value` words naming the sampler, its schedule preset and every field that differs
        from the preset (the start of the SDF `sampler` property). Derived from the fields, so no
        field can be left out of the provenance."""
        words = [f"sampler={self.sampler}", f"schedule={self.name}"]
        base = self.reference()
        words += [f"{f}={getattr(self, f)}" for f in self.field_names() if getattr(self, f) != getattr(base, f)]
        if self.init != "random" and f"init={self.init}" not in words:
            words.append(f"init={self.init}")  # a warm start is always named, whatever the preset
        if self.init == "etkdg" and f"init_oversample={self.init_oversample}" not in words:
            words.append(f"init_oversample={self.init_oversample}")
        if self.init == "etkdg":  # oversample applies to sampling from noise only
            words = [w for w in words if not w.startswith("oversample=")]
        elif self.oversample > 1 and f"oversample={self.oversample}" not in words:
            words.append(f"oversample={self.oversample}")  # always named: it multiplies nfe
        for name in ("select_window", "select_temperature"):
            value = getattr(self, name)
            if self.init == "etkdg" or self.oversample <= 1:  # energy-aware selection: oversampled noise only
                words = [w for w in words if not w.startswith(f"{name}=")]
            elif value is not None and f"{name}={value}" not in words:
                words.append(f"{name}={value}")  # always named: it changes the output
        return " ".join(words)


@dataclass(frozen=True)
class LangevinSchedule(Schedule):
    """Annealed Langevin dynamics (sampler.langevin_sample); the defaults are the `paper` preset.

    Level l uses sigma_l and step size alpha_l = eps * (sigma_l / sigma_L)^2; each of the
    `steps_per_level` steps moves R <- R + alpha_l * clip(S(R)) + sqrt(2 alpha_l) z.
    `levels` picks a subset of the model's noise levels (evenly spaced indices); None = all.
    `bands` (when set) replaces both: a spec like "2:6x20,0.1:21x36,0:6x20" read left to right from
    the largest sigma, each item "floor:NxS" = of the levels with floor < sigma_l (and below the
    previous item's floor) visit N evenly spaced ones with S steps each (sampler.level_plan).
    """

    sampler: ClassVar[str] = "langevin"
    name: str = "paper"
    steps_per_level: int = 100
    eps: float = 2.4e-6
    levels: int | None = None
    bands: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bands is not None:
            parse_bands(self.bands)  # ValueError if malformed


@dataclass(frozen=True)
class DistSchedule(LangevinSchedule):
    """ConfGFDist, the paper's two-stage ablation (sampler.dist_sample): the Langevin schedule's
    steps on the distances, then inner_iters stress-majorisation sweeps embed them (from
    N(0, init_scale^2) coordinates; the first half in embed_dims dimensions when > 3; far pairs held
    apart by repel as in ProjectSchedule). The defaults are the `dist` preset."""

    sampler: ClassVar[str] = "dist"
    name: str = "dist"
    eps: float = 2e-6
    inner_iters: int = 1000
    embed_dims: int = 4
    init_scale: float = 1.0
    repel: float = 0.0
    repel_every: int = 10


@dataclass(frozen=True)
class ProjectSchedule(Schedule):
    """Projected denoising (sampler.project_sample); the defaults are the `quick` preset.

    Network evaluations = num_steps + final_steps. Its levels: num_steps values from sigma_max down
    to sigma_min (0 = the model's smallest), Karras-spaced with exponent rho (1 = linear,
    0 = geometric). At each level one evaluation gives the Tweedie estimate of every edge length,
    d_hat = d + tweedie * sigma^2 * s (the network is told eval_scale * sigma), and inner_iters
    stress-majorisation sweeps (no network) move the coordinates to it; then fresh coordinate
    noise noise_scale * sigma_next re-noises the state for the next level, except where
    sigma_next <= quiet_below; final_steps noise-free evaluations at final_sigma (0 = the last
    level) polish the result. The start is N(0, init_scale^2) per atom; the stereo force acts as
    stereo_gain * sigma^2 * F after each projection. embed_dims = 4 samples in 4D while
    sigma > squash_sigma (the 4th coordinate shrinks to 0 over those levels), as ETKDG embeds:
    it fixes most wrong local minima of the distance fit with an exact score (tests) but cost
    recall on the dev benchmark (60-molecule sample: COV-R -3.4 points against 3D, rho 3), so
    3D is the default. Sweep and figures: bench/README.md.
    """

    sampler: ClassVar[str] = "project"
    name: str = "quick"
    num_steps: int = 40
    sigma_max: float = 2.0
    sigma_min: float = 0.0
    rho: float = 3.0
    tweedie: float = 1.0
    eval_scale: float = 1.0
    noise_scale: float = 0.8
    quiet_below: float = 0.1
    inner_iters: int = 60
    final_steps: int = 4
    final_sigma: float = 0.05
    init_scale: float = 1.0
    stereo_gain: float = 0.1
    embed_dims: int = 3
    squash_sigma: float = 0.1
    # eta < 1 keeps part of each level's noise instead of drawing it afresh (DDIM's eta): the state
    # for the next level is x0_hat + sqrt(1 - eta^2) (sigma_next / sigma) (x - x0_hat)
    # + eta * noise_scale * sigma_next * z, where x0_hat is the projected Tweedie estimate; eta = 0
    # is the Euler step of the probability-flow ODE, eta = 1 fresh noise only.
    eta: float = 1.0
    # Atoms >= 4 bonds apart (no edge of the extended graph; the network cannot see them) are kept
    # at least repel * (R_vdw(i) + R_vdw(j)) apart by joining the stress-majorisation sweeps as
    # extra edges while closer than that, re-chosen every repel_every sweeps (sampler.FarContacts;
    # distance geometry's lower bounds). 0 = off.
    repel: float = 0.0
    repel_every: int = 10
    # After each level's sweeps, aromatic ring systems with their first neighbours and sp2 centres
    # with theirs are moved this fraction of the way onto their least-squares plane
    # (planarity.PlanarGroups; 3D levels only). 0 = off.
    planar: float = 0.0
    # Langevin corrector steps after each re-noising (predictor-corrector, Song et al. 2021): one
    # network evaluation each at the new level, step size alpha = 2 (snr |z| / |S|)^2 per conformer
    # (S the coordinate score), x <- x + alpha S + sqrt(2 alpha) z.
    corrector_steps: int = 0
    snr: float = 0.16
    # Where the trajectory starts. "random": N(0, init_scale^2) per atom at sigma_max. "etkdg":
    # RDKit ETKDGv3 conformers (one per requested conformer; random where RDKit cannot embed)
    # noised by noise_scale * sigma_max, then the levels from sigma_max down: a warm start that
    # keeps ETKDG's rotamer diversity and lets the score model refine it.
    init: str = "random"
    # Warm start only: embed init_oversample x n ETKDG conformers and keep a diverse n of them
    # (diversity.py, farthest-point selection on heavy-atom RMSD). Whole QM9 dev benchmark, step
    # 220,000, against the warm start without it (1): COV-R +6.5 +- 0.9, MAT-R -0.039 +- 0.005,
    # COV-P -1.1 +- 0.7 (bench/results/dev_full_project_warm_os3_step220000.json).
    init_oversample: int = 3
    # From noise only (init "random"): sample oversample x n conformers and keep a diverse n of the
    # good ones (diversity.select_conformers). Counted in the network evaluations per output
    # conformer (sampler.num_evaluations, the SDF's nfe=).
    oversample: int = 1
    # From noise with oversample > 1: before the diverse selection, keep only the samples whose
    # MMFF94 single-point energy (chem.mmff_energies: the sampled geometry scored, nothing
    # optimised) is within select_window kcal/mol of the molecule's lowest sample (at least n of
    # the lowest); None: no energy cut. Farthest-point selection alone reaches for the strained
    # outliers (far from every other sample because they are wrong), which costs precision.
    select_window: float | None = None
    # From noise with oversample > 1: the diverse selection weighs each sample's distance to those
    # kept by exp(-(E - E_min) / select_temperature) (E the MMFF94 single-point energy, kcal/mol),
    # starting from the lowest: strain discounts diversity instead of cutting it. None: plain
    # farthest-point. On the whole v2 QM9 dev set T = 5 beat the 9 kcal/mol cut on COV-R, MAT-R and
    # COV-P (bench/results/v2/qm9_noise_selection_os4_full.json: soft5 against win9).
    select_temperature: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {', '.join(INITS)}")


@dataclass(frozen=True)
class Runtime:
    """How the score network runs (sampler.score_function), not what it produces: the same
    schedule and seed give the same conformers up to arithmetic whatever these are.

    backend: the geometric ops' backend (ops.py: auto, reference, cpp, cuda, triton).
    compile: "auto" compiles the network with torch.compile when a batch has at least
    sampler.COMPILE_MIN_EVALS conformer-evaluations (compiling costs ~15 s once per process; on the
    dev CPU it made the forward 3-4x faster), "on" always, "off" never. precision: "fp32"; "bf16"
    (autocast of the MLPs, CPU or CUDA) or "tf32" (CUDA matmuls) trade accuracy of the score for
    speed; measured effect in MODEL_CARD.md. cuda_graphs: on CUDA, record each level's Langevin step
    (network + guidance + fused update) as a CUDA graph and replay it (sampler._capture_level); off
    by default until measured on a GPU."""

    backend: str = "auto"
    compile: str = "auto"
    precision: str = "fp32"
    cuda_graphs: bool = False


# Every schedule preset and the sampler it belongs to; the default schedule of each sampler.
SCHEDULES = {"paper": "langevin", "fast": "langevin", "quick": "project", "warm": "project", "noise": "project",
             "dist": "dist"}
INITS = ("random", "etkdg")
DEFAULT_SCHEDULE = {"langevin": "paper", "project": "quick", "dist": "dist"}
FAMILIES: dict[str, type[Schedule]] = {"langevin": LangevinSchedule, "project": ProjectSchedule,
                                       "dist": DistSchedule}
# The order fields are named in the SDF tag (Schedule.describe); a field missing here is named after these.
_TAG_ORDER = ("steps_per_level", "eps", "clip", "levels", "bands", "stereo", "stereo_strength",
              "stereo_sigma_max", "num_steps", "sigma_max", "sigma_min", "rho", "tweedie", "eval_scale",
              "noise_scale", "quiet_below", "inner_iters", "final_steps", "final_sigma", "init_scale",
              "stereo_gain", "embed_dims", "squash_sigma", "eta", "repel", "repel_every", "planar",
              "corrector_steps", "snr", "init", "init_oversample", "oversample", "select_window",
              "select_temperature")
# The fields that change which coordinates a sampler produces (not how fast), over all families.
SCHEDULE_FIELDS = tuple(dict.fromkeys(n for cls in FAMILIES.values() for n in cls.field_names()))
# Fields a checkpoint's sampler_defaults may set: the schedule's numbers, not where it starts
# (init) nor whether stereo guidance runs.
_UNTUNABLE = ("init", "stereo")
TUNABLE_FIELDS = tuple(f for f in SCHEDULE_FIELDS if f not in _UNTUNABLE)


def preset(name: str) -> Schedule:
    """The named schedule preset, its `name` set.

    `paper`: 50 levels x 100 steps, eps 2.4e-6 (5000 network evaluations).

    `fast`: 966 evaluations spent where they pay. The middle band (0.1 < sigma <= 2 A:
    torsions and ring shapes form there) keeps all 21 of its levels at 36 steps; the 12 levels
    above 2 A (the start is noise anyway) get 3 levels x 10 steps; the 17 below 0.1 A get 3
    levels x 60 steps (final refinement: cutting them to 3 x 10 cost ~4 COV-R points with the
    better weights); eps 6e-6. Measured on a 60-molecule dev sample (bench/eval_dev.py
    --sample 60; bench/schedule_table.py; bench/README.md has the whole sweep), COV-R % /
    MAT-R A, paired per-molecule COV-R difference from the paper schedule +- standard error:
    step-97,500 weights: paper 89.1 / 0.256; this schedule 90.6 / 0.270 (+1.5 +- 2.4); with
    3 x 10 steps below 0.1 A (816 evaluations) 86.0 / 0.286 (-3.1 +- 2.7). Step-32,750
    weights: paper 87.5 / 0.292; 816 evaluations 86.1 / 0.313 (-1.4 +- 2.3); 6 x 20 / 21 x 36 /
    6 x 60 (1,236) 87.4 / 0.302 (-0.1 +- 2.7); the previous uniform preset, 25 levels x 40 steps
    (1000 evaluations), 81.1 / 0.333 (-6.5 +- 2.8). On all 190 molecules (step 97,500): this
    schedule 85.8 / 0.276, the 816 one 87.6 / 0.291 (difference -1.7 +- 1.3 / -0.016 +- 0.006);
    (step 148,250): paper 88.8 / 0.243, this schedule 87.9 / 0.266 (-0.8 +- 1.3 / +0.023 +- 0.006).
    """
    if name == "paper":
        return LangevinSchedule(name="paper")
    if name == "fast":
        return LangevinSchedule(name="fast", steps_per_level=36, eps=6e-6, bands="2:3x10,0.1:21x36,0:3x60")
    if name == "warm":
        # projected sampler from ETKDGv3 conformers noised to 0.5 A, 20 Karras levels + 4 polish
        # steps = 24 evaluations (ProjectSchedule.init; docs/samplers.md, warm start). repel 0.8: whole
        # v2 QM9 set against repel 0 (bench/results/v2/sweeps/qm9_warm_repel0.8.json): COV-R
        # +0.7 +- 0.3, MAT-R -0.007 +- 0.002, COV-P -0.4 +- 0.2, MAT-P -0.000 +- 0.001, ~2 % more
        # time, and no more H...H clashes between the N-methyls of tetramethylurea (16 of 30 flagged before).
        # planar 1.0 (aromatic systems and sp2 centres put back on their planes after each level;
        # planarity.py), whole benchmarks against planar 0, same seeds: v2 QM9 COV-R +0.2 +- 0.2,
        # MAT-R -0.002 +- 0.001, COV-P +0.2 +- 0.2, MAT-P -0.002 +- 0.001; drug dev unrelaxed
        # COV-R +0.5 +- 0.2, MAT-R -0.005 +- 0.001; GEOM-Drugs-10 MAT-R -0.014 +- 0.005; after MMFF94
        # level (docs/samplers.md, `planar` table); < 1 % of the time
        return ProjectSchedule(name="warm", init="etkdg", sigma_max=0.5, num_steps=20, repel=0.8, planar=1.0)
    if name == "noise":
        # From noise, no RDKit embedding (what `--init random` alone selects): the projected
        # sampler at 20 Karras levels + 4 polish steps (24 evaluations) on 4 x as many samples
        # as asked, then farthest-point with each sample's distance weighed by
        # exp(-(E - E_min) / 10 kcal/mol), E its MMFF94 single-point energy: 96 network
        # evaluations per output conformer. 150 stress-majorisation sweeps per level (60 in
        # quick) cost no network evaluation and bought most of the precision (v2 probe files). Sweep and
        # whole-benchmark result on the v2 QM9 dev set: bench/README.md, README "From noise".
        return ProjectSchedule(name="noise", num_steps=20, oversample=4, select_temperature=10.0, inner_iters=150)
    if name == "dist":
        # ConfGFDist, the paper's two-stage ablation (sampler.dist_sample): the paper schedule's
        # Langevin steps on the distances (50 levels x 100 steps, eps 2e-6 as the official
        # distance sampler's config), then 1000 stress-majorisation sweeps embed them in 3D (the
        # official Embed3D runs 1000 Adam steps in 3D). The fit starts in 4D (embed_dims 4, the
        # 4th coordinate shrunk to 0 over the first half, as ETKDG embeds): with the exact
        # distances of one conformer, 3D from random ended in a wrong local minimum for 11 of 16
        # copies of OCC(C)N and all 16 of pentanol, 4D for 0 and 7 (tests/test_dist_sampler.py).
        return DistSchedule(name="dist", eps=2e-6, inner_iters=1000, embed_dims=4)
    if name == "quick":
        # projected sampler, 40 Karras levels (rho 3) + 4 polish steps = 44 evaluations. Whole
        # dev benchmark, step-148,250 weights, paired against paper: COV-R -3.5 +- 1.2,
        # MAT-R +0.013 +- 0.006, COV-P +1.8 +- 1.3 (bench/results/dev_full_project_quick_*.json)
        return ProjectSchedule(name="quick")
    raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")


def _preset_name(sampler: str | None, schedule: str | None, init: str | None) -> str:
    """The preset of a --sampler / --schedule / --init triple (resolve_schedule's rules)."""
    if sampler is not None and sampler not in DEFAULT_SCHEDULE:
        hint = (f" ({sampler!r} is a schedule: schedule={sampler!r}, --schedule {sampler})"
                if sampler in SCHEDULES else "")
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(DEFAULT_SCHEDULE)}{hint}")
    if init is not None and init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    if schedule is None:
        warm = (sampler is None and init != "random") or (sampler == "project" and init == "etkdg")
        if warm:
            schedule = "warm"
        elif sampler is None:  # a bare init "random": the from-noise mode
            schedule = "noise"
        else:
            schedule = DEFAULT_SCHEDULE[sampler]
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if sampler is not None and SCHEDULES[schedule] != sampler:
        raise ValueError(f"schedule {schedule!r} belongs to the {SCHEDULES[schedule]} sampler, not {sampler!r}; "
                         f"{sampler} schedules: {', '.join(k for k, v in SCHEDULES.items() if v == sampler)}")
    return schedule


def resolve_schedule(schedule: str | Schedule | None = None, *, sampler: str | None = None,
                     init: str | None = None, overrides: Mapping[str, object] | None = None,
                     tuned: Mapping[str, object] | None = None) -> Schedule:
    """The one way a Schedule is built: a preset (or a given Schedule), the caller's settings,
    then a checkpoint's tuned settings.

    schedule / sampler / init, names as the CLI's --schedule / --sampler / --init, any may be None.
    No sampler: the schedule's own (paper and fast are Langevin schedules, quick, warm and noise
    projected ones, dist the ConfGFDist one). No schedule: `warm` (the ETKDG warm start, the default
    of generate) unless init is "random" or a sampler is named; then `noise` for a bare init
    "random" (the from-noise mode), the sampler's default (DEFAULT_SCHEDULE: paper for Langevin,
    quick for project), or `warm` for project with init "etkdg". init overrides the preset's start.
    A Schedule instead of a name is taken as it is (sampler, if given, must be its family).

    overrides: {field: value} the caller set (e.g. the CLI's --levels, --num-steps); a field the
    family does not have is a ValueError naming the family's fields. As on the command line, asking
    for a uniform Langevin schedule (levels or steps_per_level) drops the preset's bands.

    tuned: a loaded model's sampler_defaults entry for this schedule ({field: number}, measured
    best for those weights, e.g. a smaller warm-start noise for the drug-like model), applied to
    every field the caller did not set. Explicit settings always win, even one equal to the
    preset's value (the earlier rule, "only fields still equal to the preset", could not tell a
    setting from a default). For a Schedule given as it is, the fields that differ from its preset
    count as set, as do those of earlier overrides (Schedule.explicit).

    ValueError for an unknown name or field, a schedule of another sampler, a malformed bands spec,
    or a warm start with a sampler other than project (Langevin would start from the data at
    sigma 10 A, where it means nothing)."""
    if isinstance(schedule, Schedule):
        if sampler is not None and sampler != schedule.sampler:
            raise ValueError(f"sampler {sampler!r} given with a {schedule.sampler} schedule "
                             f"({type(schedule).__name__})")
        out = schedule
        base = schedule.reference()
        explicit = set(schedule.explicit) | {f for f in out.field_names() if getattr(out, f) != getattr(base, f)}
    else:
        out = preset(_preset_name(sampler, schedule, init))
        explicit = set()
    valid = out.field_names()
    changes: dict[str, object] = {}
    if init is not None:
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
        if "init" in valid:
            changes["init"] = init
            explicit.add("init")
        elif init != "random":
            raise ValueError(f"init {init!r} needs the project sampler (e.g. --schedule warm), not {out.sampler!r}")
    for key, value in (overrides or {}).items():
        if key not in valid:
            raise ValueError(f"{key!r} is not a setting of the {out.sampler} sampler; its settings: {', '.join(valid)}")
        changes[key] = value
        explicit.add(key)
    if ("levels" in changes or "steps_per_level" in changes) and "bands" not in changes and "bands" in valid:
        changes["bands"] = None
    for key, value in (tuned or {}).items():
        if key not in valid or key in _UNTUNABLE:
            raise ValueError(f"tuned setting {key!r} is not a tunable setting of the {out.sampler} sampler; "
                             f"settings: {', '.join(f for f in valid if f not in _UNTUNABLE)}")
        if key in explicit:
            continue  # the caller's setting wins
        current = getattr(out, key)
        changes[key] = type(current)(value) if current is not None else value
    if not changes and explicit == set(out.explicit):
        return out
    return replace(out, **changes, explicit=frozenset(explicit))


def check_sampler_defaults(defaults: object) -> dict:
    """`defaults` if it is a valid `sampler_defaults` record ({schedule: {field: number}}, schedules of
    SCHEDULES, fields of that schedule's family other than init and stereo), else ValueError saying
    what is wrong."""
    if not isinstance(defaults, dict):
        raise ValueError(f"sampler_defaults must be a dict of schedule -> settings, not {type(defaults).__name__}")
    for schedule, tuned in defaults.items():
        if schedule not in SCHEDULES:
            raise ValueError(f"sampler_defaults: unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
        if not isinstance(tuned, dict):
            raise ValueError(f"sampler_defaults[{schedule!r}] must be a dict of field -> value")
        family = FAMILIES[SCHEDULES[schedule]].field_names()
        for name, value in tuned.items():
            if name not in family or name in _UNTUNABLE:
                allowed = ", ".join(f for f in family if f not in _UNTUNABLE)
                raise ValueError(f"sampler_defaults[{schedule!r}]: {name!r} cannot be set per weights; "
                                 f"fields: {allowed}")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"sampler_defaults[{schedule!r}][{name!r}] must be a number, not {value!r}")
    return defaults


def api_schedule(sampler: str | None, schedule: str | Schedule | None,
                 runtime: Runtime | None) -> tuple[Schedule, Runtime]:
    """The Schedule and Runtime of the Python API's `sampler` / `schedule` / `runtime` keywords
    (resolve_schedule: names as the CLI's --sampler / --schedule, or schedule= a Schedule; None and
    None = the `warm` schedule), ValueError for what does not fit together."""
    if isinstance(sampler, Schedule):
        raise ValueError("sampler= names a sampler family ('langevin', 'project', 'dist'); pass a Schedule as "
                         "schedule=")
    if sampler is not None and not isinstance(sampler, str):
        raise ValueError(f"sampler= names a sampler family ('langevin', 'project', 'dist'), not a "
                         f"{type(sampler).__name__}; build a Schedule with resolve_schedule and pass it as schedule=")
    return resolve_schedule(schedule, sampler=sampler), runtime or Runtime()


def config_to_dict(cfg) -> dict:
    return asdict(cfg)


def config_from_dict(cls, d: dict):
    """Build a dataclass from a dict, ignoring unknown keys (older/newer checkpoints)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


__all__ = [
    "DEFAULT_GRAPH_ORDER",
    "NUM_ATOM_TYPES",
    "NUM_EDGE_TYPES",
    "DistSchedule",
    "LangevinSchedule",
    "ModelConfig",
    "NoiseConfig",
    "ProjectSchedule",
    "Runtime",
    "Schedule",
    "TrainConfig",
    "edge_types_for_order",
    "hop_edge_type",
    "parse_bands",
    "preset",
    "resolve_schedule",
]
