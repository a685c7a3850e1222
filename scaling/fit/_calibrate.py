"""Prediction intervals that grow with the extrapolation distance, calibrated on backtests.

A law fitted to runs forecasts a larger run with two kinds of error: the noise of one run
(seed, data order, evaluation sample) and the law's extrapolation error, which grows the
further the forecast lies beyond the fitted runs.  A bootstrap of the fitted points sees
only the first.  Here the log error of a forecast at distance ``d`` (decades beyond the
fitted runs, :func:`._design.distance`) has scale

    sigma(d) = sqrt(s^2 + (kappa * d)^2)

with ``s`` (error inside the fitted range) and ``kappa`` (growth per decade of extrapolation)
fitted to the rolling-origin backtest errors, each at its own distance, by maximum likelihood
under a Laplace model (robust: a few badly-forecast points, e.g. Gadre et al.'s 5 tokens per
parameter runs, do not set the scale).  The interval's half-width in log space is then
``z * sigma(d)``, where ``z`` is the conformal quantile of the normalised backtest errors
``|e_j| / sigma(d_j)`` (the ceil((n+1) q)-th smallest of n; Lei et al. 2018, "Distribution-free
predictive inference for regression", sec. 5.2 on locally weighted scores): at level ``q``, the
interval holds ``q`` of the backtest forecasts by construction, at every distance.  Zero centre:
a backtest's bias is one draw of the extrapolation error, not a correction to apply.
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
    """``sigma(d) = sqrt(s^2 + (kappa d)^2)`` of log forecast errors at distance ``d`` (decades);
    ``scores``: the backtest's normalised errors ``|e| / sigma(d)`` (sorted), which set ``z``."""

    s: float
    kappa: float
    s_fit: float
    scores: tuple[float, ...] = ()
    score_weights: tuple[float, ...] = ()  # per score (sorted with them); empty: equal

    @property
    def n_errors(self) -> int:
        return len(self.scores)

    def sigma(self, d) -> np.ndarray:
        d = np.asarray(d, np.float64)
        kappa = 0.0 if not math.isfinite(self.kappa) else self.kappa
        return np.sqrt(self.s**2 + (kappa * d) ** 2)

    def z(self, level: float) -> float:
        """Conformal quantile of the normalised backtest errors (a normal quantile without them)."""
        if not self.scores:
            return NormalDist().inv_cdf(0.5 + level / 2.0)
        if not self.score_weights:
            rank = min(math.ceil((len(self.scores) + 1) * level), len(self.scores))
            return float(self.scores[rank - 1])
        # weighted: the smallest score whose cumulative weight reaches level * (1 + 1/n_eff)
        w = np.asarray(self.score_weights) / np.sum(self.score_weights)
        n_eff = 1.0 / np.sum(w**2)
        target = min(level * (1.0 + 1.0 / n_eff), 1.0)
        index = int(np.searchsorted(np.cumsum(w), target - 1e-12))
        return float(self.scores[min(index, len(self.scores) - 1)])

    def interval(self, prediction, d, level: float) -> tuple[np.ndarray, np.ndarray]:
        factor = np.exp(self.z(level) * self.sigma(d))
        prediction = np.asarray(prediction, np.float64)
        return prediction / factor, prediction * factor

    @property
    def calibrated(self) -> bool:
        return self.n_errors > 0 and math.isfinite(self.kappa)

    def describe(self, level: float = 0.9) -> str:
        if not self.calibrated:
            return (f"no backtest: the interval holds only the fit's own scatter (s = {self.s:.3g}, normal "
                    f"quantile); extrapolation error is NOT included")
        return (f"log error scale sqrt(s^2 + (kappa d)^2), s = {self.s:.3g}, kappa = {self.kappa:.3g} per decade "
                f"beyond the fitted runs, times z = {self.z(level):.3g} (conformal quantile of {self.n_errors} "
                f"normalised backtest errors)")


def fit_error_model(d, log_errors, s_fit: float, weights=None) -> ErrorModel:
    """Laplace maximum likelihood ``(s, kappa)`` on a log grid (deterministic), then the
    normalised scores; ``weights`` per error (default equal).  Without backtest errors:
    ``s = s_fit``, the fit's residual scale."""
    d = np.asarray(d, np.float64)
    e = np.asarray(log_errors, np.float64)
    weights = np.ones_like(e) if weights is None else np.asarray(weights, np.float64)
    ok = np.isfinite(d) & np.isfinite(e) & (weights > 0)
    d, e, weights = d[ok], np.abs(e[ok]), weights[ok]
    s_fit = float(s_fit) if math.isfinite(s_fit) and s_fit > 0 else 1e-4
    if e.size == 0:
        return ErrorModel(s_fit, math.nan, s_fit)
    top = max(float(np.max(e)), 1e-4)
    s_grid = np.geomspace(1e-5, top, 80)
    far = d[d > 0]
    kappa_grid = np.array([0.0]) if far.size == 0 else \
        np.concatenate([[0.0], np.geomspace(1e-5, top / max(float(np.min(far)), 1e-3), 100)])
    sigma = np.sqrt(s_grid[:, None, None] ** 2 + (kappa_grid[None, :, None] * d[None, None, :]) ** 2)
    log_likelihood = -np.sum(weights * (np.log(sigma) + e / sigma), axis=-1)
    i, j = np.unravel_index(np.argmax(log_likelihood), log_likelihood.shape)
    s, kappa = float(s_grid[i]), float(kappa_grid[j])
    scores = e / np.sqrt(s**2 + (kappa * d) ** 2)
    order = np.argsort(scores, kind="stable")
    equal = bool(np.all(weights == weights[0]))
    return ErrorModel(s, kappa, s_fit, tuple(float(v) for v in scores[order]),
                      () if equal else tuple(float(v) for v in weights[order]))
