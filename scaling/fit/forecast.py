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
3. Each form's backtest error is the mean over folds of the mean |relative error| of its
   forecasts of the held-out runs (on IsoFLOP budgets: of each held-out budget's best run).
   The forecast is the weighted combination of the eligible L(N, D) forms (weights
   1/error^2) whenever two of them have two common folds: with a few folds the single best
   backtest is mostly luck, and the combination forecasts better far out (measured on
   synthetic laws first, then on the public tasks: :func:`._compare._choose`); otherwise the
   eligible form with the lowest error (``kaplan`` is shown, never chosen).
4. Loss intervals (:mod:`._calibrate`): a log-error scale ``sqrt(s^2 + p^2 + (kappa d)^2)``:
   the run noise ``s``, the forecast's own parameter spread ``p`` (:mod:`._spread`, delta
   method) and a model-form error growing with the distance ``d`` in decades beyond the
   fitted runs, fitted to the backtest errors of every eligible form (weights 1/error^2: the
   choice is uncertain too), times a conformal quantile of the normalised backtest errors,
   never below the Student-t quantile of their effective number (a backtest of one or two
   folds cannot calibrate a 90% quantile by itself: the notes say so).  ``N_interval``: a
   bootstrap by run of the chosen law (parameter uncertainty) and, on IsoFLOP budgets, at
   least the same calibration applied to N_opt forecasts of held-out budgets against their
   observed optima.

Measured (bench/README.md, "forecast"): 90% intervals held 0.92 (ladders), 0.98 (IsoFLOP
sweeps), 0.87 (five budgets) and 0.96 (three budgets: one fold) of new runs from synthetic
laws, and 11 of 11 published losses of the public tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ._common import call_vectorised, format_table, scalar_or_array
from ._compare import MIN_SPAN, Candidate, CandidateTable, Comparison, compare
from ._design import budgets_of, distance, prepare
from .forms import FORMS, EnsembleLaw, optimal_allocation

__all__ = ["forecast", "Forecast", "Candidate", "CandidateTable", "Prediction", "Optimum", "EnsembleLaw",
           "AUTO_FORMS"]

AUTO_FORMS = ("chinchilla", "chinchilla_tied", "farseer_tied", "kaplan", "frontier", "frontier_best")


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


def _check_spans(N, D, C) -> None:
    """N narrower than a decade is allowed (with an IdentifiabilityWarning, :mod:`._compare`)
    when D or C spans one, as on a model ladder; every other narrow span is an error."""
    ratio = lambda a: float(a.max() / a.min())
    if ratio(N) < MIN_SPAN and ratio(D) < MIN_SPAN and ratio(C) < MIN_SPAN:
        raise ValueError(f"N: values span only a factor of {ratio(N):.3g} ({N.min():.3g} to {N.max():.3g}) and "
                         f"neither D ({ratio(D):.3g}x) nor C ({ratio(C):.3g}x) spans a decade")
    if ratio(D) < MIN_SPAN:
        raise ValueError(f"D: values span only a factor of {ratio(D):.3g} ({D.min():.3g} to {D.max():.3g}); "
                         f"a power law in D needs at least a decade")


