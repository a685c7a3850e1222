"""The looped-model objective (:mod:`.looped`) with hand-written exact derivatives.

The Chinchilla objective of :mod:`._chinchilla_objective` with N replaced by an effective
parameter count N g(k; gamma) whose gamma is fitted::

    log L_hat = logsumexp(a - alpha u, b - beta log D, e),    u = log N + h(gamma),
    h = gamma log k ("power")  or  log(1 + gamma log k) ("log"),
    objective = sum_i c_i Huber_delta(log L_hat_i - log L_i),

parameters ``theta = (a, b, e, alpha, beta, gamma)``.  Derivatives as there: with
``w = softmax(t)`` and the Jacobian rows ``v_1 = (1, 0, 0, -u, 0, -alpha h')``,
``v_2 = (0, 1, 0, 0, -log D, 0)``, ``v_3 = (0, 0, 1, 0, 0, 0)`` of ``t``,
``dr/dtheta = g = sum_k w_k v_k`` and ``d2r/dtheta2 = sum_k w_k v_k v_k^T - g g^T + w_1 d2t_1``
where the only second derivatives of ``t_1`` are ``d2t_1/dalpha dgamma = -h'`` and
``d2t_1/dgamma2 = -alpha h''``.

The same objective serves the data-constrained law (:mod:`.data_constrained`, Muennighoff et
al. 2023) with the roles of the two terms swapped: there ``u = log U + h`` is the log of the
effective data D', ``h = log(1 + R* (1 - exp(-R / R*)))`` with ``gamma = log R*`` and the
repeats ``R`` in place of ``log k`` (form ``"repeat"``), and the other term is ``A / N^alpha``.

Hand-written rather than autodiff because the batched
Newton runs tens of thousands of lanes: autodiff Hessians compiled ~5x slower and ran ~3x
slower here (measured, 2-core CPU), and all 28 sums are taken in one variadic reduction.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from ._chinchilla_objective import _sum_last_axis
from ._optim import huber, huber_derivatives

_PAIRS = [(i, j) for i in range(6) for j in range(i, 6)]


def _h(form, gamma, log_k):
    """h, h', h'' of the form in gamma."""
    if form == "power":
        return gamma * log_k, log_k, jnp.zeros_like(log_k)
    if form == "repeat":  # log_k holds R >= 0 repeats; q = R* (1 - e^-z), z = R / R*, R* = e^gamma
        r_star = jnp.exp(gamma)
        z = log_k / r_star
        decay = jnp.exp(-z)
        q = -r_star * jnp.expm1(-z)
        q1 = q - log_k * decay          # dq/dgamma
        q2 = q1 - log_k * z * decay     # d2q/dgamma2
        h1 = q1 / (1.0 + q)
        return jnp.log1p(q), h1, q2 / (1.0 + q) - h1**2
    q = 1.0 + gamma * log_k  # log: 1 + gamma ln k <= 0 gives NaN and the Newton step is rejected
    return jnp.log(q), log_k / q, -(log_k / q) ** 2


def _forward(form, theta, log_N, log_D, log_k, log_L):
    a, b, e, alpha, beta, gamma = (theta[:, i : i + 1] for i in range(6))
    h, h1, h2 = _h(form, gamma, log_k)
    u = log_N + h
    t1, t2 = a - alpha * u, b - beta * log_D
    top = jnp.maximum(jnp.maximum(t1, t2), e)
    x1, x2, x3 = jnp.exp(t1 - top), jnp.exp(t2 - top), jnp.exp(e - top)
    total = x1 + x2 + x3
    residual = top + jnp.log(total) - log_L
    w1, w2, w3 = x1 / total, x2 / total, x3 / total
    g = [w1, w2, w3, -u * w1, -log_D * w2, -alpha * h1 * w1]
    return residual, (w1, w2, w3), g, (u, alpha, h1, h2)


def _curvature(c_psi, w, u, alpha, h1, h2, log_D):
    """sum_k w_k v_k v_k^T + w_1 d2t_1, weighted by c psi: the non-zero upper entries."""
    w1, w2, w3 = w
    return {
        (0, 0): c_psi * w1, (0, 3): -c_psi * w1 * u, (0, 5): -c_psi * w1 * alpha * h1,
        (3, 3): c_psi * w1 * u**2, (3, 5): c_psi * w1 * (alpha * h1 * u - h1), (5, 5): c_psi * w1 * alpha * (alpha * h1**2 - h2),
        (1, 1): c_psi * w2, (1, 4): -c_psi * w2 * log_D, (4, 4): c_psi * w2 * log_D**2,
        (2, 2): c_psi * w3,
    }


def _symmetric(upper):
    return jnp.stack([jnp.stack([upper[(min(i, j), max(i, j))] for j in range(6)], axis=-1) for i in range(6)],
                     axis=-2)


def _value_grad_hess(form, theta, log_N, log_D, log_k, log_L, counts, delta):
    residual, w, g, (u, alpha, h1, h2) = _forward(form, theta, log_N, log_D, log_k, log_L)
    psi, inside = huber_derivatives(residual, delta)
    c_psi, c_gauss = counts * psi, counts * (inside - psi)
    curvature = _curvature(c_psi, w, u, alpha, h1, h2, log_D)
    sums = _sum_last_axis([counts * huber(residual, delta)] + [c_psi * gi for gi in g]
                          + [c_gauss * g[i] * g[j] + curvature.get((i, j), 0.0) for i, j in _PAIRS])
    return sums[0], jnp.stack(sums[1:7], axis=-1), _symmetric(dict(zip(_PAIRS, sums[7:])))


def _value_grad_gauss_newton(form, theta, log_N, log_D, log_k, log_L, counts, delta):
    residual, _, g, _ = _forward(form, theta, log_N, log_D, log_k, log_L)
    psi, _ = huber_derivatives(residual, delta)
    abs_r = jnp.abs(residual)
    inside = abs_r <= delta
    irls = counts * jnp.where(inside, 1.0, delta / jnp.where(inside, 1.0, abs_r))
    sums = _sum_last_axis([counts * huber(residual, delta)] + [counts * psi * gi for gi in g]
                          + [irls * g[i] * g[j] for i, j in _PAIRS])
    return sums[0], jnp.stack(sums[1:7], axis=-1), _symmetric(dict(zip(_PAIRS, sums[7:])))


@functools.lru_cache(maxsize=None)
def callbacks(form: str):
    """(Gauss-Newton/IRLS, exact) value-grad-curvature callbacks of a form with a free gamma:
    ``theta`` (S, 6), data (n,), ``counts`` (n,) or (S, n). Cached: one compile per form."""
    gn = functools.partial(_value_grad_gauss_newton, form)
    exact = functools.partial(_value_grad_hess, form)
    gn.__name__, exact.__name__ = f"looped_{form}_gauss_newton", f"looped_{form}_exact"
    return gn, exact
