"""Compute-optimal allocation without a parametric loss: Hoffmann et al. 2022 approaches 1 and 2.

* :func:`isoflop` (approach 2, section 3.2 there): for each FLOP budget fit a parabola of L in
  log N, take its minimum, then fit ``N_opt = k_N C**a`` and ``D_opt = k_D C**b``.
* :func:`envelope` (approach 1, section 3.1): the lowest loss reached at each FLOP level across
  training curves, then the same power laws.

Power laws of the optima are ordinary least squares in log-log space (exact for noise-free
data; the optima are few and already smoothed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._common import call_vectorised, format_table, scalar_or_array
from ._validate import (
    ExtrapolationWarning,
    as_positive_1d,
    check_enough_points,
    check_same_length,
    check_spans_decade,
    warn,
)

__all__ = ["ComputeOptimalFit", "isoflop", "envelope"]


@dataclass(frozen=True)
class ComputeOptimalFit:
    """``N_opt = N_coefficient * C**a`` and ``D_opt = D_coefficient * C**b`` fitted to per-budget
    optima (``budgets``, ``N_opt_per_budget``, ``D_opt_per_budget``, ``L_min_per_budget``).

    ``parabolas`` (approach 2 only): per budget, ``(c2, c1, c0)`` of ``L = c2 x**2 + c1 x + c0``
    with ``x = ln N``; ``at_edge``: whether that minimum sits outside the sampled sizes.
    """

    approach: str
    a: float
    b: float
    N_coefficient: float
    D_coefficient: float
    budgets: tuple[float, ...]
    N_opt_per_budget: tuple[float, ...]
    D_opt_per_budget: tuple[float, ...]
    L_min_per_budget: tuple[float, ...]
    parabolas: tuple[tuple[float, float, float], ...] = ()
    at_edge: tuple[bool, ...] = ()
    skipped_budgets: tuple[float, ...] = ()

    def compute_optimal(self, C):
        """``(N_opt, D_opt)`` at compute ``C`` from the fitted power laws."""
        C = np.asarray(C, dtype=np.float64)
        return (scalar_or_array(self.N_coefficient * C**self.a),
                scalar_or_array(self.D_coefficient * C**self.b))

    @property
    def params(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b, "N_coefficient": self.N_coefficient, "D_coefficient": self.D_coefficient}

    def summary(self) -> str:
        rows = [("N_opt", f"{self.N_coefficient:.4g} * C^{self.a:.4f}"),
                ("D_opt", f"{self.D_coefficient:.4g} * C^{self.b:.4f}"),
                ("budgets", f"{len(self.budgets)} ({min(self.budgets):.3g} to {max(self.budgets):.3g} FLOP)")]
        if any(self.at_edge):
            rows.append(("minimum at edge", ", ".join(f"{c:.3g}" for c, e in zip(self.budgets, self.at_edge) if e)))
        if self.skipped_budgets:
            rows.append(("skipped budgets", ", ".join(f"{c:.3g}" for c in self.skipped_budgets)))
        return format_table(f"ComputeOptimalFit ({self.approach})", rows)


def _log_linear_fit(log_x: np.ndarray, log_y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of ordinary least squares ``log_y = intercept + slope * log_x``."""
    slope, intercept = np.polyfit(log_x, log_y, 1)
    return float(slope), float(intercept)


def _power_laws(approach, budgets, N_opt, D_opt, L_min, **extra) -> ComputeOptimalFit:
    log_C = np.log(budgets)
    a, log_kN = _log_linear_fit(log_C, np.log(N_opt))
    b, log_kD = _log_linear_fit(log_C, np.log(D_opt))
    return ComputeOptimalFit(
        approach=approach, a=a, b=b, N_coefficient=math.exp(log_kN), D_coefficient=math.exp(log_kD),
        budgets=tuple(map(float, budgets)), N_opt_per_budget=tuple(map(float, N_opt)),
        D_opt_per_budget=tuple(map(float, D_opt)), L_min_per_budget=tuple(map(float, L_min)), **extra)


def group_budgets(C: np.ndarray, rtol: float = 1e-6) -> list[np.ndarray]:
    """Indices of runs sharing a FLOP budget (equal to ``rtol`` in log space), by increasing C."""
    order = np.argsort(C)
    groups, current = [], [order[0]]
    for previous, index in zip(order[:-1], order[1:]):
        if math.log(C[index] / C[previous]) <= rtol:
            current.append(index)
        else:
            groups.append(np.array(current))
            current = [index]
    groups.append(np.array(current))
    return groups


def _tokens(C, N, D, flops_per_token):
    if D is not None:
        return D
    if flops_per_token is not None:
        return C / call_vectorised(flops_per_token, N)
    return C / (6.0 * N)


def _validated(**named):
    """The arrays as positive 1-D float64, in the order given (D may be None), of one length,
    with C spanning at least a decade; each error names its argument."""
    out = {name: None if (name == "D" and value is None) else as_positive_1d(value, name)
           for name, value in named.items()}
    check_same_length(**{name: a for name, a in out.items() if a is not None})
    check_spans_decade(out["C"], "C")
    return tuple(out.values())


