"""Report and figures from a results table built from a known law (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from scaling import cli, fit, plot, report, results, sweep
from scaling.config import TrainConfig
from scaling.model import ModelConfig

# Hoffmann et al. 2022's fitted law (eq. 10), with 0.3% multiplicative noise.
LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def synthetic_rows(budgets=(1e12, 3e12, 1e13, 3e13), seed=0):
    cfg = sweep.SweepConfig(budgets=budgets, model=ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=64),
                            train=TrainConfig(tokens=1, global_batch_size=16), head_dim=16, sizes_per_budget=5,
                            size_spread=3.0, min_steps=20)
    rng = np.random.default_rng(seed)
    rows = []
    for run in sweep.plan(cfg):
        L = LAW["E"] + LAW["A"] / run.N ** LAW["alpha"] + LAW["B"] / run.D ** LAW["beta"]

        class Result:
            status, steps, wall_s = "finished", run.steps, 1.0
            points = [dict(step=run.steps, tokens=run.D, branch=None, val_loss=L * (1 + 0.003 * rng.standard_normal()),
                           train_loss=L, flops=run.D * run.flops_per_token, wall_s=1.0, mfu=0.3)]

        rows += sweep.make_rows(run, Result())
    return rows


@pytest.fixture(scope="module")
def rep():
    return report.fit_results(synthetic_rows(), budget=1e15, n_bootstrap=40)


def test_report_recovers_the_law_and_says_its_limits(rep):
    law = rep.chinchilla
    assert law.alpha == pytest.approx(LAW["alpha"], abs=0.05)
    assert law.beta == pytest.approx(LAW["beta"], abs=0.05)
    lo, hi = rep.chinchilla_boot.interval("a", 0.95)
    assert lo <= law.a <= hi
    assert rep.isoflop.a == pytest.approx(LAW["beta"] / (LAW["alpha"] + LAW["beta"]), abs=0.06)
    f = rep.forecast
    assert f["L_opt_interval"][0] <= f["L_opt"] <= f["L_opt_interval"][1]
    assert f["C"] == 1e15 and f["extrapolation"] == pytest.approx(1e15 / 3e13)
    assert rep.backtest_chinchilla is not None and rep.backtest_isoflop is not None
    assert rep.backtest_chinchilla.mean_abs_relative_error < 0.02
    text = report.format_report(rep)
    for needle in ("Approach 2", "Approach 3", "Backtest", "Forecast at C = 1e+15", "95% interval",
                   "downstream", "beyond the fitted range", "other data"):
        assert needle in text


def test_frontier_matches_law_compute_optimal(rep):
    n, d, l = fit.frontier(rep.chinchilla.params, [1e14], rep.fpt)
    n_ref, d_ref = rep.chinchilla.compute_optimal(1e14, flops_per_token=rep.fpt)
    assert n[0, 0] == pytest.approx(n_ref, rel=0.02)
    assert d[0, 0] == pytest.approx(d_ref, rel=0.02)


def test_too_little_data_is_reported_not_raised():
    rows = synthetic_rows(budgets=(1e12,))[:3]
    rep = report.fit_results(rows, n_bootstrap=5)
    assert rep.isoflop is None and rep.chinchilla is None
    assert any("not fitted" in n for n in rep.notes)
    assert "What this law does not tell you" in report.format_report(rep)


def test_all_figures_written(rep, tmp_path):
    paths = plot.plot_all(rep, tmp_path)
    assert [p.rsplit("/", 1)[1] for p in paths] == list(plot.PLOTS)
    for p in paths:
        with open(p, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n"
        assert len(open(p, "rb").read()) > 10_000


def test_cli_fit_and_plot(tmp_path, capsys):
    for row in synthetic_rows(budgets=(1e12, 3e12, 1e13)):
        results.append_row(tmp_path, row)
    assert cli.main(["fit", str(tmp_path / "results.jsonl"), "--budget", "1e14", "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    assert "Forecast at C = 1e+14" in out and "alpha" in out
    assert cli.main(["plot", str(tmp_path), "--out", str(tmp_path / "plots"), "--bootstrap", "10"]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(plot.PLOTS)
    assert cli.main(["fit", str(tmp_path / "nothing")]) == 2  # a clear error, not a traceback
