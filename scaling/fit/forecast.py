"""``scaling.fit.forecast``: several law forms, chosen by a rolling-origin backtest, with
prediction intervals that include extrapolation error.

    f = fit.forecast(N, D, L, C=budget, runs=run_id, flops_per_token=fpt, level=0.9)
    print(f.summary())                  # every candidate form, its backtest error, the choice
    opt = f.optimal(1e21)               # opt.N, opt.D, opt.loss, opt.loss_interval, opt.N_interval
    p = f.predict(7e9, 1.4e11)          # p.loss, p.interval
    json.dump(f.to_dict(), file)

How it decides (deterministic, every step shown in ``f.candidates``):

1. Finished points only (:mod:`._design`: intermediate evaluations of a decaying schedule are
   biased; WSD cooldown branch ends count, marked ``final=True``).
2. Every candidate form (:mod:`.forms`) is fitted to all finished points and to each
   rolling-origin fold (the smaller runs, forecasting the larger), all in one compiled batch.
3. Each form's backtest error is the mean over folds of the mean relative error of its
   forecasts of the held-out runs (on IsoFLOP budgets: of each held-out budget's best run).
   The form with the lowest error is chosen; a weighted combination of the L(N, D) forms
   (weights 1/error^2, learnt leave-one-fold-out) replaces it if it backtests better.
4. Intervals: :mod:`._calibrate` (noise plus an error growing with the distance beyond the
   fitted runs, fitted to the backtest errors); ``N_interval`` from a bootstrap by run of the
   chosen law (parameter uncertainty only).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import _family
from ._calibrate import ErrorModel, fit_error_model, robust_scale
from ._common import format_table, scalar_or_array
from ._design import Budgets, Fold, Points, budgets_of, distance, folds, prepare
from ._validate import IdentifiabilityWarning, warn
from .approaches import _power_laws
from .bootstrap import resample_counts
from .forms import FORMS, Form, FrontierLaw, optimal_allocation, starts, to_law
from .laws import IDENTIFIABILITY_CORRELATION, exponent_correlation

__all__ = ["forecast", "Forecast", "Candidate", "Prediction", "Optimum", "EnsembleLaw", "AUTO_FORMS"]

AUTO_FORMS = ("chinchilla", "chinchilla_tied", "farseer_tied", "kaplan", "frontier", "frontier_best")
STARTS_KEPT = 4  # Newton starts per (form, fold), best of 64 variable-projection starts
MIN_SPAN = 10.0


@dataclass(frozen=True)
class Candidate:
    """One form in the comparison: its full-data law, backtest error and error model."""

    name: str
    formula: str
    source: str
    law: object
    backtest_error: float  # mean over folds of the mean |relative error|, NaN without folds
    fold_errors: tuple[float, ...]
    error_model: ErrorModel
    objective: float
    chosen: bool = False
    note: str = ""

    @property
    def params(self) -> dict[str, float]:
        return dict(self.law.params) if self.law is not None else {}


class CandidateTable(tuple):
    """The candidates, printable as a table (``print(f.candidates)``)."""

    def __str__(self) -> str:
        head = f"  {'form':<16} {'backtest':>9}  {'per fold':<26} parameters"
        lines = ["Candidate forms (backtest: mean |relative error| forecasting held-out larger runs)", head]
        for c in self:
            mark = "*" if c.chosen else " "
            bt = f"{100 * c.backtest_error:.2f}%" if math.isfinite(c.backtest_error) else "n/a"
            folds_ = " ".join(f"{100 * e:.2f}" for e in c.fold_errors) or "-"
            params = ", ".join(f"{k}={v:.4g}" for k, v in c.params.items())
            lines.append(f"{mark} {c.name:<16} {bt:>9}  {folds_:<26} {params}{'  (' + c.note + ')' if c.note else ''}")
        return "\n".join(lines)

    __repr__ = __str__


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


@dataclass(frozen=True)
class Prediction:
    loss: float | np.ndarray
    interval: tuple  # (low, high), each like `loss`
    distance: float | np.ndarray  # decades beyond the fitted runs
    form: str


@dataclass(frozen=True)
class Optimum:
    C: float | np.ndarray
    N: float | np.ndarray
    D: float | np.ndarray
    loss: float | np.ndarray
    loss_interval: tuple
    N_interval: tuple
    distance: float | np.ndarray
    form: str


def _spans(N, D, C) -> list[str]:
    """Span checks: N narrower than a decade is a warning when D or C spans one; else errors."""
    ratio = lambda a: float(a.max() / a.min())
    if ratio(D) < MIN_SPAN and ratio(N) < MIN_SPAN:
        raise ValueError(f"D: values span only a factor of {ratio(D):.3g} ({D.min():.3g} to {D.max():.3g}) and N "
                         f"only {ratio(N):.3g}; a scaling law needs runs spanning at least a decade")
    if ratio(N) < MIN_SPAN:
        if ratio(D) < MIN_SPAN and ratio(C) < MIN_SPAN:
            raise ValueError(f"N: values span only a factor of {ratio(N):.3g} ({N.min():.3g} to {N.max():.3g}) and "
                             f"neither D nor C spans a decade")
        return [f"N spans only {ratio(N):.3g}x ({N.min():.3g} to {N.max():.3g}), less than a decade; fitted "
                f"because D spans {ratio(D):.3g}x and C {ratio(C):.3g}x"]
    if ratio(D) < MIN_SPAN:
        raise ValueError(f"D: values span only a factor of {ratio(D):.3g} ({D.min():.3g} to {D.max():.3g}); "
                         f"a power law in D needs at least a decade")
    return []


def forecast(N, D, L, *, C=None, runs=None, final=None, flops_per_token: Callable | None = None,
             forms: str | Sequence[str] = "auto", level: float = 0.9, delta: float = 1e-3,
             n_bootstrap: int | None = None, seed: int = 0) -> "Forecast":
    """Fit every candidate law form, choose by rolling-origin backtest, forecast with intervals.

    ``N, D, L``: parameters, training tokens and loss of each row.  ``C``: each row's training
    compute in the sweep's own accounting; rows of equal C are one IsoFLOP budget (enables the
    frontier forms and budget folds).  ``runs``: a run id per row, when a run has several rows;
    ``final``: True where a row is a finished run (default: each run's last row; mark WSD
    cooldown branch ends True; intermediate rows of a decaying schedule are left out, see
    :mod:`._design`).  ``flops_per_token``: ``N -> FLOPs per token`` for compute-optimal
    allocations (default ``6 N``).  ``forms``: ``"auto"`` or names from :data:`.forms.FORMS`.
    ``level``: the coverage of every interval.  ``n_bootstrap``: replicates for ``N_interval``
    (default: as many as one compiled batch holds, >= 64).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    requested = AUTO_FORMS if forms == "auto" else tuple(forms) if not isinstance(forms, str) else (forms,)
    unknown = [f for f in requested if f not in FORMS]
    if unknown or not requested:
        raise ValueError(f"forms: unknown {unknown or requested!r}; choose from {', '.join(FORMS)} or 'auto'")
    points = prepare(N, D, L, C, runs, final, flops_per_token)
    Nf, Df, Lf, Cf = points.finished()
    notes = list(points.notes) + _spans(Nf, Df, Cf)
    budgets = budgets_of(Nf, Df, Lf, Cf, flops_per_token) if points.C_given else None
    if budgets is not None:
        notes += [f"IsoFLOP: {n}" for n in budgets.notes]
    return _Builder(points, budgets, requested, notes, flops_per_token, level, delta, n_bootstrap, seed).build()


