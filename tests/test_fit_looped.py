"""scaling.fit.looped: the looped-model law recovers a known loop exponent and exchange rate,
held-out backtests rank the true form first, bootstrap intervals cover the truth, and bad
input is named. Tables are built from known laws (no training)."""

import math

import numpy as np
import pytest

from scaling import fit
from scaling.fit.looped import FORMS, LoopedLaw

LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022, eq. 10


def table(g, *, noise=0.0, seed=0, loops=(1, 2, 4)):
    """An IsoFLOP-like table: 6 sizes x 3 budgets x the loop counts, D = C / (6 N k), losses
    from LAW with N_eff = N g(k) and `noise` relative Gaussian noise."""
    N, C, k = (a.ravel() for a in np.meshgrid(np.geomspace(1e6, 1e8, 6), np.geomspace(1e16, 1e19, 3), loops))
    D = C / (6 * N * k)
    L = LAW["E"] + LAW["A"] / (N * g(k)) ** LAW["alpha"] + LAW["B"] / D ** LAW["beta"]
    L = L * (1 + noise * np.random.default_rng(seed).standard_normal(len(L)))
    return N, D, k.astype(float), L, 6 * N * D * k


def test_power_form_recovers_the_loop_exponent_and_its_exchange_rate():
    N, D, k, L, _ = table(lambda k: k**0.4)
    law = fit.looped(N, D, k, L, form="power")
    assert law.converged and law.objective < 1e-12
    for name, value in LAW.items():
        assert getattr(law, name) == pytest.approx(value, rel=1e-4)
    assert law.gamma == pytest.approx(0.4, abs=1e-5)
    assert law.exchange_rate(1) == pytest.approx(2**0.4 - 1, rel=1e-4)   # one extra loop from 1: +31.95% parameters
    assert law.exchange_rate(2) == pytest.approx(1.5**0.4 - 1, rel=1e-4)
    np.testing.assert_allclose(law.predict(N, D, k), L, rtol=1e-7)


def test_forms_and_their_factors():
    kw = dict(E=1.0, A=1.0, B=1.0, alpha=0.3, beta=0.3)
    assert LoopedLaw("none", **kw).loop_factor(4) == 1.0
    assert LoopedLaw("compute", **kw).loop_factor(4) == 4.0
    assert LoopedLaw("power", gamma=0.5, **kw).loop_factor(4) == pytest.approx(2.0)
    assert LoopedLaw("log", gamma=0.5, **kw).loop_factor(4) == pytest.approx(1 + 0.5 * math.log(4))
    assert LoopedLaw("compute", **kw).exchange_rate(1) == pytest.approx(1.0)    # a loop = a copy of the parameters
    assert set(FORMS) == {"none", "compute", "power", "log"}
    assert "gamma" in LoopedLaw("power", gamma=0.5, **kw).params and "gamma" not in LoopedLaw("none", **kw).params


@pytest.mark.parametrize("truth, g", [("power", lambda k: k**0.4), ("compute", lambda k: k), ("none", lambda k: 1.0 + 0 * k)])
def test_held_out_backtest_ranks_the_true_form_first(truth, g):
    N, D, k, L, C = table(g, noise=0.002, seed=1)
    ranked = fit.compare_forms(N, D, k, L, compute=C, holdout=0.2, forms=("none", "compute", "power"))
    errors = {c.form: c.held_out_rms_log_error for c in ranked}
    print(f"\ntruth {truth}: held-out rms log error " + ", ".join(f"{f} {e:.4f}" for f, e in errors.items()))
    best = ranked[0].form
    # A fixed form that is true ties with the power law that contains it: either is right.
    assert best == truth or (best == "power" and errors["power"] <= errors[truth] * 1.05)
    wrong = [f for f in ("none", "compute") if f != truth]
    assert all(errors[f] > 2 * errors[truth] for f in wrong)
    assert all(c.backtest.n_holdout == int(np.sum(C >= ranked[0].backtest.compute_threshold)) for c in ranked)


def test_bootstrap_interval_covers_the_true_exchange_rate():
    N, D, k, L, _ = table(lambda k: k**0.4, noise=0.003, seed=2)
    boot = fit.looped_bootstrap(N, D, k, L, form="power", n=100, seed=0)
    lo, hi = boot.interval("gamma")
    assert lo < 0.4 < hi and hi - lo < 0.2
    lo, hi = boot.interval("extra_loop")
    assert lo < 2**0.4 - 1 < hi
    assert boot.estimates["extra_loop"] == pytest.approx(float(boot.law.exchange_rate(1)))
    assert "extra_loop_2" in boot.samples and "extra_loop_4" in boot.samples
    assert boot.n_failed == 0 and boot.converged_fraction > 0.9


def test_bad_input_is_named():
    N, D, k, L, _ = table(lambda k: k**0.4)
    with pytest.raises(ValueError, match="form='cube'"):
        fit.looped(N, D, k, L, form="cube")
    with pytest.raises(ValueError, match="loops: every run has loops=1"):
        fit.looped(N, D, np.ones_like(k), L, form="power")
    with pytest.raises(ValueError, match="loops: must be whole loop counts"):
        fit.looped(N, D, k + 0.5, L)
    with pytest.raises(ValueError, match="N, D, loops, L: mismatched lengths"):
        fit.looped(N, D, k[:-1], L)
