"""Tests of scaling.fit.bootstrap and scaling.fit.backtest."""

from __future__ import annotations

import numpy as np
import pytest

from scaling import fit
from scaling.fit.backtest import held_out_mask
from scaling.fit.bootstrap import resample_counts

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def noisy_runs(seed=0, n=48, noise=0.01):
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7, 10, n)
    D = 10 ** rng.uniform(9, 12, n)
    L = fit.ChinchillaLaw(**TRUE).predict(N, D) * np.exp(noise * rng.standard_normal(n))
    return N, D, L


def test_resample_counts_by_run_and_by_group():
    counts = resample_counts(10, 200, seed=1)
    assert counts.shape == (200, 10) and np.all(counts.sum(axis=1) == 10)
    groups = np.repeat(["a", "b", "c", "d", "e"], 2)
    grouped = resample_counts(10, 200, seed=1, groups=groups)
    assert np.all(grouped[:, 0::2] == grouped[:, 1::2])  # both points of a group move together
    assert np.all(grouped.sum(axis=1) == 10)
    with pytest.raises(ValueError, match="groups"):
        resample_counts(10, 5, groups=groups[:-1])


def test_chinchilla_bootstrap_batched_intervals():
    N, D, L = noisy_runs()
    result = fit.bootstrap(fit.chinchilla, N, D, L, n=200, seed=0, at_C=1e22, at_ND=(1e9, 1e11))
    assert result.n_failed == 0 and result.converged_fraction > 0.95
    for name in ("E", "A", "B", "alpha", "beta", "a", "b", "N_opt", "D_opt", "L_opt", "L"):
        low, high = result.interval(name)
        assert low < result.estimates[name] < high, name
        assert result.samples[name].shape == (200,)
    narrow, wide = result.interval("alpha", 0.5), result.interval("alpha", 0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    # Replicates were genuinely re-fitted: they differ and the forecast interval is narrow but not empty.
    assert result.std("alpha") > 1e-4
    low, high = result.interval("L")
    assert 0 < high - low < 0.05
    assert "alpha" in result.summary()
    # The batched path agrees with refitting a replicate from scratch.
    counts = resample_counts(len(N), 200, seed=0)[7]
    index = np.repeat(np.arange(len(N)), counts)
    refit = fit.chinchilla(N[index], D[index], L[index])
    assert result.samples["alpha"][7] == pytest.approx(refit.alpha, rel=1e-6)
    assert result.samples["E"][7] == pytest.approx(refit.E, rel=1e-6)


def test_generic_bootstrap_power_law_and_groups():
    rng = np.random.default_rng(3)
    C = np.repeat(np.logspace(18, 22, 8), 2)
    L = (1.7 + 2e3 * C**-0.15) * np.exp(0.005 * rng.standard_normal(16))
    result = fit.bootstrap(fit.power_law, C, L, n=30, seed=1, groups=np.repeat(np.arange(8), 2), at_C=1e24)
    assert result.grouped
    assert set(result.samples) >= {"E", "A", "alpha", "L"}
    low, high = result.interval("alpha")
    assert low <= result.estimates["alpha"] <= high
    with pytest.raises(KeyError, match="beta"):
        result.interval("beta")


def test_backtest_noise_free_is_exact_and_reports_errors():
    N, D, _ = noisy_runs(seed=1)
    L = fit.ChinchillaLaw(**TRUE).predict(N, D)
    result = fit.backtest(fit.chinchilla, N, D, L, holdout=8)
    assert result.n_holdout == 8 and result.n_train == 40
    assert result.max_abs_relative_error < 1e-6
    assert np.all(result.compute >= result.compute_threshold)
    N, D, L = noisy_runs(seed=1, noise=0.02)
    result = fit.backtest(fit.chinchilla, N, D, L, holdout=0.25)
    assert result.n_holdout == 12
    assert 1e-4 < result.mean_abs_relative_error < 0.1
    assert result.relative_error.shape == (12,) and np.all(np.isfinite(result.log_error))
    assert "held out" in result.summary()


def test_held_out_mask_semantics():
    compute = np.array([1.0, 2.0, 3.0, 3.0, 5.0])
    assert held_out_mask(compute, 1).tolist() == [False, False, False, False, True]
    assert held_out_mask(compute, 2).tolist() == [False, False, True, True, True]  # ties held out together
    assert held_out_mask(compute, 0.4).tolist() == [False, False, True, True, True]
    assert held_out_mask(compute, 2.5).tolist() == [False, False, True, True, True]  # threshold
    for bad in (0, 5, 100.0, -0.5, True):
        with pytest.raises(ValueError, match="holdout"):
            held_out_mask(compute, bad)


def test_backtest_isoflop_compares_optimal_sizes():
    budgets = np.logspace(18, 22, 5)
    C, N, L = [], [], []
    for budget in budgets:
        for offset in np.linspace(-1.5, 1.5, 7):
            C.append(budget)
            N.append(0.09 * budget**0.52 * np.exp(offset))
            L.append(10.0 * budget**-0.05 + 0.04 * offset**2)
    result = fit.backtest(fit.isoflop, np.array(C), np.array(N), np.array(L), holdout=7)
    assert result.quantity == "N_opt" and len(result.actual) == 1
    assert result.max_abs_relative_error < 1e-6


def test_degenerate_replicates_have_no_optimum_and_are_reported():
    """A law whose loss does not fall with N (alpha <= 0) has no compute-optimal size: NaN,
    not a complex number, and the bootstrap interval says how many replicates had none."""
    import numpy as np

    from scaling.fit import BootstrapResult
    from scaling.fit.laws import ChinchillaLaw

    law = ChinchillaLaw.__new__(ChinchillaLaw)
    object.__setattr__(law, "alpha", -0.1)
    object.__setattr__(law, "beta", 0.3)
    object.__setattr__(law, "A", 10.0)
    object.__setattr__(law, "B", 10.0)
    N_opt, D_opt = ChinchillaLaw.compute_optimal(law, 1e18)
    assert np.isnan(N_opt) and np.isnan(D_opt)
    result = BootstrapResult(law=None, estimates={"N_opt": 2.0}, samples={"N_opt": np.array([1.0, 2.0, 3.0, np.nan])},
                             n=4, n_failed=0, converged_fraction=1.0, grouped=False)
    low, high = result.interval("N_opt")
    assert 1.0 <= low < high <= 3.0
    assert result.n_undefined("N_opt") == 1
    assert "undefined in 1 replicates" in result.summary()


def test_a_replicate_that_runs_off_to_infinity_is_undefined_not_a_crash():
    # 9 runs of a noisy CPU sweep (tiny byte-level models; scaling.data caps' experiment): a few of
    # 1,000 resamples drive log A past 709 (exp overflows a float64).
    N = [4136, 11344, 21624, 4136, 11344, 34976, 11344, 21624, 70896]
    D = [529408, 222208, 126976, 1694720, 709632, 267264, 2214912, 1269760, 447488]
    L = [2.4143255203962326, 2.6841721534729004, 2.775907650589943, 2.3394550532102585, 2.254663720726967,
         2.422618195414543, 2.038099154829979, 1.934471346437931, 2.3180402517318726]
    runs = ["C2.5e+10-d8-L2", "C2.5e+10-d16-L2", "C2.5e+10-d24-L2", "C8e+10-d8-L2", "C8e+10-d16-L2", "C8e+10-d32-L2",
            "C2.5e+11-d16-L2", "C2.5e+11-d24-L2", "C2.5e+11-d48-L2"]
    boot = fit.bootstrap(fit.chinchilla, N, D, L, n=1000, seed=0, groups=runs)
    assert boot.n_undefined("A") > 0 and np.isfinite(boot.interval("alpha")).all()
