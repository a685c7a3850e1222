"""Bootstrap intervals for every fitted parameter and derived quantity.

Runs are resampled with replacement (by group when ``groups`` is given, e.g. every logged point
of one WSD run together), every replicate is re-converged, and percentile intervals are reported
(the method Besiroglu et al. 2024 use for their Chinchilla replication, with 4,000 resamples).

For :func:`scaling.fit.chinchilla` the replicates are fitted together: a resample is a vector of
per-run COUNTS (weights-as-counts, so every replicate has the same shapes), each replicate starts
from the full-data optimum plus a few perturbed starts, and all ``n * starts`` lanes run one
batched damped Newton (Gauss-Newton/IRLS steps, then exact-Hessian steps).  1,000 replicates of
the 240-point reference fit take a few seconds on 2 CPU cores.  Other fitters are called once per
replicate (they are small, and their compiled functions are cached across calls).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import jax
import numpy as np

from . import _chinchilla_objective
from ._common import float64, format_table
from ._optim import batched_newton
from ._validate import IdentifiabilityWarning, as_positive_1d, warn
from .laws import CONVERGENCE_GTOL, IDENTIFIABILITY_CORRELATION, POLISH_GTOL, ChinchillaLaw, chinchilla

__all__ = ["BootstrapResult", "bootstrap", "resample_counts"]

#: Starts per Chinchilla replicate: the full-data optimum plus this many perturbations of it.
PERTURBED_STARTS = 3
BOOTSTRAP_PHASES = (
    (_chinchilla_objective.value_grad_gauss_newton, 30),
    (_chinchilla_objective.value_grad_hess, 40),
)


@dataclass(frozen=True)
class BootstrapResult:
    """Full-data ``estimates`` and replicate ``samples`` (name -> array of length ``n_ok``)."""

    law: object
    estimates: dict = field(repr=False)
    samples: dict = field(repr=False)
    n: int
    n_failed: int
    converged_fraction: float
    grouped: bool

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of ``name`` at ``level`` (e.g. 0.95 -> 2.5th and 97.5th percentiles)."""
        if name not in self.samples:
            raise KeyError(f"{name!r}: not bootstrapped (have {', '.join(self.samples)})")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level: must be in (0, 1), got {level}")
        tail = 50.0 * (1.0 - level)
        values = np.asarray(self.samples[name], dtype=np.float64)
        values = values[np.isfinite(values)]  # undefined in some replicates: see `n_undefined`
        if values.size == 0:
            return float("nan"), float("nan")
        low, high = np.percentile(values, [tail, 100.0 - tail])
        return float(low), float(high)

    def n_undefined(self, name: str) -> int:
        """Replicates in which ``name`` is NaN or infinite (e.g. N_opt of a law with alpha <= 0)."""
        return int(np.sum(~np.isfinite(np.asarray(self.samples[name], dtype=np.float64))))

    def std(self, name: str) -> float:
        return float(np.std(self.samples[name], ddof=1))

    def correlation(self, first: str, second: str) -> float:
        return float(np.corrcoef(self.samples[first], self.samples[second])[0, 1])

    def summary(self, level: float = 0.95) -> str:
        rows = []
        for name in self.samples:
            low, high = self.interval(name, level)
            undefined = self.n_undefined(name)
            note = f"  (undefined in {undefined} replicates)" if undefined else ""
            rows.append((name, f"{self.estimates[name]:.6g}  [{low:.6g}, {high:.6g}]{note}"))
        rows.append(("replicates", f"{self.n - self.n_failed} of {self.n} ({'by group' if self.grouped else 'by run'}), "
                                   f"{100 * self.converged_fraction:.1f}% converged"))
        return format_table(f"Bootstrap {100 * level:g}% percentile intervals", rows)


