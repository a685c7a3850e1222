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

    law_forecast: the `scaling.fit.forecast` of the rows (law forms compared by a rolling-origin
    backtest, the best chosen; None if it could not be fitted, with the reason in `notes`).
    isoflop / isoflop_boot: approach 2 and its bootstrap; chinchilla / chinchilla_boot: approach
    3; backtest_isoflop / backtest_chinchilla: refits without the largest budget.
    forecast: at `budget`, the chosen law's "form", "N_opt", "D_opt", "L_opt" with
    `forecast_level` intervals (key + "_interval"; the loss interval includes the extrapolation
    error the backtest measured), beside approach 3's (key + "_approach3", `level` bootstrap
    intervals) and approach 2's N_opt, D_opt ("_isoflop").
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
    law_forecast: object = None
    forecast_level: float = 0.9

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
    finished = [r for r in rows if r.get("final", True)]
    if len(finished) < len(rows):
        rep_note = (f"{len(rows) - len(finished)} intermediate evaluations left out: a run's loss before its "
                    "schedule decayed is biased high, so only each run's last point (and WSD cooldown "
                    "branch ends) is fitted")
        rows = finished
    else:
        rep_note = None
    main = [r for r in rows if r.get("branch") is None]
    methods = {r.get("flops_method") for r in rows} - {None}
    rep = Report(rows=rows, metric=metric, level=level, budget=budget,
                 flops_method=methods.pop() if len(methods) == 1 else None)
    if len(methods) > 0:
        rep.notes.append("rows mix FLOP accountings; C is not comparable across them")
    if rep_note:
        rep.notes.append(rep_note)
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
    # The forecast: law forms compared by a rolling-origin backtest (scaling.fit.forecast).
    compute = np.array([_budget_of(r) if r.get("branch") is None else float(r["C"]) for r in rows])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rep.law_forecast = fit.forecast(N, D, L, C=compute, runs=groups, final=np.ones(len(rows), bool),
                                            flops_per_token=fpt, level=rep.forecast_level)
        rep.notes.extend(sorted({f"forecast: {w.message}" for w in caught
                                 if issubclass(w.category, fit.ScalingFitWarning)}))
    except (ValueError, ArithmeticError) as e:
        rep.notes.append(f"law forms not compared (fit.forecast): {e}")
    f = rep.forecast
    f["C"] = target
    if rep.chinchilla is not None:
        n_opt, d_opt, l_opt = fit.frontier(rep.chinchilla.params, [target], fpt)
        f["N_opt_approach3"], f["D_opt_approach3"] = float(n_opt[0, 0]), float(d_opt[0, 0])
        f["L_opt_approach3"] = float(l_opt[0, 0])
        reps = rep.chinchilla_replicates()
        if reps is not None and len(reps["E"]) >= 2:
            rn, rd, rl = fit.frontier(reps, [target], fpt)
            tail = 50 * (1 - level)
            for key, arr in (("N_opt", rn), ("D_opt", rd), ("L_opt", rl)):
                arr = arr[:, 0][np.isfinite(arr[:, 0])]
                f[key + "_approach3_interval"] = tuple(float(v) for v in np.percentile(arr, [tail, 100 - tail]))
    if rep.law_forecast is not None:
        opt = rep.law_forecast.optimal(target)
        f.update(form=opt.form, N_opt=float(opt.N), D_opt=float(opt.D), L_opt=float(opt.loss),
                 L_opt_interval=tuple(map(float, opt.loss_interval)), N_opt_interval=tuple(map(float, opt.N_interval)))
    elif "L_opt_approach3" in f:  # too few points to compare forms: approach 3 alone
        f.update(form="chinchilla (approach 3 alone)", N_opt=f["N_opt_approach3"], D_opt=f["D_opt_approach3"],
                 L_opt=f["L_opt_approach3"])
        for key in ("N_opt", "L_opt"):
            if key + "_approach3_interval" in f:
                f[key + "_interval"] = f[key + "_approach3_interval"]
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
    [lo, hi], N_opt_interval [lo, hi], level (of both intervals), extrapolation (budget /
    largest budget run), form (the law form the backtest chose). None when no law could be
    fitted."""
    f = rep.forecast
    if "L_opt" not in f:
        return None
    pair = lambda key: list(f[key]) if key in f else None
    return {"budget": f["C"], "N_opt": f["N_opt"], "D_opt": f["D_opt"], "loss": f["L_opt"],
            "loss_interval": pair("L_opt_interval"), "N_opt_interval": pair("N_opt_interval"),
            "level": rep.forecast_level if rep.law_forecast is not None else rep.level,
            "extrapolation": f.get("extrapolation", 1.0), "form": f["form"]}


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
        "law_forms": rep.law_forecast.to_dict() if rep.law_forecast is not None else None,
        "forecast": forecast_summary(rep),
        "notes": list(rep.notes),
    }


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
    if rep.law_forecast is not None:
        out.append("\nLaw forms compared by a rolling-origin backtest (fit on the smaller runs, forecast "
                   "the larger):\n" + str(rep.law_forecast.candidates))
    f = rep.forecast
    if "L_opt" in f:
        fpct = f"{100 * (rep.forecast_level if rep.law_forecast is not None else rep.level):g}%"

        def iv(key):
            if key + "_interval" in f:
                lo, hi = f[key + "_interval"]
                return f"[{lo:.4g}, {hi:.4g}]"
            return ""
        rows = [("law form (chosen)", f["form"], ""), ("N_opt", f"{f['N_opt']:.4g}", iv("N_opt")),
                ("D_opt", f"{f['D_opt']:.4g}", ""), ("D/N", f"{f['D_opt'] / f['N_opt']:.1f}", ""),
                (f"predicted {rep.metric}", f"{f['L_opt']:.4f}", iv("L_opt"))]
        if "L_opt_approach3" in f and rep.law_forecast is not None:
            rows += [(f"{rep.metric}, approach 3 alone ({pct} bootstrap)", f"{f['L_opt_approach3']:.4f}",
                      iv("L_opt_approach3")),
                     ("N_opt, approach 3 alone", f"{f['N_opt_approach3']:.4g}", iv("N_opt_approach3"))]
        if "N_opt_isoflop" in f:
            rows += [(f"N_opt, approach 2 ({pct} bootstrap)", f"{f['N_opt_isoflop']:.4g}", iv("N_opt_isoflop")),
                     ("D_opt, approach 2", f"{f['D_opt_isoflop']:.4g}", iv("D_opt_isoflop"))]
        title = f"\nForecast at C = {f['C']:.3g} FLOPs"
        if "extrapolation" in f:
            title += f" ({f['extrapolation']:.3g}x the largest budget run: an extrapolation)"
        out.append(_table(title + ":", ("quantity", "estimate", f"{fpct} interval"), rows))
    if rep.notes:
        out.append("\nNotes:\n" + "\n".join(f"  - {n}" for n in rep.notes))
    out.append("\n" + LIMITS)
    return "\n".join(out)