def forecast(N, D, L, *, C=None, runs=None, final=None, flops_per_token: Callable | None = None,
             forms: str | Sequence[str] = "auto", level: float = 0.9, delta: float = 1e-3,
             n_bootstrap: int | None = None, seed: int = 0) -> "Forecast":
    """Fit every candidate law form, choose by rolling-origin backtest, forecast with intervals.

    ``N, D, L``: parameters, training tokens and loss of each row.  ``C``: each row's training
    compute in the sweep's own accounting; rows of equal C (within 0.1%) are one IsoFLOP budget,
    which enables the frontier forms and budget folds.  ``runs``: a run id per row, when a run
    has several rows.  ``final``: True where a row is a finished run; default: each run's last
    row (largest D).  Intermediate rows of a decaying (cosine) schedule are biased and left out;
    a WSD cooldown branch end is a finished run: mark it True (a sweep table whose rows are all
    run ends and branch ends passes ``final=True`` for every row).  ``flops_per_token``:
    ``N -> training FLOPs per token`` for compute-optimal allocations (default ``6 N``).
    ``forms``: ``"auto"`` or names from :data:`.forms.FORMS`.  ``level``: the coverage of every
    interval.  ``delta``: the Huber threshold on log residuals (Hoffmann et al. 2022, App. D.2).
    ``n_bootstrap``: replicates for ``N_interval`` (default: as many as the fit's compiled
    batch holds, >= 32, so no second compilation).  ``seed``: of the bootstrap.

    Raises ``ValueError`` naming the argument for bad input; N spanning less than a decade is
    an :class:`IdentifiabilityWarning` (with corr(alpha, beta) of the free-exponent fit) when D
    or C spans one, as on a model ladder.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    requested = AUTO_FORMS if forms == "auto" else tuple(forms) if not isinstance(forms, str) else (forms,)
    unknown = [f for f in requested if f not in FORMS]
    if unknown or not requested:
        raise ValueError(f"forms: unknown {unknown or requested!r}; choose from {', '.join(FORMS)} or 'auto'")
    points = prepare(N, D, L, C, runs, final, flops_per_token)
    Nf, Df, Lf, Cf = points.finished()
    _check_spans(Nf, Df, Cf)
    notes = list(points.notes)
    budgets = budgets_of(Nf, Df, Lf, Cf, flops_per_token) if points.C_given else None
    if budgets is not None:
        notes += [f"IsoFLOP: {n}" for n in budgets.notes]
    comparison = compare(points, budgets, requested, notes, flops_per_token, delta, n_bootstrap, seed)
    return Forecast(comparison, points, level, flops_per_token, notes)


def _model_dict(model, level: float) -> dict:
    return {"s": model.s, "kappa": model.kappa, "z": model.z(level), "n_errors": model.n_errors,
            "n_eff": model.n_eff}


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

    def __init__(self, comparison: Comparison, points, level: float, flops_per_token, notes):
        self.candidates = comparison.candidates
        self.chosen = comparison.chosen
        self.level = level
        model = comparison.error_model
        if model.calibrated and model.conformal_z(level) is None:
            notes = list(notes) + [
                f"thin backtest: {model.n_errors} held-out forecasts worth n_eff = {model.n_eff:.3g} independent errors "
                f"cannot calibrate a {100 * level:g}% quantile; the loss interval's multiplier is the Student-t "
                f"quantile with {model.n_eff:.3g} degrees of freedom (more budgets or sizes, hence more folds, "
                f"would calibrate it)"]
        self.notes = tuple(notes)
        self.mode = "budgets" if comparison.on_budgets else "points"
        self.folds = tuple(f.name for f in comparison.folds)
        self._N, self._D, _, self._C = points.finished()
        self.n_points, self.n_rows = len(self._N), len(points.N)
        self.flops_per_token = flops_per_token
        self._replicates = comparison.replicates
        self.error_model = comparison.error_model
        self.N_error_model = comparison.N_error_model
        candidates, chosen = self.candidates, self.chosen
        surfaces = [c for c in candidates if c.models_N_D]
        by_score = sorted(surfaces, key=lambda c: c.backtest_error if math.isfinite(c.backtest_error) else math.inf)
        self._surface = chosen if chosen.models_N_D else (by_score[0] if by_score else None)

    @property
    def law(self):
        return self.chosen.law

    def _cost(self, N, D):
        N = np.asarray(N, np.float64)
        per_token = 6.0 * N if self.flops_per_token is None else call_vectorised(self.flops_per_token, N)
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
        spread = self._surface.spread.log_sd(np.log(N), np.log(D))
        low, high = self.error_model.interval(loss, d, self.level, spread)
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
        with np.errstate(invalid="ignore", divide="ignore"):
            query = (np.log(N), np.log(D)) if self.chosen.models_N_D else (np.log(flat), np.zeros(len(flat)))
            spread = self.chosen.spread.log_sd(*query)
        low, high = self.error_model.interval(L, d, self.level, spread)
        tail = 50.0 * (1.0 - self.level)
        N_low, N_high = np.full(flat.shape, np.nan), np.full(flat.shape, np.nan)
        if self._replicates:
            samples = np.stack([optimal_allocation(law, flat, self.flops_per_token)[0] for law in self._replicates])
            for k in range(len(flat)):
                finite = samples[:, k][np.isfinite(samples[:, k])]
                if finite.size >= 2:
                    N_low[k], N_high[k] = np.percentile(finite, [tail, 100.0 - tail])
        if self.N_error_model is not None:  # budgets: widen to the backtest-calibrated interval
            lo, hi = self.N_error_model.interval(N, d, self.level)
            N_low, N_high = np.fmin(N_low, lo), np.fmax(N_high, hi)
        shape = C.shape
        out = lambda a: scalar_or_array(np.asarray(a).reshape(shape))
        return Optimum(out(flat), out(N), out(D), out(L), (out(low), out(high)), (out(N_low), out(N_high)),
                       out(d), self.chosen.name)

    def interval_method(self) -> dict:
        N = (f"percentile interval over {len(self._replicates)} bootstrap replicates (by run) of the chosen law "
             f"(parameter uncertainty)")
        if self.N_error_model is not None:
            N += (", widened to the backtest-calibrated interval of N_opt at held-out budgets: "
                  + self.N_error_model.describe(self.level))
        else:
            N += "; no budgets to backtest N_opt on, so model-form error is NOT included"
        return {"loss": self.error_model.describe(self.level), "N": N, "level": self.level}

    def summary(self) -> str:
        left_out = self.n_rows - self.n_points
        rows = [("chosen", f"{self.chosen.name}: {self.chosen.formula}"),
                ("fitted to", f"{self.n_points} finished runs" + (f" ({left_out} rows left out)" if left_out else "")),
                ("backtest", f"{len(self.folds)} rolling-origin folds on {self.mode}: " + "; ".join(self.folds)),
                (f"{100 * self.level:g}% loss interval", self.error_model.describe(self.level)),
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
                            "params": c.params, "error_model": _model_dict(c.error_model, self.level),
                            "note": c.note} for c in self.candidates],
            "error_model": _model_dict(self.error_model, self.level),
            "interval_method": self.interval_method(), "notes": list(self.notes),
        })

    def __repr__(self) -> str:
        return f"Forecast(chosen={self.chosen.name!r}, backtest_error={self.chosen.backtest_error:.4g}, level={self.level})"
