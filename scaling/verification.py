"""A forecast against reality: what training the forecast's budget measured (`scaling verify`).

`scaling.pipeline.verify` trains, with a sweep's own recipe, the forecast's compute-optimal
size and one size step each side at the forecast's budget; `verification` compares the
forecast with those runs and `format_verification` says it in a few lines. It is the check a
TPU user runs at a few times the largest budget before paying for the big run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from scaling.results import usable


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
