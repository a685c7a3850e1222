"""IsoFLOP sweeps: plan the runs, run them (resumably, across workers), collect one table.

    cfg = SweepConfig(budgets=(1e13, 3e13, 1e14), widths=(64, 128, 256), depths=(2, 4, 6))
    runs = plan(cfg)                  # [PlannedRun]: N, D = C / per_token(N), a RunConfig each
    print(format_plan(runs))
    run_sweep(cfg, "out/sweep")       # out/sweep/results.jsonl, runs/<id>/, DONE

The plan follows Hoffmann et al. 2022, sec. 3.2 (approach 2, IsoFLOP profiles): for each
FLOP budget C a handful of model sizes spread geometrically around the expected optimum,
each trained on D = C / (FLOPs per token) tokens with its learning-rate schedule ending at
exactly D (their sec. 3.1 and Fig. A1: a cosine longer than the run biases its loss). The
expected optimum comes from a prior law N_opt = k C^a when one is given, otherwise from
the 20-tokens-per-parameter rule (Hoffmann et al. 2022, Table 3: D_opt / N_opt ~ 20),
solving C = per_token(N) x 20 N on the family.

Results: see `scaling.results` (the table and why appends are atomic). Fitting and
forecasting: `scaling.report`. Plots: `scaling.plot`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import warnings
from typing import Literal, Sequence

from scaling import family
from scaling import results as results_lib
from scaling.config import RunConfig, TrainConfig, to_dict
from scaling.data import DataConfig
from scaling.flops import METHODS, param_counts, per_token
from scaling.model import ModelConfig

DONE_FILE = "DONE"
PLAN_FILE = "plan.json"
_SHAPE_FIELDS = ("d_model", "n_layers", "n_heads", "head_dim")


def _fail(field: str, value, why: str):
    raise ValueError(f"SweepConfig.{field}={value!r}: {why}")


def _positive_numbers(field: str, values, *, integers: bool = False) -> tuple:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        _fail(field, values, "must be a sequence")
    values = tuple(values)
    for v in values:
        ok = isinstance(v, int) if integers else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or not (v > 0 and math.isfinite(v)):
            _fail(field, values, f"{v!r} is not a positive {'int' if integers else 'finite number'}")
    return values


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
    wsd_branch_fracs: with train.schedule="wsd", each run also forks cooldown branches at
      these fractions of its D (each evaluated as its own (N, D) row).
    name: the sweep's name (metadata only).
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
    name: str = "sweep"

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
        fracs = tuple(self.wsd_branch_fracs)
        object.__setattr__(self, "wsd_branch_fracs", fracs)
        for f in fracs:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                _fail("wsd_branch_fracs", fracs, f"{f!r} is not in (0, 1)")
        if fracs and self.train.schedule != "wsd":
            _fail("wsd_branch_fracs", fracs, f"need train.schedule='wsd' (it is {self.train.schedule!r})")
        if not self.name or "/" in self.name:
            _fail("name", self.name, "must be a non-empty name without '/'")

    def replace(self, **changes) -> "SweepConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its id, budget, size, tokens and full RunConfig."""

    run_id: str
    budget: float
    N: int
    N_non_embedding: int
    D: int
    flops_per_token: float
    config: RunConfig

    @property
    def steps(self) -> int:
        return self.config.steps()

    @property
    def tokens_per_param(self) -> float:
        return self.D / self.N

    @property
    def flops(self) -> float:
        """C of the tokens actually trained (whole steps), by the sweep's accounting."""
        return self.flops_per_token * self.steps * self.config.train.global_batch_size * self.config.model.seq_len


# ---------------------------------------------------------------------------------------
# Planning


def _base_model_fields(model: ModelConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(model).items() if k not in _SHAPE_FIELDS}


def _n(cfg: ModelConfig, count: str) -> int:
    return getattr(param_counts(cfg), count)


