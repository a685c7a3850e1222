"""Figures of a sweep (matplotlib, Agg backend, PNG): from a `scaling.report.Report`.

    rep = scaling.report.fit_results(scaling.results.read_rows("out/sweep"))
    paths = plot_all(rep, "out/sweep/plots")

- `plot_isoflop`: loss vs N per budget, with each budget's fitted parabola and its minimum
  (Hoffmann et al. 2022, Fig. 3 left).
- `plot_frontier`: loss vs compute, every run, the compute-optimal frontier of the fitted
  approach-3 law and its bootstrap band, and the forecast.
- `plot_optimal`: N_opt(C) and D_opt(C): the per-budget minima and both fitted power laws
  (Hoffmann et al. 2022, Fig. 3 centre and right).
- `plot_backtest`: forecasts of the held-out largest budget against what was measured.

Plotting never trains and never fits: every number drawn comes from the report.
"""

from __future__ import annotations

import io
import math

import numpy as np

from scaling import paths
from scaling.fit import frontier
from scaling.report import Report


def _plt():
    import sys

    import matplotlib

    if "ipykernel" not in sys.modules:  # scripts and the CLI draw off-screen; notebooks keep their backend
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _budget_colors(budgets):
    plt = _plt()
    cmap = plt.get_cmap("viridis")
    budgets = sorted(budgets)
    n = max(len(budgets) - 1, 1)
    return {c: cmap(0.05 + 0.85 * i / n) for i, c in enumerate(budgets)}


def _budget(r: dict) -> float:
    b = r.get("budget")
    return float(b) if isinstance(b, (int, float)) and math.isfinite(b) else float(r["C"])


def _save(fig, path):
    """PNG to `path` (local or gs://: rendered in memory, written through `scaling.paths`)."""
    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        paths.write_atomic(path, buffer.getvalue())
    return fig


