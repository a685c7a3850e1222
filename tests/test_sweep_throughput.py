"""Wall-time estimates for a plan: FLOP/s of finished runs, of a timed step, or a share of peak."""

import math

import pytest

from scaling import sweep
from scaling.sweep import throughput


def test_finished_runs_give_their_own_flops_per_second():
    rows = [{"branch": None, "C": 2e12, "wall_s": 10.0}, {"branch": None, "C": 1e12, "wall_s": 10.0},
            {"branch": 100, "C": 5e11, "wall_s": 1.0}, {"branch": None, "C": None, "wall_s": 3.0}]
    fps, source = throughput.measured_flops_per_s(rows)
    assert fps == pytest.approx(3e12 / 20.0) and "2 finished runs" in source
    fps, source = throughput.measured_flops_per_s([], assumed_mfu=0.5)
    assert fps > 0 and "50% of the measured peak" in source


def test_timed_steps_of_the_ends_interpolate_in_log_n(sweep_config):
    runs = sweep.plan(sweep_config(budgets=(1e12,), sizes_per_budget=3, min_steps=1))
    rate, source = throughput.measured_throughput(runs)
    small, large = min(runs, key=lambda r: r.N), max(runs, key=lambda r: r.N)
    assert rate(small) > 0 and rate(large) > 0 and small.run_id in source and large.run_id in source
    middle = sorted(runs, key=lambda r: r.N)[1]
    lo, hi = sorted((rate(small), rate(large)))
    assert lo <= rate(middle) <= hi  # between the ends, geometric in N
    est = sweep.estimate_wall_s(middle, rate, overhead_s=2.0)
    assert est == pytest.approx(middle.flops / rate(middle) + 2.0) and math.isfinite(est)
