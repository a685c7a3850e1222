"""Scaling laws of repeated data: what a token is worth on its second, third, ... pass.

Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models", NeurIPS; arXiv
2305.16264, sec. 3.1, eqs. 5-6 and their released fit) keep the Chinchilla form (Hoffmann et
al. 2022, eq. 2) and replace data and parameters by effective counts::

    L(N, D, U) = E + A / N'**alpha + B / D'**beta
    D' = U + U R_D* (1 - exp(-R_D / R_D*)),     R_D = max(D / U - 1, 0)
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)), R_N = max(N / U_N - 1, 0),  U_N = min(N, N_opt(U))

for a run of N parameters trained on D tokens that repeat U unique tokens D / U times.  The
k-th pass over the data adds U exp(-(k - 1) / R_D*) effective tokens: a repeated token decays
in value by 1/e every R_D* repeats, and D' never exceeds U (1 + R_D*).  N_opt(U) is the size
for which U tokens are compute-optimal under the law's own Chinchilla part (C = 6ND, their
``D_to_N``); parameters beyond it decay the same way with R_N*.  They fitted R_D* = 15.4 and
R_N* = 5.3 on C4: about 4 epochs are nearly as good as fresh data (the 3 repeats are worth
91% of fresh tokens), 40 are worth little more than 16.

Forms (:data:`FORMS`):

* ``"data"``: D' only (N' = N, R_N* infinite); 6 parameters fitted together, by the looped
  law's hand-written objective (:mod:`._looped_objective`, form ``"repeat"``, with the two
  terms' roles swapped) from Hoffmann's 4,500-start grid crossed with three R_D*, as every
  fit here (Gauss-Newton/IRLS exploration, exact-Hessian polish: :mod:`._optim`);
* ``"full"``: D' and N' (7 parameters), polished from the ``"data"`` optimum crossed with
  three R_N* by damped Newton with autodiff derivatives (few lanes: autodiff costs little).
  U_N moves with the fitted A, B, alpha, beta: the paper instead fixed those from a fit of
  unique-data runs and fitted R_D*, R_N* alone; jointly, every run informs every parameter.

The data enter as the repeats R_D, so the law is fitted in (N, D, U) and needs runs at
several epochs: a table where every run sees its data at most once has R_D = 0 everywhere
and no R_D* to find.  :func:`data_constrained_bootstrap` gives intervals over runs (R_D*, the
worth of repeats at 4 epochs, ...); :meth:`DataConstrainedLaw.compute_optimal` the
allocation of a budget under a data cap.  Takes arrays; imports nothing from training.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import _looped_objective
from ._common import call_vectorised, float64, format_table, minimise_log_scalar, scalar_or_array
from ._extended import FormComparison, best_start_per_replicate, bootstrap_result, compare_held_out
from ._optim import batched_newton, huber, multistart_newton
from ._validate import as_positive_1d, check_enough_points, check_same_length, check_spans_decade
from .bootstrap import BootstrapResult, resample_counts
from .laws import (
    CONVERGENCE_GTOL,
    EXPLORE_ITERS,
    KEEP_STARTS,
    POLISH_GTOL,
    POLISH_ITERS,
    ROBUST_ITERS,
    ChinchillaLaw,
    hoffmann_grid,
)

__all__ = ["FORMS", "DataConstrainedLaw", "DataConstrainedOptimum", "data_constrained",
           "data_constrained_bootstrap", "compare_data_forms"]

FORMS = ("data", "full")
_R_STARTS = (2.0, 8.0, 30.0)          # R_D* (and R_N*) starts, in repeats
_FULL_ITERS = 200
_BOOTSTRAP_ITERS = (30, 40)           # Gauss-Newton, then exact steps per replicate (as scaling.fit.bootstrap)
_PERTURBED_STARTS = 3


def _effective(count, repeats, r_star):
    """count (1 + R* (1 - exp(-R / R*))): U and R_D give D', U_N and R_N give N'."""
    count, repeats = np.asarray(count, np.float64), np.asarray(repeats, np.float64)
    if math.isinf(r_star):
        return count * (1.0 + repeats)
    return count * (1.0 - r_star * np.expm1(-repeats / r_star))


@dataclass(frozen=True)
class DataConstrainedLaw:
    """``L = E + A / N'**alpha + B / D'**beta`` of Muennighoff et al. 2023 (module doc)."""

    form: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    R_D_star: float
    R_N_star: float = math.inf       # "data" form: excess parameters do not decay
    objective: float = math.nan
    converged: bool = True
    grad_norm: float = math.nan
    n_points: int = 0
    delta: float = 1e-3

    @property
    def params(self) -> dict[str, float]:
        out = {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta, "R_D_star": self.R_D_star}
        if self.form == "full":
            out["R_N_star"] = self.R_N_star
        return out

    @property
    def unique_law(self) -> ChinchillaLaw:
        """The law of fresh data (every R = 0): its Chinchilla part."""
        return ChinchillaLaw(E=self.E, A=self.A, B=self.B, alpha=self.alpha, beta=self.beta)

    def effective_data(self, D, U):
        """D' of D tokens over U unique ones (D' = D while D <= U)."""
        D, U = np.asarray(D, np.float64), np.asarray(U, np.float64)
        return scalar_or_array(np.where(D <= U, D, _effective(U, np.maximum(D / U - 1.0, 0.0), self.R_D_star)))

    def unique_params(self, U):
        """U_N: the size for which U tokens are compute-optimal (C = 6ND, the law's Chinchilla part)."""
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        return scalar_or_array(G * (G * np.asarray(U, np.float64)) ** (self.beta / self.alpha))

    def effective_params(self, N, U):
        """N' of N parameters trained on U unique tokens, all seen (N' = N unless N > U_N; always N in
        the "data" form)."""
        N = np.asarray(N, np.float64)
        if math.isinf(self.R_N_star):
            return scalar_or_array(N)
        U_N = np.minimum(N, np.asarray(self.unique_params(U)))
        return scalar_or_array(_effective(U_N, np.maximum(N / U_N - 1.0, 0.0), self.R_N_star))

    def predict(self, N, D, U):
        """The loss of N parameters trained on D tokens over U unique ones (U >= D: fresh data)."""
        seen = np.minimum(np.asarray(U, np.float64), np.asarray(D, np.float64))  # the paper's U_D <= D
        N_eff, D_eff = np.asarray(self.effective_params(N, seen)), np.asarray(self.effective_data(D, seen))
        return scalar_or_array(self.E + self.A * N_eff ** -self.alpha + self.B * D_eff ** -self.beta)

    def repeated_worth(self, epochs=4.0):
        """What the repeated passes of an ``epochs``-epoch run are worth, per token, as a fraction
        of fresh tokens: (D' - U) / (D - U) = R* (1 - exp(-R / R*)) / R, R = epochs - 1."""
        R = np.asarray(epochs, np.float64) - 1.0
        return scalar_or_array(np.where(R > 0, -self.R_D_star * np.expm1(-np.maximum(R, 1e-300) / self.R_D_star)
                                        / np.maximum(R, 1e-300), 1.0))

    def epoch_worth(self, k=4):
        """The k-th pass over the data alone, as a fraction of a pass over fresh data:
        (D'(k U) - D'((k - 1) U)) / U (1 for the first pass; exp(-(k - 1) / R*) at the margin)."""
        k = np.asarray(k, np.float64)
        return scalar_or_array(np.where(k <= 1, 1.0, self.R_D_star * (np.exp(-(k - 2) / self.R_D_star)
                                                                      - np.exp(-(k - 1) / self.R_D_star))))

    @property
    def half_life(self) -> float:
        """Repeats after which a repeated token is worth half a fresh one: R_D* ln 2."""
        return self.R_D_star * math.log(2.0)

    def compute_optimal(self, C, U, flops_per_token=None) -> "DataConstrainedOptimum":
        """The (N, D) minimising L(N, D, U) at training compute C with U unique tokens:
        C = 6ND, or C = flops_per_token(N) D; found over log N on a dense grid refined by golden
        section (Muennighoff et al. search a grid too).  Beside it, the unique-data (Chinchilla)
        optimum and what that allocation would reach when its tokens repeat U."""
        C, U = float(C), float(U)
        if not (math.isfinite(C) and C > 0):
            raise ValueError(f"C: must be a positive finite FLOP budget, got {C!r}")
        if not (U > 0):
            raise ValueError(f"U: must be a positive number of unique tokens (math.inf: unlimited), got {U!r}")
        fpt = (lambda N: 6.0 * np.asarray(N, np.float64)) if flops_per_token is None else \
            (lambda N: call_vectorised(flops_per_token, np.asarray(N, np.float64)))
        chin = self.unique_law
        N_c, D_c = (float(x) for x in chin.compute_optimal(C, flops_per_token=flops_per_token))
        if not math.isfinite(N_c):
            nan = math.nan
            return DataConstrainedOptimum(C, U, nan, nan, nan, N_c, D_c, nan, nan)
        loss = (lambda N: self.predict(N, C / fpt(N), U)) if math.isfinite(U) else \
            (lambda N: chin.predict(N, C / fpt(N)))
        N = minimise_log_scalar(loss, N_c)
        D = C / float(fpt(np.array([N]))[0])
        at_cap = float(self.predict(N_c, D_c, U)) if math.isfinite(U) else float(chin.predict(N_c, D_c))
        return DataConstrainedOptimum(C=C, U=U, N=N, D=D, loss=float(np.asarray(loss(np.array([N])))[0]),
                                      N_chinchilla=N_c, D_chinchilla=D_c, loss_chinchilla=float(chin.predict(N_c, D_c)),
                                      loss_chinchilla_at_cap=at_cap)

    def summary(self) -> str:
        rows = [(k, f"{v:.6g}") for k, v in self.params.items()]
        rows += [("repeats at 4 epochs", f"worth {100 * float(self.repeated_worth(4)):.1f}% of fresh tokens "
                                         f"(the 4th epoch alone {100 * float(self.epoch_worth(4)):.1f}%)"),
                 ("half-life", f"a repeated token is worth half a fresh one after {self.half_life:.3g} repeats"),
                 ("objective", f"{self.objective:.6g} (sum of Huber, delta={self.delta:g}, {self.n_points} points)"),
                 ("converged", f"{self.converged} (max |grad| {self.grad_norm:.2e})")]
        return format_table(f"DataConstrainedLaw ({self.form})  L = E + A/N'^alpha + B/D'^beta "
                            "(Muennighoff et al. 2023)", rows)


@dataclass(frozen=True)
class DataConstrainedOptimum:
    """The compute-optimal (N, D) at budget C with U unique tokens, and the unique-data optimum."""

    C: float
    U: float
    N: float
    D: float
    loss: float
    N_chinchilla: float
    D_chinchilla: float
    loss_chinchilla: float           # the Chinchilla optimum's loss on fresh data
    loss_chinchilla_at_cap: float    # the same (N, D) when its D tokens repeat U

    @property
    def epochs(self) -> float:
        return self.D / self.U


# ---------------------------------------------------------------------------------------
# Fitting. "data": theta = (a, b, e, alpha, beta, s_D) with A, B, E = exp(a, b, e), R_D* = exp(s_D);
# the looped objective sees it as (b, a, e, beta, alpha, s_D) on (log U, log N, R_D).
# "full": theta = (a, b, e, alpha, beta, s_D, s_N), autodiff.

_SWAP = np.array([1, 0, 2, 4, 3, 5])   # (a, b, e, alpha, beta, s) <-> the looped objective's order


def _validate(N, D, U, L):
    N, D, U, L = (as_positive_1d(x, name) for x, name in ((N, "N"), (D, "D"), (U, "U"), (L, "L")))
    n = check_same_length(N=N, D=D, U=U, L=L)
    check_spans_decade(N, "N")
    check_spans_decade(D, "D")
    return N, D, np.minimum(U, D), L, n   # unique tokens seen: D before the first epoch ends


def _check(form, D, U, n):
    if form not in FORMS:
        raise ValueError(f"form={form!r}: must be one of {', '.join(FORMS)}")
    check_enough_points(n, 6 if form == "data" else 7, "L")
    epochs = D / U
    if np.sum(epochs > 1.5) < 2:
        raise ValueError(f"U: {int(np.sum(epochs > 1.5))} runs repeat their data more than 1.5 times (epochs D/U up "
                         f"to {epochs.max():.3g}); R_D* needs runs at several epochs")


def _repeats(D, U):
    return np.maximum(D / U - 1.0, 0.0)


def _data_args(N, D, U, L, counts, delta):
    return (np.log(U), np.log(N), _repeats(D, U), np.log(L), np.asarray(counts, np.float64), np.float64(delta))


def _full_loss(theta, log_N, log_D, log_U, log_L, counts, delta):
    """The 7-parameter objective (one start): summed Huber of log residuals, eqs. 5-6."""
    a, b, e, alpha, beta, s_D, s_N = (theta[i] for i in range(7))
    log_G = (jnp.log(alpha) + a - jnp.log(beta) - b) / (alpha + beta)
    log_UN = jnp.minimum(log_N, log_G + (beta / alpha) * (log_G + log_U))
    R_N = jnp.maximum(jnp.exp(log_N - log_UN) - 1.0, 0.0)
    R_D = jnp.maximum(jnp.exp(log_D - log_U) - 1.0, 0.0)
    log_N_eff = log_UN + jnp.log1p(-jnp.exp(s_N) * jnp.expm1(-R_N * jnp.exp(-s_N)))
    log_D_eff = log_U + jnp.log1p(-jnp.exp(s_D) * jnp.expm1(-R_D * jnp.exp(-s_D)))
    log_hat = jnp.logaddexp(jnp.logaddexp(a - alpha * log_N_eff, b - beta * log_D_eff), e)
    return jnp.sum(counts * huber(log_hat - log_L, delta))


@functools.lru_cache(maxsize=None)
def _full_callback():
    """Batched (f, g, H) of the 7-parameter objective; counts (n,) shared or (S, n) per lane."""
    def single(theta, log_N, log_D, log_U, log_L, counts, delta):
        value, grad = jax.value_and_grad(_full_loss)(theta, log_N, log_D, log_U, log_L, counts, delta)
        return value, grad, jax.hessian(_full_loss)(theta, log_N, log_D, log_U, log_L, counts, delta)

    def batched(theta, log_N, log_D, log_U, log_L, counts, delta):
        axis = 0 if counts.ndim == 2 else None
        return jax.vmap(single, in_axes=(0, None, None, None, None, axis, None))(
            theta, log_N, log_D, log_U, log_L, counts, delta)

    batched.__name__ = "data_constrained_full"
    return batched


def _full_args(N, D, U, L, counts, delta):
    return (np.log(N), np.log(D), np.log(U), np.log(L), np.asarray(counts, np.float64), np.float64(delta))


def _law(form, theta, value, grad_norm, n, delta) -> DataConstrainedLaw:
    with np.errstate(over="ignore"):  # a bootstrap replicate may run off to inf: undefined, not a crash
        A, B, E, R_D, *R_N = (float(x) for x in np.exp(np.asarray(theta, np.float64)[[0, 1, 2, 5, *range(6, len(theta))]]))
    return DataConstrainedLaw(
        form=form, E=E, A=A, B=B, alpha=float(theta[3]),
        beta=float(theta[4]), R_D_star=R_D, R_N_star=R_N[0] if form == "full" else math.inf,
        objective=float(value), converged=bool(np.isfinite(value) and grad_norm <= CONVERGENCE_GTOL * (1.0 + abs(value))),
        grad_norm=float(grad_norm), n_points=n, delta=float(delta))


def _theta(law: DataConstrainedLaw) -> np.ndarray:
    out = [math.log(law.A), math.log(law.B), math.log(law.E), law.alpha, law.beta, math.log(law.R_D_star)]
    return np.array(out + ([math.log(law.R_N_star)] if law.form == "full" else []))


def _fit(form, N, D, U, L, counts, delta) -> DataConstrainedLaw:
    """Multi-start fit with per-run weights `counts` (0 leaves a run out and keeps the shapes,
    so held-out fits reuse the compiled function of the full fit)."""
    n = int(np.count_nonzero(counts))
    grid = hoffmann_grid()
    starts = np.concatenate([np.column_stack([grid, np.full(len(grid), math.log(r))]) for r in _R_STARTS])
    gauss_newton, exact = _looped_objective.callbacks("repeat")
    phases = ((gauss_newton, EXPLORE_ITERS, None), (gauss_newton, ROBUST_ITERS, KEEP_STARTS), (exact, POLISH_ITERS, None))
    with float64():
        result = jax.device_get(multistart_newton(starts[:, _SWAP], _data_args(N, D, U, L, counts, delta),
                                                  phases=phases, gtol=POLISH_GTOL))
    data = _law("data", np.asarray(result.theta)[_SWAP], float(result.value), float(result.grad_norm), n, delta)
    if form == "data":
        return data
    starts = np.array([np.append(_theta(data), math.log(r)) for r in _R_STARTS])
    with float64():
        state = jax.device_get(batched_newton(starts, _full_args(N, D, U, L, counts, delta),
                                              phases=((_full_callback(), _FULL_ITERS),), gtol=POLISH_GTOL))
    value = np.where(np.isfinite(state.value), state.value, np.inf)
    best = int(np.argmin(value))
    return _law("full", state.theta[best], value[best], np.max(np.abs(state.grad[best])), n, delta)


def data_constrained(N, D, U, L, *, form: str = "data", delta: float = 1e-3) -> DataConstrainedLaw:
    """Fit the data-constrained law to runs of N parameters and D tokens over U unique tokens
    (``U >= D``: fresh data; U is the training split's tokens, the ``unique_tokens`` column of a
    results table).  ``form``: ``"data"`` (D' only) or ``"full"`` (D' and N'), module doc.
    Needs at least two runs beyond 1.5 epochs."""
    N, D, U, L, n = _validate(N, D, U, L)
    _check(form, D, U, n)
    return _fit(form, N, D, U, L, np.ones(n), delta)


def data_constrained_bootstrap(N, D, U, L, *, form: str = "data", n: int = 1000, seed: int = 0, groups=None,
                               epochs: float = 4.0, delta: float = 1e-3) -> BootstrapResult:
    """Bootstrap the law over runs (or ``groups`` of runs), every replicate re-converged from
    the full fit plus a few perturbed starts in one batched Newton run, as
    :func:`scaling.fit.bootstrap` does for Chinchilla's law.  Samples: the law's parameters,
    ``repeated_worth`` and ``epoch_worth`` at ``epochs`` (default 4) and ``half_life``."""
    if n < 2:
        raise ValueError(f"n: need at least 2 replicates, got {n}")
    full = data_constrained(N, D, U, L, form=form, delta=delta)
    N, D, U, L, n_runs = _validate(N, D, U, L)
    counts = resample_counts(n_runs, n, seed, groups)
    theta0 = _theta(full)
    rng = np.random.default_rng(seed + 1)
    scale = np.array([0.5, 0.5, 0.05, 0.03, 0.03, 0.3, 0.3])[: len(theta0)]
    starts = np.concatenate([theta0[None], theta0 + scale * rng.standard_normal((_PERTURBED_STARTS, len(theta0)))])
    lanes = len(starts)
    lane_counts = np.repeat(counts, lanes, axis=0).astype(np.float64)
    lane_starts = np.tile(starts, (n, 1))
    with float64():
        if form == "data":
            gauss_newton, exact = _looped_objective.callbacks("repeat")
            state = batched_newton(lane_starts[:, _SWAP], _data_args(N, D, U, L, lane_counts, delta),
                                   phases=((gauss_newton, _BOOTSTRAP_ITERS[0]), (exact, _BOOTSTRAP_ITERS[1])),
                                   gtol=POLISH_GTOL)
        else:
            state = batched_newton(lane_starts, _full_args(N, D, U, L, lane_counts, delta),
                                   phases=((_full_callback(), sum(_BOOTSTRAP_ITERS)),), gtol=POLISH_GTOL)
        theta, value, grad = jax.device_get((state.theta, state.value, state.grad))
    if form == "data":
        theta = theta[:, _SWAP]
    laws = best_start_per_replicate(theta, value, grad, n, lambda t, v, g: _law(form, t, v, g, n_runs, delta))

    def derived(law):
        return dict(law.params, repeated_worth=float(law.repeated_worth(epochs)),
                    epoch_worth=float(law.epoch_worth(epochs)), half_life=law.half_life)

    return bootstrap_result(full, laws, derived, groups)


#: One form's fit on every run and its held-out forecast of the largest-compute runs.
DataFormComparison = FormComparison


def compare_data_forms(N, D, U, L, *, compute=None, holdout=0.2, forms=FORMS,
                       delta: float = 1e-3) -> list[DataFormComparison]:
    """Fit each form on every run and backtest it: fit without the largest-compute runs
    (``holdout``: :func:`scaling.fit.backtest.held_out_mask`; ``compute`` per run, default
    6 N D), forecast their losses.  Best (lowest held-out rms log error) first; a form that
    cannot be fitted carries the reason in ``error``."""
    N, D, U, L, n = _validate(N, D, U, L)
    compute = as_positive_1d(6.0 * N * D if compute is None else compute, "compute")
    return compare_held_out(
        forms, L, compute, holdout,
        check=lambda form, kept: _check(form, D[kept], U[kept], int(kept.sum())),
        fit_all=lambda form: data_constrained(N, D, U, L, form=form, delta=delta),
        fit_kept=lambda form, weights: _fit(form, N, D, U, L, weights, delta),
        predict=lambda law, held: law.predict(N[held], D[held], U[held]))
