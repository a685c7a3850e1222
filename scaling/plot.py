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


# ---------------------------------------------------------------------------------------
# The questions (`scaling.questions`): loops, emergence, the inference-aware optimum

_LOOP_STYLES = ["-", "--", ":", "-."]
_LOOP_MARKERS = ["o", "s", "^", "D", "v"]


def _log_x(ax):
    """A log x axis labelled at powers of ten only (a sweep's decade or two otherwise gets
    overlapping minor labels)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_loops(ans, path=None):
    """Looped and unlooped models of equal N against compute (left: each shape a colour, each
    loop count a line style; the fitted looped law's curves), and the effective size g(k) =
    N_eff / N that each run measures against the fitted forms (right)."""
    plt = _plt()
    fig, (ax, ax_g) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    shapes = sorted({(r["N"], r.get("d_model"), r.get("n_layers")) for r in ans.rows})
    cmap = plt.get_cmap("viridis")
    colors = {s[0]: cmap(0.05 + 0.85 * i / max(len(shapes) - 1, 1)) for i, s in enumerate(shapes)}
    loops = list(ans.loops)
    law = ans.law
    for n, d_model, n_layers in shapes:
        for j, k in enumerate(loops):
            pts = sorted((float(r["C"]), float(r[ans.metric])) for r in ans.rows
                         if r["N"] == n and int(r.get("loops") or 1) == k)
            if not pts:
                continue
            style = _LOOP_STYLES[j % len(_LOOP_STYLES)]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls="none", marker=_LOOP_MARKERS[j % 5], ms=5,
                    color=colors[n], zorder=3)
            if law is not None and (float(n), k) in ans.fpt:
                C = np.geomspace(min(p[0] for p in pts) / 1.3, max(p[0] for p in pts) * 1.3, 30)
                ax.plot(C, law.predict(n, C / ans.fpt[(float(n), k)], k), ls=style, lw=1.1, color=colors[n])
        ax.plot([], [], color=colors[n], lw=3, label=f"d{d_model}-L{n_layers}, N={n:.3g}")
    for j, k in enumerate(loops):
        ax.plot([], [], color="0.3", ls=_LOOP_STYLES[j % 4], marker=_LOOP_MARKERS[j % 5], label=f"{k} loop{'s' * (k > 1)}")
    _log_x(ax)
    ax.set_xlabel("training compute C (FLOPs, every loop paid)")
    ax.set_ylabel(ans.metric.replace("_", " "))
    ax.set_title("Equal N, more loops: loss against compute")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, ncol=2)
    if ans.g_measured:
        kk = np.array([k for k, _ in ans.g_measured], dtype=float)
        g = np.array([g for _, g in ans.g_measured])
        jitter = np.exp(0.04 * np.random.default_rng(0).standard_normal(len(kk)))
        ax_g.scatter(kk * jitter, g, s=14, color="0.5", zorder=3, label="runs (law inverted at their N, D, loss)")
    ks = np.geomspace(1, max(loops) * 1.2, 50)
    ax_g.plot(ks, np.ones_like(ks), color="C0", ls=":", label="none: g = 1")
    ax_g.plot(ks, ks, color="C1", ls=":", label="compute: g = k")
    if law is not None:
        boot = ans.boot
        ax_g.plot(ks, ks ** law.gamma, color="C3", lw=1.8, label=f"power: g = k^{law.gamma:.2f}")
        if boot is not None and len(boot.samples.get("gamma", ())) >= 2:
            lo, hi = boot.interval("gamma", ans.level)
            ax_g.fill_between(ks, ks ** lo, ks ** hi, color="C3", alpha=0.2,
                              label=f"{100 * ans.level:g}% bootstrap: gamma in [{lo:.2f}, {hi:.2f}]")
    for cmp in ans.comparisons:
        if cmp.form == "log" and cmp.law is not None:
            ax_g.plot(ks, cmp.law.loop_factor(ks), color="C2", ls="--", lw=1.2, label=f"log: g = 1 + {cmp.law.gamma:.2f} ln k")
    _log_x(ax_g)
    ax_g.set_xticks(loops, [str(k) for k in loops])
    ax_g.set_yscale("log")
    ax_g.set_xlabel("loops k")
    ax_g.set_ylabel("effective parameters N_eff / N")
    title = "What a loop is worth"
    if law is not None:
        title += f": 1 -> 2 loops ~ {100 * float(law.exchange_rate(1)):+.0f}% parameters"
    ax_g.set_title(title, fontsize=10)
    ax_g.grid(True, which="both", alpha=0.25)
    ax_g.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_emergence(ans, path=None):
    """Loss, token accuracy and exact match of k-token spans against compute: every run
    (points) and the best run per budget (lines); beside each exact match its accuracy^k
    (dashed), what it would be if the k tokens were independent trials (Schaeffer et al. 2023)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    best = ans.best
    Cb = [p["C"] for p in best]
    for ax, key, label in ((axes[0], "loss", ans.metric.replace("_", " ")), (axes[1], "accuracy", "next-token accuracy")):
        ax.scatter([p["C"] for p in ans.points], [p[key] for p in ans.points], s=12, color="0.7", zorder=2,
                   label="every run")
        ax.plot(Cb, [p[key] for p in best], "o-", color="C0", ms=5, label="best run per budget")
        ax.set_ylabel(label)
    ax = axes[2]
    cmap = plt.get_cmap("plasma")
    ks = list(ans.spans)
    floor = 1.0
    for i, k in enumerate(ks):
        color = cmap(0.05 + 0.8 * i / max(len(ks) - 1, 1))
        pts = [p for p in best if k in p["exact_match"]]
        em = np.array([p["exact_match"][k] for p in pts])
        acc_k = np.array([p["accuracy"] ** k for p in pts])
        ax.plot([p["C"] for p in pts], np.where(em > 0, em, np.nan), "o-", color=color, ms=4, label=f"exact match, k={k}")
        ax.plot([p["C"] for p in pts], acc_k, ls="--", color=color, lw=1)
        positive = np.concatenate([em[em > 0], acc_k[acc_k > 0]])
        if positive.size:
            floor = min(floor, positive.min())
    ax.plot([], [], ls="--", color="0.4", label="accuracy^k (independent tokens)")
    ax.set_yscale("log")
    ax.set_ylim(max(floor / 2, 1e-12), 1.5)
    ax.set_ylabel("exact match of k-token spans")
    verdicts = {}
    for c in ans.checks:
        verdicts.setdefault(c["verdict"], []).append(str(c["k"]))
    ax.set_title("; ".join(f"k = {', '.join(k)}: {v}" for v, k in verdicts.items()), fontsize=8)
    for ax in axes:
        _log_x(ax)
        ax.set_xlabel("training compute C (FLOPs)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    fig.suptitle("Smooth loss, sharp abilities? Exact match against accuracy^k")
    fig.tight_layout()
    return _save(fig, path)


def plot_inference(ans, path=None):
    """The inference-aware optimum (Sardana et al. 2024) at the forecast budget against the
    tokens the model will serve: its N and D relative to the Chinchilla optimum (left), and
    the training + inference FLOPs it saves (right)."""
    plt = _plt()
    fig, (ax, ax_s) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    c = ans.curve
    x = c["served_over_D_opt"]
    ax.plot(x, c["N_ratio"], color="C0", label="N / N_chinchilla")
    ax.plot(x, c["D_ratio"], color="C3", label="D / D_chinchilla")
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("relative to the compute-optimal model")
    ax_s.plot(x, 100 * c["saving"], color="C2")
    ax_s.set_ylabel("training + inference FLOPs saved (%)")
    for a in (ax, ax_s):
        a.set_xscale("log")
        a.set_xlabel(f"tokens served / D_opt (D_opt = {ans.D_opt:.3g})")
        a.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    fig.suptitle(f"Inference-aware optimum at C = {ans.C:.3g}: same loss, least training + inference compute")
    fig.tight_layout()
    return _save(fig, path)


def plot_epochs(ans, path=None):
    """Repeated data (Muennighoff et al. 2023): loss against epochs at fixed compute, each
    (budget, shape) trained on the whole split and on caps of it (points) with the fitted
    law's curve at its N and D (left); the effective data D' / U that each repeated run
    measures (the law inverted at its loss) against the fitted D'(epochs) / U (right)."""
    plt = _plt()
    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    law, cells = ans.law, ans.matched
    cmap = plt.get_cmap("viridis")
    for i, c in enumerate(cells):
        color = cmap(0.05 + 0.85 * i / max(len(cells) - 1, 1))
        pts = sorted((c["D"] / u, loss) for u, loss in c["loss"].items())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", ms=4.5, color=color, zorder=3,
                label=f"C={c['budget']:.2g}, d{c['shape'][0]}-L{c['shape'][1]}")
        if law is not None:  # flat below one epoch: the tokens are all fresh
            ep = np.geomspace(min(pts[0][0], 1.0), max(pts[-1][0], 1.5) * 1.3, 60)
            ax.plot(ep, law.predict(c["N"], c["D"], c["D"] / ep), color=color, lw=1.1)
    _log_x(ax)
    ax.set_xlabel("epochs D / U (along each line N and D are equal: only the unique tokens U change)")
    ax.set_ylabel(ans.metric.replace("_", " "))
    ax.set_title("Fixed compute, fewer unique tokens: loss against epochs", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=6, ncol=2)
    ep = np.geomspace(1.0, max((float(r["D"]) / float(r["unique_tokens"]) for r in ans.rows), default=10) * 1.3, 60)
    ax_d.plot(ep, ep, color="0.5", ls=":", label="fresh data: D' = D")
    ref = 15.4 * -np.expm1(-(ep - 1) / 15.4) + 1
    ax_d.plot(ep, ref, color="C1", ls="--", lw=1.1, label="Muennighoff et al. (C4): R_D* = 15.4")
    if law is not None:
        ax_d.plot(ep, np.asarray(law.effective_data(ep, 1.0)), color="C3", lw=1.8, label=f"fit: R_D* = {law.R_D_star:.3g}")
        boot = ans.boot
        if boot is not None and len(boot.samples.get("R_D_star", ())) >= 2:
            lo, hi = boot.interval("R_D_star", ans.level)
            band = [r * -np.expm1(-(ep - 1) / r) + 1 for r in (lo, hi)]
            ax_d.fill_between(ep, band[0], band[1], color="C3", alpha=0.2,
                              label=f"{100 * ans.level:g}% bootstrap: R_D* in [{lo:.3g}, {hi:.3g}]")
        measured = []
        for r in ans.rows:
            U = min(float(r["unique_tokens"]), float(r["D"]))
            slack = float(r[ans.metric]) - law.E - law.A * float(law.effective_params(float(r["N"]), U)) ** -law.alpha
            if float(r["D"]) / U > 1.01 and slack > 0:
                measured.append((float(r["D"]) / U, (law.B / slack) ** (1 / law.beta) / U))
        if measured:
            ax_d.scatter(*zip(*measured), s=14, color="0.4", zorder=3, label="runs (law inverted at their loss)")
    _log_x(ax_d)
    ax_d.set_yscale("log")
    ax_d.set_xlabel("epochs D / U")
    ax_d.set_ylabel("effective data D' / U (in fresh epochs)")
    title = "What a repeated token is worth"
    if law is not None:
        title += f": repeats at 4 epochs ~ {100 * float(law.repeated_worth(4)):.0f}% of fresh"
    ax_d.set_title(title, fontsize=10)
    ax_d.grid(True, which="both", alpha=0.25)
    ax_d.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_questions(ans, out_dir) -> list[str]:
    """The figures of `scaling.questions.Answers` that it holds (loops.png, emergence.png,
    inference.png, epochs.png) under `out_dir`; returns the paths."""
    plt = _plt()
    paths.makedirs(out_dir)
    written = []
    for name, fn, part in (("loops.png", plot_loops, ans.loops), ("emergence.png", plot_emergence, ans.emergence),
                           ("inference.png", plot_inference, ans.inference),
                           ("epochs.png", plot_epochs, getattr(ans, "data", None))):
        if part is not None:
            path = paths.join(out_dir, name)
            plt.close(fn(part, path))
            written.append(path)
    return written
