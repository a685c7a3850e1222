"""Figures of `scaling.questions.Answers` (matplotlib, Agg backend, PNG).

    ans = scaling.questions.answer(rows, rep)
    paths = plot_all(ans, "out/sweep/plots")

- `plot_loops` (loops.png): looped and unlooped models of equal N against compute, and the
  effective size each loop count measures against the fitted forms.
- `plot_emergence` (emergence.png): loss, token accuracy and exact match of k tokens against
  compute, with accuracy^k beside each exact-match curve (Schaeffer et al. 2023).
- `plot_inference` (inference.png): the inference-aware optimum against tokens served
  (Sardana et al. 2024).
- `plot_epochs` (epochs.png): loss at equal N and D against epochs, and the fitted
  data-constrained law (Muennighoff et al. 2023).

Apart from `scaling.plot` (the sweep's own figures) so each module reads top to bottom; it
never fits: every number drawn comes from the answers.
"""

from __future__ import annotations

import numpy as np

from scaling import paths
from scaling.plot import _plt, _save

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


def plot_all(ans, out_dir) -> list[str]:
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
