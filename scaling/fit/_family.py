"""One parametrised law family, fitted for many (form, subset of points) groups in ONE compiled call.

Every loss law :func:`scaling.fit.forecast` compares is a member of this family, in log space,
with parameters ``theta = (a, b, e, alpha, beta, gamma)``::

    t1 = a - alpha * x                          x = ln N   (ln C for the compute frontier)
    t2 = b - (beta + gamma * (x - x0)) * y      y = ln D   (absent for the compute frontier)
    t3 = e
    log L_hat = logsumexp(t1, t2, t3)

* Chinchilla (Hoffmann et al. 2022, eq. 2): ``gamma = 0``: ``L = E + A/N^alpha + B/D^beta``.
* tied exponents (Gadre et al. 2024, sec. 3.2: ``alpha = beta = eta``): ``beta`` reads ``alpha``.
* N-dependent data exponent (after Li et al. 2025, "Farseer", sec. 3.2: the data exponent
  moves with model size): ``beta(N) = alpha + gamma ln(N/N0)`` on the tied base, ``ln N0 = x0``.
* compute frontier ``L*(C) = E + A C^-alpha``: ``x = ln C``, no ``t2`` term.
* Kaplan et al. 2020, eq. (1.5), ``L = ((Nc/N)^(alpha_N/alpha_D) + Dc/D)^alpha_D``: no ``t3``,
  ``log L_hat = sigma * logsumexp(t1, b - y)`` with ``sigma = beta = alpha_D``,
  ``alpha = alpha_N/alpha_D``, ``a = alpha ln Nc``, ``b = ln Dc``.

So ``log L_hat = sigma * logsumexp(t)``, where ``t = V theta + c`` is LINEAR in theta (rows
``V_k = K0_k + x K1_k + y K2_k + y (x - x0) K3_k`` fixed by the form) and ``sigma`` is 1 or
``beta``.  With ``w = softmax(t)``, ``g = sum_k w_k V_k``, ``s = logsumexp(t)`` and
``r = sigma s - ln L``::

    grad r   = sigma g + kaplan * s * e_beta
    hess r   = sigma (sum_k w_k V_k V_k^T - g g^T) + kaplan * (e_beta g^T + g e_beta^T)

and the summed Huber objective's gradient and Hessian follow as in :mod:`._chinchilla_objective`.
Written as a handful of batched contractions, not autodiff: XLA:CPU compiles this in a
fraction of the time a ``jax.hessian`` graph takes, and compile time is most of a first fit.

All groups run as lanes of one damped Newton loop (the accept-if-better Levenberg-Marquardt
rule of :mod:`._optim`): the first ``GN_ITERS`` steps use the IRLS Gauss-Newton majoriser
``sum c min(1, delta/|r|) grad r grad r^T`` (robust far from the optimum), the rest the exact
Hessian.  Shapes are padded (points to a multiple of 64, lanes to a multiple of 32), so fits of
similar size share one compiled function.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._common import float64
from ._optim import LAM_GROW, LAM_INIT, LAM_MAX, LAM_MIN, LAM_SHRINK, huber, huber_derivatives

P = 6
A, B, E, ALPHA, BETA, GAMMA = range(P)
OFF = -1e30  # a switched-off log-term: exp(OFF - max) == 0, with zero gradient
GN_ITERS = 8
MAX_ITERS = 100
GTOL = 1e-10
FTOL = 1e-13
FLAGS = ("tie", "kaplan", "floor", "dterm")


def form_tensors(flags_Lx4: np.ndarray) -> np.ndarray:
    """(L, 4, 3, P) tensors ``K0..K3`` of each lane's form (numpy; see the module docstring)."""
    tie, kaplan, floor, dterm = (flags_Lx4[:, i] for i in range(4))
    K = np.zeros((len(flags_Lx4), 4, 3, P))
    K[:, 0, 0, A] = 1.0
    K[:, 0, 1, B] = dterm
    K[:, 0, 2, E] = floor
    K[:, 1, 0, ALPHA] = -1.0
    K[:, 2, 1, ALPHA] = -(1 - kaplan) * tie * dterm
    K[:, 2, 1, BETA] = -(1 - kaplan) * (1 - tie) * dterm
    K[:, 3, 1, GAMMA] = -dterm
    return K


def _offsets(flags, y):
    """(L, n, 3) constant part ``c`` of ``t``: Kaplan's ``-y``, switched-off terms."""
    tie, kaplan, floor, dterm = (flags[:, i : i + 1] for i in range(4))
    c2 = -kaplan * dterm * y[None, :] + OFF * (1.0 - dterm)
    c3 = OFF * (1.0 - floor) * jnp.ones_like(y)[None, :]
    return jnp.stack([jnp.zeros_like(c2), c2, c3], axis=-1)


