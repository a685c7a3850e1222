"""scaling.fit.data_constrained: the law of repeated data (Muennighoff et al. 2023) recovers a
known decay constant R_D* (and R_N*), its bootstrap interval covers the truth, the worth of
repeated epochs and the compute-optimal allocation under a cap follow from the formula, and
bad input is named. Tables are built from known laws (no training)."""

import math

import numpy as np
import pytest

from scaling import fit
from scaling.fit import DataConstrainedLaw

LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022, eq. 10


def table(law, *, noise=0.0, seed=0, caps=(1e15, 6e9, 2e9, 6e8)):
    """IsoFLOP-like runs: 5 sizes x 3 budgets, each at every cap of unique tokens (1e15: fresh
    data), D = C / 6N (so a cap changes the epochs, not N or D); losses from `law` with `noise`
    relative Gaussian noise."""
    N, C, U = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(1e18, 1e20, 3), caps))
    D = C / (6 * N)
    L = np.asarray(law.predict(N, D, U)) * (1 + noise * np.random.default_rng(seed).standard_normal(len(N)))
    return N, D, U, L, C


def test_recovers_a_known_decay_constant_and_the_chinchilla_part():
    truth = DataConstrainedLaw("data", **LAW, R_D_star=15.4)
    N, D, U, L, _ = table(truth)
    assert (D / U).max() > 100 and np.sum(D / U > 1.5) > 20  # the table spans ~1 to hundreds of epochs
    law = fit.data_constrained(N, D, U, L)
    assert law.converged and law.objective < 1e-12 and law.form == "data" and math.isinf(law.R_N_star)
    for name, value in dict(LAW, R_D_star=15.4).items():
        assert getattr(law, name) == pytest.approx(value, rel=1e-4), name
    np.testing.assert_allclose(law.predict(N, D, U), L, rtol=1e-8)
    # A different truth gives a different answer (the fit is not anchored at the paper's value).
    other = fit.data_constrained(*table(DataConstrainedLaw("data", **LAW, R_D_star=3.0))[:4])
    assert other.R_D_star == pytest.approx(3.0, rel=1e-4)


def test_bootstrap_interval_covers_the_true_decay_constant():
    truth = DataConstrainedLaw("data", **LAW, R_D_star=15.4)
    N, D, U, L, _ = table(truth, noise=0.003, seed=2)
    boot = fit.data_constrained_bootstrap(N, D, U, L, n=200, seed=0)
    lo, hi = boot.interval("R_D_star", 0.95)
    print(f"\nR_D* = {boot.law.R_D_star:.2f} [{lo:.2f}, {hi:.2f}] (truth 15.4)")
    assert lo < 15.4 < hi and hi / lo < 4
    w_lo, w_hi = boot.interval("repeated_worth", 0.95)
    assert w_lo < float(truth.repeated_worth(4)) < w_hi
    assert boot.n_failed == 0 and set(boot.samples) >= {"R_D_star", "repeated_worth", "epoch_worth", "half_life"}


@pytest.mark.slow
def test_bootstrap_coverage_over_noise_draws():
    """The 95% percentile interval of R_D* over 10 noise draws of one design: measured 8 of 10
    (and 10 of 12 on the 48-run table of tests/test_questions.py): percentile intervals from a
    few dozen runs run somewhat narrow."""
    truth = DataConstrainedLaw("data", **LAW, R_D_star=6.0)
    covered = 0
    for seed in range(10):
        N, D, U, L, _ = table(truth, noise=0.002, seed=100 + seed)
        lo, hi = fit.data_constrained_bootstrap(N, D, U, L, n=100, seed=seed).interval("R_D_star", 0.95)
        covered += lo < 6.0 < hi
    print(f"\nR_D* covered in {covered} of 10 draws")
    assert covered >= 7


@pytest.mark.slow
def test_full_form_recovers_both_decay_constants():
    truth = DataConstrainedLaw("full", **LAW, R_D_star=15.4, R_N_star=5.3)
    N, D, U, L, _ = table(truth)
    assert np.mean(np.asarray(truth.effective_params(N, np.minimum(U, D))) < N) > 0.3  # many runs have excess N
    law = fit.data_constrained(N, D, U, L, form="full")
    assert law.converged and law.objective < 1e-12
    assert law.R_D_star == pytest.approx(15.4, rel=1e-4) and law.R_N_star == pytest.approx(5.3, rel=1e-4)
    assert law.alpha == pytest.approx(0.34, rel=1e-4) and law.E == pytest.approx(1.69, rel=1e-4)
    # The D'-only form cannot absorb the parameter decay: held out, the full form forecasts better.
    ranked = fit.compare_data_forms(N, D, U, L * (1 + 0.001 * np.random.default_rng(3).standard_normal(len(L))),
                                    compute=6 * N * D, holdout=0.2)
    errors = {c.form: c.held_out_rms_log_error for c in ranked}
    print(f"\nheld-out rms log error: {errors}")
    assert ranked[0].form == "full" and errors["data"] > 1.5 * errors["full"]


