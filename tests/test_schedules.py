import math

import pytest

from scaling import schedules
from scaling.config import TrainConfig


def test_cosine_ends_exactly_at_final_lr_and_warms_up():
    kw = dict(lr=3e-3, total_steps=100, warmup_steps=10, final_lr_frac=0.1)
    assert schedules.cosine(99, **kw) == pytest.approx(3e-4, rel=1e-12)
    assert schedules.cosine(0, **kw) == pytest.approx(3e-4)  # warmup: lr * 1/10
    assert schedules.cosine(9, **kw) == pytest.approx(3e-3)  # warmup done
    values = [schedules.cosine(s, **kw) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert schedules.cosine(54, **kw) == pytest.approx(3e-4 + 0.5 * (3e-3 - 3e-4), rel=3e-2)


def test_cosine_degenerate_lengths():
    assert schedules.cosine(0, lr=1.0, total_steps=1, warmup_steps=5, final_lr_frac=0.2) == pytest.approx(0.2)
    assert schedules.cosine(2, lr=1.0, total_steps=3, warmup_steps=10, final_lr_frac=0.0) == 0.0


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_stable_then_cools_down_to_final(shape):
    kw = dict(lr=1.0, total_steps=100, warmup_steps=5, cooldown_frac=0.2, cooldown_shape=shape, final_lr_frac=0.0)
    assert schedules.wsd(2, **kw) == pytest.approx(3 / 5)
    assert all(schedules.wsd(s, **kw) == 1.0 for s in range(5, 80))
    assert schedules.wsd(99, **kw) == 0.0
    mid = schedules.wsd(89, **kw)  # half of the cooldown done
    assert mid == pytest.approx(0.5 if shape == "linear" else 1 - math.sqrt(0.5))
    assert schedules.wsd(99, **{**kw, "final_lr_frac": 0.1}) == pytest.approx(0.1)


def test_wsd_shorter_run_is_the_same_run_until_its_cooldown():
    kw = dict(lr=2e-3, warmup_steps=10, cooldown_frac=0.25, cooldown_shape="1-sqrt")
    fork = schedules.cooldown_start(40, 0.25)
    assert fork == 30
    for s in range(fork):
        assert schedules.wsd(s, total_steps=40, **kw) == schedules.wsd(s, total_steps=200, **kw)
    assert schedules.wsd(fork, total_steps=40, **kw) < schedules.wsd(fork, total_steps=200, **kw)


def test_lr_at_dispatches_on_the_config():
    t = TrainConfig(tokens=10_000, lr=1e-3, warmup_steps=0, schedule="constant")
    assert schedules.lr_at(t, 5, 10) == 1e-3
    t = t.replace(schedule="cosine", final_lr_frac=0.5)
    assert schedules.lr_at(t, 9, 10) == pytest.approx(5e-4)
    t = t.replace(schedule="wsd", final_lr_frac=0.0)
    assert schedules.lr_at(t, 9, 10) == 0.0