def _derivatives(theta, K, flags, free, weights, features, log_L, delta):
    """Objective (L,), masked gradient (L, P), exact Hessian and IRLS Gauss-Newton matrix
    (L, P, P) of every lane."""
    f = features  # (n, 4): 1, x, y, y (x - x0)
    Kt = jnp.einsum("ljkp,lp->ljk", K, theta)  # (L, 4, 3)
    t = jnp.einsum("nj,ljk->lnk", f, Kt) + _offsets(flags, f[:, 2])
    top = jax.lax.stop_gradient(jnp.max(t, axis=-1, keepdims=True))
    expo = jnp.exp(t - top)
    total = jnp.sum(expo, axis=-1, keepdims=True)
    s = (top + jnp.log(total))[..., 0]  # (L, n)
    w = expo / total  # (L, n, 3)
    kaplan = flags[:, 1:2]
    sigma = jnp.where(kaplan > 0, theta[:, BETA : BETA + 1], 1.0)  # (L, 1)
    residual = sigma * s - log_L[None, :]
    g = jnp.einsum("lnk,nj,ljkp->lnp", w, f, K)  # gradient of s, per point
    e_beta = jnp.zeros(P).at[BETA].set(1.0)
    grad_r = sigma[..., None] * g + (kaplan * s)[..., None] * e_beta  # (L, n, P)
    psi, chi = huber_derivatives(residual, delta)
    cpsi = weights * psi
    value = jnp.sum(weights * huber(residual, delta), axis=-1)
    grad = jnp.einsum("ln,lnp->lp", cpsi, grad_r)
    outer = lambda c: jnp.einsum("lnp,lnq->lpq", c[..., None] * grad_r, grad_r)
    # sum_i c psi_i sum_k w_ik V_ik V_ik^T, with V_ik = sum_j f_ij K_jk
    M = jnp.einsum("ln,lnk,nj,nm->lkjm", cpsi, w, f, f)
    curvature = jnp.einsum("lkjm,ljkp,lmkq->lpq", M, K, K) - jnp.einsum("lnp,lnq->lpq", cpsi[..., None] * g, g)
    cross = jnp.einsum("ln,lnp->lp", cpsi * kaplan, g)  # Kaplan lanes: sigma = beta
    curvature = sigma[..., None] * curvature + cross[:, :, None] * e_beta + e_beta[:, None] * cross[:, None, :]
    exact = outer(weights * chi) + curvature
    abs_r = jnp.abs(residual)
    gauss_newton = outer(weights * jnp.where(abs_r <= delta, 1.0, delta / jnp.maximum(abs_r, delta)))
    mask = lambda h: h * free[:, :, None] * free[:, None, :] + jnp.eye(P) * (1.0 - free)[:, None, :]
    value = jnp.where(jnp.isfinite(value), value, jnp.inf)
    return value, grad * free, mask(exact), mask(gauss_newton)


def _solve(matrix_LxPxP, rhs_LxP):
    """Gauss-Jordan elimination without pivoting, batched over lanes, in a ``fori_loop``.

    Why not ``jnp.linalg.solve``: on XLA:CPU its LAPACK call compiles ~2x slower than this loop,
    and compile time dominates a first fit.  No pivoting is safe enough here: the damped matrix
    is positive definite unless the exact Hessian is indefinite and the damping small, and then
    a zero pivot gives a non-finite step, which the Newton loop rejects (and raises the damping).
    """
    augmented = jnp.concatenate([matrix_LxPxP, rhs_LxP[..., None]], axis=-1)

    def eliminate(k, m):
        row = m[:, k, :] / m[:, k, k][:, None]
        m = m - m[:, :, k][:, :, None] * row[:, None, :]
        return m.at[:, k, :].set(row)

    return jax.lax.fori_loop(0, matrix_LxPxP.shape[-1], eliminate, augmented)[..., -1]


@partial(jax.jit, static_argnames=("gn_iters", "max_iters"))
def _newton_lanes(theta, K, flags, free, weights, features, log_L, delta, group, lane_iters, *, gn_iters, max_iters):
    """Damped Newton on every lane; steps accepted only when the objective falls.  Stops when
    the best lane of every ``group`` (lanes with equal group ids: starts of one fit) has
    converged: the others can no longer change which start wins.  A lane has converged when
    its gradient is ~0, or its last nearly-undamped (Newton) step gained less than ``FTOL``
    relatively (the Huber objective has kinks where Newton steps shrink without end), or its
    damping saturated, or it has used its own step budget ``lane_iters`` (L,)."""
    same_group = group[:, None] == group[None, :]

    def derivatives(th, iteration):
        value, grad, exact, gauss_newton = _derivatives(th, K, flags, free, weights, features, log_L, delta)
        return value, grad, jnp.where(iteration >= gn_iters, exact, gauss_newton)

    def step(carry):
        th, value, grad, hess, lam, stalled, iteration = carry
        scale = jnp.maximum(jnp.abs(jnp.diagonal(hess, axis1=-2, axis2=-1)), 1e-12)
        damped = hess + lam[:, None, None] * jnp.eye(P) * scale[:, None, :]
        delta_th = _solve(damped, -grad)
        solved = jnp.all(jnp.isfinite(delta_th), axis=-1)
        trial = th + jnp.where(solved[:, None], delta_th, 0.0)
        v2, g2, h2 = derivatives(trial, iteration + 1)
        accept = solved & (v2 < value)
        keep = lambda new, old: jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
        newton_like = (lam <= 1e-2) & (iteration + 1 >= gn_iters)
        stalled = jnp.where(accept, newton_like & (value - v2 <= FTOL * (1.0 + jnp.abs(value))), stalled)
        lam = jnp.clip(jnp.where(accept, lam * LAM_SHRINK, lam * LAM_GROW), LAM_MIN, LAM_MAX)
        return keep(trial, th), keep(v2, value), keep(g2, grad), keep(h2, hess), lam, stalled, iteration + 1

    def unfinished(carry):
        _, value, grad, _, lam, stalled, iteration = carry
        converged = (jnp.max(jnp.abs(grad), axis=-1) <= GTOL * (1.0 + jnp.abs(value))) | (lam >= LAM_MAX) | stalled
        best_of_group = jnp.min(jnp.where(same_group, value[None, :], jnp.inf), axis=1)
        settled = converged | ~jnp.isfinite(value) | (value > best_of_group) | (iteration >= lane_iters)
        return (iteration < max_iters) & ~jnp.all(settled)

    value, grad, hess = derivatives(theta, 0)
    carry = (theta, value, grad, hess, jnp.full(value.shape, LAM_INIT), jnp.zeros(value.shape, bool),
             jnp.zeros((), jnp.int32))
    theta, value, grad, _, _, _, iteration = jax.lax.while_loop(unfinished, step, carry)
    return theta, value, jnp.max(jnp.abs(grad), axis=-1), iteration


