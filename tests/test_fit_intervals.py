"""Tests of fit.forecast's interval machinery: the delta-method spread of a fitted form's forecasts
(:mod:`scaling.fit._spread`), the backtest-calibrated error model with its conformal quantile and
Student-t floor (:mod:`scaling.fit._calibrate`), and what a small sweep's forecast interval is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling import fit
from scaling.fit import _family, forms
from scaling.fit._calibrate import ErrorModel, fit_error_model, student_t_quantile
from scaling.fit._spread import EnsembleSpread, Spread
from scaling.fit.forms import optimal_allocation

TIED = fit.ChinchillaLaw(E=1.8, A=300.0, B=900.0, alpha=0.31, beta=0.31)


@pytest.mark.parametrize("p, nu, expected", [(0.95, 1, 6.3138), (0.95, 2, 2.9200), (0.95, 3, 2.3534),
                                             (0.95, 10, 1.8125), (0.975, 5, 2.5706), (0.95, 1e6, 1.6449)])
def test_student_t_quantile_matches_tables(p, nu, expected):
    assert student_t_quantile(p, nu) == pytest.approx(expected, abs=2e-4)


def test_few_backtest_errors_use_the_t_quantile_not_the_largest_score():
    """The demo's pathology: two small, heavily weighted errors of the chosen forms and many
    large, lightly weighted errors of forms that backtested badly.  A weighted conformal
    quantile is infinite at 90% with n_eff < 9; it must not fall back to the largest score."""
    d = np.array([0.27, 0.27] + [0.27, 0.55, 0.81] * 6)
    e = np.array([-0.009, 0.009] + list(np.tile([0.05, 0.12, 0.20], 6)))
    w = np.array([1.2, 1.2] + [0.02] * 18)
    model = fit_error_model(d, e, 7e-4, w)
    assert model.n_eff < 9 and model.conformal_z(0.9) is None
    assert model.z(0.9) == pytest.approx(student_t_quantile(0.95, model.n_eff))
    assert model.z(0.9) < max(model.scores)  # the old rule took the largest score
    assert "Student-t" in model.describe(0.9) and "too few" in model.describe(0.9)
    # N_opt's model (no spread term; its interval is also at least the bootstrap's) keeps the largest score
    n_model = fit_error_model(d, e, 1e-3, w, quantity="N_opt")
    assert n_model.z(0.9) == max(n_model.scores) and "largest" in n_model.describe(0.9)


def test_many_errors_give_a_conformal_interval_that_holds_its_level():
    """Errors drawn from sigma(d) = sqrt(s^2 + (kappa d)^2): the fitted model's 90% intervals hold
    about 90% of new draws, near and far."""
    rng = np.random.default_rng(4)
    s, kappa = 0.004, 0.02
    draw = lambda d: rng.laplace(0.0, np.sqrt(s**2 + (kappa * d) ** 2) / math.sqrt(2))
    d = rng.uniform(0.0, 1.2, 600)
    model = fit_error_model(d, draw(d), 1e-3)
    assert model.s == pytest.approx(s, rel=0.3) and model.kappa == pytest.approx(kappa, rel=0.3)
    assert model.conformal_z(0.9) is not None and "conformal quantile" in model.describe(0.9)
    for distance in (0.0, 1.0, 2.0):
        new = draw(np.full(4000, distance))
        low, high = model.interval(np.ones(4000), distance, 0.9)
        assert 0.86 < np.mean((np.log(low) <= new) & (new <= np.log(high))) < 0.94


def test_the_noise_floor_and_the_spread_term():
    # errors only beyond the fitted runs: s stays at the fit's residual scale, not at the grid's bottom
    model = fit_error_model([0.3, 0.5, 0.7], [0.01, -0.02, 0.015], 0.004)
    assert model.s >= 0.004
    # errors fully explained by their parameter spreads need no model-form growth
    d = np.linspace(0.1, 1.0, 40)
    p = 0.01 * d
    e = p * np.random.default_rng(0).standard_normal(40)
    assert fit_error_model(d, e, 1e-4, spread=p).kappa < 0.3 * fit_error_model(d, e, 1e-4).kappa
    assert ErrorModel(0.01, 0.0, 0.01).sigma(1.0, 0.02) == pytest.approx(math.hypot(0.01, 0.02))


def _fit(name, x, y, L, x0, keep=4):
    """One form on all points through the two steps fit.forecast uses (starts, then Newton)."""
    form = forms.FORMS[name]
    start = forms.starts(form, x, y, L, np.ones((1, len(x))), x0, keep)[0]
    theta, value, _ = _family.newton(start, np.tile(form.flags, (keep, 1)), np.tile(form.free, (keep, 1)),
                                     np.ones((keep, len(x))), x, y, np.log(L), x0=x0, group=np.zeros(keep))
    return theta[int(np.argmin(value))]


def test_delta_method_spread_tracks_the_refit_spread():
    """The spread of a far forecast from the delta method is, within a factor of two, the spread
    of the same forecast over refits to fresh noise; it grows with distance and with the noise."""
    rng = np.random.default_rng(2)
    N = np.repeat(np.logspace(7, 9, 5), 5)
    D = N * np.tile([5.0, 10.0, 20.0, 80.0, 320.0], 5)
    x, y, x0 = np.log(N), np.log(D), float(np.mean(np.log(N)))
    noise = 0.01
    target = (np.log([2e9, 5e10]), np.log([4e10, 1e12]))  # 0.3 and 1.7 decades beyond in N
    form = forms.FORMS["chinchilla_tied"]
    truth = np.asarray(TIED.predict(N, D))
    thetas = []
    for _ in range(24):  # refits to fresh noise
        L = truth * np.exp(noise * rng.standard_normal(len(N)))
        thetas.append((_fit("chinchilla_tied", x, y, L, x0), L))
    forecasts = np.array([_family.log_predict(t, form.flags, *target, x0) for t, _ in thetas])
    refit_sd = forecasts.std(axis=0)
    theta, L = thetas[0]
    spread = Spread(form, theta, x, y, np.log(L), np.ones(len(N)), x0)
    delta_sd = spread.log_sd(*target)
    assert np.all(delta_sd > 0.5 * refit_sd) and np.all(delta_sd < 2.0 * refit_sd)
    assert delta_sd[1] > 2 * delta_sd[0]
    quiet = truth * np.exp(0.1 * np.log(L / truth))  # the same draw at a tenth of the noise
    theta_quiet = _fit("chinchilla_tied", x, y, quiet, x0)
    ratio = Spread(form, theta_quiet, x, y, np.log(quiet), np.ones(len(N)), x0).log_sd(*target) / delta_sd
    assert np.all((ratio > 0.05) & (ratio < 0.2))
    # an ensemble's spread lies between its members'
    wide = Spread(form, theta, x, y, np.log(L), np.ones(len(N)) * 0.25, x0)  # a quarter of the information
    mixed = EnsembleSpread([spread, wide], [0.5, 0.5]).log_sd(*target)
    assert np.all((delta_sd < mixed) & (mixed < wide.log_sd(*target)))


def test_spread_is_infinite_without_spare_degrees_of_freedom():
    form = forms.FORMS["chinchilla"]
    x, y = np.log([1e7, 1e8, 1e9, 1e10, 1e8]), np.log([1e9, 1e10, 1e11, 1e9, 1e12])
    theta = np.array([5.0, 6.0, 0.5, 0.3, 0.3, 0.0])
    spread = Spread(form, theta, x, y, _family.log_predict(theta, form.flags, x, y, 0.0), np.ones(5), 0.0)
    assert np.isinf(spread.log_sd(np.log(1e11), np.log(1e12)))


def _sweep(law, rng, noise, budgets, sizes=4, spread=3.0):
    N_opt = optimal_allocation(law, budgets)[0]
    C = np.repeat(budgets, sizes)
    N = np.repeat(N_opt, sizes) * np.tile(spread ** np.linspace(-1, 1, sizes), len(budgets))
    D = C / (6 * N)
    return C, N, D, np.asarray(law.predict(N, D)) * np.exp(noise * rng.standard_normal(len(N)))


def test_a_tiny_sweep_gets_a_usable_interval_that_says_how_it_was_made():
    """Three budgets over a decade, four sizes each (the demo's `tiny`): one rolling-origin fold.
    The 90% interval at 10x holds the optimum and is not the [0.7x, 1.4x] a degenerate
    calibration gave; the summary names the Student-t quantile."""
    rng = np.random.default_rng(5)
    budgets = np.array([1e17, 3.16e17, 1e18])
    hits, widths = 0, []
    for _ in range(4):
        C, N, D, L = _sweep(TIED, rng, 0.005, budgets)
        f = fit.forecast(N, D, L, C=C)
        target = 10 * budgets[-1]
        truth = optimal_allocation(TIED, [target])[2][0]
        o = f.optimal(target)
        low, high = o.loss_interval
        hits += low <= truth <= high
        widths.append(high / low)
    assert len(f.folds) == 1 and "Student-t" in f.summary()
    assert any(n.startswith("thin backtest") for n in f.notes)
    assert hits >= 3 and max(widths) < 1.3


def test_interval_inside_the_data_is_at_least_the_run_noise():
    rng = np.random.default_rng(6)
    N = np.repeat(np.logspace(7, 9, 5), 5)
    D = N * np.tile([5.0, 10.0, 20.0, 80.0, 320.0], 5)
    noise = 0.02
    L = np.asarray(TIED.predict(N, D)) * np.exp(noise * rng.standard_normal(len(N)))
    f = fit.forecast(N, D, L)
    p = f.predict(N[7], D[7])
    assert p.distance == 0.0
    half_width = math.log(p.interval[1] / p.loss)
    assert half_width >= 1.2 * noise  # at least z * s, s >= the residual scale (~noise)
    assert f.to_dict()["error_model"]["n_eff"] > 9 and not any(n.startswith("thin backtest") for n in f.notes)