def resample_counts(n_runs: int, n_replicates: int, seed: int = 0, groups=None) -> np.ndarray:
    """(n_replicates, n_runs) integer counts: how often each run appears in each resample.

    Without ``groups`` runs are drawn with replacement; with ``groups`` (one label per run) whole
    groups are drawn with replacement and every run inherits its group's count.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = rng.integers(0, n_runs, size=(n_replicates, n_runs))
        return np.stack([np.bincount(row, minlength=n_runs) for row in draws])
    labels = np.asarray(groups.to_numpy() if hasattr(groups, "to_numpy") else groups)
    if labels.shape != (n_runs,):
        raise ValueError(f"groups: expected one label per run ({n_runs}), got shape {labels.shape}")
    _, group_of_run = np.unique(labels, return_inverse=True)
    n_groups = int(group_of_run.max()) + 1
    draws = rng.integers(0, n_groups, size=(n_replicates, n_groups))
    group_counts = np.stack([np.bincount(row, minlength=n_groups) for row in draws])
    return group_counts[:, group_of_run]


def _derived(law, at_C, at_ND, at_x, quantities) -> dict[str, float]:
    values = dict(law.params)
    for name in ("a", "b"):
        if hasattr(law, name):
            values[name] = float(getattr(law, name))
    if at_C is not None:
        if hasattr(law, "compute_optimal"):
            N_opt, D_opt = law.compute_optimal(at_C)
            values["N_opt"], values["D_opt"] = float(N_opt), float(D_opt)
            if hasattr(law, "predict") and not hasattr(law, "floor"):
                values["L_opt"] = float(law.predict(N_opt, D_opt))
        else:
            values["L"] = float(law.predict(at_C))
    if at_ND is not None:
        values["L"] = float(law.predict(*at_ND))
    if at_x is not None:
        values["prediction"] = float(law.predict(at_x))
    for name, function in (quantities or {}).items():
        values[name] = float(function(law))
    return values


def _chinchilla_replicates(arrays, counts, full: ChinchillaLaw, delta: float, seed: int):
    """Fit every replicate of the Chinchilla law in one batched Newton run; returns laws and flags."""
    N, D, L = (as_positive_1d(a, name) for a, name in zip(arrays, "NDL"))
    n_replicates = counts.shape[0]
    rng = np.random.default_rng(seed + 1)
    center = full.theta
    scale = np.array([0.5, 0.5, 0.05, 0.03, 0.03])
    starts = np.concatenate([center[None], center + scale * rng.standard_normal((PERTURBED_STARTS, 5))])
    lanes = len(starts)
    lane_starts = np.tile(starts, (n_replicates, 1))
    lane_counts = np.repeat(counts, lanes, axis=0).astype(np.float64)
    with float64():
        # numpy in (jit transfers it): jnp.asarray under the CPU-device scope stages a copy per array
        args = (np.log(N), np.log(D), np.log(L), lane_counts, np.float64(delta))
        state = batched_newton(np.asarray(lane_starts, np.float64), args, phases=BOOTSTRAP_PHASES, gtol=POLISH_GTOL)
        theta, value, grad = jax.device_get((state.theta, state.value, state.grad))
    value = value.reshape(n_replicates, lanes)
    best = np.argmin(np.where(np.isfinite(value), value, np.inf), axis=1)
    rows = np.arange(n_replicates) * lanes + best
    theta, value = theta[rows], value[np.arange(n_replicates), best]
    grad_norm = np.max(np.abs(grad[rows]), axis=1)
    converged = np.isfinite(value) & (grad_norm <= CONVERGENCE_GTOL * (1.0 + np.abs(value)))
    with np.errstate(over="ignore"):  # a replicate run off to log A > 709 has A = inf: undefined, not a crash
        coefficients = np.exp(theta[:, :3])
    laws = [ChinchillaLaw(E=float(k[2]), A=float(k[0]), B=float(k[1]), alpha=float(t[3]),
                          beta=float(t[4]), objective=float(v), converged=bool(c), grad_norm=float(g),
                          n_points=len(N), n_starts=lanes, delta=delta)
            for t, k, v, c, g in zip(theta, coefficients, value, converged, grad_norm)]
    return laws, converged


def bootstrap(fitter: Callable, *arrays, n: int = 1000, seed: int = 0, groups=None, at_C=None, at_ND=None,
              at_x=None, quantities: dict[str, Callable] | None = None, **fit_kwargs) -> BootstrapResult:
    """Bootstrap ``fitter(*arrays, **fit_kwargs)`` over runs (or ``groups`` of runs).

    Intervals are reported for every parameter of the law, ``a`` and ``b`` where defined, and
    derived quantities: ``at_C`` -> ``N_opt``, ``D_opt`` (and ``L_opt`` for (N, D) laws; ``L`` for a
    power law in C), ``at_ND=(N, D)`` -> forecast ``L``, ``at_x`` -> ``prediction`` of a power law,
    ``quantities={name: law -> float}`` for anything else.

    Replicates that fail (``ValueError``, e.g. a resample spanning less than a decade) are
    dropped and counted in ``n_failed``.  Warns :class:`IdentifiabilityWarning` when the bootstrap
    correlation of alpha and beta exceeds ``IDENTIFIABILITY_CORRELATION`` in absolute value.
    """
    if n < 2:
        raise ValueError(f"n: need at least 2 replicates, got {n}")
    full = fitter(*arrays, **fit_kwargs)
    n_runs = len(as_positive_1d(arrays[0], "arrays[0]", positive=False))
    counts = resample_counts(n_runs, n, seed, groups)
    if fitter is chinchilla and not fit_kwargs.keys() - {"delta"}:
        laws, converged = _chinchilla_replicates(arrays, counts, full, fit_kwargs.get("delta", 1e-3), seed)
    else:
        numpy_arrays = [np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a, dtype=np.float64) for a in arrays]
        laws, converged = [], []
        for row in counts:
            index = np.repeat(np.arange(n_runs), row)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    law = fitter(*[a[index] for a in numpy_arrays], **fit_kwargs)
            except ValueError:
                continue
            laws.append(law)
            converged.append(getattr(law, "converged", True))
    estimates = _derived(full, at_C, at_ND, at_x, quantities)
    per_replicate = [_derived(law, at_C, at_ND, at_x, quantities) for law in laws]
    samples = {name: np.array([values[name] for values in per_replicate]) for name in estimates}
    result = BootstrapResult(law=full, estimates=estimates, samples=samples, n=n, n_failed=n - len(laws),
                             converged_fraction=float(np.mean(converged)) if len(laws) else 0.0,
                             grouped=groups is not None)
    if "alpha" in samples and "beta" in samples and len(laws) > 2:
        correlation = result.correlation("alpha", "beta")
        if abs(correlation) > IDENTIFIABILITY_CORRELATION:
            warn(f"alpha and beta cannot be told apart: their bootstrap correlation is {correlation:+.4f} "
                 f"(|corr| > {IDENTIFIABILITY_CORRELATION})", IdentifiabilityWarning)
    return result
