"""Prediction intervals that grow with the extrapolation distance, calibrated on backtests.

A law fitted to runs forecasts a larger run with three kinds of error: the noise of one run
(seed, data order, evaluation sample), the fitted parameters' own uncertainty (the runs were
noisy; far forecasts amplify it) and the law's model-form error, which grows the further the
forecast lies beyond the fitted runs.  Here the log error of a forecast at distance ``d``
(decades beyond the fitted runs, :func:`._design.distance`) with parameter spread ``p``
(:mod:`._spread`, delta method, known for every forecast from its own fit) has scale

    sigma(d, p) = sqrt(s^2 + p^2 + (kappa * d)^2)

with ``s`` (at least the fit's robust residual scale: a new run is never forecast better than
its own noise) and ``kappa`` (model-form error per decade of extrapolation) fitted to the
rolling-origin backtest errors, each at its own distance and spread, by maximum likelihood
under a Laplace model (robust: a few badly-forecast points, e.g. Gadre et al.'s 5 tokens per
parameter runs, do not set the scale).  The half-width in log space is ``z * sigma(d, p)``:

* ``z`` is the weighted split-conformal quantile of the normalised backtest errors
  ``|e_j| / sigma(d_j, p_j)`` (Tibshirani et al. 2019, "Conformal prediction under covariate
  shift", eq. 7: the new forecast enters with the weight of one error, ``1 / n_eff``, at
  +infinity; Lei et al. 2018, sec. 5.2, on locally weighted scores).  It is finite only when
  the backtest holds enough errors (``n_eff >= q / (1 - q)``: 9 at 90%);
* and never below the Student-t quantile with ``n_eff`` degrees of freedom (Kish's effective
  number of the weighted errors): what a scale estimated from ``n_eff`` errors allows.  With
  a backtest of one or two folds (a sweep of three to five budgets) the parametric quantile is
  what sets ``z``, and :meth:`ErrorModel.describe` says so.

Why the spread term: with a few folds the backtest sees the parameter error once or twice, at
one distance; ``p`` carries it to every forecast from the fit itself (measured on synthetic
sweeps of 3 budgets x 4 sizes: 90% intervals held 0.69-0.72 of new runs without it, 0.92-0.96
with it and the t floor; bench/README.md).  Zero centre: a backtest's bias is one draw of the
extrapolation error, not a correction to apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

__all__ = ["ErrorModel", "fit_error_model", "robust_scale", "student_t_quantile"]


def robust_scale(residuals: np.ndarray) -> float:
    """1.4826 * median |r|: the standard deviation of normal residuals, robust to outliers."""
    r = np.asarray(residuals, np.float64)
    r = r[np.isfinite(r)]
    return float(1.4826 * np.median(np.abs(r))) if r.size else math.nan


@lru_cache(maxsize=256)
def _t_quantile(p: float, nu: float) -> float:
    if nu >= 1e4:
        return NormalDist().inv_cdf(p)
    # P(0 <= T <= t) by Simpson's rule on the density in u = arctan(t / sqrt(nu)), where it is
    # smooth and bounded: f(t) dt = c cos(u)^(nu - 1) du, then bisection on t.
    c = math.exp(math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)) / math.sqrt(math.pi)
    u = np.linspace(0.0, math.pi / 2, 4001)
    density = c * np.cos(u) ** (nu - 1)
    h = u[1] - u[0]
    cumulative = np.concatenate([[0.0], np.cumsum((density[:-1] + density[1:]) * h / 2)])
    target = p - 0.5
    k = int(np.searchsorted(cumulative, target))
    k = min(max(k, 1), len(u) - 1)
    fraction = (target - cumulative[k - 1]) / max(cumulative[k] - cumulative[k - 1], 1e-300)
    return math.sqrt(nu) * math.tan(u[k - 1] + fraction * h)


def student_t_quantile(p: float, nu: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``nu`` (real, >= 1) degrees of freedom."""
    return _t_quantile(round(float(p), 6), round(max(float(nu), 1.0), 2))


