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
import warnings
from typing import Callable, Sequence

import numpy as np

from scaling.results import finite, usable

LIMITS = (
    "What this law does not tell you:\n"
    "  - downstream abilities: it forecasts validation loss (and bits per byte) on this data only,\n"
    "    not accuracy on tasks, and small loss differences can hide large task differences;\n"
    "  - behaviour beyond the fitted range: every budget past the largest one run is an\n"
    "    extrapolation (the band only covers the spread of these runs, not a change of regime);\n"
    "  - other data, tokenizers, architectures or recipes (learning rate, batch size, schedule):\n"
    "    the constants and exponents belong to this exact setup."
)


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
    fpt = fit.interpolated_flops_per_token([r[n_key] for r in rows], [r["C"] for r in rows],
                                           [r["D"] for r in rows])
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
            rep.isoflop_boot = fit.isoflop_bootstrap(rep.isoflop, C, Nm, Lm, n=n_bootstrap, seed=seed, at_C=target,
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
        n_opt, d_opt, l_opt = fit.frontier(rep.chinchilla.params, [target], fpt)
        f["N_opt"], f["D_opt"], f["L_opt"] = float(n_opt[0, 0]), float(d_opt[0, 0]), float(l_opt[0, 0])
        reps = rep.chinchilla_replicates()
        if reps is not None and len(reps["E"]) >= 2:
            rn, rd, rl = fit.frontier(reps, [target], fpt)
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


# ---------------------------------------------------------------------------------------
# report.json: what research code and notebooks read

REPORT_SCHEMA = "scaling.report/1"


def forecast_summary(rep: Report) -> dict | None:
    """The forecast in the report.json schema: budget, N_opt, D_opt, loss, loss_interval
    [lo, hi], N_opt_interval [lo, hi], D_opt_interval, level, extrapolation (budget / largest
    budget run), method (which law gave it). None when no law could be fitted."""
    f = rep.forecast
    if "L_opt" not in f:
        return None
    pair = lambda key: list(f[key]) if key in f else None
    return {"budget": f["C"], "N_opt": f["N_opt"], "D_opt": f["D_opt"], "loss": f["L_opt"],
            "loss_interval": pair("L_opt_interval"), "N_opt_interval": pair("N_opt_interval"),
            "D_opt_interval": pair("D_opt_interval"), "level": rep.level,
            "extrapolation": f.get("extrapolation", 1.0), "method": "approach 3 (chinchilla), bootstrap"}


def to_json(rep: Report) -> dict:
    """The report as plain JSON: inputs, each law with its parameters and intervals, the
    backtests, the forecast (`forecast_summary`) and the notes. Schema "scaling.report/1",
    documented in the README ("report.json")."""
    main = rep.main_rows

    def params(law, boot) -> dict | None:
        if law is None:
            return None
        out = {}
        for k in ("E", "A", "B", "alpha", "beta", "a", "b"):
            if hasattr(law, k):
                iv = boot.interval(k, rep.level) if boot is not None and k in boot.samples else None
                out[k] = {"value": float(getattr(law, k)), "interval": list(iv) if iv else None}
        return out

    backtests = []
    for name, bt in (("approach 2 (N_opt)", rep.backtest_isoflop), ("approach 3 (loss)", rep.backtest_chinchilla)):
        if bt is not None:
            backtests += [{"law": name, "quantity": bt.quantity, "C": float(c), "measured": float(a),
                           "predicted": float(p), "relative_error": float(p / a - 1)}
                          for c, a, p in zip(bt.compute, bt.actual, bt.predicted)]
    iso = rep.isoflop
    return {
        "schema": REPORT_SCHEMA, "metric": rep.metric, "flops_method": rep.flops_method, "level": rep.level,
        "runs": len(main), "points": len(rep.rows), "budgets": sorted({_budget_of(r) for r in main}),
        "approach2": None if iso is None else {
            "a": params(iso, rep.isoflop_boot)["a"], "b": params(iso, rep.isoflop_boot)["b"],
            "per_budget": [{"C": c, "N_opt": n, "D_opt": d, "L_min": l}
                           for c, n, d, l in zip(iso.budgets, iso.N_opt_per_budget, iso.D_opt_per_budget,
                                                 iso.L_min_per_budget)]},
        "approach3": params(rep.chinchilla, rep.chinchilla_boot),
        "backtest": backtests,
        "forecast": forecast_summary(rep),
        "notes": list(rep.notes),
    }


def verification(forecast: dict, rows: Sequence[dict], metric: str = "val_loss") -> dict:
    """Forecast against what training the forecast's budget measured (`scaling verify`).

    `rows`: the finished main rows trained at that budget (the forecast's N_opt and its
    neighbours). Returns the measured best loss and its N, the forecast's loss error
    (forecast / measured - 1), whether the measured loss lies inside the forecast interval,
    N_opt's ratio to the measured best size, and where the measured optimum lies: "inside"
    (a smaller and a larger size both lost to it; then `N_opt_measured` is the vertex of the
    parabola in log N through the best run and its neighbours), or "at the smallest" /
    "at the largest" size run (the true optimum may lie beyond).
    """
    rows = sorted(usable(rows, metric), key=lambda r: r["N"])
    if not rows:
        raise ValueError("verification: no finished runs with a finite loss at the forecast's budget")
    losses = [float(r[metric]) for r in rows]
    i = int(np.argmin(losses))
    best = rows[i]
    where = "inside" if 0 < i < len(rows) - 1 else ("at the smallest size run" if i == 0 else "at the largest size run")
    n_measured = float(best["N"])
    if where == "inside":
        x = np.log([float(r["N"]) for r in rows[i - 1:i + 2]])
        c2, c1, _ = np.polyfit(x, losses[i - 1:i + 2], 2)
        if c2 > 0:
            n_measured = float(np.exp(-c1 / (2 * c2)))
    lo_hi = forecast.get("loss_interval")
    error = forecast["loss"] / losses[i] - 1
    return {
        "budget": forecast["budget"], "runs": [{"run_id": r["run_id"], "N": r["N"], "D": r["D"], "loss": r[metric]}
                                               for r in rows],
        "measured_loss": losses[i], "measured_N": float(best["N"]), "N_opt_measured": n_measured,
        "optimum": where, "forecast_loss": forecast["loss"], "loss_error": error,
        "inside_interval": None if not lo_hi else bool(lo_hi[0] <= losses[i] <= lo_hi[1]),
        "N_opt_ratio": forecast["N_opt"] / n_measured,
    }


def format_verification(v: dict) -> str:
    inside = {True: "inside", False: "OUTSIDE", None: "no interval"}[v["inside_interval"]]
    lines = [f"Verification at C = {v['budget']:.3g} FLOPs (trained with the sweep's own recipe):"]
    lines += [f"  {r['run_id']:<28} N={r['N']:>12,.0f}  D={r['D']:>14,.0f}  loss={r['loss']:.4f}" for r in v["runs"]]
    lines += [f"  forecast loss {v['forecast_loss']:.4f} vs measured best {v['measured_loss']:.4f}: "
              f"{100 * v['loss_error']:+.2f}% ({inside} the forecast interval)",
              f"  measured optimum {v['optimum']}, N ~ {v['N_opt_measured']:.4g}; forecast N_opt / measured = "
              f"{v['N_opt_ratio']:.2f}x"]
    return "\n".join(lines)


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
