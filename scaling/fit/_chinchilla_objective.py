"""The Chinchilla approach-3 objective with hand-written exact derivatives.

Hoffmann et al. 2022, Appendix D.2 (Besiroglu et al. 2024, section 2):

    log L_hat(N, D) = logsumexp(a - alpha log N, b - beta log D, e)
    objective       = sum_i c_i Huber_delta(log L_hat(N_i, D_i) - log L_i)

with ``A, B, E = exp(a, b, e)``; parameters are ordered ``theta = (a, b, e, alpha, beta)``.
``c_i`` are per-run counts: 1 for a plain fit, multiplicities for a bootstrap replicate
(weights-as-counts keep every shape fixed, so replicates batch together).

Derivatives.  Write ``t = (a - alpha lN, b - beta lD, e)`` (linear in theta, Jacobian
rows ``v_k``), ``w = softmax(t)``, ``r = logsumexp(t) - lL``.  Then ``dr/dtheta = g =
J^T w = (w1, w2, w3, -lN w1, -lD w2)`` and ``d2r/dtheta2 = sum_k w_k v_k v_k^T - g g^T``.
With ``psi = Huber'(r)`` and ``chi = Huber''(r)`` (1 inside delta, else 0):

    grad = sum_i c_i psi_i g_i
    hess = sum_i c_i (chi_i - psi_i) g_i g_i^T + sum_i c_i psi_i sum_k w_ik v_k v_k^T

For exploring from far-away starts :func:`value_grad_gauss_newton` replaces the Hessian by
the IRLS / Gauss-Newton majoriser ``sum_i c_i min(1, delta/|r_i|) g_i g_i^T`` (positive
semi-definite; equal to the exact Gauss-Newton part for residuals inside ``delta``).

Layout: everything is computed on (starts, points) arrays and all 28 sums are taken in
ONE variadic reduction.  On XLA:CPU separate reductions each re-run the fused
element-wise producer (the exponentials), which made the naive version ~2x slower.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._optim import huber, huber_derivatives


def _sum_last_axis(arrays):
    """Sum each array over its last axis in a single variadic XLA reduction."""
    arrays = tuple(arrays)
    zeros = tuple(jnp.zeros((), x.dtype) for x in arrays)
    return jax.lax.reduce(arrays, zeros, lambda xs, ys: tuple(x + y for x, y in zip(xs, ys)),
                          (arrays[0].ndim - 1,))


def _forward(theta, log_N, log_D, log_L):
    a, b, e, alpha, beta = (theta[:, i : i + 1] for i in range(5))
    t1 = a - alpha * log_N
    t2 = b - beta * log_D
    top = jnp.maximum(jnp.maximum(t1, t2), e)
    x1, x2, x3 = jnp.exp(t1 - top), jnp.exp(t2 - top), jnp.exp(e - top)
    total = x1 + x2 + x3
    residual = top + jnp.log(total) - log_L
    return residual, x1 / total, x2 / total, x3 / total


def value(theta, log_N, log_D, log_L, counts, delta):
    """Objective per start: ``theta`` (S, 5); ``counts`` (n,) or (S, n). Returns (S,)."""
    residual, *_ = _forward(theta, log_N, log_D, log_L)
    return jnp.sum(counts * huber(residual, delta), axis=-1)


def value_grad_hess(theta, log_N, log_D, log_L, counts, delta):
    """Objective (S,), gradient (S, 5) and exact Hessian (S, 5, 5) for each start.

    ``counts`` is (n,) (shared data) or (S, n) (one bootstrap replicate per lane).
    """
    residual, w1, w2, w3 = _forward(theta, log_N, log_D, log_L)
    psi, inside = huber_derivatives(residual, delta)
    loss = counts * huber(residual, delta)
    c_psi = counts * psi
    c_gauss = counts * (inside - psi)
    g = [w1, w2, w3, -log_N * w1, -log_D * w2]
    pairs = [(i, j) for i in range(5) for j in range(i, 5)]
    curvature_terms = {  # sum_k w_k v_k v_k^T, the non-zero upper entries
        (0, 0): c_psi * w1, (0, 3): -c_psi * w1 * log_N, (3, 3): c_psi * w1 * log_N**2,
        (1, 1): c_psi * w2, (1, 4): -c_psi * w2 * log_D, (4, 4): c_psi * w2 * log_D**2,
        (2, 2): c_psi * w3,
    }
    sums = _sum_last_axis(
        [loss]
        + [c_psi * gi for gi in g]
        + [c_gauss * g[i] * g[j] + curvature_terms.get((i, j), 0.0) for i, j in pairs]
    )
    value_, grad, upper = sums[0], jnp.stack(sums[1:6], axis=-1), dict(zip(pairs, sums[6:]))
    return value_, grad, _symmetric(upper)


def _symmetric(upper):
    return jnp.stack(
        [jnp.stack([upper[(min(i, j), max(i, j))] for j in range(5)], axis=-1) for i in range(5)],
        axis=-2,
    )


def value_grad_gauss_newton(theta, log_N, log_D, log_L, counts, delta):
    """Objective (S,), gradient (S, 5) and the IRLS Gauss-Newton matrix (S, 5, 5)."""
    residual, w1, w2, w3 = _forward(theta, log_N, log_D, log_L)
    psi, _ = huber_derivatives(residual, delta)
    loss = counts * huber(residual, delta)
    c_psi = counts * psi
    abs_r = jnp.abs(residual)
    inside = abs_r <= delta
    irls = counts * jnp.where(inside, 1.0, delta / jnp.where(inside, 1.0, abs_r))
    g = [w1, w2, w3, -log_N * w1, -log_D * w2]
    pairs = [(i, j) for i in range(5) for j in range(i, 5)]
    sums = _sum_last_axis([loss] + [c_psi * gi for gi in g] + [irls * g[i] * g[j] for i, j in pairs])
    return sums[0], jnp.stack(sums[1:6], axis=-1), _symmetric(dict(zip(pairs, sums[6:])))