def plot_isoflop(rep: Report, path=None):
    """IsoFLOP profiles: final loss vs N for each budget, its parabola and minimum."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    main = rep.main_rows
    colors = _budget_colors({_budget(r) for r in main})
    for c, color in colors.items():
        pts = sorted((float(r["N"]), float(r[rep.metric])) for r in main if _budget(r) == c)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=color, s=28, zorder=3, label=f"C = {c:.2g}")
    iso = rep.isoflop
    if iso is not None:
        for c, (c2, c1, c0), n_opt, l_min in zip(iso.budgets, iso.parabolas, iso.N_opt_per_budget, iso.L_min_per_budget):
            color = colors.get(c) or colors[min(colors, key=lambda b: abs(math.log(b / c)))]
            ns = [float(r["N"]) for r in main if abs(math.log(_budget(r) / c)) < 1e-6]
            lo, hi = math.log(min(ns + [n_opt])) - 0.2, math.log(max(ns + [n_opt])) + 0.2
            x = np.linspace(lo, hi, 100)
            ax.plot(np.exp(x), c2 * x**2 + c1 * x + c0, color=color, lw=1.2)
            ax.scatter([n_opt], [l_min], marker="*", s=140, color=color, edgecolor="black", zorder=4)
        ax.plot([], [], "k*", ms=9, label="parabola minimum")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (total)")
    ax.set_ylabel(rep.metric.replace("_", " "))
    ax.set_title("IsoFLOP profiles (approach 2)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _c_grid(rep: Report) -> np.ndarray:
    cs = [float(r["C"]) for r in rep.rows]
    lo = min(cs) / 1.5
    hi = max(max(cs) * 1.5, rep.forecast.get("C", 0) * 1.5)
    return np.geomspace(lo, hi, 60)


def plot_frontier(rep: Report, path=None):
    """Loss vs compute: every point, the chosen law's compute-optimal frontier with its
    backtest-calibrated interval (widening with the distance beyond the runs), approach 3's
    frontier with its bootstrap band, and the forecast."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colors = _budget_colors({_budget(r) for r in rep.main_rows})
    for r in rep.rows:
        branch = r.get("branch") is not None
        color = "0.6" if branch else colors[_budget(r)]
        ax.scatter(float(r["C"]), float(r[rep.metric]), s=18 if branch else 28, color=color, zorder=3,
                   marker="x" if branch else "o")
    if any(r.get("branch") is not None for r in rep.rows):
        ax.scatter([], [], marker="x", color="0.6", label="WSD cooldown branch")
    level = f"{100 * rep.level:g}%"
    if rep.law_forecast is not None:
        C = _c_grid(rep)
        opt = rep.law_forecast.optimal(C)
        ax.plot(C, opt.loss, color="C0", lw=2.0, label=f"chosen law ({opt.form}) frontier")
        ax.fill_between(C, *opt.loss_interval, color="C0", alpha=0.15,
                        label=f"{100 * rep.forecast_level:g}% forecast interval")
    if rep.chinchilla is not None and rep.fpt is not None:
        C = _c_grid(rep)
        _, _, L = frontier(rep.chinchilla.params, C, rep.fpt)
        ax.plot(C, L[0], color="C3", lw=1.2, ls="--", label="approach 3 frontier L(N_opt, D_opt)")
        reps = rep.chinchilla_replicates()
        if reps is not None and len(reps["E"]) >= 2:
            _, _, LR = frontier(reps, C, rep.fpt)
            tail = 50 * (1 - rep.level)
            lo, hi = np.nanpercentile(LR, [tail, 100 - tail], axis=0)
            ax.fill_between(C, lo, hi, color="C3", alpha=0.12, label=f"approach 3: {level} bootstrap band")
        cmax = max(_budget(r) for r in rep.main_rows)
        ax.axvline(cmax, color="0.5", ls=":", lw=1)
        ax.text(cmax, ax.get_ylim()[1], " largest budget run", fontsize=7, va="top", color="0.4")
    f = rep.forecast
    if "L_opt" in f:
        err = None
        if "L_opt_interval" in f:
            lo, hi = f["L_opt_interval"]
            err = [[f["L_opt"] - lo], [hi - f["L_opt"]]]
        ax.errorbar([f["C"]], [f["L_opt"]], yerr=err, fmt="D", color="C0", mec="black", capsize=4,
                    label=f"forecast at C = {f['C']:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel(f"training compute C (FLOPs, {rep.flops_method or 'mixed'} accounting)")
    ax.set_ylabel(rep.metric.replace("_", " "))
    ax.set_title("Loss vs compute")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_optimal(rep: Report, path=None):
    """N_opt(C) and D_opt(C): per-budget IsoFLOP minima and the fitted power laws."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    C = _c_grid(rep)
    iso = rep.isoflop
    for ax, key, label in ((axes[0], "N", "N_opt (parameters)"), (axes[1], "D", "D_opt (tokens)")):
        if iso is not None:
            per = iso.N_opt_per_budget if key == "N" else iso.D_opt_per_budget
            ax.scatter(iso.budgets, per, color="C0", zorder=3, label="IsoFLOP minima")
            coef, expo = (iso.N_coefficient, iso.a) if key == "N" else (iso.D_coefficient, iso.b)
            interval = ""
            if rep.isoflop_boot is not None and len(rep.isoflop_boot.samples.get("a", ())) >= 2:
                lo, hi = rep.isoflop_boot.interval("a" if key == "N" else "b", rep.level)
                interval = f" [{lo:.2f}, {hi:.2f}]"
            ax.plot(C, coef * C**expo, color="C0", label=f"approach 2: ~C^{expo:.2f}{interval}")
        if rep.chinchilla is not None and rep.fpt is not None:
            n_opt, d_opt, _ = frontier(rep.chinchilla.params, C, rep.fpt)
            y = n_opt[0] if key == "N" else d_opt[0]
            expo = rep.chinchilla.a if key == "N" else rep.chinchilla.b
            interval3 = ""
            boot3 = rep.chinchilla_boot
            if boot3 is not None and len(boot3.samples.get("a", ())) >= 2:
                lo, hi = boot3.interval("a" if key == "N" else "b", rep.level)
                interval3 = f" [{lo:.2f}, {hi:.2f}]"
            ax.plot(C, y, color="C3", ls="--", label=f"approach 3: ~C^{expo:.2f}{interval3} (at 6ND)")
            reps = rep.chinchilla_replicates()
            if reps is not None and len(reps["E"]) >= 2:
                nr, dr, _ = frontier(reps, C, rep.fpt)
                arr = nr if key == "N" else dr
                tail = 50 * (1 - rep.level)
                lo, hi = np.nanpercentile(arr, [tail, 100 - tail], axis=0)
                ax.fill_between(C, lo, hi, color="C3", alpha=0.15)
        main = rep.main_rows
        ax.scatter([_budget(r) for r in main], [float(r["N"] if key == "N" else r["D"]) for r in main],
                   color="0.7", s=10, zorder=2, label="runs")
        f = rep.forecast
        if f.get(key + "_opt") is not None:
            ax.scatter([f["C"]], [f[key + "_opt"]], marker="D", color="C3", edgecolor="black", zorder=4,
                       label=f"forecast at C = {f['C']:.2g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    fig.suptitle("Compute-optimal allocation")
    fig.tight_layout()
    return _save(fig, path)


def plot_backtest(rep: Report, path=None):
    """Backtest: the law fitted without the largest budget against the held-out measurements."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    panels = ((axes[0], rep.backtest_chinchilla, f"approach 3: {rep.metric.replace('_', ' ')}"),
              (axes[1], rep.backtest_isoflop, "approach 2: N_opt of the held-out budget"))
    for (ax, bt, title), approach in zip(panels, ("approach 3", "approach 2")):
        ax.set_title(title, fontsize=10)
        if bt is None:
            # Say why (from the report's notes), e.g. the budgets left without the largest span < 10x.
            why = next((n.split(": ", 1)[1] for n in rep.notes if n.startswith(f"backtest ({approach})")),
                       "not enough budgets")
            import textwrap

            ax.text(0.5, 0.5, "no backtest:\n" + textwrap.fill(why, 48), ha="center", va="center",
                    transform=ax.transAxes, fontsize=9)
            ax.set_axis_off()
            continue
        a, p = np.asarray(bt.actual), np.asarray(bt.predicted)
        if bt.quantity == "N_opt":  # the power law from the smaller budgets, extended to the held-out one
            law = bt.law
            ax.scatter(law.budgets, law.N_opt_per_budget, color="C0", zorder=3, label="minima used for the fit")
            C = np.geomspace(min(law.budgets) / 1.5, max(bt.compute) * 1.5, 50)
            ax.plot(C, law.N_coefficient * C**law.a, color="C0", label=f"fit: N_opt ~ C^{law.a:.2f}")
            ax.scatter(bt.compute, a, marker="*", s=160, color="C3", edgecolor="black", zorder=4,
                       label="held-out minimum (measured)")
            ax.scatter(bt.compute, p, marker="D", facecolor="none", edgecolor="C3", s=60, zorder=4,
                       label=f"forecast: error {100 * bt.mean_abs_relative_error:.1f}%")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("training compute C (FLOPs)")
            ax.set_ylabel("N_opt (parameters)")
        else:
            lo, hi = min(a.min(), p.min()), max(a.max(), p.max())
            pad = 0.05 * (hi - lo) if hi > lo else 0.05 * abs(hi)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", ls="--", lw=1, label="perfect forecast")
            ax.scatter(a, p, color="C3", zorder=3, label=f"held-out runs (C >= {bt.compute_threshold:.2g}): "
                                                         f"mean |err| {100 * bt.mean_abs_relative_error:.2f}%")
            ax.set_xlabel(f"measured {rep.metric.replace('_', ' ')}")
            ax.set_ylabel(f"predicted (fitted on {bt.n_train} smaller points)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    fig.suptitle("Backtest on the largest budget")
    fig.tight_layout()
    return _save(fig, path)


PLOTS = {"isoflop.png": plot_isoflop, "loss_vs_compute.png": plot_frontier,
         "optimal_allocation.png": plot_optimal, "backtest.png": plot_backtest}


def plot_all(rep: Report, out_dir) -> list[str]:
    """Every figure as a PNG under `out_dir` (created; local or gs://); returns the paths."""
    plt = _plt()
    paths.makedirs(out_dir)
    written = []
    for name, fn in PLOTS.items():
        path = paths.join(out_dir, name)
        plt.close(fn(rep, path))
        written.append(path)
    return written
