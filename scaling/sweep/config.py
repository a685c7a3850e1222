"""`SweepConfig` (an IsoFLOP sweep: budgets x model sizes, one recipe) and `PlannedRun`.

Jax-free, like `scaling.config`: planning a sweep and printing its table needs no JAX.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from scaling.config import FLOPS_METHODS as METHODS
from scaling.config import ModelConfig, RunConfig, TrainConfig
from scaling.data import epochs as data_epochs
from scaling.data.config import DataConfig
from scaling.validate import fail, is_number, positive_numbers


def _fail(field: str, value, why: str):
    fail("SweepConfig", field, value, why)


def _positive_numbers(field: str, values, *, integers: bool = False) -> tuple:
    return positive_numbers("SweepConfig", field, values, integers=integers)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """An IsoFLOP sweep: budgets x model sizes, one fixed recipe.

    budgets: training FLOP budgets C (by `flops_method`), at least one.
    Family (how model shapes are made; the rest of each ModelConfig comes from `model`):
      widths, depths: a widths x depths grid (`scaling.family.grid`); sizes per budget are
        picked from it, nearest (in log N) to the targets around the optimum. Or, when both
        are empty, shapes are made for each target size by `scaling.family.from_target_params`
        at `aspect_ratio` (d_model / n_layers).
      head_dim: d_model / n_heads for every shape.
    sizes_per_budget: model sizes per budget (>= 1; the IsoFLOP fit needs >= 4 per budget).
    size_spread: sizes span N_opt / size_spread .. N_opt x size_spread, geometrically (> 1).
    count: which parameter count is "N" when sizes are targeted ("total" as Chinchilla, or
      "non_embedding" as Kaplan).
    model, data, train: the base recipe. `model`'s shape fields are replaced per run;
      `train.tokens` is replaced by each run's D (so the schedule's horizon is D), and
      `train.flops_method` by `flops_method`.
    flops_method: the FLOP accounting of C = per_token(cfg, method) x D.
    prior_k, prior_a: optional prior N_opt = prior_k x C^prior_a (both or neither); without
      them N_opt solves C = per_token(N) x tokens_per_param x N.
    tokens_per_param: the rule used without a prior (20: Hoffmann et al. 2022).
    min_steps: runs with fewer optimizer steps than this are skipped with a warning (their
      warmup and early transient would dominate the final loss).
    max_warmup_frac: each run's warmup is at most this fraction of its steps.
    lr_width: None (every run uses train.lr) or a width W: each run's learning rate is
      train.lr x W / d_model, so train.lr is the rate at width W and narrower models get
      proportionally more (Adam's best rate falls roughly as 1/width: Yang et al. 2022, muP,
      for hidden matrices). One rule for the whole family, recorded in each run's config.
      Must be None when model.parametrization is "mup" or "completep": those scale each
      tensor's rate with width themselves, so every run takes train.lr (the rate at the
      model's base_width) and the two rules would compound.
    wsd_branch_fracs: with train.schedule="wsd", each run also forks cooldown branches at
      these fractions of its D (each evaluated as its own (N, D) row).
    seeds: runs per (budget, size), with train.seed, train.seed + 1, ... (ids end in "-s<i>"
      when > 1): repeated runs whose spread measures, and whose mean reduces, the run-to-run
      noise that a fitted law would otherwise extrapolate.
    max_epochs: the most times a run may repeat the unique tokens of the training split
      (epochs = tokens trained / unique tokens; the synthetic language is unlimited, 0 epochs).
      `run_sweep` refuses to start a sweep with a run above it. Default 4: up to ~4 epochs
      repeated tokens are worth nearly as much as unique ones, beyond that markedly less
      (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", Fig. 3), so a law
      fitted there is not the unique-data law the IsoFLOP method assumes. Raise it (or None:
      no limit) to study repeated data on purpose.
    loops: () (every run uses model.loops) or loop counts: each (budget, shape) is then run
      once per count, with the same shape (so the same N) and D = C / per_token(shape, loops)
      (ids end in "-x<loops>" when > 1). Looped models pay every loop's compute
      (`scaling.flops`), so at one budget more loops means fewer tokens: what a loop is worth
      is then measurable (`scaling.fit.looped`, `scaling.questions`).
    name: the sweep's name (metadata only).
    unique_tokens: () (every run uses data.unique_tokens) or caps of the training split
      (`DataConfig.unique_tokens`; None in the tuple: the whole split): each (budget, shape)
      is then run once per cap with the same N and D (ids end in "-u<cap>" for a cap), so at
      one budget and size only the number of epochs changes: what a repeated token is worth
      is then measurable (`scaling.fit.data_constrained`, `scaling.questions`). Runs over
      `max_epochs` are refused as always: raise it on purpose.
    """

    budgets: tuple[float, ...]
    model: ModelConfig
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(tokens=1))
    widths: tuple[int, ...] = ()
    depths: tuple[int, ...] = ()
    aspect_ratio: float = 64.0
    head_dim: int = 64
    sizes_per_budget: int = 5
    size_spread: float = 4.0
    count: Literal["total", "non_embedding"] = "total"
    flops_method: Literal["6n", "kaplan", "chinchilla", "palm"] = "chinchilla"
    prior_k: float | None = None
    prior_a: float | None = None
    tokens_per_param: float = 20.0
    min_steps: int = 100
    max_warmup_frac: float = 0.2
    lr_width: int | None = None
    wsd_branch_fracs: tuple[float, ...] = ()
    seeds: int = 1
    max_epochs: float | None = 4.0
    loops: tuple[int, ...] = ()
    name: str = "sweep"
    unique_tokens: tuple[int | None, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "budgets", _positive_numbers("budgets", self.budgets))
        if not self.budgets:
            _fail("budgets", self.budgets, "needs at least one FLOP budget")
        if not isinstance(self.model, ModelConfig):
            _fail("model", self.model, "must be a ModelConfig")
        if not isinstance(self.data, DataConfig):
            _fail("data", self.data, "must be a DataConfig")
        if not isinstance(self.train, TrainConfig):
            _fail("train", self.train, "must be a TrainConfig")
        object.__setattr__(self, "widths", _positive_numbers("widths", self.widths, integers=True))
        object.__setattr__(self, "depths", _positive_numbers("depths", self.depths, integers=True))
        if bool(self.widths) != bool(self.depths):
            _fail("widths" if not self.widths else "depths", self.widths if not self.widths else self.depths,
                  "give both widths and depths (a grid) or neither (target sizes)")
        for w in self.widths:
            if isinstance(self.head_dim, int) and self.head_dim > 0 and w % self.head_dim:
                _fail("widths", self.widths, f"width {w} is not divisible by head_dim={self.head_dim}")
        if isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int) or self.head_dim <= 0:
            _fail("head_dim", self.head_dim, "must be a positive int")
        if not (isinstance(self.aspect_ratio, (int, float)) and self.aspect_ratio > 0):
            _fail("aspect_ratio", self.aspect_ratio, "must be positive")
        if isinstance(self.sizes_per_budget, bool) or not isinstance(self.sizes_per_budget, int) \
                or self.sizes_per_budget < 1:
            _fail("sizes_per_budget", self.sizes_per_budget, "must be an int >= 1")
        if not (isinstance(self.size_spread, (int, float)) and self.size_spread > 1 and math.isfinite(self.size_spread)):
            _fail("size_spread", self.size_spread, "must be a finite number > 1")
        if self.count not in ("total", "non_embedding"):
            _fail("count", self.count, "must be 'total' or 'non_embedding'")
        if self.flops_method not in METHODS:
            _fail("flops_method", self.flops_method, f"must be one of {METHODS}")
        if (self.prior_k is None) != (self.prior_a is None):
            _fail("prior_k" if self.prior_k is None else "prior_a", None,
                  "give both prior_k and prior_a (N_opt = k C^a) or neither")
        if self.prior_k is not None and not (isinstance(self.prior_k, (int, float)) and self.prior_k > 0):
            _fail("prior_k", self.prior_k, "must be positive")
        if self.prior_a is not None and not (isinstance(self.prior_a, (int, float)) and 0 < self.prior_a < 1):
            _fail("prior_a", self.prior_a, "must be in (0, 1)")
        if not (isinstance(self.tokens_per_param, (int, float)) and self.tokens_per_param > 0):
            _fail("tokens_per_param", self.tokens_per_param, "must be positive")
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int) or self.min_steps < 1:
            _fail("min_steps", self.min_steps, "must be an int >= 1")
        if not (isinstance(self.max_warmup_frac, (int, float)) and 0 <= self.max_warmup_frac < 1):
            _fail("max_warmup_frac", self.max_warmup_frac, "must be in [0, 1)")
        if self.lr_width is not None and (isinstance(self.lr_width, bool) or not isinstance(self.lr_width, int)
                                          or self.lr_width <= 0):
            _fail("lr_width", self.lr_width, "must be None or a positive int (the width at which lr = train.lr)")
        if self.lr_width is not None and self.model.parametrization != "sp":
            _fail("lr_width", self.lr_width, f"must be None with model.parametrization="
                  f"{self.model.parametrization!r}, which scales each tensor's learning rate with width "
                  f"itself (train.lr is the rate at model.base_width={self.model.base_width})")
        fracs = tuple(self.wsd_branch_fracs)
        object.__setattr__(self, "wsd_branch_fracs", fracs)
        for f in fracs:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                _fail("wsd_branch_fracs", fracs, f"{f!r} is not in (0, 1)")
        if fracs and self.train.schedule != "wsd":
            _fail("wsd_branch_fracs", fracs, f"need train.schedule='wsd' (it is {self.train.schedule!r})")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            _fail("seeds", self.seeds, "must be an int >= 1")
        if self.max_epochs is not None and not (is_number(self.max_epochs) and self.max_epochs > 0):
            _fail("max_epochs", self.max_epochs, "must be a positive number (math.inf or None: no limit)")
        object.__setattr__(self, "loops", _positive_numbers("loops", self.loops, integers=True))
        if len(set(self.loops)) != len(self.loops):
            _fail("loops", self.loops, "must not repeat a loop count")
        if not self.name or "/" in self.name:
            _fail("name", self.name, "must be a non-empty name without '/'")
        caps = tuple(self.unique_tokens)
        object.__setattr__(self, "unique_tokens", caps)
        for cap in caps:
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                _fail("unique_tokens", caps, f"{cap!r} is not a positive int (a cap in tokens) or None (the whole split)")
        if len(set(caps)) != len(caps):
            _fail("unique_tokens", caps, "must not repeat a cap")
        if caps and self.data.source == "synthetic":
            _fail("unique_tokens", caps, "the synthetic language is unlimited; caps need data.source 'stdlib' or 'tfds'")

    def replace(self, **changes) -> "SweepConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its id, budget, size, tokens and full RunConfig; `unique_tokens`:
    the tokens of its training split (None: unlimited data)."""

    run_id: str
    budget: float
    N: int
    N_non_embedding: int
    D: int
    flops_per_token: float
    config: RunConfig
    unique_tokens: int | None = None

    @property
    def steps(self) -> int:
        return self.config.steps()

    @property
    def tokens_per_param(self) -> float:
        return self.D / self.N

    @property
    def tokens(self) -> int:
        """Tokens actually trained: whole steps of the global batch (>= D)."""
        return self.steps * self.config.train.global_batch_size * self.config.model.seq_len

    @property
    def epochs(self) -> float:
        """How many times the run repeats its training split's unique tokens (0: unlimited)."""
        return data_epochs(self.tokens, self.unique_tokens)

    @property
    def flops(self) -> float:
        """C of the tokens actually trained (whole steps), by the sweep's accounting."""
        return self.flops_per_token * self.tokens
