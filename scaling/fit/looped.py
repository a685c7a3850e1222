"""Scaling laws of looped models: what a loop is worth, in parameters and in loss.

A looped Transformer (``ModelConfig.loops = k``) applies its blocks k times with shared
weights: about k times the compute per token for the same parameter count N. A law in N
alone cannot see the loops; a law in C cannot tell a loop from a parameter.  Here the loops
enter the Chinchilla form (Hoffmann et al. 2022, eq. 2) through an effective parameter count,
as effective-size laws do for other ways of decoupling compute from parameters (routed
experts: Clark et al. 2022; sparsity: Frantar et al. 2023)::

    L(N, D, k) = E + A / N_eff**alpha + B / D**beta,      N_eff = N * g(k)

with ``g(1) = 1`` and the forms (:data:`FORMS`)

* ``"none"``     g = 1: loops are worth nothing (unique parameters are all that count);
* ``"compute"``  g = k: a loop is worth a full copy of the parameters (the other extreme:
  k loops = k times the parameters at k times the compute);
* ``"power"``    g = k**gamma (gamma 0 and 1 are the two extremes);
* ``"log"``      g = 1 + gamma ln k (diminishing returns from the first loop on).

Which form to believe is decided by forecasting runs the fit did not see
(:func:`compare_forms`, the held-out backtest of :func:`scaling.fit.backtest`), not by the
in-sample objective, which a form with a free gamma always wins.  The exchange rate
``g(k + 1) / g(k) - 1`` ("one more loop is worth x% more parameters"), with a bootstrap
interval over runs, is :func:`looped_bootstrap`'s ``extra_loop``.

What it is not: D counts tokens, so at one budget a looped model trains on k times fewer
tokens (``scaling.flops``: looped models pay every loop's compute); the law prices parameters
and tokens separately, and the compute-matched comparison is the caller's (``scaling.questions``).

The fit is the Chinchilla fit's recipe (summed Huber of log residuals, Hoffmann et al. 2022
App. D.2; Hoffmann's 4,500-start grid, crossed here with three gamma values; Gauss-Newton/IRLS
exploration, then exact-Hessian polish, :mod:`._optim`).  A fixed g(k) is Chinchilla's own
objective in N g(k); a free gamma has its hand-derived 6-parameter objective
(:mod:`._looped_objective`).  Held-out fits weight the held-out runs 0 instead of dropping
them, so they reuse the full fit's compiled function.  Measured (2 shared cores, 54 runs):
a power-form fit ~15 s the first time (compiling), 0.8 s after; 200 bootstrap replicates
~13 s with their compile.  Takes arrays; imports nothing from training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import _chinchilla_objective, _looped_objective
from ._common import float64, format_table, scalar_or_array
from ._extended import FormComparison, best_start_per_replicate, bootstrap_result, compare_held_out
from ._optim import batched_newton, multistart_newton
from ._validate import (
    ExtrapolationWarning,
    as_positive_1d,
    check_enough_points,
    check_same_length,
    check_spans_decade,
    warn,
)
from .bootstrap import BootstrapResult, resample_counts
from .laws import (
    CHINCHILLA_PHASES,
    CONVERGENCE_GTOL,
    EXPLORE_ITERS,
    KEEP_STARTS,
    POLISH_GTOL,
    POLISH_ITERS,
    ROBUST_ITERS,
    hoffmann_grid,
)

__all__ = ["FORMS", "LoopedLaw", "looped", "looped_bootstrap", "compare_forms", "FormComparison"]

#: The effective-parameter forms g(k) of N_eff = N g(k), and whether gamma is fitted.
FORMS = {"none": False, "compute": False, "power": True, "log": True}
_GAMMA_STARTS = {"power": (0.15, 0.5, 0.9), "log": (0.2, 0.7, 1.5)}
_BOOTSTRAP_ITERS = (30, 40)   # Gauss-Newton, then exact-Hessian steps per replicate (as scaling.fit.bootstrap)
_PERTURBED_STARTS = 3


def _log_g(form: str, log_k: np.ndarray, gamma: float) -> np.ndarray:
    """ln g(k) for each form (gamma ignored where fixed)."""
    if form == "none":
        return np.zeros_like(log_k)
    if form == "compute":
        return log_k
    if form == "power":
        return gamma * log_k
    with np.errstate(invalid="ignore"):
        return np.log1p(gamma * log_k)  # NaN where 1 + gamma ln k <= 0


@dataclass(frozen=True)
class LoopedLaw:
    """``L = E + A / (N g(k))**alpha + B / D**beta`` (see the module doc for g)."""

    form: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    gamma: float = math.nan      # the form's parameter (NaN for "none" and "compute")
    objective: float = math.nan
    converged: bool = True
    grad_norm: float = math.nan
    n_points: int = 0
    delta: float = 1e-3

    @property
    def n_params(self) -> int:
        return 6 if FORMS[self.form] else 5

    @property
    def params(self) -> dict[str, float]:
        out = {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}
        if FORMS[self.form]:
            out["gamma"] = self.gamma
        return out

    def loop_factor(self, loops):
        """g(k): N_eff / N of a model looped k times."""
        return scalar_or_array(np.exp(_log_g(self.form, np.log(np.asarray(loops, dtype=np.float64)), self.gamma)))

    def exchange_rate(self, loops=1):
        """g(k + 1) / g(k) - 1: how many more parameters (a fraction) one more loop is worth,
        going from k = ``loops`` to k + 1 at the same N and D."""
        k = np.asarray(loops, dtype=np.float64)
        return scalar_or_array(np.asarray(self.loop_factor(k + 1)) / np.asarray(self.loop_factor(k)) - 1.0)

    def predict(self, N, D, loops):
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        N_eff = N * np.asarray(self.loop_factor(np.asarray(loops, dtype=np.float64)))
        return scalar_or_array(self.E + self.A * N_eff ** (-self.alpha) + self.B * D ** (-self.beta))

    def summary(self) -> str:
        rows = [(k, f"{v:.6g}") for k, v in self.params.items()]
        rows += [("one more loop (1 -> 2)", f"worth {100 * float(self.exchange_rate(1)):+.1f}% parameters"),
                 ("objective", f"{self.objective:.6g} (sum of Huber, delta={self.delta:g}, {self.n_points} points)"),
                 ("converged", f"{self.converged} (max |grad| {self.grad_norm:.2e})")]
        return format_table(f"LoopedLaw ({self.form})  L = E + A/(N g(k))^alpha + B/D^beta", rows)


# ---------------------------------------------------------------------------------------
# Fitting: theta = (a, b, e, alpha, beta[, gamma]), A, B, E = exp(a, b, e)


def _validate(N, D, loops, L):
    N, D, L = as_positive_1d(N, "N"), as_positive_1d(D, "D"), as_positive_1d(L, "L")
    loops = as_positive_1d(loops, "loops")
    if np.any(loops < 1) or np.any(loops != np.round(loops)):
        raise ValueError(f"loops: must be whole loop counts >= 1, got {sorted(set(loops.tolist()))}")
    n = check_same_length(N=N, D=D, loops=loops, L=L)
    check_spans_decade(N, "N")
    check_spans_decade(D, "D")
    return N, D, loops, L, n


def _phases(form: str):
    """The Newton phases of a form: a fixed g(k) is Chinchilla's own objective in N g(k)
    (`_chinchilla_objective`, compiled once for both), a free gamma the 6-parameter one."""
    if not FORMS[form]:
        return CHINCHILLA_PHASES
    gauss_newton, exact = _looped_objective.callbacks(form)
    return ((gauss_newton, EXPLORE_ITERS, None), (gauss_newton, ROBUST_ITERS, KEEP_STARTS), (exact, POLISH_ITERS, None))


def _data(form, N, D, loops, L, counts, delta):
    """The objective's arguments: (log N g(k), log D, log L, counts) for a fixed g, (log N,
    log D, log k, log L, counts) for a free gamma; float64 jax arrays."""
    log_k = np.log(loops)
    if FORMS[form]:
        data = (np.log(N), np.log(D), log_k, np.log(L), counts)
    else:
        data = (np.log(N) + (log_k if form == "compute" else 0.0), np.log(D), np.log(L), counts)
    return tuple(jnp.asarray(x, jnp.float64) for x in data) + (jnp.asarray(delta, jnp.float64),)


def _law(form, theta, value, grad_norm, n, delta) -> LoopedLaw:
    return LoopedLaw(form=form, E=math.exp(theta[2]), A=math.exp(theta[0]), B=math.exp(theta[1]),
                     alpha=float(theta[3]), beta=float(theta[4]),
                     gamma=float(theta[5]) if FORMS[form] else math.nan, objective=float(value),
                     converged=bool(np.isfinite(value) and grad_norm <= CONVERGENCE_GTOL * (1.0 + abs(value))),
                     grad_norm=float(grad_norm), n_points=n, delta=float(delta))


def _fit(form, N, D, loops, L, counts, delta) -> LoopedLaw:
    """Multi-start fit with per-run weights `counts` (0 drops a run: held-out fits keep the
    table's shape, so they reuse the compiled function of the full fit)."""
    grid = hoffmann_grid()
    starts = (np.concatenate([np.column_stack([grid, np.full(len(grid), g)]) for g in _GAMMA_STARTS[form]])
              if FORMS[form] else grid)
    with float64():
        result = multistart_newton(jnp.asarray(starts, jnp.float64), _data(form, N, D, loops, L, counts, delta),
                                   phases=_phases(form), gtol=POLISH_GTOL)
        result = jax.device_get(result)
    return _law(form, np.asarray(result.theta), float(result.value), float(result.grad_norm),
                int(np.count_nonzero(counts)), delta)


def _check_form(form, loops, n):
    if form not in FORMS:
        raise ValueError(f"form={form!r}: must be one of {', '.join(FORMS)}")
    check_enough_points(n, 6 if FORMS[form] else 5, "L")
    if FORMS[form] and len(set(np.asarray(loops).tolist())) < 2:
        raise ValueError(f"loops: every run has loops={int(np.asarray(loops)[0])}; form={form!r} needs at least "
                         "two loop counts")


def looped(N, D, loops, L, *, form: str = "power", delta: float = 1e-3) -> LoopedLaw:
    """Fit ``L = E + A / (N g(k))**alpha + B / D**beta`` to runs of N parameters, D tokens and
    k = ``loops`` loops (form: :data:`FORMS`).  A form with a free gamma needs at least two
    loop counts among the runs.  Warns :class:`ExtrapolationWarning` when a power law's gamma
    leaves [0, 1] (a loop worth less than nothing, or more than a copy of the model)."""
    N, D, loops, L, n = _validate(N, D, loops, L)
    _check_form(form, loops, n)
    law = _fit(form, N, D, loops, L, np.ones(n), delta)
    if form == "power" and not -0.05 <= law.gamma <= 1.05:
        warn(f"looped: gamma={law.gamma:.3g} is outside [0, 1]: a loop worth "
             f"{'less than nothing' if law.gamma < 0 else 'more than a copy of the parameters'}; "
             "check the runs (learning rate per loop count, too few tokens) before believing it", ExtrapolationWarning)
    return law


def looped_bootstrap(N, D, loops, L, *, form: str = "power", n: int = 1000, seed: int = 0, groups=None,
                     delta: float = 1e-3) -> BootstrapResult:
    """Bootstrap the looped law over runs (or ``groups`` of runs, e.g. a run with its WSD
    branches), every replicate re-converged from the full fit (plus a few perturbed starts) in
    one batched Newton run, as :func:`scaling.fit.bootstrap` does for Chinchilla's law.

    Samples: the law's parameters, ``extra_loop`` (g(2) - 1, the exchange rate of the first
    extra loop) and ``extra_loop_<k>`` (g(k + 1)/g(k) - 1) for every other loop count k run.
    """
    if n < 2:
        raise ValueError(f"n: need at least 2 replicates, got {n}")
    full = looped(N, D, loops, L, form=form, delta=delta)
    N, D, loops, L, n_runs = _validate(N, D, loops, L)
    counts = resample_counts(n_runs, n, seed, groups)
    theta0 = np.array([math.log(full.A), math.log(full.B), math.log(full.E), full.alpha, full.beta]
                      + ([full.gamma] if FORMS[form] else []))
    rng = np.random.default_rng(seed + 1)
    scale = np.array([0.5, 0.5, 0.05, 0.03, 0.03, 0.05])[: len(theta0)]
    starts = np.concatenate([theta0[None], theta0 + scale * rng.standard_normal((_PERTURBED_STARTS, len(theta0)))])
    lanes = len(starts)
    explore, polish = (_looped_objective.callbacks(form) if FORMS[form] else
                       (_chinchilla_objective.value_grad_gauss_newton, _chinchilla_objective.value_grad_hess))
    with float64():
        args = _data(form, N, D, loops, L, np.repeat(counts, lanes, axis=0).astype(np.float64), delta)
        state = batched_newton(jnp.asarray(np.tile(starts, (n, 1)), jnp.float64), args,
                               phases=((explore, _BOOTSTRAP_ITERS[0]), (polish, _BOOTSTRAP_ITERS[1])), gtol=POLISH_GTOL)
        theta, value, grad = jax.device_get((state.theta, state.value, state.grad))
    laws = best_start_per_replicate(theta, value, grad, n, lambda t, v, g: _law(form, t, v, g, n_runs, delta))
    extra = sorted({int(k) for k in loops.tolist()} - {1})

    def derived(law):
        out = dict(law.params, extra_loop=float(law.exchange_rate(1)))
        out.update({f"extra_loop_{k}": float(law.exchange_rate(k)) for k in extra})
        return out

    return bootstrap_result(full, laws, derived, groups)


# ---------------------------------------------------------------------------------------
# Which form: held-out forecasts


def compare_forms(N, D, loops, L, *, compute=None, holdout=0.2, forms=tuple(FORMS),
                  delta: float = 1e-3) -> list[FormComparison]:
    """Fit each form on every run and backtest it: fit without the largest-compute runs
    (``holdout``: :func:`scaling.fit.backtest.held_out_mask`; ``compute`` per run, default
    6 N D k), forecast their losses.  Returns the comparisons, best (lowest held-out rms log
    error) first; a form that cannot be fitted (e.g. a free gamma on one loop count, or too
    few runs left) carries the reason in ``error``."""
    N, D, loops, L, n = _validate(N, D, loops, L)
    compute = as_positive_1d(6.0 * N * D * loops if compute is None else compute, "compute")
    return compare_held_out(
        forms, L, compute, holdout,
        check=lambda form, kept: _check_form(form, loops[kept], int(kept.sum())),
        fit_all=lambda form: looped(N, D, loops, L, form=form, delta=delta),
        fit_kept=lambda form, weights: _fit(form, N, D, loops, L, weights, delta),
        predict=lambda law, held: law.predict(N[held], D[held], loops[held]),
        n_params=lambda form: 6 if FORMS[form] else 5)