def _ladder(sweep: SweepConfig) -> list[ModelConfig]:
    """The family's shapes, sorted by N: the grid, or a dense ladder of target sizes."""
    base = _base_model_fields(sweep.model)
    if sweep.widths:
        configs = family.grid(sweep.widths, sweep.depths, head_dim=sweep.head_dim, **base)
    else:
        lo, hi = _optimum_bracket(sweep)
        n = max(2, int(math.ceil(math.log2(hi / lo) * 4)) + 1)  # 4 per octave
        targets = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
        configs = family.from_target_params(targets, aspect_ratio=sweep.aspect_ratio, head_dim=sweep.head_dim,
                                            count=sweep.count, **base)
    return sorted(configs, key=lambda c: _n(c, sweep.count))


def _optimum_bracket(sweep: SweepConfig) -> tuple[float, float]:
    """Sizes that certainly contain every target: 6N x 20N <= C bounds N_opt from above
    (per_token >= 6N), and the attention/embedding terms at most shrink it."""
    Cs = sweep.budgets
    if sweep.prior_k is not None:
        n_lo = min(sweep.prior_k * C ** sweep.prior_a for C in Cs)
        n_hi = max(sweep.prior_k * C ** sweep.prior_a for C in Cs)
    else:
        n_lo = min(math.sqrt(C / (6 * sweep.tokens_per_param)) for C in Cs) / 8
        n_hi = max(math.sqrt(C / (6 * sweep.tokens_per_param)) for C in Cs) * 2
    return max(n_lo / sweep.size_spread / 2, 1e3), n_hi * sweep.size_spread * 2


def optimal_size(sweep: SweepConfig, budget: float, ladder: Sequence[ModelConfig] | None = None) -> float:
    """The expected compute-optimal N at `budget`: the prior law, or N solving
    C = per_token(N) x tokens_per_param x N on the family (log-log interpolation between
    the family's shapes; extrapolated with the end slope beyond them)."""
    if sweep.prior_k is not None:
        return sweep.prior_k * budget ** sweep.prior_a
    ladder = list(ladder) if ladder is not None else _ladder(sweep)
    points = sorted({(_n(c, sweep.count), per_token(c, sweep.flops_method) * sweep.tokens_per_param
                      * _n(c, sweep.count)) for c in ladder})
    log_n = [math.log(n) for n, _ in points]
    log_c = [math.log(c) for _, c in points]
    if len(points) == 1:
        return points[0][0] * math.sqrt(budget / points[0][1])  # C ~ N^2
    target = math.log(budget)
    i = 0  # the bracketing segment, or the end segment on that side (extrapolated)
    while i < len(points) - 2 and log_c[i + 1] < target:
        i += 1
    slope = (log_n[i + 1] - log_n[i]) / (log_c[i + 1] - log_c[i]) if log_c[i + 1] > log_c[i] else 0.5
    return math.exp(log_n[i] + slope * (target - log_c[i]))


def _run_id(budget: float, cfg: ModelConfig) -> str:
    loops = f"-x{cfg.loops}" if cfg.loops > 1 else ""
    return f"C{budget:.3g}-d{cfg.d_model}-L{cfg.n_layers}{loops}"


def _pick_sizes(sweep: SweepConfig, budget: float, ladder: list[ModelConfig]) -> list[ModelConfig]:
    n_opt = optimal_size(sweep, budget, ladder)
    k = sweep.sizes_per_budget
    exps = [0.0] if k == 1 else [-1 + 2 * i / (k - 1) for i in range(k)]
    targets = [n_opt * sweep.size_spread ** e for e in exps]
    if not sweep.widths:
        base = _base_model_fields(sweep.model)
        return family.from_target_params(targets, aspect_ratio=sweep.aspect_ratio, head_dim=sweep.head_dim,
                                         count=sweep.count, **base)
    chosen: list[ModelConfig] = []
    for t in targets:  # nearest unused grid shape in log N
        free = [c for c in ladder if c not in chosen]
        if not free:
            break
        chosen.append(min(free, key=lambda c: abs(math.log(_n(c, sweep.count) / t))))
    return sorted(chosen, key=lambda c: _n(c, sweep.count))


