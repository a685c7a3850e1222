"""Parameter uncertainty of a fitted form's forecasts, by the delta method (numpy, no compilation).

A law fitted to noisy runs forecasts with an error even when its form is right: the noise moves
the fitted parameters, and a forecast far beyond the runs amplifies that.  The backtest sees
this error too, but with one or two folds it sees it once or twice, at one distance; the delta
method gives its size for every forecast, from the fit itself (Seber & Wild 1989, "Nonlinear
Regression", sec. 5.1):

    Var[log L_hat(x*)] = g*^T Cov(theta) g*,   Cov(theta) = c s^2 (J^T W J)^-1

with ``J`` the Jacobian of the fitted log losses in the free parameters at the fitted runs,
``W`` their weights, ``g*`` the gradient at the forecast point and ``s`` the robust scale of
the log residuals, corrected for the ``p`` fitted parameters (``n / (n - p)``).  ``c = pi/2``:
with the Huber threshold at 1e-3 on log residuals most runs lie beyond it, so the fit behaves
as least absolute deviations, whose covariance is pi/2 times that of least squares for
Gaussian noise (Koenker & Bassett 1978).  At a compute-optimal forecast the optimum moves
with the parameters, but to first order the loss does not (envelope theorem): the gradient at
``(N_opt, D_opt)`` is the gradient of ``L_opt``.

The delta method is linear: with few runs and a far forecast it understates the spread
(measured on synthetic laws: the 90% quantile of |error| / spread is 2-4, not 1.64).  That is
why :mod:`._calibrate` uses it as a scale whose multiplier the backtest calibrates, not as an
interval by itself.
"""

from __future__ import annotations

import math

import numpy as np

from . import _family
from ._calibrate import robust_scale

__all__ = ["Spread", "EnsembleSpread"]

LAD_EFFICIENCY = math.pi / 2.0


def _jacobian(theta, flags, free_index, x, y, x0) -> np.ndarray:
    """(n, p) derivatives of log L_hat in the free parameters (central differences)."""
    columns = []
    for k in free_index:
        h = 1e-6 * max(1.0, abs(theta[k]))
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        with np.errstate(all="ignore"):
            columns.append((_family.log_predict(up, flags, x, y, x0) - _family.log_predict(down, flags, x, y, x0))
                           / (2 * h))
    return np.stack(columns, axis=-1) if columns else np.zeros(np.shape(x) + (0,))


class Spread:
    """The delta-method standard deviation of ``log L_hat`` of ``form`` fitted at ``theta`` to
    the points with ``weights > 0`` (``x = ln N`` or ``ln C``, ``y = ln D``).  ``inf`` where the
    fit has no spare degrees of freedom or a singular design (no claim of precision)."""

    def __init__(self, form, theta, x, y, log_L, weights, x0: float):
        self.form, self.x0 = form, x0
        self.theta = np.asarray(theta, np.float64)
        self.free_index = [k for k in range(_family.P) if form.free[k]]
        self.covariance = self._covariance(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                           np.asarray(log_L, np.float64), np.asarray(weights, np.float64))

    def _covariance(self, x, y, log_L, weights):
        p = len(self.free_index)
        used = weights > 0
        n = float(np.sum(weights[used]))
        if not np.all(np.isfinite(self.theta)) or n <= p:
            return None
        x, y, log_L, w = x[used], y[used], log_L[used], weights[used]
        with np.errstate(all="ignore"):
            residuals = _family.log_predict(self.theta, self.form.flags, x, y, self.x0) - log_L
        scale = robust_scale(np.repeat(residuals, np.maximum(np.round(w).astype(int), 1))) * math.sqrt(n / (n - p))
        J = _jacobian(self.theta, self.form.flags, self.free_index, x, y, self.x0)
        information = J.T @ (w[:, None] * J)
        if not (math.isfinite(scale) and np.all(np.isfinite(information))):
            return None
        try:
            inverse = np.linalg.inv(information)
        except np.linalg.LinAlgError:
            return None
        return LAD_EFFICIENCY * scale**2 * inverse

    def log_sd(self, x_query, y_query) -> np.ndarray:
        """Standard deviation of ``log L_hat`` at ``(x_query, y_query)`` (arrays of one shape)."""
        x_query, y_query = np.broadcast_arrays(np.asarray(x_query, np.float64), np.asarray(y_query, np.float64))
        if self.covariance is None:
            return np.full(x_query.shape, np.inf)
        g = _jacobian(self.theta, self.form.flags, self.free_index, x_query.ravel(), y_query.ravel(), self.x0)
        variance = np.einsum("qi,ij,qj->q", g, self.covariance, g)
        ok = np.isfinite(variance) & (variance >= 0)
        return np.sqrt(np.where(ok, variance, np.inf)).reshape(x_query.shape)


class EnsembleSpread:
    """An ensemble's spread: ``sqrt(sum_k w_k p_k^2)`` of its members' (their errors are not
    independent: this is the spread of one member drawn with probability ``w_k``)."""

    def __init__(self, members, weights):
        self.members, self.weights = tuple(members), tuple(weights)

    def log_sd(self, x_query, y_query) -> np.ndarray:
        return np.sqrt(sum(w * m.log_sd(x_query, y_query) ** 2 for m, w in zip(self.members, self.weights)))
