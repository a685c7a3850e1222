"""What the laws that extend Chinchilla's (:mod:`.looped`, :mod:`.data_constrained`) share:
the best start of each bootstrap replicate, the bootstrap's result, and the held-out
comparison of their forms.

Both fit L = E + A/N_eff^alpha + B/D_eff^beta with one or two extra constants, bootstrap it
by re-converging every replicate from the full fit plus a few perturbed starts in one batched
Newton run (as :func:`scaling.fit.bootstrap` does for Chinchilla's law), and rank their forms
by forecasting the largest-compute runs from the others. Only the law, its objective and its
derived quantities differ; the bookkeeping is here once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .backtest import BacktestResult, held_out_mask
from .bootstrap import BootstrapResult


def best_start_per_replicate(theta, value, grad, n: int, make_law: Callable) -> list:
    """The law of each of ``n`` replicates from its best start: ``theta``, ``value`` and
    ``grad`` hold the replicates' starts one after another (n x starts lanes);
    ``make_law(theta, value, max |grad|)`` builds a law object."""
    value = np.asarray(value).reshape(n, -1)
    lanes = value.shape[1]
    best = np.argmin(np.where(np.isfinite(value), value, np.inf), axis=1)
    rows = np.arange(n) * lanes + best
    return [make_law(t, v, g) for t, v, g in
            zip(theta[rows], value[np.arange(n), best], np.max(np.abs(grad[rows]), axis=1))]


def bootstrap_result(full, laws: Sequence, derived: Callable[[object], dict], groups) -> BootstrapResult:
    """The bootstrap of ``full`` from its replicates' ``laws``: ``derived(law)`` gives every
    quantity sampled (the parameters and what is derived from them); replicates whose fit did
    not reach a finite objective are counted as failed and left out of the samples."""
    ok = [law for law in laws if np.isfinite(law.objective)]
    estimates = derived(full)
    per = [derived(law) for law in ok]
    return BootstrapResult(law=full, estimates=estimates, samples={k: np.array([p[k] for p in per]) for k in estimates},
                           n=len(laws), n_failed=len(laws) - len(ok),
                           converged_fraction=float(np.mean([law.converged for law in ok])) if ok else 0.0,
                           grouped=groups is not None)


@dataclass(frozen=True)
class FormComparison:
    """One form's fit on every run and its backtest (fitted without the held-out runs, which
    it then forecasts); a form that could not be fitted carries the reason in ``error``."""

    form: str
    law: object | None
    backtest: BacktestResult | None
    error: str = ""
    n_params: int = 0

    @property
    def held_out_rms_log_error(self) -> float:
        return self.backtest.rms_log_error if self.backtest is not None else math.inf


def compare_held_out(forms, L, compute, holdout, *, check: Callable, fit_all: Callable, fit_kept: Callable,
                     predict: Callable, n_params: Callable = lambda form: 0) -> list[FormComparison]:
    """Each form fitted on every run (``fit_all(form)``) and on the runs below the held-out
    compute (``fit_kept(form, weights)``: weights 1 kept, 0 held out; ``held_out_mask``), whose
    fit then forecasts the held-out losses (``predict(law, mask)``). ``check(form, kept)``
    raises ValueError when the kept runs cannot support the form. Best (lowest held-out rms
    log error) first."""
    mask = held_out_mask(compute, holdout)
    out = []
    for form in forms:
        law = backtest = None
        error = ""
        try:
            check(form, ~mask)
            law = fit_all(form)
            fitted = fit_kept(form, (~mask).astype(np.float64))
            predicted = np.asarray(predict(fitted, mask), dtype=np.float64).reshape(-1)
            backtest = BacktestResult(fitted, "L", int((~mask).sum()), int(mask.sum()), float(compute[mask].min()),
                                      compute[mask], L[mask], predicted)
        except ValueError as e:
            error = str(e)
        out.append(FormComparison(form, law, backtest, error, n_params(form)))
    return sorted(out, key=lambda c: c.held_out_rms_log_error)
