"""The law forms :func:`scaling.fit.forecast` compares, their starts, and their law objects.

Each form is a member of the family of :mod:`._family` (one compiled fitter for all of them):

=================  ===================================================  ===========================
name               law                                                  source
=================  ===================================================  ===========================
chinchilla         L = E + A/N^alpha + B/D^beta                          Hoffmann et al. 2022, eq. 2
chinchilla_tied    L = E + A/N^alpha + B/D^alpha                         Gadre et al. 2024, sec. 3.2
farseer_tied       L = E + A/N^alpha + B/D^(alpha + gamma ln(N/N0))      after Li et al. 2025 (Farseer)
kaplan             L = ((Nc/N)^(alpha_N/alpha_D) + Dc/D)^alpha_D          Kaplan et al. 2020, eq. 1.5
frontier           L*(C) = E + A C^-gamma on IsoFLOP parabola minima     Hoffmann et al. 2022, sec. 3.2
frontier_best      L*(C) = E + A C^-gamma on the best run per budget     (approach 1 on an IsoFLOP grid)
=================  ===================================================  ===========================

``kaplan`` is fitted, backtested and shown, but never chosen: without an irreducible term its
loss falls to zero with scale, and it backtests well one step ahead while missing far
forecasts (measured: the worst form on all four public tasks, 4-10% off; bench/README.md).

Why these: approach 3 with free exponents extrapolates poorly from small ladders (Besiroglu
et al. 2024; Gadre et al. 2024 tie the exponents, which is their eq. (4) L(C, M) rewritten in
N and D; Farseer finds the data exponent drifting with N); on an IsoFLOP grid the frontier of
per-budget minima is a one-variable law of exactly the quantity a compute-optimal forecast
wants.  The ``frontier`` forms give N_opt, D_opt from approach 2's power laws.

Starts are variable projection (Golub & Pereyra 1973): for each point of an exponent grid the
linear coefficients (E, A, B) come from a weighted least-squares solve, the Huber objective of
every such start is evaluated in numpy, and only the best few per group go to the compiled
Newton fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _family
from ._common import call_vectorised, format_table, scalar_or_array
from .approaches import ComputeOptimalFit
from .laws import ChinchillaLaw, KaplanLaw

__all__ = ["Form", "FORMS", "FarseerLaw", "FrontierLaw", "EnsembleLaw", "optimal_allocation"]


@dataclass(frozen=True)
class Form:
    """A law form: family flags ``(tie, kaplan, floor, dterm)``, which of ``theta`` are free,
    and whether it is fitted to runs (``"runs"``) or to per-budget minima (``"minima"``,
    ``"best"``)."""

    name: str
    formula: str
    source: str
    flags: tuple[float, float, float, float]
    free: tuple[float, ...]
    fitted_to: str = "runs"
    eligible: bool = True  # may be chosen (see FORMS)

    @property
    def n_params(self) -> int:
        return int(sum(self.free))

    @property
    def models_N_D(self) -> bool:
        """Whether the law gives L(N, D) (the frontier forms give only the optimum L*(C))."""
        return self.fitted_to == "runs"


FORMS = {form.name: form for form in (
    Form("chinchilla", "E + A/N^alpha + B/D^beta", "Hoffmann et al. 2022, eq. 2",
         (0, 0, 1, 1), (1, 1, 1, 1, 1, 0)),
    Form("chinchilla_tied", "E + A/N^alpha + B/D^alpha", "Gadre et al. 2024, sec. 3.2",
         (1, 0, 1, 1), (1, 1, 1, 1, 0, 0)),
    Form("farseer_tied", "E + A/N^alpha + B/D^(alpha + gamma ln(N/N0))", "after Li et al. 2025 (Farseer), sec. 3.2",
         (1, 0, 1, 1), (1, 1, 1, 1, 0, 1)),
    Form("kaplan", "((Nc/N)^(alpha_N/alpha_D) + Dc/D)^alpha_D", "Kaplan et al. 2020, eq. 1.5",
         (0, 1, 0, 1), (1, 1, 0, 1, 1, 0), eligible=False),
    Form("frontier", "L*(C) = E + A C^-gamma, IsoFLOP parabola minima", "Hoffmann et al. 2022, sec. 3.2",
         (0, 0, 1, 0), (1, 0, 1, 1, 0, 0), "minima"),
    Form("frontier_best", "L*(C) = E + A C^-gamma, best run per budget", "approach 1 on an IsoFLOP grid",
         (0, 0, 1, 0), (1, 0, 1, 1, 0, 0), "best"),
)}

_GRID8 = np.geomspace(0.05, 2.0, 8)


def _exponent_grid(form: Form) -> np.ndarray:
    """(S, 3) rows of (alpha, beta, gamma) to start from (64 per form: one compiled shape)."""
    if form.name == "chinchilla":
        return np.array([(a, b, 0.0) for a in _GRID8 for b in _GRID8])
    if form.name == "chinchilla_tied":
        return np.array([(a, a, 0.0) for a in np.geomspace(0.02, 2.0, 64)])
    if form.name == "farseer_tied":
        return np.array([(a, a, g) for a in np.geomspace(0.05, 2.0, 16) for g in (-0.03, -0.01, 0.0, 0.01)])
    if form.name == "kaplan":  # (alpha_N / alpha_D, alpha_D)
        return np.array([(p, s, 0.0) for p in np.geomspace(0.1, 3.0, 8) for s in np.geomspace(0.03, 1.0, 8)])
    return np.array([(a, 0.0, 0.0) for a in np.geomspace(0.005, 1.5, 64)])  # frontier forms


def starts(form: Form, x, y, L, weights_GxN, x0: float, keep: int, delta: float = 1e-3) -> np.ndarray:
    """(G, keep, P): for each weight row, the ``keep`` best variable-projection starts of ``form``."""
    grid = _exponent_grid(form)
    tie, kaplan, floor, dterm = form.flags
    x, y, L = (np.asarray(v, np.float64) for v in (x, y, L))
    alpha, beta, gamma = grid[:, 0:1], grid[:, 1:2], grid[:, 2:3]  # (S, 1)
    if kaplan:  # L^(1/alpha_D) = exp(a) N^-p + exp(b) / D: linear in exp(a), exp(b)
        target = L[None, :] ** (1.0 / beta)
        columns = [np.exp(-alpha * x), np.broadcast_to(np.exp(-y), target.shape)]
    else:
        target = np.broadcast_to(L, (len(grid), len(L)))
        columns = [np.exp(-alpha * x)]
        if dterm:
            columns.append(np.exp(-(beta + gamma * (x - x0)) * y))
        columns.append(np.ones_like(target))
    X = np.stack(columns, axis=-1) / target[..., None]  # (S, n, k): relative residuals
    scale = np.maximum(np.max(np.abs(X), axis=1, keepdims=True), 1e-300)  # (S, 1, k)
    X = X / scale
    W = np.asarray(weights_GxN, np.float64)  # (G, n)
    gram = np.einsum("gn,snk,snl->gskl", W, X, X) + 1e-12 * np.eye(X.shape[-1])
    rhs = np.einsum("gn,snk->gsk", W, X)
    coef = np.maximum(np.linalg.solve(gram, rhs[..., None])[..., 0], 1e-6) / scale[None, :, 0, :]  # (G, S, k)
    theta = np.zeros(coef.shape[:2] + (_family.P,))
    theta[..., _family.ALPHA], theta[..., _family.BETA], theta[..., _family.GAMMA] = alpha[:, 0], beta[:, 0], gamma[:, 0]
    theta[..., _family.A] = np.log(coef[..., 0])
    theta[..., _family.B] = np.log(coef[..., 1]) if dterm else _family.OFF
    if floor:
        theta[..., _family.E] = np.log(coef[..., -1])
    # The best `keep` per group by the summed Huber objective (numpy, no compilation).
    residual = np.abs(_family.log_predict(theta, form.flags, x, y, x0) - np.log(L))  # (G, S, n)
    huber = np.where(residual <= delta, 0.5 * residual**2, delta * (residual - 0.5 * delta))
    huber = np.where(W[:, None, :] > 0, np.where(np.isfinite(huber), huber, 1e300), 0.0)
    objective = np.einsum("gn,gsn->gs", W, huber)
    best = np.argsort(objective, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(theta, best[..., None], axis=1)


# --------------------------------------------------------------------------------------
# Law objects the forms come back as
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FarseerLaw:
    """``L = E + A/N^alpha + B/D^(alpha + gamma ln(N/N0))``: tied exponents whose data exponent
    moves with model size (after Li et al. 2025, "Farseer", sec. 3.2, which fits
    ``B(N) D^-beta(N)`` with a stretched-exponential beta(N); one log-linear term here)."""

    E: float
    A: float
    B: float
    alpha: float
    gamma: float
    N0: float

    @property
    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "gamma": self.gamma, "N0": self.N0}

    def beta(self, N):
        return self.alpha + self.gamma * np.log(np.asarray(N, np.float64) / self.N0)

    def predict(self, N, D):
        N, D = np.asarray(N, np.float64), np.asarray(D, np.float64)
        return scalar_or_array(self.E + self.A * N ** -self.alpha + self.B * D ** -self.beta(N))

    def summary(self) -> str:
        return format_table("FarseerLaw  L = E + A/N^alpha + B/D^(alpha + gamma ln(N/N0))",
                            [(k, f"{v:.6g}") for k, v in self.params.items()])


@dataclass(frozen=True)
class FrontierLaw:
    """The compute frontier ``L*(C) = E + A C^-gamma`` fitted to per-budget minima
    (``source``: ``"IsoFLOP parabola minima"`` or ``"best run per budget"``), with the
    compute-optimal allocation of approach 2 (``allocation``: N_opt ~ C^a, D_opt ~ C^b)."""

    E: float
    A: float
    gamma: float
    allocation: ComputeOptimalFit
    source: str

    @property
    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "gamma": self.gamma, "a": self.allocation.a, "b": self.allocation.b}

    def loss(self, C):
        C = np.asarray(C, np.float64)
        return scalar_or_array(self.E + self.A * C ** -self.gamma)

    def summary(self) -> str:
        return format_table(f"FrontierLaw  L*(C) = E + A C^-gamma  ({self.source})",
                            [(k, f"{v:.6g}") for k, v in self.params.items()])


@dataclass(frozen=True)
class EnsembleLaw:
    """Weighted geometric mean of L(N, D) laws: ``log L = sum_k w_k log L_k``."""

    members: tuple
    names: tuple[str, ...]
    weights: tuple[float, ...]

    @property
    def params(self) -> dict[str, float]:
        return {f"w_{n}": w for n, w in zip(self.names, self.weights)}

    def predict(self, N, D):
        logs = [w * np.log(np.asarray(m.predict(N, D), np.float64)) for m, w in zip(self.members, self.weights)]
        return scalar_or_array(np.exp(np.sum(logs, axis=0)))


def to_law(form: Form, theta: np.ndarray, x0: float, allocation: ComputeOptimalFit | None = None):
    """The law object of a fitted ``theta`` (ChinchillaLaw for both Chinchilla forms)."""
    a, b, e, alpha, beta, gamma = (float(v) for v in theta)
    if form.name in ("chinchilla", "chinchilla_tied"):
        return ChinchillaLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha,
                             beta=alpha if form.flags[0] else beta)
    if form.name == "farseer_tied":
        return FarseerLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, gamma=gamma, N0=math.exp(x0))
    if form.name == "kaplan":  # a = p ln Nc, b = ln Dc, alpha = p = alpha_N / alpha_D, beta = alpha_D
        return KaplanLaw(Nc=math.exp(a / alpha) if alpha else math.inf, Dc=math.exp(b),
                         alpha_N=alpha * beta, alpha_D=beta)
    source = "IsoFLOP parabola minima" if form.fitted_to == "minima" else "best run per budget"
    return FrontierLaw(E=math.exp(e), A=math.exp(a), gamma=alpha, allocation=allocation, source=source)


def optimal_allocation(law, C, flops_per_token: Callable | None = None, *, grid: int = 801):
    """Compute-optimal ``(N, D, L)`` of ``law`` at budgets ``C`` (arrays), with
    ``D = C / flops_per_token(N)`` (default ``6 N``).

    L(N, D) laws: ``L(N, C / fpt(N))`` minimised on a log-N grid of +-5 decades around
    ``sqrt(C / 120)`` (20 tokens per parameter), refined by a parabola through the best three
    points; NaN where the minimum sits at the grid's edge (no interior optimum, e.g. a
    replicate with a negative exponent).  Frontier laws: ``L*(C)`` and approach 2's N_opt.
    """
    C = np.atleast_1d(np.asarray(C, np.float64))
    fpt = (lambda N: 6.0 * np.asarray(N, np.float64)) if flops_per_token is None else flops_per_token
    if isinstance(law, FrontierLaw):
        N_opt = np.asarray(law.allocation.compute_optimal(C)[0], np.float64).reshape(C.shape)
        return N_opt, C / call_vectorised(fpt, N_opt), np.asarray(law.loss(C), np.float64).reshape(C.shape)
    offsets = np.linspace(-5.0, 5.0, grid) * math.log(10.0)
    log_N = 0.5 * np.log(C / 120.0)[:, None] + offsets[None, :]
    N = np.exp(log_N)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        L = np.asarray(law.predict(N, C[:, None] / call_vectorised(fpt, N)), np.float64).reshape(N.shape)
    L = np.where(np.isfinite(L), L, np.inf)
    i = np.argmin(L, axis=1)
    inside = (i > 0) & (i < grid - 1)
    j = np.clip(i, 1, grid - 2)
    rows = np.arange(len(C))
    y0, y1, y2 = L[rows, j - 1], L[rows, j], L[rows, j + 1]
    curvature = y0 - 2 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(curvature > 0, 0.5 * (y0 - y2) / np.where(curvature > 0, curvature, 1.0), 0.0)
    log_N_opt = log_N[rows, j] + np.clip(shift, -1, 1) * (offsets[1] - offsets[0])
    N_opt = np.where(inside, np.exp(log_N_opt), np.nan)
    D_opt = C / call_vectorised(fpt, np.where(inside, N_opt, 1.0))
    with np.errstate(invalid="ignore"):
        L_opt = np.asarray(law.predict(np.where(inside, N_opt, 1.0), D_opt), np.float64).reshape(C.shape)
    return N_opt, np.where(inside, D_opt, np.nan), np.where(inside, L_opt, np.nan)