class _Builder:
    """Everything :func:`forecast` does after validation, in the order its docstring gives."""

    def __init__(self, points: Points, budgets: Budgets | None, requested, notes, fpt, level, delta, n_bootstrap, seed):
        self.points, self.budgets, self.notes, self.fpt = points, budgets, notes, fpt
        self.level, self.delta, self.n_bootstrap, self.seed = level, delta, n_bootstrap, seed
        self.N, self.D, self.L, self.C = points.finished()
        self.runs = None if points.runs is None else points.runs[points.final]
        self.on_budgets = budgets is not None and len(budgets.C) >= 3
        # One array of points for every form: runs, then parabola minima, then best runs.
        b = budgets
        minima_C = b.minima_C if b is not None else np.zeros(0)
        best_C = b.C if b is not None else np.zeros(0)
        self.sections = {"runs": slice(0, len(self.N)),
                         "minima": slice(len(self.N), len(self.N) + len(minima_C)),
                         "best": slice(len(self.N) + len(minima_C), len(self.N) + len(minima_C) + len(best_C))}
        self.x = np.concatenate([np.log(self.N), np.log(minima_C), np.log(best_C)])
        self.y = np.concatenate([np.log(self.D), np.zeros(len(minima_C) + len(best_C))])
        self.values = np.concatenate([self.L, b.minima_L if b is not None else [], b.best_L if b is not None else []])
        self.x0 = float(np.mean(np.log(self.N)))
        self.forms = [FORMS[name] for name in requested if self._fits(FORMS[name], self._weights(FORMS[name], None))]
        for name in requested:
            if FORMS[name] not in self.forms:
                need = "IsoFLOP budgets (C=) with >= 3 runs each, at least 4 of them" if not FORMS[name].models_N_D \
                    else f"{FORMS[name].n_params + 1} finished runs"
                notes.append(f"form {name} not fitted: it needs {need}")
        if not self.forms:
            raise ValueError(f"L: {len(self.N)} finished runs cannot support any of the forms {', '.join(requested)}")

    # -- which points each (form, fold) group is fitted to
    def _weights(self, form: Form, fold: Fold | None) -> np.ndarray:
        w = np.zeros(len(self.x))
        if form.models_N_D:
            w[self.sections["runs"]] = 1.0 if fold is None else fold.train
        elif self.budgets is not None:
            section = self.sections[form.fitted_to]
            C_points = np.exp(self.x[section])
            keep = np.ones(len(C_points), bool)
            if fold is not None:
                if fold.train_budgets is None:
                    return w
                keep = C_points <= self.budgets.C[fold.train_budgets].max() * (1 + 1e-6)
            w[section] = keep
        return w

    def _fits(self, form: Form, weights: np.ndarray) -> bool:
        return int(np.sum(weights > 0)) >= form.n_params + 1

    def build(self) -> "Forecast":
        min_train = max(f.n_params for f in self.forms) + 1
        all_folds = folds(self.N, self.D, self.C, self.budgets if self.on_budgets else None, min_train=min_train)
        valid = [f for f in all_folds if all(self._fits(form, self._weights(form, f)) for form in self.forms)]
        if not valid and any(not f.models_N_D for f in self.forms) and any(f.models_N_D for f in self.forms):
            dropped = [f.name for f in self.forms if not f.models_N_D]
            self.notes.append(f"{', '.join(dropped)}: too few budgets to backtest (a fold needs 4 to fit); not compared")
            self.forms = [f for f in self.forms if f.models_N_D]
            valid = [f for f in all_folds if all(self._fits(form, self._weights(form, f)) for form in self.forms)]
        self.folds = valid
        thetas, objectives = self._fit_all()
        candidates = [self._candidate(form, thetas[form.name], objectives[form.name]) for form in self.forms]
        ensemble = self._ensemble(candidates)
        if ensemble is not None:
            candidates.append(ensemble)
        chosen = self._choose(candidates)
        candidates = [c if c is not chosen else _replace(c, chosen=True) for c in candidates]
        chosen = next(c for c in candidates if c.chosen)
        self._identifiability(thetas)
        if not valid:
            self.notes.append("no rolling-origin fold could be fitted: the form was chosen by preference order and its "
                              "interval holds no extrapolation error")
        replicates = self._bootstrap(chosen, thetas)
        return Forecast(self, CandidateTable(candidates), chosen, replicates)

    # -- 2. one compiled batch: every form on the full data and on every fold
    def _fit_all(self):
        groups = [None] + list(self.folds)
        theta, flags, free, weights, owner = [], [], [], [], []
        for form in self.forms:
            W = np.stack([self._weights(form, g) for g in groups])
            s = starts(form, self.x, self.y, self.values, W, self.x0, STARTS_KEPT, self.delta)  # (G, K, P)
            theta.append(s.reshape(-1, _family.P))
            flags += [form.flags] * s.shape[0] * s.shape[1]
            free += [form.free] * s.shape[0] * s.shape[1]
            weights.append(np.repeat(W, s.shape[1], axis=0))
            owner += [(form.name, g) for g in range(len(groups)) for _ in range(s.shape[1])]
        group_ids = {key: i for i, key in enumerate(dict.fromkeys(owner))}
        out, value, _ = _family.newton(np.concatenate(theta), np.array(flags, float), np.array(free, float),
                                       np.concatenate(weights), self.x, self.y, np.log(self.values),
                                       x0=self.x0, delta=self.delta, group=[group_ids[o] for o in owner])
        self.lanes = len(owner)
        thetas = {f.name: np.full((len(groups), _family.P), np.nan) for f in self.forms}
        objectives = {f.name: np.full(len(groups), np.inf) for f in self.forms}
        for lane, (name, g) in enumerate(owner):
            if value[lane] < objectives[name][g]:
                thetas[name][g], objectives[name][g] = out[lane], value[lane]
        return thetas, objectives

    # -- 3. backtest errors of each form
    def _fold_targets(self, fold: Fold):
        """(N, D, C, actual L, distance) of a fold's held-out targets."""
        if self.on_budgets:
            b, t = self.budgets, fold.test
            d = distance(None, None, b.C[t], None, None, b.C[fold.train_budgets], True)
            return b.best_N[t], b.best_D[t], b.C[t], b.best_L[t], d
        t, r = fold.test, fold.train
        d = distance(self.N[t], self.D[t], self.C[t], self.N[r], self.D[r], self.C[r], False)
        return self.N[t], self.D[t], self.C[t], self.L[t], d

    def _law(self, form: Form, theta, full: bool):
        allocation = None
        if full and not form.models_N_D:
            allocation = self.budgets.allocation_minima if form.fitted_to == "minima" else self.budgets.allocation_best
        return to_law(form, theta, self.x0, allocation)

    @staticmethod
    def _loss(law, N, D, C):
        with np.errstate(all="ignore"):
            value = law.loss(C) if isinstance(law, FrontierLaw) else law.predict(N, D)
        return np.atleast_1d(np.asarray(value, np.float64))

    def _scored(self, name, formula, source, law, fold_predictions, residuals, objective, note=""):
        fold_errors, d_all, e_all = [], [], []
        for fold, predicted in zip(self.folds, fold_predictions):
            _, _, _, actual, d = self._fold_targets(fold)
            relative = predicted / actual - 1.0
            fold_errors.append(float(np.mean(np.abs(relative))) if np.all(np.isfinite(relative)) else math.inf)
            d_all.append(d)
            e_all.append(np.log(predicted / actual))
        score = float(np.mean(fold_errors)) if fold_errors else math.nan
        model = fit_error_model(np.concatenate(d_all) if d_all else [], np.concatenate(e_all) if e_all else [],
                                robust_scale(residuals))
        return Candidate(name, formula, source, law, score, tuple(fold_errors), model, float(objective), note=note)

    def _candidate(self, form: Form, thetas, objectives) -> Candidate:
        law = self._law(form, thetas[0], full=True)
        predictions = []
        for j, fold in enumerate(self.folds):
            N, D, C, _, _ = self._fold_targets(fold)
            predictions.append(self._loss(self._law(form, thetas[j + 1], full=False), N, D, C))
        self.fold_predictions = getattr(self, "fold_predictions", {})
        self.fold_predictions[form.name] = predictions
        used = self._weights(form, None) > 0
        residuals = _family.log_predict(thetas[0], form.flags, self.x[used], self.y[used], self.x0) - np.log(self.values[used])
        converged = np.isfinite(objectives[0])
        return self._scored(form.name, form.formula, form.source, law, predictions, residuals, objectives[0],
                            note="" if converged else "fit failed")

    def _ensemble(self, candidates) -> Candidate | None:
        """Weights 1/error^2 over the L(N, D) forms; each fold's weights come from the other folds."""
        members = [c for c in candidates if not isinstance(c.law, FrontierLaw) and math.isfinite(c.backtest_error)
                   and c.backtest_error > 0]
        if len(members) < 2 or len(self.folds) < 2:
            return None
        errors = np.array([c.fold_errors for c in members])  # (members, folds)
        predictions = []
        for j in range(len(self.folds)):
            others = np.delete(errors, j, axis=1).mean(axis=1)
            w = 1.0 / np.maximum(others, 1e-12) ** 2
            w /= w.sum()
            logs = np.stack([np.log(self.fold_predictions[c.name][j]) for c in members])
            predictions.append(np.exp(np.tensordot(w, logs, axes=1)))
        w = 1.0 / np.array([c.backtest_error for c in members]) ** 2
        law = EnsembleLaw(tuple(c.law for c in members), tuple(c.name for c in members), tuple(w / w.sum()))
        residuals = np.log(np.asarray(law.predict(self.N, self.D), np.float64)) - np.log(self.L)
        return self._scored("ensemble", "weighted geometric mean of " + ", ".join(law.names),
                            "weights 1/backtest error^2, learnt leave-one-fold-out", law, predictions, residuals,
                            math.nan)

    @staticmethod
    def _choose(candidates) -> Candidate:
        """Lowest backtest error (first listed on ties); without folds, the first form listed."""
        scored = [c for c in candidates if math.isfinite(c.backtest_error)]
        if not scored:
            return candidates[0]
        return min(scored, key=lambda c: c.backtest_error)

    def _identifiability(self, thetas) -> None:
        if self.N.max() / self.N.min() >= MIN_SPAN:
            return
        span = next(n for n in self.notes if n.startswith("N spans only"))
        message = span
        if "chinchilla" in thetas and np.all(np.isfinite(thetas["chinchilla"][0])):
            a, b, e, alpha, beta, _ = thetas["chinchilla"][0]
            corr = exponent_correlation(np.array([a, b, e, alpha, beta]), np.log(self.N), np.log(self.D), np.log(self.L))
            message += f"; corr(alpha, beta) of the free-exponent fit {corr:+.3f}"
            if abs(corr) > IDENTIFIABILITY_CORRELATION:
                message += " (alpha and beta cannot be told apart: trust the tied forms)"
        warn(message, IdentifiabilityWarning, stacklevel=5)

    # -- 4. bootstrap of the chosen law, for N_interval (same compiled batch shape)
    def _bootstrap(self, chosen: Candidate, thetas) -> list:
        names = chosen.law.names if isinstance(chosen.law, EnsembleLaw) else (chosen.name,)
        members = [FORMS[n] for n in names]
        lanes = max(32, -(-self.lanes // 32) * 32)
        R = self.n_bootstrap or max(lanes // len(members), 1)
        theta, flags, free, weights, allocations = [], [], [], [], {}
        for form in members:
            W = np.zeros((R, len(self.x)))
            if form.models_N_D:
                W[:, self.sections["runs"]] = resample_counts(len(self.N), R, self.seed, self.runs)
            else:
                section = self.sections[form.fitted_to]
                counts = resample_counts(section.stop - section.start, R, self.seed)
                W[:, section] = counts
                allocations[form.name] = self._allocations(form, counts)
            theta.append(np.repeat(thetas[form.name][:1], R, axis=0))
            flags += [form.flags] * R
            free += [form.free] * R
            weights.append(W)
        out, value, _ = _family.newton(np.concatenate(theta), np.array(flags, float), np.array(free, float),
                                       np.concatenate(weights), self.x, self.y, np.log(self.values),
                                       x0=self.x0, delta=self.delta)
        replicates = []
        for r in range(R):
            laws = []
            for m, form in enumerate(members):
                lane = m * R + r
                allocation = allocations[form.name][r] if form.name in allocations else None
                usable = np.isfinite(value[lane]) and (form.models_N_D or allocation is not None)
                laws.append(to_law(form, out[lane], self.x0, allocation) if usable else None)
            if any(law is None for law in laws):
                continue
            replicates.append(laws[0] if len(laws) == 1 else EnsembleLaw(tuple(laws), names, chosen.law.weights))
        return replicates

    def _allocations(self, form: Form, counts):
        """Approach 2's power laws on each resample of the budgets (OLS, weights = counts)."""
        b = self.budgets
        if form.fitted_to == "minima":
            C, N, D = b.minima_C, np.array(b.allocation_minima.N_opt_per_budget), np.array(b.allocation_minima.D_opt_per_budget)
        else:
            C, N, D = b.C, b.best_N, b.best_D
        out = []
        for row in counts:
            index = np.repeat(np.arange(len(C)), row)
            if len(np.unique(C[index])) < 2:
                out.append(None)
                continue
            out.append(_power_laws("bootstrap", C[index], N[index], D[index], np.ones(len(index))))
        return out


def _replace(candidate: Candidate, **changes) -> Candidate:
    from dataclasses import replace

    return replace(candidate, **changes)


def _json(value):
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.ndarray):
        return _json(value.tolist())
    return value


class Forecast:
    """The result of :func:`forecast`.  ``law``: the chosen law object; ``candidates``: every
    form compared (print it for the table); ``chosen``: the chosen :class:`Candidate`."""

    def __init__(self, builder: _Builder, candidates: CandidateTable, chosen: Candidate, replicates: list):
        self.candidates = candidates
        self.chosen = chosen
        self.level = builder.level
        self.notes = tuple(builder.notes)
        self.mode = "budgets" if builder.on_budgets else "points"
        self.folds = tuple(f.name for f in builder.folds)
        self.n_points, self.n_rows = len(builder.N), len(builder.points.N)
        self.flops_per_token = builder.fpt
        self._N, self._D, self._C = builder.N, builder.D, builder.C
        self._replicates = replicates
        surfaces = [c for c in candidates if not isinstance(c.law, FrontierLaw)]
        by_score = sorted(surfaces, key=lambda c: c.backtest_error if math.isfinite(c.backtest_error) else math.inf)
        self._surface = chosen if not isinstance(chosen.law, FrontierLaw) else (by_score[0] if by_score else None)

    @property
    def law(self):
        return self.chosen.law

    def _cost(self, N, D):
        N = np.asarray(N, np.float64)
        per_token = 6.0 * N if self.flops_per_token is None else np.asarray(self.flops_per_token(N), np.float64)
        return per_token * np.asarray(D, np.float64)

    def predict(self, N, D) -> Prediction:
        """Loss of a run of ``N`` parameters on ``D`` tokens, with its ``level`` interval, from the
        chosen form (or, when the frontier was chosen, the best-backtesting L(N, D) form)."""
        if self._surface is None:
            raise ValueError("predict: no L(N, D) form was fitted (the frontier forms forecast only optimal(C))")
        N, D = np.broadcast_arrays(np.asarray(N, np.float64), np.asarray(D, np.float64))
        loss = np.asarray(self._surface.law.predict(N, D), np.float64)
        if self.mode == "budgets":
            d = distance(None, None, self._cost(N, D), None, None, self._cost(self._N, self._D), True)
        else:
            d = distance(N, D, None, self._N, self._D, None, False)
        low, high = self._surface.error_model.interval(loss, d, self.level)
        return Prediction(scalar_or_array(loss), (scalar_or_array(low), scalar_or_array(high)),
                          scalar_or_array(d), self._surface.name)

    def optimal(self, C) -> Optimum:
        """Compute-optimal N, D and loss at budget(s) ``C`` (the sweep's accounting), with the loss
        interval (backtest-calibrated) and ``N_interval`` (bootstrap of the chosen law)."""
        C = np.asarray(C, np.float64)
        flat = np.atleast_1d(C).ravel()
        N, D, L = optimal_allocation(self.law, flat, self.flops_per_token)
        if self.mode == "budgets":
            d = distance(None, None, flat, None, None, self._C, True)
        else:
            d = distance(N, D, None, self._N, self._D, None, False)
        low, high = self.chosen.error_model.interval(L, d, self.level)
        tail = 50.0 * (1.0 - self.level)
        N_low, N_high = np.full(flat.shape, np.nan), np.full(flat.shape, np.nan)
        if self._replicates:
            samples = np.stack([optimal_allocation(law, flat, self.flops_per_token)[0] for law in self._replicates])
            for k in range(len(flat)):
                finite = samples[:, k][np.isfinite(samples[:, k])]
                if finite.size >= 2:
                    N_low[k], N_high[k] = np.percentile(finite, [tail, 100.0 - tail])
        shape = C.shape
        out = lambda a: scalar_or_array(np.asarray(a).reshape(shape))
        return Optimum(out(flat), out(N), out(D), out(L), (out(low), out(high)), (out(N_low), out(N_high)),
                       out(d), self.chosen.name)

    def interval_method(self) -> dict:
        return {"loss": self.chosen.error_model.describe(),
                "N": f"percentile interval over {len(self._replicates)} bootstrap replicates (by run) of the chosen "
                     f"law: parameter uncertainty only, not model-form error",
                "level": self.level}

    def summary(self) -> str:
        left_out = self.n_rows - self.n_points
        rows = [("chosen", f"{self.chosen.name}: L = {self.chosen.formula}"),
                ("fitted to", f"{self.n_points} finished runs" + (f" ({left_out} rows left out)" if left_out else "")),
                ("backtest", f"{len(self.folds)} rolling-origin folds on {self.mode}: " + "; ".join(self.folds)),
                (f"{100 * self.level:g}% loss interval", self.chosen.error_model.describe()),
                (f"{100 * self.level:g}% N_opt interval", self.interval_method()["N"])]
        text = format_table("Forecast", rows) + "\n" + str(self.candidates)
        if self.notes:
            text += "\nNotes:\n" + "\n".join(f"  - {n}" for n in self.notes)
        return text

    def to_dict(self) -> dict:
        """JSON-ready: the chosen form, every candidate with its backtest errors and parameters,
        the interval method, the folds and notes (NaN and inf become None)."""
        return _json({
            "chosen": self.chosen.name, "formula": self.chosen.formula, "level": self.level, "mode": self.mode,
            "n_points": self.n_points, "n_rows": self.n_rows, "folds": list(self.folds),
            "candidates": [{"name": c.name, "formula": c.formula, "source": c.source, "chosen": c.chosen,
                            "backtest_error": c.backtest_error, "fold_errors": list(c.fold_errors),
                            "params": c.params, "error_model": {"s": c.error_model.s, "kappa": c.error_model.kappa,
                                                                "n_errors": c.error_model.n_errors},
                            "note": c.note} for c in self.candidates],
            "interval_method": self.interval_method(), "notes": list(self.notes),
        })

    def __repr__(self) -> str:
        return f"Forecast(chosen={self.chosen.name!r}, backtest_error={self.chosen.backtest_error:.4g}, level={self.level})"