def isoflop(C, N, L, *, D=None, flops_per_token: Callable | None = None) -> ComputeOptimalFit:
    """Chinchilla approach 2 (Hoffmann et al. 2022, section 3.2): IsoFLOP profiles.

    ``C``, ``N``, ``L``: budget, model size and final loss of each run (runs with equal ``C``
    form one profile).  Per budget a parabola ``L = c2 (ln N)**2 + c1 ln N + c0`` (least
    squares, >= 4 runs; budgets with fewer are skipped with a warning), minimum at
    ``ln N* = -c1 / (2 c2)``.  :class:`ExtrapolationWarning` when the minimum lies outside the
    sampled sizes (kept) or the parabola is flat / opens downward (budget skipped).

    ``D_opt`` per budget: ``C / (6 N_opt)`` by default; ``C / flops_per_token(N_opt)`` with a
    cost model; with ``D`` (tokens of each run) the run tokens are interpolated log-linearly
    in ln N within the budget.  Then ``N_opt ~ C**a`` and ``D_opt ~ C**b`` by log-log OLS.
    """
    C, N, L, D = _validated(C=C, N=N, L=L, D=D)
    budgets, N_opt, D_opt, L_min, parabolas, at_edge, skipped = [], [], [], [], [], [], []
    for index in group_budgets(C):
        budget = float(np.exp(np.mean(np.log(C[index]))))
        log_N = np.log(N[index])
        if len(index) < 4:
            warn(f"isoflop: budget C={budget:.3g} has {len(index)} runs (< 4), skipped", ExtrapolationWarning)
            skipped.append(budget)
            continue
        c2, c1, c0 = np.polyfit(log_N, L[index], 2)
        spread = float(np.ptp(L[index]))
        if c2 <= 1e-12 * max(spread, 1e-300) or not np.isfinite(c2):
            warn(f"isoflop: at budget C={budget:.3g} the loss is flat or opens downward in log N "
                 f"(curvature {c2:.3g}); budget skipped", ExtrapolationWarning)
            skipped.append(budget)
            continue
        log_N_star = -c1 / (2.0 * c2)
        edge = not (log_N.min() < log_N_star < log_N.max())
        if edge:
            warn(f"isoflop: at budget C={budget:.3g} the minimum N={math.exp(log_N_star):.3g} lies at or beyond "
                 f"the edge of the sampled sizes ({N[index].min():.3g} to {N[index].max():.3g}): extrapolated",
                 ExtrapolationWarning)
        N_star = math.exp(log_N_star)
        if D is not None:
            slope, intercept = _log_linear_fit(log_N, np.log(D[index]))
            D_star = math.exp(intercept + slope * log_N_star)
        else:
            D_star = float(_tokens(np.array([budget]), np.array([N_star]), None, flops_per_token)[0])
        budgets.append(budget)
        N_opt.append(N_star)
        D_opt.append(D_star)
        L_min.append(c0 - c1**2 / (4.0 * c2))
        parabolas.append((float(c2), float(c1), float(c0)))
        at_edge.append(edge)
    check_enough_points(len(budgets), 2, "C (usable budgets)")
    return _power_laws("isoflop, Hoffmann et al. 2022 approach 2", np.array(budgets), np.array(N_opt),
                       np.array(D_opt), np.array(L_min), parabolas=tuple(parabolas), at_edge=tuple(at_edge),
                       skipped_budgets=tuple(skipped))


def envelope(C, L, N, *, bins_per_decade: int = 10, D=None,
             flops_per_token: Callable | None = None) -> ComputeOptimalFit:
    """Chinchilla approach 1 (Hoffmann et al. 2022, section 3.1): the envelope of training curves.

    ``C, L, N``: one row per logged point of every training curve (compute so far, loss, model
    size).  ``C`` is binned logarithmically (``bins_per_decade``); in each non-empty bin the row
    with the lowest loss is the envelope point, giving ``(C, N_opt, L_min)``; ``D_opt`` is
    ``C / (6 N_opt)`` (or the row's ``D`` / ``C / flops_per_token(N)``).  Then ``N_opt ~ C**a``
    and ``D_opt ~ C**b`` by log-log OLS over the envelope points.
    """
    C, L, N, D = _validated(C=C, L=L, N=N, D=D)
    tokens = _tokens(C, N, D, flops_per_token)
    log10_C = np.log10(C)
    bin_index = np.floor((log10_C - log10_C.min()) * bins_per_decade + 1e-9).astype(int)
    chosen = []
    for b in np.unique(bin_index):
        members = np.flatnonzero(bin_index == b)
        chosen.append(members[np.argmin(L[members])])
    chosen = np.array(chosen)
    check_enough_points(len(chosen), 2, "C (envelope bins)")
    return _power_laws("envelope, Hoffmann et al. 2022 approach 1", C[chosen], N[chosen], tokens[chosen], L[chosen])
