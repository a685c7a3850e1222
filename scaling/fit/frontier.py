"""The compute-optimal frontier of fitted laws, and the IsoFLOP (approach 2) bootstrap.

Both take fitted laws or arrays and return arrays: law maths, no tables or plots.

* :func:`frontier`: (N_opt, D_opt, L_opt) of Chinchilla laws at budgets C under a family's own
  cost per token, vectorised over many laws (bootstrap replicates) at once.
* :func:`interpolated_flops_per_token`: that cost per token, from the runs themselves.
* :func:`isoflop_bootstrap`: residual bootstrap of approach 2 that keeps each budget's design.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

from .approaches import group_budgets, isoflop
from .bootstrap import BootstrapResult

__all__ = ["frontier", "interpolated_flops_per_token", "isoflop_bootstrap"]


def interpolated_flops_per_token(N, C, D) -> Callable:
    """N -> training FLOPs per token of a family, interpolated log-log over its runs (C / D of
    each run of size N), extrapolated with the end slopes; C / D / N times N (6N for C = 6ND)
    when only one size was run.

    Why: a law's compute-optimal D at budget C is C / per_token(N_opt), and a family's cost per
    token is not 6N at small scale (embeddings, attention: Hoffmann et al. 2022, App. F), so the
    runs' own C / D is the honest cost model, without needing the model configs.
    """
    N, C, D = (np.asarray(x, dtype=np.float64).ravel() for x in (N, C, D))
    pairs = sorted({(float(n), float(c) / float(d)) for n, c, d in zip(N, C, D)})
    by_n: dict[float, float] = {}
    for n, c in pairs:
        by_n[n] = c
    log_n = np.log(np.array(list(by_n)))
    log_c = np.log(np.array(list(by_n.values())))

    if len(log_n) < 2:
        ratio = math.exp(log_c[0] - log_n[0]) if len(log_n) else 6.0

        def single(N):
            return ratio * np.asarray(N, dtype=np.float64)

        return single

    def fpt(N):
        x = np.log(np.asarray(N, dtype=np.float64))
        y = np.interp(x, log_n, log_c)
        lo_slope = (log_c[1] - log_c[0]) / (log_n[1] - log_n[0])
        hi_slope = (log_c[-1] - log_c[-2]) / (log_n[-1] - log_n[-2])
        y = np.where(x < log_n[0], log_c[0] + lo_slope * (x - log_n[0]), y)
        y = np.where(x > log_n[-1], log_c[-1] + hi_slope * (x - log_n[-1]), y)
        return np.exp(y)

    return fpt


def frontier(params: dict[str, np.ndarray], C, fpt: Callable, *, grid: int = 600) -> tuple[np.ndarray, ...]:
    """Compute-optimal (N, D, L) of Chinchilla laws at budgets C, vectorised over laws.

    `params`: E, A, B, alpha, beta, each a scalar or an (R,) array of R laws (e.g. bootstrap
    replicates). Minimises L(N, C / fpt(N)) over a log-N grid around the 6ND closed form
    (+- 4 decades, `grid` points, then one parabolic refinement). Returns (R, len(C)) arrays.
    """
    E, A, B, al, be = (np.atleast_1d(np.asarray(params[k], dtype=np.float64)) for k in ("E", "A", "B", "alpha", "beta"))
    C = np.atleast_1d(np.asarray(C, dtype=np.float64))
    a = be / (al + be)
    G = (al * A / (be * B)) ** (1.0 / (al + be))
    center = np.log(G[:, None] * (C[None, :] / 6.0) ** a[:, None])  # (R, K)
    offsets = np.linspace(-4 * math.log(10), 4 * math.log(10), grid)
    logN = center[..., None] + offsets  # (R, K, G)
    N = np.exp(logN)
    D = C[None, :, None] / fpt(N)
    with np.errstate(over="ignore", invalid="ignore"):
        L = E[:, None, None] + A[:, None, None] * N ** -al[:, None, None] + B[:, None, None] * D ** -be[:, None, None]
    L = np.where(np.isfinite(L), L, np.inf)
    i = np.clip(np.argmin(L, axis=-1), 1, grid - 2)
    take = lambda arr, j: np.take_along_axis(arr, j[..., None], axis=-1)[..., 0]
    y0, y1, y2 = take(L, i - 1), take(L, i), take(L, i + 1)
    denom = y0 - 2 * y1 + y2
    step = offsets[1] - offsets[0]
    shift = np.where((denom > 0) & np.isfinite(denom), 0.5 * (y0 - y2) / np.where(denom > 0, denom, 1), 0.0)
    logN_opt = take(logN, i) + np.clip(shift, -1, 1) * step
    N_opt = np.exp(logN_opt)
    D_opt = C[None, :] / fpt(N_opt)
    L_opt = E[:, None] + A[:, None] * N_opt ** -al[:, None] + B[:, None] * D_opt ** -be[:, None]
    return N_opt, D_opt, L_opt


def isoflop_bootstrap(full, C, N, L, *, n: int, seed: int = 0, at_C=None, flops_per_token=None):
    """Residual bootstrap of approach 2, stratified by budget.

    Resampling whole runs (`scaling.fit.bootstrap`) breaks IsoFLOP profiles of 4-6 runs: a
    resample often has fewer than 3 distinct sizes in a budget, and the parabola is undefined.
    Instead every replicate keeps the design (each budget's sizes) and redraws the losses as
    fitted parabola + residuals resampled with replacement within the budget, inflated by
    sqrt(n_b / (n_b - 3)) for the 3 fitted coefficients (Davison & Hinkley 1997, sec. 6.2.3).
    Budgets that the full fit skipped stay out of every replicate.
    Returns a `scaling.fit.BootstrapResult` over a, b, the coefficients and, with `at_C`,
    N_opt and D_opt.
    """
    rng = np.random.default_rng(seed)
    # Replicates keep the full fit's budgets: a budget it skipped (a flat or downward profile)
    # would otherwise enter the replicates whose noise happens to curve it upward, with an
    # optimum far outside its sizes, and blow up the interval with a different estimator.
    skipped = [float(b) for b in getattr(full, "skipped_budgets", ()) or ()]
    groups = [g for g in group_budgets(C) if len(g) >= 4
              and not any(abs(math.log(float(np.exp(np.mean(np.log(C[g])))) / b)) <= 1e-6 for b in skipped)]
    keep = np.sort(np.concatenate(groups)) if groups else np.arange(0)
    fitted, residuals = np.array(L, dtype=np.float64), {}
    for g in groups:
        coef = np.polyfit(np.log(N[g]), L[g], 2)
        fitted[g] = np.polyval(coef, np.log(N[g]))
        residuals[tuple(g)] = (L[g] - fitted[g]) * math.sqrt(len(g) / max(len(g) - 3, 1))

    def derived(law):
        values = dict(law.params)
        if at_C is not None:
            n_opt, d_opt = law.compute_optimal(at_C)
            values["N_opt"], values["D_opt"] = float(n_opt), float(d_opt)
        return values

    laws = []
    for _ in range(n):
        L_star = np.array(L, dtype=np.float64)
        for g in groups:
            r = residuals[tuple(g)]
            L_star[g] = fitted[g] + rng.choice(r, size=len(g), replace=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                laws.append(isoflop(C[keep], N[keep], np.maximum(L_star[keep], 1e-9),
                                        flops_per_token=flops_per_token))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            continue  # a replicate whose parabolas give no usable optimum: counted in n_failed
    estimates = derived(full)
    per = [derived(law) for law in laws]
    samples = {k: np.array([v[k] for v in per]) for k in estimates}
    return BootstrapResult(law=full, estimates=estimates, samples=samples, n=n, n_failed=n - len(laws),
                               converged_fraction=1.0 if laws else 0.0, grouped=True)
