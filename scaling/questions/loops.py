"""What a loop is worth (question 1 of `scaling.questions`): looped and unlooped runs of equal N,
the looped law L(N, D, k) of `scaling.fit.looped` and the exchange rate of an extra loop."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np

from scaling.questions.rows import _budget, _loops, _main, _table


@dataclasses.dataclass
class LoopsAnswer:
    """rows: the finished main rows; loops: the loop counts run; matched: per (budget,
    shape) the measured loss at each loop count; comparisons: `scaling.fit.compare_forms`,
    best held-out first; law / boot: the power form and its bootstrap (exchange rate
    `extra_loop`); fpt: (N, loops) -> FLOPs per token of the runs (C / D)."""

    rows: list[dict]
    loops: tuple[int, ...]
    matched: list[dict]
    metric: str = "val_loss"
    comparisons: list = dataclasses.field(default_factory=list)
    law: object = None
    boot: object = None
    level: float = 0.95
    notes: list[str] = dataclasses.field(default_factory=list)
    fpt: dict = dataclasses.field(default_factory=dict)
    g_measured: list = dataclasses.field(default_factory=list)


def loops_answer(rows: Sequence[dict], *, metric: str = "val_loss", n_bootstrap: int = 200, seed: int = 0,
                 level: float = 0.95, forms: Sequence[str] = ("none", "compute", "power", "log")) -> LoopsAnswer | None:
    """What a loop is worth, from a sweep with several loop counts (None without one):
    `forms` (of `scaling.fit.looped.FORMS`) ranked by forecasting the largest budget from
    the others, and the power form's exchange rate bootstrapped over runs."""
    from scaling import fit

    main = _main(rows, metric)
    loops = tuple(sorted({_loops(r) for r in main}))
    if len(loops) < 2:
        return None
    shape = lambda r: (r.get("d_model"), r.get("n_layers"))
    cells: dict[tuple, dict] = {}
    for r in main:
        cell = cells.setdefault((_budget(r), shape(r)), {"budget": _budget(r), "shape": shape(r), "N": r["N"],
                                                         "loss": {}})
        cell["loss"].setdefault(_loops(r), []).append(float(r[metric]))
    matched = [dict(c, loss={k: float(np.mean(v)) for k, v in c["loss"].items()}) for c in cells.values()
               if len(c["loss"]) >= 2]
    ans = LoopsAnswer(rows=main, loops=loops, matched=sorted(matched, key=lambda c: (c["budget"], c["N"])),
                      metric=metric, level=level,
                      fpt={(float(r["N"]), _loops(r)): float(r["C"]) / float(r["D"]) for r in main})
    N, D, L = (np.array([float(r[k]) for r in main]) for k in ("N", "D", metric))
    k = np.array([_loops(r) for r in main], dtype=float)
    budgets = np.array([_budget(r) for r in main])
    groups = np.array([r["run_id"] for r in main])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ans.comparisons = fit.compare_forms(N, D, k, L, compute=budgets, holdout=float(budgets.max()),
                                                forms=tuple(forms))
        except ValueError as e:
            ans.notes.append(f"forms not compared: {e}")
        try:
            ans.boot = fit.looped_bootstrap(N, D, k, L, form="power", n=n_bootstrap, seed=seed, groups=groups)
            ans.law = ans.boot.law
        except ValueError as e:
            ans.notes.append(f"looped law not fitted: {e}")
    ans.notes.extend(sorted({str(w.message) for w in caught if issubclass(w.category, fit.ScalingFitWarning)}))
    if ans.law is not None:
        law = ans.law
        slack = L - law.E - law.B * D ** -law.beta
        with np.errstate(invalid="ignore", divide="ignore"):
            n_eff = np.where(slack > 0, (law.A / np.where(slack > 0, slack, 1.0)) ** (1 / law.alpha), np.nan)
        ans.g_measured = [(int(kk), float(g)) for kk, g in zip(k, n_eff / N)]
    return ans


def format_loops(ans: LoopsAnswer) -> str:
    pct = f"{100 * ans.level:g}%"
    out = [f"What a loop is worth ({len(ans.rows)} runs, loop counts {', '.join(map(str, ans.loops))}):"]
    head = ("C", "shape", "N") + tuple(f"loss x{k}" for k in ans.loops) + tuple(
        f"x{k} - x{ans.loops[0]}" for k in ans.loops[1:])
    rows = []
    for c in ans.matched:
        base = c["loss"].get(ans.loops[0])
        rows.append((f"{c['budget']:.3g}", f"d{c['shape'][0]}-L{c['shape'][1]}", f"{c['N']:.3g}")
                    + tuple(f"{c['loss'][k]:.4f}" if k in c["loss"] else "" for k in ans.loops)
                    + tuple(f"{c['loss'][k] - base:+.4f}" if k in c["loss"] and base is not None else ""
                            for k in ans.loops[1:]))
    out.append(_table("  measured at equal compute (more loops = fewer tokens):", head, rows))
    if ans.comparisons:
        rows = []
        for cmp in ans.comparisons:
            law, bt = cmp.law, cmp.backtest
            rate = f"{100 * float(law.exchange_rate(1)):+.1f}%" if law is not None else ""
            rows.append((cmp.form, str(cmp.n_params), f"{law.objective:.4g}" if law else "",
                         f"{100 * bt.mean_abs_relative_error:.2f}%" if bt else cmp.error[:60], rate))
        out.append(_table("  L = E + A/(N g(k))^alpha + B/D^beta, forms ranked by forecasting the largest budget:",
                          ("g(k)", "params", "in-sample", "held-out |err|", "1 -> 2 loops worth"), rows))
    if ans.law is not None:
        law, boot = ans.law, ans.boot
        lo, hi = boot.interval("extra_loop", ans.level)
        glo, ghi = boot.interval("gamma", ans.level)
        out.append(f"  exchange rate (g = k^gamma): gamma = {law.gamma:.3f} [{glo:.3f}, {ghi:.3f}]; one extra loop "
                   f"(1 -> 2) ~ {100 * float(law.exchange_rate(1)):+.1f}% more parameters [{100 * lo:+.1f}%, "
                   f"{100 * hi:+.1f}%] ({pct} bootstrap over runs, {boot.n - boot.n_failed} replicates)")
        for k in ans.loops[1:]:
            key = f"extra_loop_{k}"
            if key in boot.samples:
                lo, hi = boot.interval(key, ans.level)
                out.append(f"    {k} -> {k + 1} loops ~ {100 * boot.estimates[key]:+.1f}% [{100 * lo:+.1f}%, "
                           f"{100 * hi:+.1f}%]")
    out += [f"  note: {n}" for n in ans.notes]
    return "\n".join(out)
