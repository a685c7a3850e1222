"""Divergence checks and the reported train loss, and their state across a restart."""

import math

from scaling.monitor import DIVERGENCE_WARMIN, TRAIN_LOSS_WINDOW, LossMonitor


def test_non_finite_loss_or_norm_diverges_at_once():
    m = LossMonitor(3.0)
    assert "not finite" in m.check(1, math.nan, 1.0)
    assert "not finite" in m.check(1, 2.0, math.inf)


def test_a_spike_over_the_first_loss_or_the_running_mean_diverges():
    m = LossMonitor(3.0)
    assert m.check(1, 5.0, 1.0) is None
    assert "x the first step's loss" in m.check(2, 15.1, 1.0)
    m = LossMonitor(3.0)
    assert m.check(1, 5.0, 1.0) is None  # a fresh model's loss, then it learns
    for step in range(2, DIVERGENCE_WARMIN + 30):
        assert m.check(step, 1.0, 1.0) is None
    assert "running mean" in m.check(DIVERGENCE_WARMIN + 30, 3.6, 1.0)  # < 3 x the first loss, > 3 x the mean (~1.07)
    assert m.check(DIVERGENCE_WARMIN + 30, 2.9, 1.0) is None  # below 3 x the running mean: fine


def test_train_loss_is_the_mean_of_the_last_window_and_survives_a_restart():
    m = LossMonitor(3.0)
    for step in range(1, 31):
        m.check(step, 3.0 - step / 100, 1.0)
    want = sum(3.0 - s / 100 for s in range(31 - TRAIN_LOSS_WINDOW, 31)) / TRAIN_LOSS_WINDOW
    assert abs(m.train_loss() - want) < 1e-12
    again = LossMonitor(3.0)
    again.load_state_dict(m.state_dict())
    assert again.train_loss() == m.train_loss() and again.ema == m.ema and again.first == m.first
    assert LossMonitor(3.0).train_loss() != LossMonitor(3.0).train_loss()  # nan before any step
