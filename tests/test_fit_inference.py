"""scaling.fit.inference: the inference-aware optimum (Sardana et al. 2024) reaches the same
loss as the Chinchilla optimum at less training + inference compute, is the Chinchilla
optimum when nothing is served, and matches a brute-force search."""

import numpy as np
import pytest

from scaling import fit

LAW = fit.ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022, eq. 10
C = 1e22


def brute_force(law, C, T, fpt=None):
    """Least fpt(N) (D(N) + T/3) on the loss surface of the Chinchilla optimum, by a dense grid."""
    n_c, d_c = law.compute_optimal(C, flops_per_token=fpt)
    fpt = fpt or (lambda N: 6 * N)
    loss = law.predict(n_c, d_c)
    N = np.geomspace(n_c / 1e4, n_c * 10, 400_001)
    slack = loss - law.E - law.A * N**-law.alpha
    ok = slack > 0
    D = (law.B / slack[ok]) ** (1 / law.beta)
    cost = fpt(N[ok]) * (D + T / 3)
    i = np.argmin(cost)
    return N[ok][i], D[i], cost[i]


def test_nothing_served_is_the_chinchilla_optimum():
    opt = fit.inference_optimal(LAW, C, 0)
    n, d = LAW.compute_optimal(C)
    assert (opt.N, opt.D) == (pytest.approx(n), pytest.approx(d))
    assert opt.saving == pytest.approx(0.0) and opt.total_flops == pytest.approx(C)
    assert LAW.compute_optimal(C, inference_tokens=0) == (pytest.approx(n), pytest.approx(d))


@pytest.mark.parametrize("T", [1e11, 2e12, 1e14])
def test_serving_tokens_makes_the_optimum_smaller_longer_trained_and_cheaper(T):
    opt = fit.inference_optimal(LAW, C, T)
    N_bf, D_bf, cost_bf = brute_force(LAW, C, T)
    assert opt.N == pytest.approx(N_bf, rel=2e-3) and opt.D == pytest.approx(D_bf, rel=2e-3)
    assert opt.total_flops == pytest.approx(cost_bf, rel=1e-6)
    assert LAW.predict(opt.N, opt.D) == pytest.approx(opt.loss, rel=1e-9)       # the same loss
    assert opt.N < opt.N_chinchilla and opt.D > opt.D_chinchilla               # smaller, longer trained
    assert 0 < opt.saving < 1
    assert opt.training_flops == pytest.approx(6 * opt.N * opt.D)
    assert opt.inference_flops == pytest.approx(2 * opt.N * T)                 # a forward pass per token
    assert opt.chinchilla_total_flops == pytest.approx(C + 2 * opt.N_chinchilla * T, rel=1e-9)


def test_more_tokens_served_smaller_model_and_bigger_saving():
    opts = [fit.inference_optimal(LAW, C, T) for T in (1e10, 1e12, 1e14)]
    assert opts[0].N > opts[1].N > opts[2].N
    assert opts[0].saving < opts[1].saving < opts[2].saving
    n, d = LAW.compute_optimal([C, 10 * C], inference_tokens=1e12)               # arrays broadcast
    assert n[0] == pytest.approx(opts[1].N) and d.shape == (2,)


def test_a_family_cost_per_token_is_used_for_training_and_a_third_for_inference():
    fpt = lambda N: 6 * np.asarray(N, dtype=float) + 3e5  # 6N plus a constant attention-like term
    opt = fit.inference_optimal(LAW, C, 1e12, flops_per_token=fpt)
    N_bf, D_bf, cost_bf = brute_force(LAW, C, 1e12, fpt)
    assert opt.total_flops == pytest.approx(cost_bf, rel=1e-6) and opt.N == pytest.approx(N_bf, rel=2e-3)
    assert opt.inference_flops == pytest.approx(fpt(opt.N) / 3 * 1e12)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="inference_tokens"):
        fit.inference_optimal(LAW, C, -1.0)
    with pytest.raises(ValueError, match="C: must be a positive"):
        fit.inference_optimal(LAW, 0.0, 1e9)
