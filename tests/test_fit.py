"""Tests of scaling.fit: exactness on noise-free laws, the published reference optimum,
input validation, warnings, and JAX-settings hygiene."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import fit
from scaling.fit import _optim

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("SCALING_REFERENCE_DIR", REPO / ".." / "shared" / "reference"))
REFERENCE_CSV = REFERENCE_DIR / "chinchilla_fig4_epoch.csv"

# Hoffmann et al. 2022 as printed; used as a generating law for synthetic data.
TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def chinchilla_loss(N, D, E=TRUE["E"], A=TRUE["A"], B=TRUE["B"], alpha=TRUE["alpha"], beta=TRUE["beta"]):
    return E + A / N**alpha + B / D**beta


@pytest.fixture(scope="module")
def grid_runs():
    """6 x 6 grid of (N, D): N and D vary independently over three decades."""
    N, D = (a.ravel() for a in np.meshgrid(np.logspace(7, 10, 6), np.logspace(9, 12, 6)))
    return N, D, chinchilla_loss(N, D)


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE_CSV.exists():
        pytest.skip(f"reference data absent ({REFERENCE_CSV})")
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(REFERENCE_CSV)
    table = table[table["loss"] < table["loss"].nlargest(5).min()]  # drop the 5 highest losses
    N, C, L = table["Model Size"], table["Training FLOP"], table["loss"]
    return N, C / (6 * N), L


def relative(a, b):
    return abs(a - b) / abs(b)


# ---------------------------------------------------------------- reference optimum

def test_chinchilla_reaches_grid_lbfgsb_optimum_on_reference(reference):
    law = fit.chinchilla(*reference)
    assert len(reference[0]) == 240
    assert law.converged
    assert law.E == pytest.approx(1.81724, abs=2e-4)
    assert law.alpha == pytest.approx(0.34731, abs=2e-4)
    assert law.beta == pytest.approx(0.36718, abs=2e-4)
    assert law.A == pytest.approx(477.84, rel=2e-3)
    assert law.B == pytest.approx(2143.86, rel=2e-3)
    # Summed Huber objective: no worse than the grid L-BFGS-B optimum (~1.0183e-3).
    assert 1.0180e-3 < law.objective <= 1.01828e-3
    assert law.a == pytest.approx(0.5139, abs=1e-3)
    # Not the printed Hoffmann values (which come from the averaged objective).
    assert abs(law.beta - 0.28) > 0.05


# ---------------------------------------------------------------- noise-free recovery

def test_chinchilla_recovers_noise_free_law(grid_runs):
    law = fit.chinchilla(*grid_runs)
    for name, value in TRUE.items():
        assert relative(getattr(law, name), value) < 1e-4, name
    assert law.converged
    assert law.objective < 1e-20
    assert law.predict(1e9, 1e11) == pytest.approx(chinchilla_loss(1e9, 1e11), rel=1e-9)


@pytest.mark.parametrize("floor", [True, False])
def test_power_law_recovers_noise_free_law(floor):
    C = np.logspace(17, 23, 15)
    E, A, alpha = (1.7 if floor else 0.0), 2.5e3, 0.155
    law = fit.power_law(C, E + A * C**-alpha, floor=floor)
    assert relative(law.alpha, alpha) < 1e-4 and relative(law.A, A) < 1e-4
    assert (relative(law.E, E) < 1e-4) if floor else law.E == 0.0
    assert law.converged
    assert "alpha" in law.summary()


def test_kaplan_recovers_noise_free_law(grid_runs):
    N, D, _ = grid_runs
    Nc, Dc, alpha_N, alpha_D = 8.8e13, 5.4e13, 0.076, 0.095
    L = ((Nc / N) ** (alpha_N / alpha_D) + Dc / D) ** alpha_D
    law = fit.kaplan(N, D, L)
    assert relative(law.alpha_N, alpha_N) < 1e-4 and relative(law.alpha_D, alpha_D) < 1e-4
    assert relative(law.Nc, Nc) < 1e-4 and relative(law.Dc, Dc) < 1e-4
    assert law.predict(1e9, 1e10) == pytest.approx(((Nc / 1e9) ** (alpha_N / alpha_D) + Dc / 1e10) ** alpha_D)


def isoflop_runs(a=0.52, k=0.09, sizes_per_budget=7, offsets=None):
    """Per budget, L exactly a parabola in ln N with its minimum at N_opt = k C^a."""
    budgets = np.logspace(18, 22, 5)
    C, N, L = [], [], []
    for budget in budgets:
        log_N_opt = math.log(k) + a * math.log(budget)
        grid = offsets if offsets is not None else np.linspace(-1.5, 1.5, sizes_per_budget)
        for offset in grid:
            C.append(budget)
            N.append(math.exp(log_N_opt + offset))
            L.append(10.0 * budget**-0.05 + 0.04 * offset**2)
    return np.array(C), np.array(N), np.array(L)


def test_isoflop_recovers_exponents_and_exposes_parabolas():
    C, N, L = isoflop_runs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit.isoflop(C, N, L)
    assert relative(result.a, 0.52) < 1e-4
    assert relative(result.b, 0.48) < 1e-4  # D_opt = C / (6 N_opt)
    assert relative(result.N_coefficient, 0.09) < 1e-4
    assert len(result.budgets) == len(result.parabolas) == len(result.N_opt_per_budget) == 5
    assert all(c2 > 0 for c2, _, _ in result.parabolas)
    N_opt, D_opt = result.compute_optimal(1e24)
    assert N_opt * D_opt * 6 == pytest.approx(1e24, rel=1e-6)
    assert result.L_min_per_budget[0] == pytest.approx(10.0 * 1e18**-0.05, rel=1e-9)


def test_isoflop_warns_at_edge_and_on_downward_curve():
    C, N, L = isoflop_runs(offsets=np.linspace(0.2, 2.0, 6))  # every minimum below the smallest size
    with pytest.warns(fit.ExtrapolationWarning, match="edge"):
        result = fit.isoflop(C, N, L)
    assert all(result.at_edge)
    L_bad = L.copy()
    first = C == C.min()
    L_bad[first] = 5.0 - 0.001 * np.log(N[first]) ** 2  # opens downward
    with pytest.warns(fit.ExtrapolationWarning, match="opens downward"):
        result = fit.isoflop(C, N, L_bad)
    assert len(result.budgets) == 4 and len(result.skipped_budgets) == 1


def test_envelope_follows_compute_optimal_frontier():
    rows = []
    for size in np.logspace(7, 10, 31):
        for tokens in np.logspace(8, 13, 120):
            rows.append((6 * size * tokens, chinchilla_loss(size, tokens), size))
    C, L, N = map(np.array, zip(*rows))
    law = fit.ChinchillaLaw(**TRUE)
    # keep budgets whose optimal size lies well inside the sampled sizes
    N_opt, _ = law.compute_optimal(C)
    inside = (N_opt > 10**7.5) & (N_opt < 10**9.5)
    result = fit.envelope(C[inside], L[inside], N[inside], bins_per_decade=4)
    assert result.a == pytest.approx(law.a, abs=0.02)
    assert result.a + result.b == pytest.approx(1.0, abs=1e-9)


# ---------------------------------------------------------------- compute-optimal allocation

def test_compute_optimal_closed_form_and_cost_model(grid_runs):
    law = fit.ChinchillaLaw(**TRUE)
    N_opt, D_opt = law.compute_optimal(1e23)
    assert 6 * N_opt * D_opt == pytest.approx(1e23, rel=1e-12)
    # the closed form is the minimum of L on the budget line
    for factor in (0.9, 1.1):
        assert law.predict(N_opt * factor, 1e23 / (6 * N_opt * factor)) > law.predict(N_opt, D_opt)
    N_num, D_num = law.compute_optimal(1e23, flops_per_token=lambda n: 6 * n)
    assert N_num == pytest.approx(N_opt, rel=1e-6) and D_num == pytest.approx(D_opt, rel=1e-6)
    # a per-token overhead makes tokens dearer, shifting the optimum towards larger models
    cost = lambda n: 6 * n + 6e9
    N_over, D_over = law.compute_optimal(1e23, flops_per_token=cost)
    assert N_over > N_opt and cost(N_over) * D_over == pytest.approx(1e23, rel=1e-9)
    for factor in (0.99, 1.01):
        assert law.predict(N_over * factor, 1e23 / cost(N_over * factor)) > law.predict(N_over, D_over)
    assert law.a == pytest.approx(TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]))


# ---------------------------------------------------------------- validation

def test_non_finite_values_are_named():
    N = np.logspace(7, 10, 12)
    D = 30 * N[::-1]
    L = chinchilla_loss(N, D)
    bad = N.copy()
    bad[3] = np.nan
    bad[5] = np.inf
    with pytest.raises(ValueError, match=r"N: contains 2 non-finite values \(nan at index 3\)"):
        fit.chinchilla(bad, D, L)
    with pytest.raises(ValueError, match=r"^y: contains 1 non-finite"):
        fit.power_law(N, np.where(np.arange(12) == 2, np.inf, L))


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_values_are_named(value):
    N = np.logspace(7, 10, 12)
    D = 30 * N[::-1]
    L = chinchilla_loss(N, D)
    L[4] = value
    with pytest.raises(ValueError, match=r"^L: contains 1 non-positive values .* at index 4"):
        fit.chinchilla(N, D, L)


def test_mismatched_lengths_too_few_points_and_narrow_span():
    N = np.logspace(7, 10, 12)
    D = 30 * N[::-1]
    L = chinchilla_loss(N, D)
    with pytest.raises(ValueError, match=r"N, D, L: mismatched lengths \(N has 12, D has 11, L has 12\)"):
        fit.chinchilla(N, D[:-1], L)
    with pytest.raises(ValueError, match=r"5 points cannot support a fit of 5 parameters"):
        fit.chinchilla(N[::2][:5], D[::2][:5], L[::2][:5])
    with pytest.raises(ValueError, match=r"x: 3 points cannot support a fit of 3 parameters"):
        fit.power_law(N[:3], L[:3])
    narrow = np.linspace(1e8, 5e8, 12)
    with pytest.raises(ValueError, match=r"^N: values span only a factor of 5"):
        fit.chinchilla(narrow, D, L)
    with pytest.raises(ValueError, match=r"^x: values span only"):
        fit.power_law(narrow, L)
    with pytest.raises(ValueError, match=r"^N: expected a 1-D array"):
        fit.chinchilla(np.ones((3, 4)), D, L)
    with pytest.raises(ValueError, match=r"^starts: expected"):
        fit.chinchilla(N, D, L, starts=np.zeros((3, 4)))


def test_identifiability_warning_when_tokens_per_parameter_is_fixed(grid_runs):
    N = np.logspace(7, 10, 36)
    D = 20 * N  # one tokens-per-parameter ratio: A N^-alpha and B D^-beta blur together
    with pytest.warns(fit.IdentifiabilityWarning, match="alpha and beta cannot be told apart"):
        law = fit.chinchilla(N, D, chinchilla_loss(N, D))
    assert abs(law.alpha_beta_correlation) > 0.99
    with warnings.catch_warnings():
        warnings.simplefilter("error", fit.IdentifiabilityWarning)
        law = fit.chinchilla(*grid_runs)  # independent N and D: no warning
    assert abs(law.alpha_beta_correlation) < 0.9


# ---------------------------------------------------------------- inputs and JAX hygiene

def test_input_types_and_global_x64_flag_unchanged():
    pandas = pytest.importorskip("pandas")
    x = np.logspace(17, 23, 10)
    y = 1.7 + 2.5e3 * x**-0.155
    flag_before = jax.config.jax_enable_x64
    x32 = jnp.asarray(x / 1e17, dtype=jnp.float32)
    results = [
        fit.power_law(list(x), list(y)),
        fit.power_law(pandas.Series(x), pandas.Series(y)),
        fit.power_law(x32, jnp.asarray(1.7 + 2.5e3 * (np.asarray(x32, np.float64) * 1e17) ** -0.155, jnp.float32)),
    ]
    assert jax.config.jax_enable_x64 == flag_before
    assert x32.dtype == jnp.float32
    assert jnp.ones(3).dtype == (jnp.float64 if flag_before else jnp.float32)
    assert results[0].alpha == pytest.approx(results[1].alpha, rel=1e-12)
    assert results[2].alpha == pytest.approx(0.155, rel=1e-3)  # float32 rounding of the inputs
    assert isinstance(results[0].alpha, float) and isinstance(results[0].E, float)
    with pytest.raises(Exception):
        results[0].alpha = 1.0  # frozen


def test_compiled_fit_is_cached_across_calls(grid_runs):
    fit.chinchilla(*grid_runs)
    size = _optim.multistart_newton._cache_size()
    fit.chinchilla(grid_runs[0], grid_runs[1], grid_runs[2] * 1.01)
    assert _optim.multistart_newton._cache_size() == size


def test_import_does_not_pull_training_stack():
    code = ("import sys, scaling.fit; heavy = [m for m in ('flax', 'optax', 'orbax', 'scipy') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_cholesky_solve_matches_numpy_and_flags_indefinite():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((4, 5, 5))
    spd = M @ np.transpose(M, (0, 2, 1)) + 0.1 * np.eye(5)
    rhs = rng.standard_normal((4, 5))
    with jax.enable_x64(True):
        x, ok = _optim.cholesky_solve(jnp.asarray(spd), jnp.asarray(rhs))
        _, ok_bad = _optim.cholesky_solve(jnp.asarray(-spd), jnp.asarray(rhs))
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(spd, rhs[..., None])[..., 0], rtol=1e-9)
    assert bool(np.all(ok)) and not bool(np.any(ok_bad))
