"""From a sweep's results table to fitted laws, a forecast with a band, and a plain report.

    rows = scaling.results.read_rows("out/sweep")
    rep = fit_results(rows, budget=1e18)      # approach 2 and 3, bootstrap, backtest, forecast
    print(format_report(rep))

Two estimates of the compute-optimal allocation, side by side (Hoffmann et al. 2022):
approach 2 (`scaling.fit.isoflop`: per-budget parabolas in log N, then N_opt ~ C^a) on each
run's final point, and approach 3 (`scaling.fit.chinchilla`: L = E + A/N^alpha + B/D^beta)
on every point, WSD cooldown branches included. Intervals are bootstrap percentiles over
runs (Besiroglu et al. 2024); approach 3 resamples whole runs (a run and its branches go
together). The backtest refits without the largest budget and forecasts it.

C everywhere is the sweep's own accounting (the table's "C", by its flops_method): the
forecast's D_opt = C / per_token(N_opt), with per_token interpolated over the family's runs
(log-log), not 6N.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable, Sequence

import numpy as np

from scaling.results import finite

LIMITS = (
    "What this law does not tell you:\n"
    "  - downstream abilities: it forecasts validation loss (and bits per byte) on this data only,\n"
    "    not accuracy on tasks, and small loss differences can hide large task differences;\n"
    "  - behaviour beyond the fitted range: every budget past the largest one run is an\n"
    "    extrapolation (the band only covers the spread of these runs, not a change of regime);\n"
    "  - other data, tokenizers, architectures or recipes (learning rate, batch size, schedule):\n"
    "    the constants and exponents belong to this exact setup."
)


def usable(rows: Sequence[dict], metric: str = "val_loss") -> list[dict]:
    """Finished rows with a finite, positive metric and positive N, D, C."""
    out = []
    for r in rows:
        if r.get("status", "finished") != "finished":
            continue
        if not all(finite(r.get(k)) and r.get(k) > 0 for k in (metric, "N", "D", "C")):
            continue
        out.append(r)
    return out


def flops_per_token_fn(rows: Sequence[dict], n_key: str = "N") -> Callable:
    """N -> training FLOPs per token of the sweep's family, interpolated log-log over its runs
    (C / D of each row), extrapolated with the end slopes; 6N when only one size was run."""
    pairs = sorted({(float(r[n_key]), float(r["C"]) / float(r["D"])) for r in rows})
    by_n: dict[float, float] = {}
    for n, c in pairs:
        by_n[n] = c
    log_n = np.log(np.array(list(by_n)))
    log_c = np.log(np.array(list(by_n.values())))

    if len(log_n) < 2:
        ratio = math.exp(log_c[0] - log_n[0]) if len(log_n) else 6.0

        def single(N):
            return ratio * np.asarray(N, dtype=np.float64)

        return single

    def fpt(N):
        x = np.log(np.asarray(N, dtype=np.float64))
        y = np.interp(x, log_n, log_c)
        lo_slope = (log_c[1] - log_c[0]) / (log_n[1] - log_n[0])
        hi_slope = (log_c[-1] - log_c[-2]) / (log_n[-1] - log_n[-2])
        y = np.where(x < log_n[0], log_c[0] + lo_slope * (x - log_n[0]), y)
        y = np.where(x > log_n[-1], log_c[-1] + hi_slope * (x - log_n[-1]), y)
        return np.exp(y)

    return fpt


def frontier(params: dict[str, np.ndarray], C, fpt: Callable, *, grid: int = 600) -> tuple[np.ndarray, ...]:
    """Compute-optimal (N, D, L) of Chinchilla laws at budgets C, vectorised over laws.

    `params`: E, A, B, alpha, beta, each a scalar or an (R,) array of R laws (e.g. bootstrap
    replicates). Minimises L(N, C / fpt(N)) over a log-N grid around the 6ND closed form
    (+- 4 decades, `grid` points, then one parabolic refinement). Returns (R, len(C)) arrays.
    """
    E, A, B, al, be = (np.atleast_1d(np.asarray(params[k], dtype=np.float64)) for k in ("E", "A", "B", "alpha", "beta"))
    C = np.atleast_1d(np.asarray(C, dtype=np.float64))
    a = be / (al + be)
    G = (al * A / (be * B)) ** (1.0 / (al + be))
    center = np.log(G[:, None] * (C[None, :] / 6.0) ** a[:, None])  # (R, K)
    offsets = np.linspace(-4 * math.log(10), 4 * math.log(10), grid)
    logN = center[..., None] + offsets  # (R, K, G)
    N = np.exp(logN)
    D = C[None, :, None] / fpt(N)
    with np.errstate(over="ignore", invalid="ignore"):
        L = E[:, None, None] + A[:, None, None] * N ** -al[:, None, None] + B[:, None, None] * D ** -be[:, None, None]
    L = np.where(np.isfinite(L), L, np.inf)
    i = np.clip(np.argmin(L, axis=-1), 1, grid - 2)
    take = lambda arr, j: np.take_along_axis(arr, j[..., None], axis=-1)[..., 0]
    y0, y1, y2 = take(L, i - 1), take(L, i), take(L, i + 1)
    denom = y0 - 2 * y1 + y2
    step = offsets[1] - offsets[0]
    shift = np.where((denom > 0) & np.isfinite(denom), 0.5 * (y0 - y2) / np.where(denom > 0, denom, 1), 0.0)
    logN_opt = take(logN, i) + np.clip(shift, -1, 1) * step
    N_opt = np.exp(logN_opt)
    D_opt = C[None, :] / fpt(N_opt)
    L_opt = E[:, None] + A[:, None] * N_opt ** -al[:, None] + B[:, None] * D_opt ** -be[:, None]
    return N_opt, D_opt, L_opt


@dataclasses.dataclass
class Report:
    """Everything `format_report` prints and `scaling.plot` draws.

    isoflop / isoflop_boot: approach 2 and its bootstrap (None if it could not be fitted, with
    the reason in `notes`); chinchilla / chinchilla_boot: approach 3; backtest_isoflop /
    backtest_chinchilla: refits without the largest budget; forecast: at `budget`, a dict of
    N_opt, D_opt, L_opt (approach 3) and N_opt_isoflop, D_opt_isoflop (approach 2), each with
    a (low, high) 95% interval under the key + "_interval".
    """

    rows: list[dict]
    metric: str
    level: float
    budget: float | None
    flops_method: str | None
    isoflop: object = None
    isoflop_boot: object = None
    chinchilla: object = None
    chinchilla_boot: object = None
    backtest_isoflop: object = None
    backtest_chinchilla: object = None
    forecast: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    fpt: Callable | None = None

    @property
    def main_rows(self) -> list[dict]:
        return [r for r in self.rows if r.get("branch") is None]

    def chinchilla_replicates(self) -> dict[str, np.ndarray] | None:
        if self.chinchilla_boot is None:
            return None
        return {k: self.chinchilla_boot.samples[k] for k in ("E", "A", "B", "alpha", "beta")}


def isoflop_bootstrap(full, C, N, L, *, n: int, seed: int = 0, at_C=None, flops_per_token=None):
    """Residual bootstrap of approach 2, stratified by budget.

    Resampling whole runs (`scaling.fit.bootstrap`) breaks IsoFLOP profiles of 4-6 runs: a
    resample often has fewer than 3 distinct sizes in a budget, and the parabola is undefined.
    Instead every replicate keeps the design (each budget's sizes) and redraws the losses as
    fitted parabola + residuals resampled with replacement within the budget, inflated by
    sqrt(n_b / (n_b - 3)) for the 3 fitted coefficients (Davison & Hinkley 1997, sec. 6.2.3).
    Budgets that the full fit skipped stay out of every replicate.
    Returns a `scaling.fit.BootstrapResult` over a, b, the coefficients and, with `at_C`,
    N_opt and D_opt.
    """
    from scaling import fit
    from scaling.fit.approaches import _group_budgets

    rng = np.random.default_rng(seed)
    # Replicates keep the full fit's budgets: a budget it skipped (a flat or downward profile)
    # would otherwise enter the replicates whose noise happens to curve it upward, with an
    # optimum far outside its sizes, and blow up the interval with a different estimator.
    skipped = [float(b) for b in getattr(full, "skipped_budgets", ()) or ()]
    groups = [g for g in _group_budgets(C) if len(g) >= 4
              and not any(abs(math.log(float(np.exp(np.mean(np.log(C[g])))) / b)) <= 1e-6 for b in skipped)]
    keep = np.sort(np.concatenate(groups)) if groups else np.arange(0)
    fitted, residuals = np.array(L, dtype=np.float64), {}
    for g in groups:
        coef = np.polyfit(np.log(N[g]), L[g], 2)
        fitted[g] = np.polyval(coef, np.log(N[g]))
        residuals[tuple(g)] = (L[g] - fitted[g]) * math.sqrt(len(g) / max(len(g) - 3, 1))

    def derived(law):
        values = dict(law.params)
        if at_C is not None:
            n_opt, d_opt = law.compute_optimal(at_C)
            values["N_opt"], values["D_opt"] = float(n_opt), float(d_opt)
        return values

    laws = []
    for _ in range(n):
        L_star = np.array(L, dtype=np.float64)
        for g in groups:
            r = residuals[tuple(g)]
            L_star[g] = fitted[g] + rng.choice(r, size=len(g), replace=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                laws.append(fit.isoflop(C[keep], N[keep], np.maximum(L_star[keep], 1e-9),
                                        flops_per_token=flops_per_token))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            continue  # a replicate whose parabolas give no usable optimum: counted in n_failed
    estimates = derived(full)
    per = [derived(law) for law in laws]
    samples = {k: np.array([v[k] for v in per]) for k in estimates}
    return fit.BootstrapResult(law=full, estimates=estimates, samples=samples, n=n, n_failed=n - len(laws),
                               converged_fraction=1.0 if laws else 0.0, grouped=True)


def _budget_of(row: dict) -> float:
    return float(row["budget"]) if finite(row.get("budget")) else float(row["C"])


def fit_results(rows: Sequence[dict], *, budget: float | None = None, n_bootstrap: int = 1000, seed: int = 0,
                metric: str = "val_loss", n_key: str = "N", level: float = 0.95) -> Report:
    """Fit approach 2 and 3 to a sweep's rows, bootstrap them, backtest on the largest budget,
    and forecast at `budget` (default: 10x the largest budget run). Fits that the data cannot
    support (too few budgets or sizes) are left None with the reason in `Report.notes`."""
    from scaling import fit

    rows = usable(rows, metric)
    main = [r for r in rows if r.get("branch") is None]
    methods = {r.get("flops_method") for r in rows} - {None}
    rep = Report(rows=rows, metric=metric, level=level, budget=budget,
                 flops_method=methods.pop() if len(methods) == 1 else None)
    if len(methods) > 0:
        rep.notes.append("rows mix FLOP accountings; C is not comparable across them")
    if not main:
        rep.notes.append(f"no finished runs with a finite {metric}: nothing to fit")
        return rep
    fpt = flops_per_token_fn(rows, n_key)
    rep.fpt = fpt
    budgets_run = sorted({_budget_of(r) for r in main})
    if rep.budget is None:
        rep.budget = 10.0 * budgets_run[-1]
    target = rep.budget

    C = np.array([_budget_of(r) for r in main])
    Nm = np.array([float(r[n_key]) for r in main])
    Lm = np.array([float(r[metric]) for r in main])
    # Approach 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rep.isoflop = fit.isoflop(C, Nm, Lm, flops_per_token=fpt)
            rep.isoflop_boot = isoflop_bootstrap(rep.isoflop, C, Nm, Lm, n=n_bootstrap, seed=seed, at_C=target,
                                                 flops_per_token=fpt)
        rep.notes.extend(sorted({f"isoflop: {w.message}" for w in caught if "isoflop" in str(w.message)}))
    except (ValueError, ArithmeticError) as e:
        rep.notes.append(f"approach 2 (isoflop) not fitted: {e}")
    # Approach 3
    N = np.array([float(r[n_key]) for r in rows])
    D = np.array([float(r["D"]) for r in rows])
    L = np.array([float(r[metric]) for r in rows])
    groups = np.array([r["run_id"] for r in rows])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rep.chinchilla = fit.chinchilla(N, D, L)
            rep.chinchilla_boot = fit.bootstrap(fit.chinchilla, N, D, L, n=n_bootstrap, seed=seed, groups=groups)
        rep.notes.extend(sorted({f"chinchilla: {w.message}" for w in caught
                                 if issubclass(w.category, fit.ScalingFitWarning)}))
    except (ValueError, ArithmeticError) as e:
        rep.notes.append(f"approach 3 (chinchilla) not fitted: {e}")
    # Backtests: hold out the largest budget.
    if len(budgets_run) >= 2:
        largest = budgets_run[-1]
        compute = np.array([_budget_of(r) if r.get("branch") is None else float(r["C"]) for r in rows])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep.backtest_chinchilla = fit.backtest(fit.chinchilla, N, D, L, compute=compute, holdout=largest)
        except (ValueError, ArithmeticError) as e:
            rep.notes.append(f"backtest (approach 3) not run: {e}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep.backtest_isoflop = fit.backtest(fit.isoflop, C, Nm, Lm, holdout=largest, flops_per_token=fpt)
        except (ValueError, ArithmeticError) as e:
            rep.notes.append(f"backtest (approach 2) not run: {e}")
    # Forecast
    f = rep.forecast
    f["C"] = target
    if rep.chinchilla is not None:
        n_opt, d_opt, l_opt = frontier(rep.chinchilla.params, [target], fpt)
        f["N_opt"], f["D_opt"], f["L_opt"] = float(n_opt[0, 0]), float(d_opt[0, 0]), float(l_opt[0, 0])
        reps = rep.chinchilla_replicates()
        if reps is not None and len(reps["E"]) >= 2:
            rn, rd, rl = frontier(reps, [target], fpt)
            tail = 50 * (1 - level)
            for key, arr in (("N_opt", rn), ("D_opt", rd), ("L_opt", rl)):
                arr = arr[:, 0][np.isfinite(arr[:, 0])]
                f[key + "_interval"] = tuple(float(v) for v in np.percentile(arr, [tail, 100 - tail]))
    if rep.isoflop is not None:
        n_opt, d_opt = rep.isoflop.compute_optimal(target)
        f["N_opt_isoflop"], f["D_opt_isoflop"] = float(n_opt), float(d_opt)
        if rep.isoflop_boot is not None and len(rep.isoflop_boot.samples.get("N_opt", ())) >= 2:
            f["N_opt_isoflop_interval"] = rep.isoflop_boot.interval("N_opt", level)
            f["D_opt_isoflop_interval"] = rep.isoflop_boot.interval("D_opt", level)
    if target > budgets_run[-1] * 1.0001:
        f["extrapolation"] = target / budgets_run[-1]
    return rep


def _interval(boot, name: str, level: float) -> str:
    if boot is None or name not in boot.samples or len(boot.samples[name]) < 2:
        return ""
    lo, hi = boot.interval(name, level)
    return f"[{lo:.4g}, {hi:.4g}]"


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title] + ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def format_report(rep: Report) -> str:
    """The fits, the backtest and the forecast as readable tables, then what the law does not
    predict, in plain words."""
    pct = f"{100 * rep.level:g}%"
    out = []
    main = rep.main_rows
    branches = len(rep.rows) - len(main)
    out.append(f"{len(main)} runs{f' (+{branches} WSD cooldown branch points)' if branches else ''} over "
               f"{len({_budget_of(r) for r in main})} budgets, loss = {rep.metric}, C by "
               f"{rep.flops_method or 'mixed'} accounting.")
    if rep.isoflop is not None:
        iso, boot = rep.isoflop, rep.isoflop_boot
        rows = [("a  (N_opt ~ C^a)", f"{iso.a:.3f}", _interval(boot, "a", rep.level)),
                ("b  (D_opt ~ C^b)", f"{iso.b:.3f}", _interval(boot, "b", rep.level))]
        out.append(_table(f"\nApproach 2, IsoFLOP parabolas (Hoffmann et al. 2022 sec. 3.2), {pct} bootstrap "
                          f"({boot.n - boot.n_failed} replicates):", ("quantity", "estimate", f"{pct} interval"), rows))
        per = [(f"{c:.3g}", f"{n:.4g}", f"{d:.4g}", f"{d / n:.1f}", f"{l:.4f}", "edge!" if e else "")
               for c, n, d, l, e in zip(iso.budgets, iso.N_opt_per_budget, iso.D_opt_per_budget, iso.L_min_per_budget,
                                         iso.at_edge or [False] * len(iso.budgets))]
        out.append(_table("  per budget:", ("C", "N_opt", "D_opt", "D/N", "L_min", ""), per))
    if rep.chinchilla is not None:
        law, boot = rep.chinchilla, rep.chinchilla_boot
        rows = [(k, f"{getattr(law, k):.4g}", _interval(boot, k, rep.level))
                for k in ("E", "A", "B", "alpha", "beta", "a", "b")]
        out.append(_table(f"\nApproach 3, L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022 sec. 3.3), {pct} bootstrap "
                          f"({boot.n - boot.n_failed} replicates, by run):", ("parameter", "estimate", f"{pct} interval"),
                          rows))
    bts = [(name, bt) for name, bt in (("approach 2 (N_opt)", rep.backtest_isoflop),
                                       ("approach 3 (loss)", rep.backtest_chinchilla)) if bt is not None]
    if bts:
        rows = []
        for name, bt in bts:
            for c, a, p in zip(bt.compute, bt.actual, bt.predicted):
                rows.append((name, f"{c:.3g}", f"{a:.4g}", f"{p:.4g}", f"{100 * (p / a - 1):+.2f}%"))
        out.append(_table("\nBacktest: fitted without the largest budget, forecasting it:",
                          ("law", "C", "measured", "predicted", "error"), rows))
    f = rep.forecast
    if "C" in f and ("N_opt" in f or "N_opt_isoflop" in f):
        def iv(key):
            if key + "_interval" in f:
                lo, hi = f[key + "_interval"]
                return f"[{lo:.4g}, {hi:.4g}]"
            return ""
        rows = []
        if "N_opt" in f:
            rows += [("N_opt (approach 3)", f"{f['N_opt']:.4g}", iv("N_opt")),
                     ("D_opt (approach 3)", f"{f['D_opt']:.4g}", iv("D_opt")),
                     ("D/N", f"{f['D_opt'] / f['N_opt']:.1f}", ""),
                     (f"predicted {rep.metric}", f"{f['L_opt']:.4f}", iv("L_opt"))]
        if "N_opt_isoflop" in f:
            rows += [("N_opt (approach 2)", f"{f['N_opt_isoflop']:.4g}", iv("N_opt_isoflop")),
                     ("D_opt (approach 2)", f"{f['D_opt_isoflop']:.4g}", iv("D_opt_isoflop"))]
        title = f"\nForecast at C = {f['C']:.3g} FLOPs"
        if "extrapolation" in f:
            title += f" ({f['extrapolation']:.3g}x the largest budget run: an extrapolation)"
        out.append(_table(title + ":", ("quantity", "estimate", f"{pct} interval"), rows))
    if rep.notes:
        out.append("\nNotes:\n" + "\n".join(f"  - {n}" for n in rep.notes))
    out.append("\n" + LIMITS)
    return "\n".join(out)


def summarize(path, *, budget: float | None = None, n_bootstrap: int = 1000, seed: int = 0,
              metric: str = "val_loss", plot_dir=None, write: bool = True) -> Report:
    """Read a sweep's table, fit, print the report (also saved as report.txt next to the
    table when `write`), and draw the figures into `plot_dir` when given."""
    from scaling import results as results_lib

    rows = results_lib.read_rows(path)
    if not rows:
        raise ValueError(f"results={str(path)!r}: no rows (is it a sweep directory or a results.jsonl?)")
    rep = fit_results(rows, budget=budget, n_bootstrap=n_bootstrap, seed=seed, metric=metric)
    text = format_report(rep)
    print(text, flush=True)
    if write:
        try:
            results_lib.results_path(path).parent.joinpath("report.txt").write_text(text + "\n")
        except OSError:
            pass
    if plot_dir is not None:
        from scaling import plot

        paths = plot.plot_all(rep, plot_dir)
        print("\nplots: " + ", ".join(str(p) for p in paths), flush=True)
    return rep
