"""Tests of the law family behind fit.forecast: exact derivatives, recovery of every form,
the reference optimum, one compilation for many fits, and float64 work pinned to the CPU."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import fit
from scaling.fit import _family, forms
from scaling.fit._common import float64

REPO = Path(__file__).resolve().parents[1]
REFERENCE_CSV = Path(os.environ.get("SCALING_REFERENCE_DIR", REPO / ".." / "shared" / "reference")) / \
    "chinchilla_fig4_epoch.csv"


def fit_form(name, x, y, L, x0, keep=4):
    """One form on all points through the same two steps fit.forecast uses."""
    form = forms.FORMS[name]
    W = np.ones((1, len(x)))
    start = forms.starts(form, x, y, L, W, x0, keep)[0]
    theta, value, grad = _family.newton(start, np.tile(form.flags, (keep, 1)), np.tile(form.free, (keep, 1)),
                                        np.ones((keep, len(x))), x, y, np.log(L), x0=x0, group=np.zeros(keep))
    best = int(np.argmin(value))
    return forms.to_law(form, theta[best], x0), value[best], grad[best]


GRID_N, GRID_D = (a.ravel() for a in np.meshgrid(np.logspace(7, 10, 6), np.logspace(9, 12, 6)))


@pytest.mark.parametrize("name, law", [
    ("chinchilla", fit.ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)),
    ("chinchilla_tied", fit.ChinchillaLaw(E=1.8, A=300.0, B=900.0, alpha=0.31, beta=0.31)),
    ("farseer_tied", fit.FarseerLaw(E=1.8, A=300.0, B=900.0, alpha=0.31, gamma=-0.012, N0=math.exp(np.mean(np.log(GRID_N))))),
    ("kaplan", fit.KaplanLaw(Nc=8.8e13, Dc=5.4e13, alpha_N=0.076, alpha_D=0.095)),
])
def test_every_form_recovers_its_noise_free_law(name, law):
    L = np.asarray(law.predict(GRID_N, GRID_D))
    x, y = np.log(GRID_N), np.log(GRID_D)
    fitted, objective, grad = fit_form(name, x, y, L, float(np.mean(x)))
    assert objective < 1e-14 and grad < 1e-8
    for key, value in law.params.items():
        assert getattr(fitted, key) == pytest.approx(value, rel=1e-4), key


def test_frontier_form_recovers_power_law_in_C():
    C = np.logspace(17, 21, 7)
    L = 1.7 + 2.5e3 * C**-0.155
    law, objective, _ = fit_form("frontier", np.log(C), np.zeros(7), L, 0.0)
    assert objective < 1e-14
    assert (law.E, law.A, law.gamma) == pytest.approx((1.7, 2.5e3, 0.155), rel=1e-5)


def test_analytic_derivatives_match_autodiff():
    rng = np.random.default_rng(0)
    n = 40
    x, y = rng.uniform(16, 22, n), rng.uniform(18, 26, n)
    x0 = float(x.mean())
    log_L = np.log(1.8 + np.exp(5.0 - 0.3 * x) + np.exp(6.0 - 0.3 * y)) + 0.01 * rng.standard_normal(n)
    names = ["chinchilla", "chinchilla_tied", "farseer_tied", "kaplan", "frontier"]
    flags = np.array([forms.FORMS[k].flags for k in names], float)
    free = np.array([forms.FORMS[k].free for k in names], float)
    theta = np.array([[5.0, 6.0, 0.5, 0.3, 0.28, 0.0], [5.0, 6.0, 0.5, 0.3, 0.0, 0.0],
                      [5.0, 6.0, 0.5, 0.3, 0.0, 0.01], [2.4, 30.0, 0.0, 0.8, 0.1, 0.0],
                      [5.0, _family.OFF, 0.5, 0.3, 0.0, 0.0]])
    weights = rng.uniform(0.5, 2.0, (len(names), n))
    features = np.stack([np.ones(n), x, y, y * (x - x0)], axis=1)
    delta = 0.02  # a mix of residuals inside and outside delta

    def objective(t, lane):  # from the documented model, not the hand-derived pieces
        return jnp.sum(weights[lane] * _huber(_log_model(t, flags[lane], x, y, x0) - log_L, delta))

    with float64():
        value, grad, exact, _ = _family._derivatives(
            jnp.asarray(theta), jnp.asarray(_family.form_tensors(flags)), jnp.asarray(flags), jnp.asarray(free),
            jnp.asarray(weights), jnp.asarray(features), jnp.asarray(log_L), delta)
        for lane in range(len(names)):
            t = jnp.asarray(theta[lane])
            m = free[lane]
            np.testing.assert_allclose(value[lane], objective(t, lane), rtol=1e-10)
            np.testing.assert_allclose(grad[lane], jax.grad(objective)(t, lane) * m, rtol=1e-7, atol=1e-9)
            H = np.asarray(jax.hessian(objective)(t, lane)) * np.outer(m, m) + np.diag(1 - m)
            np.testing.assert_allclose(exact[lane], H, rtol=1e-6, atol=1e-8)


def _huber(r, delta):
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _log_model(theta, flags, x, y, x0):
    """The family as its module docstring writes it (autodiff reference)."""
    tie, kaplan, floor, dterm = flags
    a, b, e, alpha, beta, gamma = theta
    terms = [a - alpha * x]
    if dterm:
        slope = 1.0 if kaplan else (alpha if tie else beta) + gamma * (x - x0)
        terms.append(b - slope * y)
    if floor:
        terms.append(jnp.full_like(x, e))
    s = jax.scipy.special.logsumexp(jnp.stack(terms), axis=0)
    return beta * s if kaplan else s


def test_chinchilla_form_reaches_reference_optimum():
    if not REFERENCE_CSV.exists():
        pytest.skip(f"reference data absent ({REFERENCE_CSV})")
    pandas = pytest.importorskip("pandas")
    table = pandas.read_csv(REFERENCE_CSV)
    table = table[table["loss"] < table["loss"].nlargest(5).min()]
    N = table["Model Size"].to_numpy()
    D = table["Training FLOP"].to_numpy() / (6 * N)
    law, objective, _ = fit_form("chinchilla", np.log(N), np.log(D), table["loss"].to_numpy(), float(np.mean(np.log(N))))
    assert 1.0180e-3 < objective <= 1.01828e-3  # the grid L-BFGS-B optimum, as fit.chinchilla
    assert (law.E, law.alpha, law.beta) == pytest.approx((1.81724, 0.34731, 0.36718), abs=2e-4)


def test_optimal_allocation_matches_closed_form_and_flags_no_optimum():
    law = fit.ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    C = np.array([1e20, 1e22, 1e24])
    N, D, L = forms.optimal_allocation(law, C)
    N_closed, D_closed = law.compute_optimal(C)
    np.testing.assert_allclose(N, N_closed, rtol=2e-3)
    np.testing.assert_allclose(L, law.predict(N_closed, D_closed), rtol=1e-7)
    falling_forever = fit.ChinchillaLaw(E=1.0, A=10.0, B=10.0, alpha=-0.1, beta=0.3)
    assert np.all(np.isnan(forms.optimal_allocation(falling_forever, C)[0]))


def test_one_compilation_serves_fits_of_similar_size():
    rng = np.random.default_rng(1)
    law = fit.ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    N, D = 10 ** rng.uniform(7, 10, 40), 10 ** rng.uniform(9, 12, 40)
    fit.forecast(N, D, law.predict(N, D) * np.exp(0.01 * rng.standard_normal(40)))
    size = _family._newton_lanes._cache_size()
    N2, D2 = 10 ** rng.uniform(7, 10, 45), 10 ** rng.uniform(9, 12, 45)  # other data, same padded shapes
    fit.forecast(N2, D2, law.predict(N2, D2) * np.exp(0.01 * rng.standard_normal(45)))
    assert _family._newton_lanes._cache_size() == size


def test_fit_work_stays_on_the_cpu_whatever_the_default_device():
    """With several devices and a non-first default, the fitter's arrays live on cpu:0 and the
    caller's default device and x64 flag are untouched (on a TPU/GPU host the same scope keeps
    float64 work off the accelerator)."""
    code = (
        "import jax, numpy as np\n"
        "jax.config.update('jax_num_cpu_devices', 2)\n"
        "from scaling.fit._common import float64\n"
        "from scaling import fit\n"
        "other = jax.devices()[1]\n"
        "with jax.default_device(other):\n"
        "    with float64():\n"
        "        x = jax.numpy.ones(3)\n"
        "    assert x.dtype == 'float64' and x.devices() == {jax.devices('cpu')[0]}, x.devices()\n"
        "    assert jax.numpy.ones(3).devices() == {other} and jax.numpy.ones(3).dtype == 'float32'\n"
        "    N = np.logspace(7, 10, 12); D = 30 * N[::-1]\n"
        "    law = fit.chinchilla(N, D, 1.7 + 400 / N**0.3 + 400 / D**0.3)\n"
        "    assert abs(law.alpha - 0.3) < 1e-3\n"
        "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr
