"""Finite data (question 3 of `scaling.questions`): what a repeated token is worth, by the
data-constrained law of Muennighoff et al. 2023 (`scaling.fit.data_constrained`)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Sequence

import numpy as np

from scaling.questions.rows import _budget, _main, _table, _unique, single_loops

#: Caps at which the allocation is shown: U = D_chinchilla / k, the data for k Chinchilla epochs.
CAP_EPOCHS = (1.0, 4.0, 16.0, 64.0)


@dataclasses.dataclass
class DataAnswer:
    """rows: the finished main rows (one loop count); matched: per (budget, shape) the loss at
    each cap (same N and D, more epochs); comparisons: `scaling.fit.compare_data_forms`, best
    held-out first; law / boot: the chosen form and its bootstrap; optima: the compute-optimal
    allocation at budget C under caps U = D_chinchilla / k (`CAP_EPOCHS`) and unlimited."""

    rows: list[dict]
    matched: list[dict]
    metric: str = "val_loss"
    comparisons: list = dataclasses.field(default_factory=list)
    law: object = None
    boot: object = None
    level: float = 0.95
    notes: list[str] = dataclasses.field(default_factory=list)
    C: float | None = None
    optima: list = dataclasses.field(default_factory=list)
    fpt: object = None


def data_answer(rows: Sequence[dict], rep=None, *, metric: str = "val_loss", n_bootstrap: int = 200, seed: int = 0,
                level: float = 0.95, forms: Sequence[str] = ("data", "full")) -> DataAnswer | None:
    """What a repeated token is worth, from a table with runs at several epochs (at least two
    beyond 1.5 epochs and two caps of unique tokens; None otherwise): `forms` of the
    data-constrained law ranked by forecasting the largest budget from the others, the best
    bootstrapped over runs, and the allocation at the report's forecast budget (`rep`; else
    10x the largest budget) under caps, with the family's cost per token."""
    from scaling import fit

    main = [r for r in _main(single_loops(rows), metric) if r.get("unique_tokens") is not None]
    epochs = [float(r["D"]) / _unique(r) for r in main]
    if len({_unique(r) for r in main}) < 2 or sum(e > 1.5 for e in epochs) < 2:
        return None
    shape = lambda r: (r.get("d_model"), r.get("n_layers"))
    cells: dict[tuple, dict] = {}
    for r in main:
        cell = cells.setdefault((_budget(r), shape(r)), {"budget": _budget(r), "shape": shape(r), "N": float(r["N"]),
                                                         "D": float(r["D"]), "loss": {}})
        cell["loss"].setdefault(_unique(r), []).append(float(r[metric]))
    matched = [dict(c, loss={u: float(np.mean(v)) for u, v in sorted(c["loss"].items(), reverse=True)})
               for c in cells.values() if len(c["loss"]) >= 2]
    ans = DataAnswer(rows=main, matched=sorted(matched, key=lambda c: (c["budget"], c["N"])), metric=metric,
                     level=level)
    N, D, L = (np.array([float(r[k]) for r in main]) for k in ("N", "D", metric))
    U = np.minimum([_unique(r) for r in main], D)  # unlimited data: what the run saw, once
    budgets = np.array([_budget(r) for r in main])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ans.comparisons = fit.compare_data_forms(N, D, U, L, compute=budgets, holdout=float(budgets.max()),
                                                     forms=tuple(forms))
        except ValueError as e:
            ans.notes.append(f"forms not compared: {e}")
        fitted = [c for c in ans.comparisons if c.law is not None]
        form = fitted[0].form if fitted and fitted[0].backtest is not None else forms[0]
        try:
            ans.boot = fit.data_constrained_bootstrap(N, D, U, L, form=form, n=n_bootstrap, seed=seed,
                                                      groups=np.array([r["run_id"] for r in main]))
            ans.law = ans.boot.law
        except ValueError as e:
            ans.notes.append(f"data-constrained law not fitted: {e}")
    ans.notes.extend(sorted({str(w.message) for w in caught if issubclass(w.category, fit.ScalingFitWarning)}))
    if ans.law is not None:
        ans.fpt = rep.fpt if rep is not None and rep.fpt is not None else \
            fit.interpolated_flops_per_token(N, np.array([float(r["C"]) for r in main]), D)
        ans.C = rep.forecast.get("C") if rep is not None and rep.forecast.get("C") else 10.0 * float(budgets.max())
        D_c = float(ans.law.unique_law.compute_optimal(ans.C, flops_per_token=ans.fpt)[1])
        ans.optima = [ans.law.compute_optimal(ans.C, u, flops_per_token=ans.fpt)
                      for u in (math.inf,) + tuple(D_c / k for k in CAP_EPOCHS)]
    return ans


