"""What :func:`scaling.fit.forecast` fits and how it backtests: points, budgets, folds, distances.

* **Finished points.**  With ``runs=`` several rows may come from one training run.  An
  evaluation in the middle of a cosine (or any decaying) schedule is a biased point: its
  learning rate had not decayed, so its loss sits above that of a run trained to that token
  count (Hoffmann et al. 2022, sec. 3.1 and Fig. A1; Hägele et al. 2024, sec. 3).  Such rows
  are left out.  A WSD cooldown branch (the constant-LR trunk decayed to zero at a token
  count) is a finished run of its own length (Hägele et al. 2024, sec. 4): mark it with
  ``final=True``.  Default: the last row (largest D) of each run is final, the others are not.
* **Budgets.**  With ``C=``, final points of equal compute (within 0.1%) form an IsoFLOP
  budget; budgets with >= 3 runs give the per-budget minima the frontier forms are fitted to.
* **Folds (rolling origin).**  Each fold fits on the smaller part and forecasts the larger:
  on budgets, the ``k`` smallest budgets against the larger ones; otherwise the smallest model
  sizes against the larger, and the smallest-compute points against the rest (see
  :func:`folds`).  A fold's *distance* is how far, in decades, a held-out point lies beyond
  its training points: ``log10(C / C_max)`` on budgets, else
  ``hypot(log10(N / N_max)+, log10(D / D_max)+)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._common import call_vectorised
from ._validate import as_positive_1d, check_same_length
from .approaches import ComputeOptimalFit, _power_laws, group_budgets, isoflop

__all__ = ["Points", "prepare", "Budgets", "budgets_of", "Fold", "folds", "distance"]

BUDGET_RTOL = 1e-3
MIN_RUNS_PER_BUDGET = 3


@dataclass
class Points:
    """Validated rows: all of them, and the finished ones the laws are fitted to."""

    N: np.ndarray
    D: np.ndarray
    L: np.ndarray
    C: np.ndarray  # compute of each row: C= if given, else flops_per_token(N) * D (6 N D)
    C_given: bool
    runs: np.ndarray | None
    final: np.ndarray  # bool mask over all rows
    notes: list[str] = field(default_factory=list)

    def finished(self) -> tuple[np.ndarray, ...]:
        m = self.final
        return self.N[m], self.D[m], self.L[m], self.C[m]


def _labels(values, name: str, n: int) -> np.ndarray:
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    array = np.asarray(values, dtype=object if not isinstance(values, np.ndarray) else None)
    if array.shape != (n,):
        raise ValueError(f"{name}: expected one value per row ({n}), got shape {array.shape}")
    return array


def prepare(N, D, L, C=None, runs=None, final=None, flops_per_token: Callable | None = None) -> Points:
    """Validate the rows (errors name the argument) and decide which are finished runs."""
    N = as_positive_1d(N, "N")
    D = as_positive_1d(D, "D")
    L = as_positive_1d(L, "L")
    arrays = {"N": N, "D": D, "L": L}
    if C is not None:
        arrays["C"] = C = as_positive_1d(C, "C")
    n = check_same_length(**arrays)
    C_given = C is not None
    if C is None:
        C = call_vectorised(flops_per_token, N) * D if flops_per_token is not None else 6.0 * N * D
        if not np.all(np.isfinite(C) & (C > 0)):
            raise ValueError("flops_per_token: returned non-positive or non-finite FLOPs per token")
    notes = []
    run_ids = None if runs is None else _labels(runs, "runs", n)
    if final is not None:
        final = _labels(final, "final", n)
        try:
            final = final.astype(bool)
        except (TypeError, ValueError):
            raise ValueError("final: expected booleans (True where a row is a finished run)") from None
        if not final.any():
            raise ValueError("final: no row is marked final (finished runs are what the laws are fitted to)")
    elif run_ids is None:
        final = np.ones(n, bool)
    else:
        final = np.zeros(n, bool)
        for run in dict.fromkeys(run_ids.tolist()):
            members = np.flatnonzero(run_ids == run)
            final[members[np.argmax(D[members])]] = True
    if run_ids is not None:
        intermediate = ~final
        if intermediate.any():
            n_runs = len(set(run_ids[intermediate].tolist()))
            notes.append(
                f"{int(intermediate.sum())} intermediate evaluations of {n_runs} runs left out: before a run's "
                f"end its learning rate has not decayed, so its loss sits above that of a run trained to that "
                f"token count (a biased point, not a finished run); mark WSD cooldown branch ends final=True")
    return Points(N, D, L, C, C_given, run_ids, final, notes)


@dataclass(frozen=True)
class Budgets:
    """Per-budget optima of the IsoFLOP budgets with >= 3 finished runs, increasing C.

    ``best_*``: the best size of each budget (repeated runs of a size averaged); ``minima_*`` / ``allocation_minima``: approach 2's
    parabola minima (budgets it could fit) and its power laws; ``allocation_best``: the same
    power laws on the best runs."""

    C: np.ndarray
    best_N: np.ndarray
    best_D: np.ndarray
    best_L: np.ndarray
    members: tuple  # indices (into the finished points) of each budget's runs
    minima_C: np.ndarray
    minima_L: np.ndarray
    allocation_minima: ComputeOptimalFit | None
    allocation_best: ComputeOptimalFit | None
    notes: tuple = ()


def budgets_of(N, D, L, C, flops_per_token=None) -> Budgets | None:
    """IsoFLOP budgets among finished points, or None when fewer than two have >= 3 runs."""
    groups = [g for g in group_budgets(C, BUDGET_RTOL) if len(g) >= MIN_RUNS_PER_BUDGET]
    if len(groups) < 2:
        return None
    budget_C = np.array([math.exp(np.mean(np.log(C[g]))) for g in groups])
    # Repeated runs of one size (seeds) are replicates: a budget's best size is the one whose
    # MEAN loss is lowest, at that mean. The lowest single run would pick the luckiest seed,
    # a minimum biased low by the run-to-run noise.
    best, best_L = [], []
    for g in groups:
        sizes = np.unique(N[g])
        means = np.array([np.mean(L[g][N[g] == n]) for n in sizes])
        k = int(np.argmin(means))
        best.append(g[np.flatnonzero(N[g] == sizes[k])[0]])
        best_L.append(means[k])
    best, best_L = np.array(best), np.array(best_L)
    notes, allocation_minima, minima_C, minima_L = [], None, np.zeros(0), np.zeros(0)
    index = np.concatenate(groups)
    budget_of_run = np.concatenate([np.full(len(g), c) for g, c in zip(groups, budget_C)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            allocation_minima = isoflop(budget_of_run, N[index], L[index], D=D[index], flops_per_token=flops_per_token)
            minima_C = np.array(allocation_minima.budgets)
            minima_L = np.array(allocation_minima.L_min_per_budget)
            # A minimum beyond the sampled sizes is the parabola's extrapolation, not an observed
            # optimum (with noise it can fall far below every run, even below zero): the frontier
            # is fitted to the interior minima only.
            interior = ~np.array(allocation_minima.at_edge, bool) & np.isfinite(minima_L) & (minima_L > 0)
            if not interior.all():
                notes.append(f"IsoFLOP parabola minima beyond the sampled sizes at C = "
                             f"{', '.join(f'{c:.3g}' for c in minima_C[~interior])}: left out of the frontier fit")
            minima_C, minima_L = minima_C[interior], minima_L[interior]
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as error:
            notes.append(f"IsoFLOP parabolas not fitted: {error}")
    notes += sorted({str(w.message) for w in caught})
    allocation_best = _power_laws("best run per budget", budget_C, N[best], D[best], best_L)
    return Budgets(budget_C, N[best], D[best], best_L, tuple(groups), minima_C, minima_L,
                   allocation_minima, allocation_best, tuple(notes))


@dataclass(frozen=True)
class Fold:
    """One rolling-origin split of the finished points: fit on ``train``, forecast ``test``."""

    name: str
    train: np.ndarray  # bool over finished points
    test: np.ndarray  # bool over finished points (point mode) or over budgets (budget mode)
    train_budgets: np.ndarray | None = None  # bool over budgets (budget mode)


def distance(N, D, C, reference_N, reference_D, reference_C, on_budgets: bool) -> np.ndarray:
    """Decades beyond the reference (training) points: ``log10(C / max C)`` on budgets, else
    ``hypot`` of how far N and D exceed their largest fitted values (0 inside the range)."""
    if on_budgets:
        return np.maximum(0.0, np.log10(np.asarray(C, np.float64) / np.max(reference_C)))
    dN = np.maximum(0.0, np.log10(np.asarray(N, np.float64) / np.max(reference_N)))
    dD = np.maximum(0.0, np.log10(np.asarray(D, np.float64) / np.max(reference_D)))
    return np.hypot(dN, dD)


def folds(N, D, C, budgets: Budgets | None, *, min_train: int) -> list[Fold]:
    """The rolling-origin folds, smallest training set last.

    Budget mode (``budgets`` given, >= 3 budgets): fold k trains on every run of the k smallest
    budgets (k >= 2, the four largest such k) and is scored on the best run of each larger budget.
    Point mode: (i) model sizes: fold k trains on the k smallest distinct N (k >= 3, the three
    largest such k) and tests the larger sizes; (ii) compute: trains on the points below the 60th and 80th percentile of
    C and tests the rest.  Folds with fewer than ``min_train`` training points are dropped.
    """
    out = []
    if budgets is not None and len(budgets.C) >= 3:
        K = len(budgets.C)
        for k in range(K - 1, max(1, K - 5), -1):  # at most four budget cuts
            train = np.zeros(len(N), bool)
            for g in budgets.members[:k]:
                train[g] = True
            small_C = C <= budgets.C[k - 1] * (1 + BUDGET_RTOL)
            train |= small_C & ~np.isin(np.arange(len(N)), np.concatenate(budgets.members[k:]))
            test = np.arange(K) >= k
            if train.sum() >= min_train:
                out.append(Fold(f"budgets<= {budgets.C[k - 1]:.3g}", train, test, np.arange(K) < k))
        return out
    sizes = np.unique(N)
    for k in range(len(sizes) - 1, max(2, len(sizes) - 4), -1):  # >= 3 sizes, the three largest cuts
        train = N <= sizes[k - 1] * (1 + 1e-9)
        if train.sum() >= min_train:
            out.append(Fold(f"N <= {sizes[k - 1]:.3g}", train, ~train))
    for q in (0.8, 0.6):
        cut = np.quantile(C, q)
        train = C < cut
        if train.sum() >= min_train and (~train).any():
            out.append(Fold(f"C < {cut:.3g}", train, ~train))
    return out
