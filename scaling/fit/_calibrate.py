"""Prediction intervals that grow with the extrapolation distance, calibrated on backtests.

A law fitted to runs forecasts a larger run with two kinds of error: the noise of one run
(seed, data order, evaluation sample) and the law's extrapolation error, which grows the
further the forecast lies beyond the fitted runs.  A bootstrap of the fitted points sees
only the first.  Here the log error of a forecast is modelled as

    log(L_forecast / L_actual) ~ Normal(0, s^2 + (kappa * d)^2)

with ``d`` the distance in decades beyond the fitted runs (:func:`._design.distance`),
``s >= s_fit`` (the robust scale of the full fit's own residuals: run noise) and ``kappa``
(error per decade of extrapolation) fitted by maximum likelihood to the rolling-origin
backtest errors, each at its own distance.  The interval at level ``q`` is
``L * exp(+- z_q sigma(d))``.  Zero mean: a backtest's bias is one draw of the extrapolation
error, not a correction to apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["ErrorModel", "fit_error_model", "robust_scale"]


def robust_scale(residuals: np.ndarray) -> float:
    """1.4826 * median |r|: the standard deviation of normal residuals, robust to outliers."""
    r = np.asarray(residuals, np.float64)
    r = r[np.isfinite(r)]
    return float(1.4826 * np.median(np.abs(r))) if r.size else math.nan


@dataclass(frozen=True)
class ErrorModel:
    """``sigma(d) = sqrt(s^2 + (kappa d)^2)`` of log forecast errors at distance ``d`` (decades)."""

    s: float
    kappa: float
    s_fit: float
    n_errors: int

    def sigma(self, d) -> np.ndarray:
        d = np.asarray(d, np.float64)
        kappa = 0.0 if not math.isfinite(self.kappa) else self.kappa
        return np.sqrt(self.s**2 + (kappa * d) ** 2)

    def interval(self, prediction, d, level: float) -> tuple[np.ndarray, np.ndarray]:
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        factor = np.exp(z * self.sigma(d))
        prediction = np.asarray(prediction, np.float64)
        return prediction / factor, prediction * factor

    @property
    def calibrated(self) -> bool:
        return self.n_errors > 0 and math.isfinite(self.kappa)

    def describe(self) -> str:
        if not self.calibrated:
            return (f"no backtest: the interval holds only the fit's own scatter (s = {self.s:.3g}); "
                    f"extrapolation error is NOT included")
        return (f"log error ~ N(0, s^2 + (kappa d)^2), s = {self.s:.3g} (fit residuals {self.s_fit:.3g}), "
                f"kappa = {self.kappa:.3g} per decade beyond the fitted runs, from {self.n_errors} backtest errors")


def fit_error_model(d, log_errors, s_fit: float) -> ErrorModel:
    """Maximum likelihood ``(s, kappa)`` on a log grid, ``s >= s_fit``; deterministic."""
    d = np.asarray(d, np.float64)
    e = np.asarray(log_errors, np.float64)
    ok = np.isfinite(d) & np.isfinite(e)
    d, e = d[ok], e[ok]
    s_fit = float(s_fit) if math.isfinite(s_fit) and s_fit > 0 else 1e-4
    if e.size == 0:
        return ErrorModel(s_fit, math.nan, s_fit, 0)
    top = max(float(np.max(np.abs(e))), s_fit) * 3.0
    s_grid = np.geomspace(s_fit, max(top, s_fit * 1.0001), 60)
    kappa_grid = np.concatenate([[0.0], np.geomspace(1e-5, max(top / max(d.min(initial=1.0), 1e-3), 1e-4) * 10, 120)])
    if not np.any(d > 0):
        kappa_grid = np.array([0.0])
    variance = s_grid[:, None, None] ** 2 + (kappa_grid[None, :, None] * d[None, None, :]) ** 2
    log_likelihood = -0.5 * np.sum(np.log(variance) + e**2 / variance, axis=-1)
    i, j = np.unravel_index(np.argmax(log_likelihood), log_likelihood.shape)
    return ErrorModel(float(s_grid[i]), float(kappa_grid[j]), s_fit, int(e.size))