def format_data(ans: DataAnswer) -> str:
    caps = sorted({u for c in ans.matched for u in c["loss"]}, reverse=True)
    cap_name = lambda u: "all" if not math.isfinite(u) else f"{u:.3g}"  # noqa: E731
    head = ("C", "shape", "N", "D") + tuple(f"U={cap_name(u)}" for u in caps)
    rows = []
    for c in ans.matched:
        base = c["loss"].get(caps[0])
        rows.append((f"{c['budget']:.3g}", f"d{c['shape'][0]}-L{c['shape'][1]}", f"{c['N']:.3g}", f"{c['D']:.3g}")
                    + tuple(f"{c['loss'][u]:.4f} ({c['D'] / u:.3g} ep)"
                            + (f" {c['loss'][u] - base:+.4f}" if base is not None and u != caps[0] else "")
                            if u in c["loss"] else "" for u in caps))
    n_caps = len(caps)
    out = [f"Repeated data ({len(ans.rows)} runs, {n_caps} caps of unique tokens U; Muennighoff et al. 2023):",
           _table("  measured at equal N and D (a smaller U = more epochs; ep = epochs, then the change from the "
                  "largest U):", head, rows)]
    if ans.comparisons:
        rows = []
        for cmp in ans.comparisons:
            law, bt = cmp.law, cmp.backtest
            rows.append((cmp.form, f"{law.R_D_star:.3g}" if law else "",
                         f"{law.R_N_star:.3g}" if law is not None and law.form == "full" else "-",
                         f"{law.objective:.4g}" if law else "",
                         f"{100 * bt.mean_abs_relative_error:.2f}%" if bt else cmp.error[:60]))
        out.append(_table("  L = E + A/N'^alpha + B/D'^beta, D' = U (1 + R_D* (1 - exp(-R_D/R_D*))), forms ranked by "
                          "forecasting the largest budget:", ("form", "R_D*", "R_N*", "in-sample", "held-out |err|"),
                          rows))
    if ans.law is not None:
        law, boot, pct = ans.law, ans.boot, f"{100 * ans.level:g}%"
        lo, hi = boot.interval("R_D_star", ans.level)
        wlo, whi = boot.interval("repeated_worth", ans.level)
        elo, ehi = boot.interval("epoch_worth", ans.level)
        out.append(f"  decay constant ({law.form} form): R_D* = {law.R_D_star:.3g} [{lo:.3g}, {hi:.3g}] repeats "
                   f"(Muennighoff et al.: 15.4 on C4); a repeated token is worth half a fresh one after "
                   f"{law.half_life:.3g} repeats")
        if law.form == "full":
            nlo, nhi = boot.interval("R_N_star", ans.level)
            out.append(f"  excess parameters: R_N* = {law.R_N_star:.3g} [{nlo:.3g}, {nhi:.3g}] (Muennighoff et al.: 5.3)")
        out.append(f"  at 4 epochs the 3 repeated epochs are worth {100 * float(law.repeated_worth(4)):.1f}% "
                   f"[{100 * wlo:.1f}%, {100 * whi:.1f}%] of fresh data per token; the 4th epoch alone "
                   f"{100 * float(law.epoch_worth(4)):.1f}% [{100 * elo:.1f}%, {100 * ehi:.1f}%] ({pct} bootstrap "
                   f"over runs, {boot.n - boot.n_failed} replicates)")
    if ans.optima:
        free = ans.optima[0]
        rows = [(("unlimited" if not math.isfinite(o.U) else f"{o.U:.3g} (D_chin/{free.D_chinchilla / o.U:.3g})"),
                 f"{o.N:.4g}", f"{o.D:.4g}", f"{o.epochs:.3g}" if math.isfinite(o.U) else "-", f"{o.loss:.4f}",
                 f"{o.loss_chinchilla_at_cap:.4f}") for o in ans.optima]
        out.append(_table(f"  compute-optimal allocation at C = {ans.C:.3g} under a cap of U unique tokens (the "
                          f"unique-data optimum: N {free.N_chinchilla:.4g}, D {free.D_chinchilla:.4g}):",
                          ("U", "N", "D", "epochs", "loss", "Chinchilla's N, D on U"), rows))
        if ans.law.form == "data":
            full = next((c for c in ans.comparisons if c.form == "full" and c.backtest is not None), None)
            out.append("  (the D'-only form prices repeated tokens, not excess parameters: under a tight cap it grows N;\n"
                       f"  Muennighoff et al.'s full form ({'ranked lower by the backtest' if full else 'not fitted'} "
                       "here) shrinks N and trains more epochs)")
    out += [f"  note: {n}" for n in ans.notes]
    return "\n".join(out)
