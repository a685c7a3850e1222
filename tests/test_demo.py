"""`scaling demo --budget tiny` end to end, as CI runs it: real runs, fits, plots."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from scaling import results, sweep


def test_demo_configs_plan():
    for name in sweep.DEMO_BUDGETS:
        runs = sweep.plan(sweep.demo_config(name), warn=False)
        budgets = {r.budget for r in runs}
        assert len(budgets) == len(sweep.DEMO_BUDGETS[name][0])
        assert max(budgets) / min(budgets) >= 10  # a decade of compute: a power law can be fitted
        for C in budgets:
            assert sum(r.budget == C for r in runs) >= 4  # a parabola per budget
    with pytest.raises(ValueError, match="budget="):
        sweep.demo_config("huge")


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
    # The loss falls with compute: the best run of each budget beats the best of the budget below.
    best = {}
    for r in rows:
        best[r["budget"]] = min(best.get(r["budget"], 1e9), r["val_loss"])
    losses = [best[c] for c in sorted(best)]
    assert all(a > b for a, b in zip(losses, losses[1:])), best
    # The printed exponents come with intervals; the report says what it cannot predict.
    assert re.search(r"a\s+\(N_opt ~ C\^a\)\s+-?[\d.]+\s+\[", out), out[-3000:]
    assert re.search(r"\ba\s+[\d.]+\s+\[[\d.e+-]+, [\d.e+-]+\]", out), out[-3000:]
    assert "predicted val_loss" in out and "What this law does not tell you" in out
    assert (tmp_path / "tiny" / "DONE").exists()
    for name in ("isoflop.png", "loss_vs_compute.png", "optimal_allocation.png", "backtest.png"):
        assert (tmp_path / "tiny" / "plots" / name).stat().st_size > 10_000
