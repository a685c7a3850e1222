"""Backtesting: fit without the largest-compute runs, forecast them, report the errors.

The honest answer to "can I extrapolate?": a law that cannot forecast the runs it was not
shown, one compute step ahead, should not be trusted ten steps ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._common import format_table
from ._validate import as_positive_1d
from .approaches import envelope, group_budgets, isoflop
from .laws import chinchilla, kaplan, power_law

__all__ = ["BacktestResult", "backtest", "held_out_mask"]


@dataclass(frozen=True)
class BacktestResult:
    """Forecasts of the held-out runs by a law fitted to the rest.

    ``quantity``: what is compared (``"L"`` for loss laws, ``"N_opt"`` per held-out budget for
    :func:`isoflop`).  Errors per held-out point: ``relative_error = predicted/actual - 1`` and
    ``log_error = ln(predicted/actual)``.
    """

    law: object
    quantity: str
    n_train: int
    n_holdout: int
    compute_threshold: float
    compute: np.ndarray = field(repr=False)
    actual: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)

    @property
    def relative_error(self) -> np.ndarray:
        return self.predicted / self.actual - 1.0

    @property
    def log_error(self) -> np.ndarray:
        return np.log(self.predicted / self.actual)

    @property
    def mean_abs_relative_error(self) -> float:
        return float(np.mean(np.abs(self.relative_error)))

    @property
    def max_abs_relative_error(self) -> float:
        return float(np.max(np.abs(self.relative_error)))

    @property
    def rms_log_error(self) -> float:
        return float(np.sqrt(np.mean(self.log_error**2)))

    def summary(self) -> str:
        rows = [("trained on", f"{self.n_train} runs with compute < {self.compute_threshold:.4g}"),
                ("held out", f"{self.n_holdout} runs, compared on {len(self.actual)} values of {self.quantity}"),
                ("mean |rel. error|", f"{100 * self.mean_abs_relative_error:.3f}%"),
                ("max |rel. error|", f"{100 * self.max_abs_relative_error:.3f}%"),
                ("rms log error", f"{self.rms_log_error:.4g}")]
        rows += [(f"  C={c:.3g}", f"actual {a:.5g}  predicted {p:.5g}  ({100 * (p / a - 1):+.2f}%)")
                 for c, a, p in zip(self.compute, self.actual, self.predicted)]
        return format_table("Backtest", rows)


def held_out_mask(compute: np.ndarray, holdout) -> np.ndarray:
    """Which runs to hold out.  ``holdout``: an ``int`` k >= 1 holds out the k largest-compute
    runs; a ``float`` in (0, 1) that fraction of runs (rounded up); a ``float`` >= 1 is a compute
    threshold (runs with compute >= it).  Ties at the cut are held out together, so an IsoFLOP
    budget is never split."""
    n = len(compute)
    if isinstance(holdout, (bool, np.bool_)):
        raise ValueError(f"holdout: expected a count, fraction or compute threshold, got {holdout!r}")
    if isinstance(holdout, (int, np.integer)):
        if not 1 <= holdout < n:
            raise ValueError(f"holdout: a count must be in [1, {n - 1}], got {holdout}")
        threshold = np.sort(compute)[n - holdout]
    else:
        holdout = float(holdout)
        if not (math.isfinite(holdout) and holdout > 0):
            raise ValueError(f"holdout: must be positive and finite, got {holdout}")
        if holdout < 1.0:
            threshold = np.sort(compute)[n - max(1, math.ceil(holdout * n))]
        else:
            threshold = holdout
    mask = compute >= threshold * (1.0 - 1e-9)
    if mask.all() or not mask.any():
        raise ValueError(f"holdout: threshold {threshold:.4g} leaves {int((~mask).sum())} runs to fit and "
                         f"{int(mask.sum())} to forecast")
    return mask


def backtest(fitter: Callable, *arrays, holdout=0.2, compute=None, **fit_kwargs) -> BacktestResult:
    """Fit ``fitter`` without the largest-compute runs and forecast them.

    Compute per run: ``6 N D`` for :func:`chinchilla` / :func:`kaplan` ``(N, D, L)``, ``x`` for
    :func:`power_law` ``(x, y)`` (a law in C), ``C`` for :func:`isoflop` ``(C, N, L)``; pass
    ``compute=`` for anything else.  ``holdout``: see :func:`held_out_mask` (default: the top 20%).

    Loss laws are compared on L of each held-out run; :func:`isoflop` on N_opt of each held-out
    budget (its own parabola minimum against the power-law forecast from the smaller budgets).
    """
    numpy_arrays = [np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a, dtype=np.float64) for a in arrays]
    if compute is None:
        if fitter in (chinchilla, kaplan):
            compute = 6.0 * numpy_arrays[0] * numpy_arrays[1]
        elif fitter in (power_law, isoflop):
            compute = numpy_arrays[0]
        else:
            raise ValueError("compute: cannot infer the compute of each run for this fitter; pass compute=")
    compute = as_positive_1d(compute, "compute")
    mask = held_out_mask(compute, holdout)
    threshold = float(compute[mask].min())
    law = fitter(*[a[~mask] for a in numpy_arrays], **fit_kwargs)
    test = [a[mask] for a in numpy_arrays]
    if fitter is isoflop:
        reference = isoflop(*test, **fit_kwargs) if len(group_budgets(test[0])) >= 2 else None
        if reference is None:
            budgets, N_actual = _single_budget_minimum(*test)
        else:
            budgets, N_actual = np.array(reference.budgets), np.array(reference.N_opt_per_budget)
        predicted = np.asarray(law.compute_optimal(budgets)[0], dtype=np.float64).reshape(-1)
        return BacktestResult(law, "N_opt", int((~mask).sum()), int(mask.sum()), threshold, budgets, N_actual, predicted)
    if fitter is envelope:
        raise ValueError("fitter: backtest of envelope() is not supported; backtest chinchilla() or isoflop()")
    predicted = np.asarray(law.predict(*test[:-1]), dtype=np.float64).reshape(-1)
    return BacktestResult(law, "L", int((~mask).sum()), int(mask.sum()), threshold, compute[mask], test[-1], predicted)


def _single_budget_minimum(C, N, L):
    c2, c1, _ = np.polyfit(np.log(N), L, 2)
    return np.array([float(np.exp(np.mean(np.log(C))))]), np.array([math.exp(-c1 / (2 * c2))])