def plan(sweep: SweepConfig, *, warn: bool = True) -> list[PlannedRun]:
    """Every run of the sweep, by budget then size, deterministic (ids like "C3e+12-d128-L4").

    D = C / per_token(cfg, flops_method) for each run (rounded to whole tokens);
    TrainConfig.tokens = D, so each run's schedule ends at its own D. Runs under
    `min_steps` optimizer steps are dropped with a warning.
    """
    ladder = _ladder(sweep)
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for budget in sweep.budgets:
        for cfg in _pick_sizes(sweep, budget, ladder):
            fpt = per_token(cfg, sweep.flops_method)
            D = int(round(budget / fpt))
            run_id = _run_id(budget, cfg)
            if run_id in seen:
                continue
            seen.add(run_id)
            tokens_per_step = sweep.train.global_batch_size * cfg.seq_len
            steps = max(1, math.ceil(D / tokens_per_step))
            if steps < sweep.min_steps:
                if warn:
                    warnings.warn(f"sweep: skipping {run_id}: D={D:,} tokens is {steps} steps of {tokens_per_step:,} "
                                  f"tokens (< min_steps={sweep.min_steps})", stacklevel=2)
                continue
            branches = tuple(sorted({int(f * D) for f in sweep.wsd_branch_fracs if 0 < int(f * D) < D}))
            lr = sweep.train.lr * sweep.lr_width / cfg.d_model if sweep.lr_width else sweep.train.lr
            train = sweep.train.replace(
                tokens=D, flops_method=sweep.flops_method, wsd_branches=branches, lr=lr,
                warmup_steps=min(sweep.train.warmup_steps, int(sweep.max_warmup_frac * steps)))
            pc = param_counts(cfg)
            runs.append(PlannedRun(run_id=run_id, budget=float(budget), N=pc.total, N_non_embedding=pc.non_embedding,
                                   D=D, flops_per_token=fpt,
                                   config=RunConfig(model=cfg, data=sweep.data, train=train, name=run_id)))
    return runs


def estimate_wall_s(run: PlannedRun, flops_per_s, overhead_s: float = 0.0) -> float:
    """Seconds to train `run` at a sustained `flops_per_s` (a number, or a function of the
    run), plus a fixed per-run overhead."""
    rate = flops_per_s(run) if callable(flops_per_s) else flops_per_s
    return run.flops / rate + overhead_s


