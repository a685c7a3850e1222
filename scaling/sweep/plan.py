"""Planning an IsoFLOP sweep: which model sizes at each budget, how many tokens each.

    runs = plan(SweepConfig(budgets=(1e13, 3e13, 1e14), widths=(64, 128, 256), depths=(2, 4, 6), ...))
    print(format_plan(runs))

The plan follows Hoffmann et al. 2022, sec. 3.2 (approach 2, IsoFLOP profiles): for each
FLOP budget C a handful of model sizes spread geometrically around the expected optimum,
each trained on D = C / (FLOPs per token) tokens with its learning-rate schedule ending at
exactly D (their sec. 3.1 and Fig. A1: a cosine longer than the run biases its loss). The
expected optimum comes from a prior law N_opt = k C^a when one is given, otherwise from
the 20-tokens-per-parameter rule (Hoffmann et al. 2022, Table 3: D_opt / N_opt ~ 20),
solving C = per_token(N) x 20 N on the family.

Each run also knows how many times it repeats its data (epochs = tokens trained / unique
tokens of the training split, `scaling.data.count_unique_tokens`); `check_repeats` refuses a
plan with a run above `SweepConfig.max_epochs` (Muennighoff et al. 2023: up to ~4 epochs
repeated data is nearly as good as unique data, beyond that it is not).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from typing import Sequence

from scaling import family
from scaling import memory as memory_lib
from scaling.config import ModelConfig, RunConfig
from scaling.data import DataConfig, count_unique_tokens
from scaling.flops import param_counts, per_token
from scaling.sweep.config import PlannedRun, SweepConfig

_SHAPE_FIELDS = ("d_model", "n_layers", "n_heads", "head_dim")


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


def plan_run(sweep: SweepConfig, budget: float, cfg: ModelConfig, seed_index: int = 0,
             data: DataConfig | None = None) -> PlannedRun:
    """The run of shape `cfg` at `budget` under the sweep's recipe: D = C / per_token(cfg,
    flops_method) tokens (rounded to whole tokens) and TrainConfig.tokens = D, so the schedule
    ends at the run's own D; the learning rate by the sweep's width rule; warmup capped at
    `max_warmup_frac` of the run; `data` (default the sweep's) e.g. with a cap of its unique
    tokens (ids end in "-u<cap>")."""
    data = sweep.data if data is None else data
    fpt = per_token(cfg, sweep.flops_method)
    D = int(round(budget / fpt))
    cap = f"-u{data.unique_tokens}" if data.unique_tokens is not None and sweep.unique_tokens else ""
    run_id = _run_id(budget, cfg) + cap + (f"-s{seed_index}" if sweep.seeds > 1 else "")
    steps = max(1, math.ceil(D / (sweep.train.global_batch_size * cfg.seq_len)))
    branches = tuple(sorted({int(f * D) for f in sweep.wsd_branch_fracs if 0 < int(f * D) < D}))
    lr = sweep.train.lr * sweep.lr_width / cfg.d_model if sweep.lr_width else sweep.train.lr
    train = sweep.train.replace(
        tokens=D, flops_method=sweep.flops_method, wsd_branches=branches, lr=lr, seed=sweep.train.seed + seed_index,
        warmup_steps=min(sweep.train.warmup_steps, int(sweep.max_warmup_frac * steps)))
    pc = param_counts(cfg)
    unique = count_unique_tokens(data, seq_len=cfg.seq_len, split="train")  # memoised
    return PlannedRun(run_id=run_id, budget=float(budget), N=pc.total, N_non_embedding=pc.non_embedding, D=D,
                      flops_per_token=fpt, unique_tokens=unique,
                      config=RunConfig(model=cfg, data=data, train=train, name=run_id))


def plan(sweep: SweepConfig, *, warn: bool = True) -> list[PlannedRun]:
    """Every run of the sweep, by budget, size, loop count, data cap and seed, deterministic
    (ids like "C3e+12-d128-L4", "C3e+12-d128-L4-x2" for 2 loops, "C3e+12-d128-L4-u250000" for a
    cap of 250,000 unique tokens).

    Each run is `plan_run(sweep, budget, shape)` for the shapes picked around the expected
    optimum (each shape once per `sweep.loops` count and once per `sweep.unique_tokens` cap,
    when given); runs under `min_steps` optimizer steps are dropped with a warning.
    """
    ladder = _ladder(sweep)
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for budget in sweep.budgets:
        shapes = _pick_sizes(sweep, budget, ladder)
        if sweep.loops:
            shapes = [shape.replace(loops=k) for shape in shapes for k in sweep.loops]
        datas = [sweep.data.replace(unique_tokens=cap) for cap in sweep.unique_tokens] or [sweep.data]
        for cfg, data, seed_index in itertools.product(shapes, datas, range(sweep.seeds)):
            run = plan_run(sweep, budget, cfg, seed_index, data)
            if run.run_id in seen:
                continue
            seen.add(run.run_id)
            if run.steps < sweep.min_steps:
                if warn:
                    tokens_per_step = sweep.train.global_batch_size * cfg.seq_len
                    warnings.warn(f"sweep: skipping {run.run_id}: D={run.D:,} tokens is {run.steps} steps of "
                                  f"{tokens_per_step:,} tokens (< min_steps={sweep.min_steps})", stacklevel=2)
                continue
            runs.append(run)
    return runs


def neighbours(sweep: SweepConfig, n: float) -> list[ModelConfig]:
    """The family's shape nearest (in log N) to `n` and one size step each side: the grid's
    neighbouring shapes, or targets a factor 1.5 apart for a target-size family."""
    if not sweep.widths:
        base = _base_model_fields(sweep.model)
        return family.from_target_params([n / 1.5, n, n * 1.5], aspect_ratio=sweep.aspect_ratio,
                                         head_dim=sweep.head_dim, count=sweep.count, **base)
    ladder = _ladder(sweep)
    i = min(range(len(ladder)), key=lambda j: abs(math.log(_n(ladder[j], sweep.count) / n)))
    return ladder[max(0, i - 1):i + 2]


def check_repeats(runs: Sequence[PlannedRun], max_epochs: float | None) -> None:
    """ValueError naming `SweepConfig.max_epochs` when a run would repeat its training data
    more than `max_epochs` times (None: no limit)."""
    over = [r for r in runs if max_epochs is not None and r.epochs > max_epochs]
    if not over:
        return
    worst = max(over, key=lambda r: r.epochs)
    raise ValueError(
        f"SweepConfig.max_epochs={max_epochs!r}: {len(over)} of {len(runs)} runs would repeat the "
        f"{_fmt_count(worst.unique_tokens)} unique training tokens more often, up to {worst.epochs:.1f} epochs "
        f"({worst.run_id}: {_fmt_count(worst.tokens)} tokens); beyond ~4 epochs repeated tokens are worth "
        "markedly less than fresh ones (Muennighoff et al. 2023), so the fitted law would not be the "
        "unique-data law. Use more data (DataConfig), smaller budgets, or raise max_epochs (None: no "
        f"limit) to study repeated data on purpose. Over: {', '.join(f'{r.run_id} ({r.epochs:.1f})' for r in over)}")


def estimate_wall_s(run: PlannedRun, flops_per_s, overhead_s: float = 0.0) -> float:
    """Seconds to train `run` at a sustained `flops_per_s` (a number, or a function of the
    run), plus a fixed per-run overhead."""
    rate = flops_per_s(run) if callable(flops_per_s) else flops_per_s
    return run.flops / rate + overhead_s


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
                overhead_s: float = 0.0, done: set[str] = frozenset(), devices: int | None = None,
                device_kind: str = "") -> str:
    """The plan as a table (run id, N total and non-embedding, D, steps, C, tokens/param,
    epochs of the training data, estimated wall time) with totals; runs in `done` are marked
    and not counted in the time. Epochs: "-" for unlimited data (synthetic). With `devices`, a
    column of each run's estimated bytes per device on its mesh (`scaling.memory`, data x
    TrainConfig.mesh_fsdp), marked "!" where it exceeds a `device_kind` chip."""
    header = ("run id", "N total", "N non-emb", "D", "steps", "C", "D/N", "epochs", "est. wall",
              *(("mem/device",) if devices else ()), "")
    rows = [header]
    total_c = total_s = 0.0
    over = 0
    for r in runs:
        est = estimate_wall_s(r, flops_per_s, overhead_s) if flops_per_s else float("nan")
        is_done = r.run_id in done
        if not is_done and flops_per_s:
            total_s += est
        total_c += r.flops
        mem = ()
        if devices:
            fsdp = r.config.train.mesh_fsdp
            p = memory_lib.plan(r.config, max(devices // fsdp, 1), fsdp, device_kind)
            over += not p.fits
            mem = (memory_lib.fmt_bytes(p.total) + ("" if p.fits else "!"),)
        rows.append((r.run_id, _fmt_count(r.N), _fmt_count(r.N_non_embedding), _fmt_count(r.D), str(r.steps),
                     f"{r.flops:.3g}", f"{r.tokens_per_param:.1f}",
                     f"{r.epochs:.2f}" if r.unique_tokens else "-", _fmt_s(est) if flops_per_s else "-",
                     *mem, "done" if is_done else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    todo = sum(r.run_id not in done for r in runs)
    total = f"total: {len(runs)} runs ({todo} to do), C = {total_c:.3g} FLOPs"
    uniques = sorted({r.unique_tokens for r in runs if r.unique_tokens})
    if runs:
        counts = "-".join(_fmt_count(u) for u in uniques[:: max(len(uniques) - 1, 1)])  # one, or the range of caps
        total += (f", up to {max(r.epochs for r in runs):.2f} epochs of {counts} unique training tokens"
                  if uniques else ", unlimited data (no repeats)")
    if flops_per_s:
        rate = "" if callable(flops_per_s) else f" at {flops_per_s:.3g} FLOP/s"
        total += f", est. {_fmt_s(total_s)}{rate} ({source}) + {overhead_s:.0f}s/run"
    if over:
        total += f"; {over} runs (!) exceed a {device_kind} chip's memory"
    return "\n".join(lines + [total])