def test_the_worth_of_repeats_follows_the_formula():
    law = DataConstrainedLaw("data", **LAW, R_D_star=15.4)
    # Muennighoff et al.'s C4 fit: at 4 epochs the 3 repeats are worth 15.4 (1 - e^(-3/15.4)) / 3 of fresh tokens.
    assert law.repeated_worth(4) == pytest.approx(15.4 * (1 - math.exp(-3 / 15.4)) / 3) == pytest.approx(0.909, abs=1e-3)
    assert law.repeated_worth(1) == 1.0 and law.epoch_worth(1) == 1.0
    assert law.epoch_worth(2) == pytest.approx(15.4 * (1 - math.exp(-1 / 15.4)))
    assert sum(float(law.epoch_worth(k)) for k in range(2, 41)) == pytest.approx(
        float(law.effective_data(40e9, 1e9)) / 1e9 - 1, rel=1e-12)  # passes add up to D'
    assert law.half_life == pytest.approx(15.4 * math.log(2))
    assert law.effective_data(5e8, 1e9) == 5e8                           # before one epoch: fresh tokens
    assert law.effective_data(1e15, 1e9) == pytest.approx(1e9 * 16.4)   # D' <= U (1 + R_D*)
    # Fresh data: the Chinchilla law itself.
    assert law.predict(1e8, 2e9, 1e12) == pytest.approx(law.unique_law.predict(1e8, 2e9))
    # Excess parameters decay only in the full form, and only beyond U_N.
    full = DataConstrainedLaw("full", **LAW, R_D_star=15.4, R_N_star=5.3)
    U_N = float(full.unique_params(1e9))
    assert full.effective_params(0.5 * U_N, 1e9) == pytest.approx(0.5 * U_N)
    assert full.effective_params(4 * U_N, 1e9) == pytest.approx(U_N * (1 + 5.3 * (1 - math.exp(-3 / 5.3))))
    assert law.effective_params(4 * U_N, 1e9) == 4 * U_N


def test_compute_optimal_under_a_cap_minimises_the_law():
    full = DataConstrainedLaw("full", **LAW, R_D_star=15.4, R_N_star=5.3)
    C = 1e22
    free = full.compute_optimal(C, math.inf)
    N_c, D_c = full.unique_law.compute_optimal(C)
    assert (free.N, free.D) == (pytest.approx(N_c, rel=1e-5), pytest.approx(D_c, rel=1e-5))
    cap = 0.1 * D_c
    opt = full.compute_optimal(C, cap)
    grid = np.geomspace(opt.N / 10, opt.N * 10, 4001)  # brute force over the budget's sizes
    losses = full.predict(grid, C / (6 * grid), cap)
    assert opt.loss == pytest.approx(losses.min(), abs=1e-9) and opt.N == pytest.approx(grid[losses.argmin()], rel=2e-3)
    # Under a tight cap: a smaller model trained for more epochs than Chinchilla's (Muennighoff et al., Fig. 1),
    # better than Chinchilla's allocation on the same capped data, worse than fresh data.
    assert opt.N < N_c and opt.D > D_c and opt.epochs == pytest.approx(opt.D / cap)
    assert free.loss < opt.loss < opt.loss_chinchilla_at_cap
    # The family's own cost per token is honoured: C = fpt(N) D.
    fpt = lambda N: 6 * N + 1e6  # noqa: E731
    priced = full.compute_optimal(C, cap, flops_per_token=fpt)
    assert priced.D == pytest.approx(C / fpt(priced.N))


def test_bad_input_is_named():
    truth = DataConstrainedLaw("data", **LAW, R_D_star=15.4)
    N, D, U, L, _ = table(truth)
    with pytest.raises(ValueError, match="form='both'"):
        fit.data_constrained(N, D, U, L, form="both")
    with pytest.raises(ValueError, match="U: 0 runs repeat their data"):
        fit.data_constrained(N, D, np.full(len(N), 1e15), L)    # fresh data only: no R_D* to find
    with pytest.raises(ValueError, match="U: contains 1 non-positive"):
        fit.data_constrained(N, D, np.where(np.arange(len(N)) == 3, 0.0, U), L)
    with pytest.raises(ValueError, match="N, D, U, L: mismatched lengths"):
        fit.data_constrained(N, D, U[:-1], L)
    with pytest.raises(ValueError, match="C: must be a positive"):
        truth.compute_optimal(-1.0, 1e9)