def step_flops_per_s(run: PlannedRun, *, steps: int = 3, mesh=None) -> float:
    """Training FLOP/s of `run`'s compiled step, timed over a few steps (after one untimed
    step) on a batch of zeros. The compiled step is cached by shape (`train.train_step_for`),
    so the run itself reuses this compilation: the measurement costs a few steps."""
    import jax
    import numpy as np

    from scaling import train as train_lib

    mesh = mesh or train_lib.data_mesh()
    cfg = run.config
    compiled = train_lib.train_step_for(cfg, mesh)
    params, rest, opt_state = compiled.init(np.int32(cfg.train.seed))
    B, T = cfg.train.global_batch_size, cfg.model.seq_len
    tokens = train_lib.put_batch(mesh, np.zeros((B, T + 1), np.int32), B)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        params, opt_state, metrics = compiled.step(params, opt_state, rest, tokens, np.float32(0.0))
        jax.block_until_ready(metrics)
        if i:
            times.append(time.perf_counter() - t0)
    return run.flops_per_token * B * T / sorted(times)[len(times) // 2]


def measured_throughput(runs: Sequence[PlannedRun], *, mesh=None):
    """(run -> FLOP/s, source): a short measured throughput of the smallest and the largest
    model of the plan, interpolated in log N for the sizes between (small models reach a lower
    fraction of peak than large ones, so one number would misestimate one end)."""
    by_size = sorted(runs, key=lambda r: r.N)
    ends = [by_size[0]] if by_size[0].N == by_size[-1].N else [by_size[0], by_size[-1]]
    rates = [(math.log(r.N), step_flops_per_s(r, mesh=mesh)) for r in ends]

    def rate(run: PlannedRun) -> float:
        if len(rates) == 1:
            return rates[0][1]
        (x0, y0), (x1, y1) = rates
        w = min(max((math.log(run.N) - x0) / (x1 - x0), 0.0), 1.0)
        return math.exp((1 - w) * math.log(y0) + w * math.log(y1))

    names = " and ".join(f"{r.run_id} {y:.3g} FLOP/s" for r, (_, y) in zip(ends, rates))
    return rate, f"measured over 3 steps: {names}"


def measured_flops_per_s(rows: Sequence[dict] = (), *, assumed_mfu: float = 0.3) -> tuple[float, str]:
    """Training FLOP/s for wall-time estimates, and where it came from: the finished rows of
    this sweep when there are any (their FLOPs over their wall time), else the measured (CPU)
    or data-sheet peak of the local devices times `assumed_mfu`."""
    done = [r for r in rows if r.get("branch") is None and results_lib.finite(r.get("wall_s"))
            and results_lib.finite(r.get("C")) and r.get("wall_s", 0) > 0]
    if done:
        return sum(r["C"] for r in done) / sum(r["wall_s"] for r in done), f"measured on {len(done)} finished runs"
    from scaling.flops import peak_flops_total

    import jax

    peak = peak_flops_total(jax.local_devices())
    return peak * assumed_mfu, f"{assumed_mfu:.0%} of the measured peak {peak:.3g} FLOP/s"


def _fmt_count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def format_plan(runs: Sequence[PlannedRun], *, flops_per_s: float | None = None, source: str = "",
                overhead_s: float = 0.0, done: set[str] = frozenset()) -> str:
    """The plan as a table (run id, N total and non-embedding, D, steps, C, tokens/param,
    estimated wall time) with totals; runs in `done` are marked and not counted in the time."""
    header = ("run id", "N total", "N non-emb", "D", "steps", "C", "D/N", "est. wall", "")
    rows = [header]
    total_c = total_s = 0.0
    for r in runs:
        est = estimate_wall_s(r, flops_per_s, overhead_s) if flops_per_s else float("nan")
        is_done = r.run_id in done
        if not is_done and flops_per_s:
            total_s += est
        total_c += r.flops
        rows.append((r.run_id, _fmt_count(r.N), _fmt_count(r.N_non_embedding), _fmt_count(r.D), str(r.steps),
                     f"{r.flops:.3g}", f"{r.tokens_per_param:.1f}", _fmt_s(est) if flops_per_s else "-",
                     "done" if is_done else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    todo = sum(r.run_id not in done for r in runs)
    total = f"total: {len(runs)} runs ({todo} to do), C = {total_c:.3g} FLOPs"
    if flops_per_s:
        rate = "" if callable(flops_per_s) else f" at {flops_per_s:.3g} FLOP/s"
        total += f", est. {_fmt_s(total_s)}{rate} ({source}) + {overhead_s:.0f}s/run"
    return "\n".join(lines + [total])


# ---------------------------------------------------------------------------------------
# Rows


def make_rows(run: PlannedRun, result, *, worker: int = 0) -> list[dict]:
    """Table rows of one finished (or diverged) run: the main point and each WSD branch.

    A run with no evaluated point (diverged before its first evaluation) gets one row with
    its status and no losses, so that the sweep counts it as done and the fit can skip it.
    """
    cfg = run.config
    base = {
        "run_id": run.run_id, "status": getattr(result, "status", "finished"), "budget": run.budget,
        "N": run.N, "N_non_embedding": run.N_non_embedding, "N_embedding": run.N - run.N_non_embedding,
        "D_planned": run.D, "flops_method": cfg.train.flops_method,
        "d_model": cfg.model.d_model, "n_layers": cfg.model.n_layers, "n_heads": cfg.model.n_heads,
        "seq_len": cfg.model.seq_len, "vocab_size": cfg.model.vocab_size, "loops": cfg.model.loops,
        "global_batch_size": cfg.train.global_batch_size, "lr": cfg.train.lr, "schedule": cfg.train.schedule,
        "data_source": cfg.data.source, "run_steps": getattr(result, "steps", None),
        "run_wall_s": getattr(result, "wall_s", None), "worker": worker,
        "config": json.dumps(to_dict(cfg), sort_keys=True, default=str),
    }
    points = list(getattr(result, "points", None) or [])
    if not points:
        return [dict(base, branch=None, D=None, C=None, val_loss=None, train_loss=None)]
    out = []
    for p in points:
        tokens = p.get("tokens")
        row = dict(base)
        row.update({
            "branch": p.get("branch"), "step": p.get("step"), "D": tokens,
            "tokens_per_param": tokens / run.N if tokens else None,
            "C": p.get("flops", tokens * run.flops_per_token if tokens else None),
        })
        for m in METHODS + ("6n_non_embedding",):
            key = f"flops_{m}"
            if key in p:
                row[f"C_{m}"] = p[key]
            elif tokens and m in METHODS:
                row[f"C_{m}"] = per_token(cfg.model, m) * tokens
        for k in ("train_loss", "val_loss", "val_bpb", "val_accuracy", "val_exact_match", "wall_s", "mfu"):
            row[k] = p.get(k)
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------
# Running


def _epath(path):
    from etils import epath

    return epath.Path(path)


def _done_ids(rows: Sequence[dict]) -> set[str]:
    return {r["run_id"] for r in rows if r.get("branch") is None}


def write_plan(runs: Sequence[PlannedRun], out_dir) -> None:
    """out_dir/plan.json: every planned run's id, budget, N, D and full config."""
    path = _epath(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    doc = [{"run_id": r.run_id, "budget": r.budget, "N": r.N, "N_non_embedding": r.N_non_embedding, "D": r.D,
            "steps": r.steps, "config": to_dict(r.config)} for r in runs]
    (path / PLAN_FILE).write_text(json.dumps(doc, indent=1, default=str))


def _maybe_done(runs: Sequence[PlannedRun], out_dir) -> bool:
    rows = results_lib.read_rows(out_dir)
    missing = {r.run_id for r in runs} - _done_ids(rows)
    if missing:
        return False
    results_lib.consolidate(out_dir)
    (_epath(out_dir) / DONE_FILE).write_text(f"{len(rows)} rows, {len(runs)} runs\n")
    return True


@dataclasses.dataclass
class SweepResult:
    """What `run_sweep` did: runs trained now, runs skipped (already in the table), whether a
    run was preempted (the caller should exit with EXIT_PREEMPTED), and whether DONE exists."""

    trained: list[str]
    skipped: list[str]
    preempted: bool
    done: bool
    wall_s: float


def run_sweep(sweep: SweepConfig, out_dir, *, worker: int = 0, workers: int = 1, per_host: bool = False,
              hooks=(), verbose: bool = True, overhead_s: float | None = None) -> SweepResult:
    """Run this worker's share of the plan: runs i, i + workers, ... (i = worker).

    Each run trains through `scaling.train.run` in out_dir/runs/<run_id>/ (which resumes a
    killed run from its checkpoints and returns a finished run's stored result); runs whose
    main row is already in the table are skipped. Rows are appended as each run finishes.

    Multi-host (jax.process_count() > 1): by default every host runs every run together on
    one global mesh, and only process 0 writes rows and DONE. With `per_host=True` each host
    takes its own runs (worker index worker x process_count + process_index) on a mesh of its
    local devices, and writes its own rows.

    When every planned run has its row, out_dir/DONE is written (by whichever worker notices).
    """
    import jax

    from scaling import train as train_lib

    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker={worker}, workers={workers}: need 0 <= worker < workers")
    t0 = time.perf_counter()
    runs = plan(sweep)
    if not runs:
        raise ValueError(f"SweepConfig.budgets={sweep.budgets!r}: every planned run is under min_steps="
                         f"{sweep.min_steps}; raise the budgets or lower min_steps")
    n_proc, proc = jax.process_count(), jax.process_index()
    mesh = None
    writer = True
    if n_proc > 1 and per_host:
        mesh = train_lib.data_mesh(jax.local_devices())
        worker, workers = worker * n_proc + proc, workers * n_proc
    elif n_proc > 1:
        writer = proc == 0
    mine = runs[worker::workers]
    rows = results_lib.read_rows(out_dir)
    done = _done_ids(rows)
    if writer and worker == 0:
        write_plan(runs, out_dir)
    if verbose:
        todo = [r for r in mine if r.run_id not in done]
        if any(r.get("branch") is None for r in rows) or not todo or n_proc > 1:
            fps, source = measured_flops_per_s(rows)
        else:
            fps, source = measured_throughput(todo, mesh=mesh)
        if overhead_s is None:
            overhead_s = 3.0 if jax.default_backend() == "cpu" else 20.0
        print(f"sweep {sweep.name!r}: worker {worker} of {workers}, {len(mine)} of {len(runs)} runs, out_dir={out_dir}")
        print(format_plan(mine, flops_per_s=fps, source=source, overhead_s=overhead_s, done=done))
        sys.stdout.flush()
    trained, skipped = [], []
    preempted = False
    for i, run in enumerate(mine):
        if run.run_id in done:
            skipped.append(run.run_id)
            continue
        if verbose:
            print(f"[{i + 1}/{len(mine)}] {run.run_id}: N={run.N:,} D={run.D:,} steps={run.steps}", flush=True)
        run_dir = str(_epath(out_dir) / "runs" / run.run_id)
        result = train_lib.run(run.config, run_dir, hooks=hooks, mesh=mesh)
        if result.status == "preempted":
            preempted = True
            break
        if writer:
            for row in make_rows(run, result, worker=worker):
                results_lib.append_row(out_dir, row)
        trained.append(run.run_id)
        if verbose:
            main = next((p for p in (result.points or []) if p.get("branch") is None), {})
            print(f"    {result.status}: val_loss={main.get('val_loss', float('nan')):.4f} "
                  f"wall={result.wall_s:.1f}s", flush=True)
    is_done = (not preempted) and writer and _maybe_done(runs, out_dir)
    return SweepResult(trained=trained, skipped=skipped, preempted=preempted, done=is_done,
                       wall_s=time.perf_counter() - t0)


def is_done(out_dir) -> bool:
    return (_epath(out_dir) / DONE_FILE).exists()


# ---------------------------------------------------------------------------------------
# The demo: a sweep small enough for a laptop CPU


_DEMO_WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128)
DEMO_BUDGETS = {
    # name: (budgets, widths, depths, sizes per budget, size spread, bootstrap replicates)
    "tiny": ((2.5e10, 8e10, 2.5e11), _DEMO_WIDTHS, (2,), 4, 3.0, 100),
    "small": ((5e10, 9.3e10, 1.7e11, 3.2e11, 6e11), _DEMO_WIDTHS, (2,), 5, 3.0, 400),
    "medium": ((5e10, 1.1e11, 2.4e11, 5.2e11, 1.1e12, 2.5e12), _DEMO_WIDTHS, (2,), 6, 3.5, 1000),
}


def demo_config(budget: str = "small") -> SweepConfig:
    """The `scaling demo` sweep: byte-level models of ~4k-250k parameters on the embedded
    Python-stdlib corpus, float32 on CPU, 64-token contexts, batches of 16 sequences.

    tiny: 3 budgets x 4 sizes over a decade (CI, ~1.5-2 minutes on 2 shared cores); small: 5 x 5
    over 1.1 decades (the default, ~4.5-6 minutes); medium: 6 x 6 over 1.7 decades (~0.5 h).

    Why this recipe (pilot runs at C = 1e11 on CPU):
      - one shape per size: every model has 2 layers and d_model a multiple of 8 (head_dim 8).
        A widths x depths grid mixed narrow-deep and wide-shallow models of similar N whose
        losses differed by more than neighbouring sizes did, which spoiled the parabolas.
        Depth 2 rather than a depth rule: deeper narrow models cost several times more CPU
        time per FLOP, and every extra shape costs a compilation (~5-15 s on 2 busy cores);
      - lr = 0.016 x 32 / d_model (`lr_width`): with one lr (3e-3) the narrow models were
        badly under-tuned (d_model=16: 2.34 at 3e-3, 2.12 at 3e-2), pushing the optimum
        towards large N; the best lr fell roughly as 1/width (d16: >= 3e-2, d32: 2e-2 of
        1e-2/2e-2/4e-2, d56: <= 1e-2);
      - sizes centred on 60 tokens per parameter, not 20: with the per-width lr the pilot's
        minimum at C = 1e11 sat at ~13k parameters, ~75 tokens per parameter (models this
        small are mostly byte embedding). This only places the runs; the fitted exponents
        and D/N come from the runs;
      - budgets from 5e10: the family's smallest model (d_model 8, 4.1k parameters, the
        256 x 8 embedding is most of it) must sit left of the optimum; at 2.5e10 it was the
        best run, so the minimum fell off the grid. The grid is coarse there (d_model 8 -> 16
        is 2.7x in N), so the smallest budgets' sizes are not symmetric about the optimum.
        The top budget is what 2 CPU cores allow; with it, approach 2's backtest (which needs
        a decade without the largest budget) runs only in `medium`;
      - 16 batches of 32 validation sequences (32k tokens, the same for every run), 4x the
        former evaluation, so that its sampling error stays below the loss gaps between sizes.
    """
    if budget not in DEMO_BUDGETS:
        raise ValueError(f"budget={budget!r}: must be one of {', '.join(DEMO_BUDGETS)}")
    budgets, widths, depths, sizes, spread, _ = DEMO_BUDGETS[budget]
    return SweepConfig(
        name=f"demo-{budget}", budgets=budgets, widths=widths, depths=depths, head_dim=8,
        sizes_per_budget=sizes, size_spread=spread, tokens_per_param=60.0, flops_method="chinchilla",
        min_steps=40, max_warmup_frac=0.1, lr_width=32,
        model=ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=256, seq_len=64),
        data=DataConfig(source="stdlib"),
        train=TrainConfig(tokens=1, global_batch_size=16, lr=1.6e-2, warmup_steps=40, schedule="cosine",
                          eval_batches=16, eval_batch_size=32, log_every=100, progress=False),
    )


def load_sweep(path, assignments: Sequence[str] = ()) -> SweepConfig:
    """An experiment file's get_config() as a SweepConfig, with --set overrides applied."""
    from scaling.config import load_experiment, override

    cfg = load_experiment(path)
    if not isinstance(cfg, SweepConfig):
        raise ValueError(f"experiment={str(path)!r}: get_config() must return a SweepConfig, got {type(cfg).__name__}")
    return override(cfg, list(assignments))


def demo(budget: str = "small", out_dir="scaling_demo", *, forecast_budget: float | None = None) -> "object":
    """`scaling demo`: plan and run the demo sweep on CPU, then fit, forecast and plot.

    Every number printed comes from the runs just trained (rerunning reuses finished runs).
    Returns the `scaling.report.Report`.
    """
    from scaling import report

    cfg = demo_config(budget)
    t0 = time.perf_counter()
    out_dir = str(_epath(out_dir) / budget)
    res = run_sweep(cfg, out_dir)
    if res.preempted:
        return None
    t_train = time.perf_counter() - t0
    print(f"\ntrained {len(res.trained)} runs ({len(res.skipped)} already done) in {t_train:.0f} s; fitting...\n",
          flush=True)
    rep = report.summarize(out_dir, budget=forecast_budget, n_bootstrap=DEMO_BUDGETS[budget][5],
                           plot_dir=str(_epath(out_dir) / "plots"))
    mins = _loss_by_budget(rep)
    if mins:
        print("\nbest loss per budget: " + ", ".join(f"C={c:.3g}: {l:.4f}" for c, l in mins), flush=True)
    print(f"demo ({budget}) wall time: {time.perf_counter() - t0:.0f} s", flush=True)
    return rep


def _loss_by_budget(rep) -> list[tuple[float, float]]:
    best: dict[float, float] = {}
    for r in rep.main_rows:
        best[r["budget"]] = min(best.get(r["budget"], math.inf), r[rep.metric])
    return sorted(best.items())