def _pad_to(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def newton(theta_LxP, flags_Lx4, free_LxP, weights_LxN, x, y, log_L, *, x0: float, delta: float = 1e-3,
           group=None, lane_iters=None):
    """Polish every lane (one start of one fit) by damped Newton; numpy in, numpy out:
    ``(theta (L, P), objective (L,), max |grad| (L,))``.  ``group`` (L,): which fit each lane
    is a start of (default: every lane its own); ``lane_iters`` (L,): a lane's own step budget
    (default ``MAX_ITERS``; the loop stops once every lane has converged or used its budget).
    Runs in float64 on the CPU wherever JAX's default device is (:func:`._common.float64`)."""
    L, n = theta_LxP.shape[0], len(x)
    L_pad, n_pad = _pad_to(L, 32), _pad_to(n, 64)
    lanes = lambda a: np.concatenate([a, np.repeat(a[:1], L_pad - L, axis=0)]) if L_pad > L else a
    weights = np.zeros((L_pad, n_pad))
    weights[:L, :n] = weights_LxN
    pad = lambda a: np.concatenate([np.asarray(a, np.float64), np.ones(n_pad - n)])
    xs, ys = pad(x), pad(y)
    features = np.stack([np.ones(n_pad), xs, ys, ys * (xs - x0)], axis=1)
    flags = lanes(np.asarray(flags_Lx4, np.float64))
    group = np.arange(L) if group is None else np.asarray(group)
    group = np.concatenate([group, -1 - np.arange(L_pad - L)]).astype(np.int32)  # padding: own groups
    lane_iters = np.full(L, MAX_ITERS) if lane_iters is None else np.asarray(lane_iters)
    lane_iters = np.concatenate([lane_iters, np.zeros(L_pad - L)]).astype(np.int32)
    # numpy in: jnp.asarray under the CPU-device scope would stage (compile) a copy per array
    arrays = (lanes(np.asarray(theta_LxP, np.float64)), form_tensors(flags), flags,
              lanes(np.asarray(free_LxP, np.float64)), weights, features, pad(log_L), np.float64(delta), group,
              lane_iters)
    with float64():
        theta, value, grad_norm, _ = _newton_lanes(*arrays, gn_iters=GN_ITERS, max_iters=MAX_ITERS)
        theta, value, grad_norm = jax.device_get((theta, value, grad_norm))
    return np.asarray(theta)[:L], np.asarray(value)[:L], np.asarray(grad_norm)[:L]


def log_predict(theta, flags, x, y, x0) -> np.ndarray:
    """``log L_hat`` (..., n) of fitted ``theta`` (..., P) of one form at points ``x, y`` (n,)
    (numpy, no compilation)."""
    theta = np.asarray(theta, np.float64)[..., None]  # (..., P, 1)
    tie, kaplan, floor, dterm = (float(v) for v in flags)
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    with np.errstate(over="ignore", invalid="ignore"):
        t1 = theta[..., A, :] - theta[..., ALPHA, :] * x
        if kaplan:
            slope = 1.0
        else:
            slope = theta[..., ALPHA if tie else BETA, :] + theta[..., GAMMA, :] * (x - x0)
        t2 = theta[..., B, :] - slope * y if dterm else np.full(t1.shape, -np.inf)
        t3 = np.broadcast_to(theta[..., E, :] if floor else -np.inf, t1.shape)
        t = np.stack([t1, t2, t3])
        top = np.max(t, axis=0)
        s = top + np.log(np.sum(np.exp(t - top), axis=0))
        return (theta[..., BETA, :] if kaplan else 1.0) * s
