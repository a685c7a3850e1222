"""`scaling demo`: its configs plan a sound IsoFLOP sweep, and the tiny demo runs end to
end, as CI runs it: real runs, fits, plots."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from scaling import results, sweep


def test_demo_configs_plan():
    for name in sweep.DEMO_BUDGETS:
        cfg = sweep.demo_config(name)
        runs = sweep.plan(cfg, warn=False)
        budgets = sorted({r.budget for r in runs})
        assert len(budgets) == len(sweep.DEMO_BUDGETS[name][0])
        assert budgets[-1] / budgets[0] >= 10  # a decade of compute: a power law can be fitted
        # One shape per size (no depth mixing): N grows with width alone.
        assert len({r.config.model.n_layers for r in runs}) == 1
        by_width = {}
        for r in runs:
            by_width.setdefault(r.config.model.d_model, set()).add(r.N)
        assert all(len(ns) == 1 for ns in by_width.values())
        for C in budgets:
            here = [r for r in runs if r.budget == C]
            assert len(here) >= 4  # a parabola per budget
            assert len({r.N for r in here}) == len(here)
            assert all(r.steps >= cfg.min_steps for r in here)
            n_opt = sweep.optimal_size(cfg, C)
            assert min(r.N for r in here) < n_opt < max(r.N for r in here)  # the expected optimum is bracketed
        for r in runs:
            tc = r.config.train
            assert tc.lr * r.config.model.d_model == pytest.approx(cfg.train.lr * cfg.lr_width)  # lr ~ 1/width
            assert tc.warmup_steps <= max(1, 0.1 * r.steps)
            assert tc.eval_batches * (tc.eval_batch_size or tc.global_batch_size) * r.config.model.seq_len >= 30_000
    with pytest.raises(ValueError, match="budget="):
        sweep.demo_config("huge")
    with pytest.raises(ValueError, match="SweepConfig.lr_width"):
        sweep.demo_config("tiny").replace(lr_width=0)


@pytest.mark.slow
def test_demo_tiny(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "scaling", "demo", "--budget", "tiny", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=420)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    rows = results.read_rows(tmp_path / "tiny")
    planned = sweep.plan(sweep.demo_config("tiny"), warn=False)
    assert sorted(r["run_id"] for r in rows) == sorted(r.run_id for r in planned)
    assert all(r["status"] == "finished" and math.isfinite(r["val_loss"]) for r in rows)
    # The loss falls with compute: the best run of each budget beats the best of the budget below.
    best = {}
    for r in rows:
        best[r["budget"]] = min(best.get(r["budget"], 1e9), r["val_loss"])
    losses = [best[c] for c in sorted(best)]
    assert all(a > b for a, b in zip(losses, losses[1:])), best
    assert "best loss per budget" in out
    # The printed exponents come with intervals (approach 2 and 3); the report says what it cannot predict.
    interval = r"\[-?[\d.e+-]+, -?[\d.e+-]+\]"
    assert re.search(r"a\s+\(N_opt ~ C\^a\)\s+-?[\d.]+\s+" + interval, out), out[-3000:]
    assert re.search(r"\n\s+a\s+-?[\d.]+\s+" + interval, out), out[-3000:]
    assert "predicted val_loss" in out and "What this law does not tell you" in out
    assert (tmp_path / "tiny" / "DONE").exists()
    for name in ("isoflop.png", "loss_vs_compute.png", "optimal_allocation.png", "backtest.png"):
        assert (tmp_path / "tiny" / "plots" / name).stat().st_size > 10_000
