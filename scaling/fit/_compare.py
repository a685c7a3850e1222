"""Fit every candidate form on all finished runs and on every rolling-origin fold in one compiled
batch, score the backtests, choose, calibrate the intervals and bootstrap the choice.

* Selection compares forms on the folds every candidate can be fitted on (``common``): the
  mean over those folds of each fold's mean |relative error|.  Forms that are not ``eligible``
  (:data:`.forms.FORMS`) are scored and shown, never chosen.  The weighted combination of the
  eligible L(N, D) forms (weights 1/error^2; its backtest learns each fold's weights on the
  other folds) is the forecast whenever it can be formed (:func:`_choose` says why); without
  it, the eligible form with the lowest backtest error.
* Calibration (:mod:`._calibrate`) of each form uses every fold that form can be fitted on:
  on an IsoFLOP grid the L(N, D) forms fit folds of two or three budgets that the frontier
  forms cannot, and those far forecasts are what tells how fast errors grow.  Every backtest
  forecast carries its parameter spread (:mod:`._spread`, delta method on that fold's fit), so
  the calibration separates the noise the fit propagates from the model-form error.  The
  intervals use the errors of every eligible form pooled (weights 1/backtest error^2): the
  choice is uncertain too (:meth:`_Comparison._pooled`).  On budgets, N_opt forecasts of
  held-out budgets are calibrated the same way against their observed optima.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from . import _family
from ._calibrate import ErrorModel, fit_error_model, robust_scale
from ._design import Budgets, Fold, Points, distance, folds
from ._resample import bootstrap_chosen
from ._spread import EnsembleSpread, Spread
from ._validate import IdentifiabilityWarning, warn
from .approaches import _power_laws
from .forms import FORMS, EnsembleLaw, Form, FrontierLaw, optimal_allocation, starts, to_law
from .laws import IDENTIFIABILITY_CORRELATION, exponent_correlation

__all__ = ["Candidate", "CandidateTable", "Comparison", "compare"]

STARTS_KEPT = 4  # Newton starts per (form, fold): the best of 64 variable-projection starts
MIN_SPAN = 10.0
#: Newton steps for forms that are shown but never chosen (Kaplan's law has no floor: on data
#: with one its fit drifts along a valley for hundreds of steps, and it must not hold up the rest).
SHOWN_ITERS = 30


@dataclass(frozen=True)
class Candidate:
    """One form in the comparison: its full-data law, backtest errors and error model."""

    name: str
    formula: str
    source: str
    law: object
    backtest_error: float  # mean over the common folds of the mean |relative error|; NaN without folds
    fold_errors: tuple[float, ...]  # per common fold
    error_model: ErrorModel  # calibrated on every fold this form was fitted on
    objective: float
    chosen: bool = False
    note: str = ""
    spread: object = None  # .log_sd(x, y): the delta-method spread of log L of the full-data fit (:mod:`._spread`)

    @property
    def params(self) -> dict[str, float]:
        return dict(self.law.params) if self.law is not None else {}

    @property
    def models_N_D(self) -> bool:
        return not isinstance(self.law, FrontierLaw)


class CandidateTable(tuple):
    """The candidates, printable as a table (``print(f.candidates)``)."""

    def __str__(self) -> str:
        lines = ["Candidate forms (backtest: mean |relative error| forecasting the held-out larger runs)",
                 f"  {'form':<16} {'backtest':>9}  {'per fold (%)':<26} parameters"]
        for c in self:
            backtest = f"{100 * c.backtest_error:.2f}%" if math.isfinite(c.backtest_error) else "n/a"
            per_fold = " ".join(f"{100 * e:.2f}" for e in c.fold_errors) or "-"
            params = ", ".join(f"{k}={v:.4g}" for k, v in c.params.items())
            note = f"  ({c.note})" if c.note else ""
            lines.append(f"{'*' if c.chosen else ' '} {c.name:<16} {backtest:>9}  {per_fold:<26} {params}{note}")
        return "\n".join(lines)

    __repr__ = __str__


@dataclass(frozen=True)
class Comparison:
    candidates: CandidateTable
    chosen: Candidate
    replicates: list  # bootstrap replicates of the chosen law (for N_interval)
    folds: tuple[Fold, ...]  # the common folds
    on_budgets: bool
    error_model: ErrorModel  # the loss intervals' error model: backtests of every eligible form
    N_error_model: ErrorModel | None  # N_opt's, on IsoFLOP budgets (None otherwise)


def compare(points: Points, budgets: Budgets | None, requested, notes: list, fpt, delta: float,
            n_bootstrap: int | None, seed: int) -> Comparison:
    return _Comparison(points, budgets, requested, notes, fpt, delta, n_bootstrap, seed).run()


class _Comparison:
    def __init__(self, points, budgets, requested, notes, fpt, delta, n_bootstrap, seed):
        self.notes, self.fpt, self.delta, self.n_bootstrap, self.seed = notes, fpt, delta, n_bootstrap, seed
        self.N, self.D, self.L, self.C = points.finished()
        self.runs = None if points.runs is None else points.runs[points.final]
        self.budgets = budgets
        self.on_budgets = budgets is not None and len(budgets.C) >= 3
        # One array of points for every form: runs, then parabola minima, then best runs.
        minima_C = budgets.minima_C if budgets is not None else np.zeros(0)
        best_C = budgets.C if budgets is not None else np.zeros(0)
        n, m = len(self.N), len(minima_C)
        self.sections = {"runs": slice(0, n), "minima": slice(n, n + m), "best": slice(n + m, n + m + len(best_C))}
        self.x = np.concatenate([np.log(self.N), np.log(minima_C), np.log(best_C)])
        self.y = np.concatenate([np.log(self.D), np.zeros(m + len(best_C))])
        self.values = np.concatenate([self.L, budgets.minima_L, budgets.best_L]) if budgets is not None else self.L
        self.x0 = float(np.mean(np.log(self.N)))
        self.forms = [FORMS[name] for name in requested if self._fits(FORMS[name], None)]
        for name in requested:
            if FORMS[name] not in self.forms:
                need = (f"{FORMS[name].n_params + 1} finished runs" if FORMS[name].models_N_D else
                        "IsoFLOP budgets (C=) of >= 3 runs, at least 4 of them")
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
            keep = np.ones(section.stop - section.start, bool)
            if fold is not None:
                if fold.train_budgets is None:
                    return w
                keep = np.exp(self.x[section]) <= self.budgets.C[fold.train_budgets].max() * (1 + 1e-6)
            w[section] = keep
        return w

    def _fits(self, form: Form, fold: Fold | None) -> bool:
        """Enough points for the form's parameters and, for an L(N, D) form, >= 3 distinct N and
        D (with two sizes, E, A and alpha of the N term are not determined: any extrapolation)."""
        used = self._weights(form, fold) > 0
        if form.models_N_D:
            runs = used[self.sections["runs"]]
            if len(np.unique(self.N[runs])) < 3 or len(np.unique(self.D[runs])) < 3:
                return False
        return int(np.sum(used)) >= form.n_params + 1

    def run(self) -> Comparison:
        all_folds = folds(self.N, self.D, self.C, self.budgets if self.on_budgets else None,
                          min_train=min(f.n_params for f in self.forms) + 1)
        self.form_folds = {f.name: [j for j, fold in enumerate(all_folds) if self._fits(f, fold)] for f in self.forms}
        common = [j for j in range(len(all_folds)) if all(j in self.form_folds[f.name] for f in self.forms)]
        if not common and any(not f.models_N_D for f in self.forms) and any(f.models_N_D for f in self.forms):
            dropped = [f.name for f in self.forms if not f.models_N_D]
            self.notes.append(f"{', '.join(dropped)}: too few budgets to backtest (a fold needs 4 to fit); not compared")
            self.forms = [f for f in self.forms if f.models_N_D]
            common = [j for j in range(len(all_folds)) if all(j in self.form_folds[f.name] for f in self.forms)]
        self.all_folds, self.common = all_folds, common
        if not common:
            self.notes.append("no rolling-origin fold could be fitted: the form was chosen by preference order and "
                              "its interval holds no extrapolation error")
        thetas, objectives = self._fit_all()
        candidates = [self._candidate(form, thetas[form.name], objectives[form.name]) for form in self.forms]
        ensemble = self._ensemble(candidates)
        if ensemble is not None:
            candidates.append(ensemble)
        chosen = _choose(candidates)
        pooled = self._pooled(candidates, chosen)
        candidates = CandidateTable(replace(c, chosen=True) if c is chosen else c for c in candidates)
        chosen = next(c for c in candidates if c.chosen)
        self._identifiability(thetas)
        return Comparison(candidates, chosen, bootstrap_chosen(self, chosen, thetas),
                          tuple(all_folds[j] for j in common), self.on_budgets, pooled, self._pooled_N(candidates))

    # -- one compiled batch: every form on the full data and on each of its folds
    def _fit_all(self):
        theta, flags, free, weights, owner, budget = [], [], [], [], [], []
        for form in self.forms:
            groups = [None] + [self.all_folds[j] for j in self.form_folds[form.name]]
            W = np.stack([self._weights(form, g) for g in groups])
            s = starts(form, self.x, self.y, self.values, W, self.x0, STARTS_KEPT, self.delta)  # (G, K, P)
            theta.append(s.reshape(-1, _family.P))
            flags += [form.flags] * s.shape[0] * s.shape[1]
            free += [form.free] * s.shape[0] * s.shape[1]
            weights.append(np.repeat(W, s.shape[1], axis=0))
            owner += [(form.name, g) for g in range(len(groups)) for _ in range(s.shape[1])]
            budget += [_family.MAX_ITERS if form.eligible else SHOWN_ITERS] * s.shape[0] * s.shape[1]
        group_ids = {key: i for i, key in enumerate(dict.fromkeys(owner))}
        out, value, _ = _family.newton(np.concatenate(theta), np.array(flags, float), np.array(free, float),
                                       np.concatenate(weights), self.x, self.y, np.log(self.values),
                                       x0=self.x0, delta=self.delta, group=[group_ids[o] for o in owner],
                                       lane_iters=budget)
        self.lanes = len(owner)
        thetas = {f.name: np.full((1 + len(self.form_folds[f.name]), _family.P), np.nan) for f in self.forms}
        objectives = {f.name: np.full(1 + len(self.form_folds[f.name]), np.inf) for f in self.forms}
        for lane, (name, g) in enumerate(owner):
            if value[lane] < objectives[name][g]:
                thetas[name][g], objectives[name][g] = out[lane], value[lane]
        return thetas, objectives

    # -- backtest errors
    def _targets(self, fold: Fold):
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
            # N_opt, D_opt of both frontier forms from approach 2's parabola minima when it fitted:
            # they interpolate each budget's optimum between the sizes run, where the best run is
            # one of the grid's sizes (the loss of frontier_best still comes from the best runs).
            allocation = self.budgets.allocation_minima or self.budgets.allocation_best
        return to_law(form, theta, self.x0, allocation)

    @staticmethod
    def _loss(law, N, D, C):
        with np.errstate(all="ignore"):
            value = law.loss(C) if isinstance(law, FrontierLaw) else law.predict(N, D)
        return np.atleast_1d(np.asarray(value, np.float64))

    def _scored(self, name, formula, source, law, predictions: dict, spreads: dict, residuals, n_params: int,
                objective, spread, note="") -> Candidate:
        """``predictions``, ``spreads``: fold index -> forecasts of that fold's targets, and their
        parameter spreads; ``residuals``: of the full-data fit of ``n_params`` parameters."""
        fold_errors, d_all, e_all, p_all = {}, [], [], []
        self.errors = getattr(self, "errors", {})
        for j, predicted in predictions.items():
            _, _, _, actual, d = self._targets(self.all_folds[j])
            relative = predicted / actual - 1.0
            fold_errors[j] = float(np.mean(np.abs(relative))) if np.all(np.isfinite(relative)) else math.inf
            d_all.append(d)
            e_all.append(np.log(predicted / actual))
            p_all.append(spreads[j])
        join = lambda parts: np.concatenate(parts) if parts else np.zeros(0)
        self.errors[name] = (join(d_all), join(e_all), join(p_all))
        common = tuple(fold_errors[j] for j in self.common if j in fold_errors)
        score = float(np.mean(common)) if common else math.nan
        n = int(np.sum(np.isfinite(residuals)))  # the residual scale corrected for the fitted parameters
        noise = robust_scale(residuals) * (math.sqrt(n / (n - n_params)) if n > n_params else 1.0)
        model = fit_error_model(*self.errors[name][:2], noise, spread=self.errors[name][2])
        return Candidate(name, formula, source, law, score, common, model, float(objective), note=note, spread=spread)

    def _spread(self, form: Form, theta, fold: Fold | None) -> Spread:
        return Spread(form, theta, self.x, self.y, np.log(self.values), self._weights(form, fold), self.x0)

    def _candidate(self, form: Form, thetas, objectives) -> Candidate:
        law = self._law(form, thetas[0], full=True)
        predictions, spreads = {}, {}
        for g, j in enumerate(self.form_folds[form.name], start=1):
            N, D, C, _, _ = self._targets(self.all_folds[j])
            predictions[j] = self._loss(self._law(form, thetas[g], full=False), N, D, C)
            query = (np.log(N), np.log(D)) if form.models_N_D else (np.log(C), np.zeros(len(C)))
            spreads[j] = self._spread(form, thetas[g], self.all_folds[j]).log_sd(*query)
        self.predictions = getattr(self, "predictions", {})
        self.predictions[form.name] = predictions
        self.spreads = getattr(self, "spreads", {})
        self.spreads[form.name] = spreads
        if self.on_budgets:
            self._N_opt_errors(form, thetas)
        used = self._weights(form, None) > 0
        residuals = _family.log_predict(thetas[0], form.flags, self.x[used], self.y[used], self.x0) - \
            np.log(self.values[used])
        note = "fit failed" if not np.isfinite(objectives[0]) else "" if form.eligible else "shown, never chosen: no floor E"
        return self._scored(form.name, form.formula, form.source, law, predictions, spreads, residuals, form.n_params,
                            objectives[0], self._spread(form, thetas[0], None), note)

    def _N_opt_errors(self, form: Form, thetas) -> None:
        """On budgets: log errors of each fold's N_opt forecast at the held-out budgets, against
        their observed optimum (the parabola minimum where approach 2 fitted one, else the best
        run), with distances; they calibrate ``N_interval`` the way loss errors calibrate loss."""
        b = self.budgets
        observed = b.best_N.copy()
        minima = b.allocation_minima
        for c, n in zip(minima.budgets if minima else (), minima.N_opt_per_budget if minima else ()):
            observed[np.argmin(np.abs(np.log(b.C / c)))] = n
        d_all, e_all = [], []
        for g, j in enumerate(self.form_folds[form.name], start=1):
            fold = self.all_folds[j]
            train, test = fold.train_budgets, fold.test
            allocation = None
            if not form.models_N_D:
                allocation = _power_laws("fold", b.C[train], observed[train], b.best_D[train], b.best_L[train])
            law = to_law(form, thetas[g], self.x0, allocation)
            with np.errstate(all="ignore"):
                N_pred = optimal_allocation(law, b.C[test], self.fpt)[0]
            d_all.append(distance(None, None, b.C[test], None, None, b.C[train], True))
            e_all.append(np.log(N_pred / observed[test]))
        self.N_errors = getattr(self, "N_errors", {})
        self.N_errors[form.name] = (np.concatenate(d_all) if d_all else np.zeros(0),
                                    np.concatenate(e_all) if e_all else np.zeros(0))

    def _ensemble(self, candidates) -> Candidate | None:
        """Weights 1/error^2 over the eligible L(N, D) forms, each fold's from the other common folds."""
        members = [c for c in candidates if c.models_N_D and FORMS[c.name].eligible
                   and math.isfinite(c.backtest_error) and c.backtest_error > 0]
        if len(members) < 2 or len(self.common) < 2:
            return None
        errors = np.array([c.fold_errors for c in members])  # (members, common folds)
        shared = [j for j in range(len(self.all_folds)) if all(j in self.predictions[c.name] for c in members)]
        predictions, spreads = {}, {}
        for j in shared:
            others = [k for k, jj in enumerate(self.common) if jj != j]
            w = 1.0 / np.maximum(errors[:, others].mean(axis=1), 1e-12) ** 2
            w = w / w.sum()
            logs = np.stack([np.log(self.predictions[c.name][j]) for c in members])
            predictions[j] = np.exp(np.tensordot(w, logs, axes=1))
            spreads[j] = np.sqrt(np.tensordot(w, np.stack([self.spreads[c.name][j] ** 2 for c in members]), axes=1))
        w = 1.0 / np.array([c.backtest_error for c in members]) ** 2
        law = EnsembleLaw(tuple(c.law for c in members), tuple(c.name for c in members), tuple(w / w.sum()))
        residuals = np.log(np.asarray(law.predict(self.N, self.D), np.float64)) - np.log(self.L)
        return self._scored("ensemble", "weighted geometric mean of " + ", ".join(law.names),
                            "weights 1/backtest error^2, learnt leave-one-fold-out", law, predictions, spreads,
                            residuals, max(FORMS[c.name].n_params for c in members), math.nan,
                            EnsembleSpread([c.spread for c in members], law.weights))

    def _pooled_N(self, candidates) -> ErrorModel | None:
        """N_opt's error model on budgets: the held-out budgets' optima, pooled like the loss's."""
        errors = getattr(self, "N_errors", {})
        by_name = {c.name: c for c in candidates}
        pool = [n for n in errors if FORMS[n].eligible and math.isfinite(by_name[n].backtest_error)
                and np.isfinite(errors[n][1]).any()]
        if not pool:
            return None
        w = np.concatenate([np.full(len(errors[n][1]), 1.0 / max(by_name[n].backtest_error, 1e-12) ** 2
                                    / max(len(errors[n][1]), 1)) for n in pool])
        return fit_error_model(np.concatenate([errors[n][0] for n in pool]),
                               np.concatenate([errors[n][1] for n in pool]), 1e-3, w, quantity="N_opt")

    def _pooled(self, candidates, chosen) -> ErrorModel:
        """The intervals' error model, calibrated on the backtest errors of every eligible form.

        Why not the chosen form's alone: it was chosen BECAUSE its backtest errors were the
        smallest, so its own errors understate how wrong the forecast may be (winner's curse);
        with few folds (an IsoFLOP grid of 5-6 budgets) that alone gave 0.71 coverage for 90%
        intervals on synthetic sweeps.  The choice is part of the forecast; so is its uncertainty.
        """
        pool = [c.name for c in candidates if c.name != "ensemble" and FORMS[c.name].eligible
                and c.name in self.errors and math.isfinite(c.backtest_error)]
        if not pool:
            return chosen.error_model
        by_name = {c.name: c for c in candidates}
        d, e, p = (np.concatenate([self.errors[n][k] for n in pool]) for k in range(3))
        # each form's errors weigh 1/backtest error^2 in all (the ensemble's weights)
        w = np.concatenate([np.full(len(self.errors[n][1]), 1.0 / max(by_name[n].backtest_error, 1e-12) ** 2
                                    / max(len(self.errors[n][1]), 1)) for n in pool])
        return fit_error_model(d, e, chosen.error_model.s_fit, w, spread=p)

    def _identifiability(self, thetas) -> None:
        """N narrower than a decade: warn, with corr(alpha, beta) of the free-exponent fit."""
        if self.N.max() / self.N.min() >= MIN_SPAN:
            return
        message = (f"N spans only {self.N.max() / self.N.min():.3g}x ({self.N.min():.3g} to {self.N.max():.3g}), "
                   f"less than a decade; fitted because D spans {self.D.max() / self.D.min():.3g}x")
        if "chinchilla" in thetas and np.all(np.isfinite(thetas["chinchilla"][0])):
            a, b, e, alpha, beta, _ = thetas["chinchilla"][0]
            corr = exponent_correlation(np.array([a, b, e, alpha, beta]), np.log(self.N), np.log(self.D), np.log(self.L))
            message += f"; corr(alpha, beta) of the free-exponent fit {corr:+.3f}"
            if abs(corr) > IDENTIFIABILITY_CORRELATION:
                message += " (alpha and beta cannot be told apart: trust the tied forms)"
        self.notes.append(message)
        warn(message, IdentifiabilityWarning, stacklevel=6)  # the caller of fit.forecast


def _choose(candidates) -> Candidate:
    """The ensemble of the eligible L(N, D) forms whenever there is one (two such forms and two
    common folds); else the lowest backtest error among the eligible (first listed on ties);
    without folds, the first eligible form listed.

    Why the ensemble even where a single form backtests better: with two to four folds the
    single best backtest is mostly luck, and the combination of the forms weighted by their
    backtests forecasts better far out (Bates & Granger 1969, the "forecast combination
    puzzle").  Measured (bench/README.md, "forecast"): mean |error| 2.58% -> 2.23% on synthetic
    IsoFLOP sweeps at 10-30x, 1.84% -> 1.84% on synthetic ladders, 0.95% -> 0.92% on Gadre et
    al.'s 9 targets, 2.16% -> 1.71% on OLMo-2 7B/13B; decided on the synthetic laws first.
    """
    ensemble = next((c for c in candidates if c.name == "ensemble" and math.isfinite(c.backtest_error)), None)
    if ensemble is not None:
        return ensemble
    eligible = [c for c in candidates if c.name == "ensemble" or FORMS[c.name].eligible] or list(candidates)
    scored = [c for c in eligible if math.isfinite(c.backtest_error)]
    return min(scored, key=lambda c: c.backtest_error) if scored else eligible[0]