@dataclass(frozen=True)
class ErrorModel:
    """``sigma(d, p) = sqrt(s^2 + p^2 + (kappa d)^2)`` of log forecast errors at distance ``d``
    (decades) with parameter spread ``p``; ``scores``: the backtest's normalised errors
    ``|e| / sigma`` (sorted), which set ``z`` with their ``score_weights``."""

    s: float
    kappa: float
    s_fit: float
    scores: tuple[float, ...] = ()
    score_weights: tuple[float, ...] = ()  # per score (sorted with them); empty: equal
    quantity: str = "loss"  # "loss": s is a run's noise and p a forecast's spread; else s, kappa only

    @property
    def n_errors(self) -> int:
        return len(self.scores)

    @property
    def n_eff(self) -> float:
        """Kish's effective number of backtest errors, ``(sum w)^2 / sum w^2``."""
        if not self.scores:
            return 0.0
        if not self.score_weights:
            return float(len(self.scores))
        w = np.asarray(self.score_weights)
        return float(np.sum(w) ** 2 / np.sum(w**2))

    def sigma(self, d, spread=0.0) -> np.ndarray:
        d = np.asarray(d, np.float64)
        kappa = 0.0 if not math.isfinite(self.kappa) else self.kappa
        spread = np.where(np.isfinite(spread), spread, 0.0)
        return np.sqrt(self.s**2 + spread**2 + (kappa * d) ** 2)

    def conformal_z(self, level: float) -> float | None:
        """Weighted split-conformal quantile of the scores; None where it is infinite (too few
        errors for this level)."""
        if not self.scores:
            return None
        w = np.asarray(self.score_weights) if self.score_weights else np.ones(len(self.scores))
        w = w / np.sum(w)
        cumulative = np.cumsum(w) / (1.0 + 1.0 / self.n_eff)  # the new forecast's weight 1/n_eff at +inf
        index = int(np.searchsorted(cumulative, level - 1e-12))
        return float(self.scores[index]) if index < len(self.scores) else None

    def z(self, level: float) -> float:
        """Loss: the conformal quantile, at least the Student-t quantile with ``n_eff`` degrees of
        freedom.  Other quantities (N_opt, whose interval is also at least the bootstrap's): the
        conformal quantile, or the largest score where it is infinite.  Without backtest errors,
        the normal quantile."""
        p = 0.5 + level / 2.0
        if not self.scores:
            return NormalDist().inv_cdf(p)
        conformal = self.conformal_z(level)
        if self.quantity != "loss":
            return conformal if conformal is not None else float(self.scores[-1])
        return max(conformal or 0.0, student_t_quantile(p, self.n_eff))

    def interval(self, prediction, d, level: float, spread=0.0) -> tuple[np.ndarray, np.ndarray]:
        factor = np.exp(self.z(level) * self.sigma(d, spread))
        prediction = np.asarray(prediction, np.float64)
        return prediction / factor, prediction * factor

    @property
    def calibrated(self) -> bool:
        return self.n_errors > 0 and math.isfinite(self.kappa)

    def describe(self, level: float = 0.9) -> str:
        if not self.calibrated:
            return (f"no backtest: the interval holds only the run noise (s = {self.s:.3g}) and the parameter "
                    f"spread of the forecast (delta method), normal quantile; model-form error is NOT included")
        conformal, t = self.conformal_z(level), student_t_quantile(0.5 + level / 2, self.n_eff)
        if self.quantity != "loss":
            how = (f"conformal quantile of {self.n_errors} normalised backtest errors, n_eff {self.n_eff:.3g}"
                   if conformal is not None else f"the largest of {self.n_errors} normalised backtest errors (n_eff "
                   f"{self.n_eff:.3g}: too few for a {100 * level:g}% conformal quantile)")
        elif conformal is None:
            how = (f"Student-t quantile with n_eff = {self.n_eff:.3g} degrees of freedom: the backtest holds too few "
                   f"errors ({self.n_errors}, n_eff {self.n_eff:.3g}) to calibrate a {100 * level:g}% quantile by itself")
        elif conformal >= t:
            how = f"conformal quantile of {self.n_errors} normalised backtest errors, n_eff {self.n_eff:.3g}"
        else:
            how = (f"Student-t quantile with n_eff = {self.n_eff:.3g} degrees of freedom, above the conformal "
                   f"quantile {conformal:.3g} of {self.n_errors} normalised backtest errors")
        if self.quantity != "loss":
            return (f"log error scale sqrt(s^2 + (kappa d)^2), s = {self.s:.3g}, kappa = {self.kappa:.3g} per decade "
                    f"beyond the fitted budgets; times z = {self.z(level):.3g} ({how})")
        return (f"log error scale sqrt(s^2 + p^2 + (kappa d)^2): run noise s = {self.s:.3g}, parameter spread p of "
                f"each forecast (delta method), kappa = {self.kappa:.3g} per decade beyond the fitted runs; "
                f"times z = {self.z(level):.3g} ({how})")


def fit_error_model(d, log_errors, s_fit: float, weights=None, spread=None, quantity: str = "loss") -> ErrorModel:
    """Laplace maximum likelihood ``(s >= s_fit, kappa >= 0)`` on a log grid (deterministic),
    then the normalised scores; ``weights`` per error (default equal), ``spread`` each error's
    parameter spread (default 0).  Without backtest errors: ``s = s_fit``."""
    d = np.asarray(d, np.float64)
    e = np.asarray(log_errors, np.float64)
    weights = np.ones_like(e) if weights is None else np.asarray(weights, np.float64)
    spread = np.zeros_like(e) if spread is None else np.asarray(spread, np.float64)
    spread = np.where(np.isfinite(spread), spread, 0.0)  # no spare degrees of freedom: kappa carries it
    ok = np.isfinite(d) & np.isfinite(e) & (weights > 0)
    d, e, weights, spread = d[ok], np.abs(e[ok]), weights[ok], spread[ok]
    s_fit = float(s_fit) if math.isfinite(s_fit) and s_fit > 0 else 1e-4
    if e.size == 0:
        return ErrorModel(s_fit, math.nan, s_fit, quantity=quantity)
    top = max(float(np.max(e)), 1e-4)
    s_grid = np.geomspace(s_fit, max(top, 1.01 * s_fit), 60)
    far = d[d > 0]
    kappa_grid = np.array([0.0]) if far.size == 0 else \
        np.concatenate([[0.0], np.geomspace(1e-5, top / max(float(np.min(far)), 1e-3), 100)])
    sigma = np.sqrt(s_grid[:, None, None] ** 2 + spread[None, None, :] ** 2
                    + (kappa_grid[None, :, None] * d[None, None, :]) ** 2)
    b = sigma / math.sqrt(2.0)  # the Laplace scale of standard deviation sigma
    log_likelihood = -np.sum(weights * (np.log(b) + e / b), axis=-1)
    i, j = np.unravel_index(np.argmax(log_likelihood), log_likelihood.shape)
    s, kappa = float(s_grid[i]), float(kappa_grid[j])
    scores = e / np.sqrt(s**2 + spread**2 + (kappa * d) ** 2)
    order = np.argsort(scores, kind="stable")
    equal = bool(np.all(weights == weights[0]))
    return ErrorModel(s, kappa, s_fit, tuple(float(v) for v in scores[order]),
                      () if equal else tuple(float(v) for v in weights[order]), quantity)
