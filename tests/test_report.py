"""The report from a results table built from a known law (no training): approaches 2 and 3,
bootstrap, backtest, forecast, what it cannot predict."""

from __future__ import annotations

import pytest

from scaling import report


@pytest.fixture(scope="module")
def rep(synthetic_rows):
    return report.fit_results(synthetic_rows(), budget=1e15, n_bootstrap=40)


def test_report_recovers_the_law_and_says_its_limits(chinchilla_law, rep):
    law = rep.chinchilla
    assert law.alpha == pytest.approx(chinchilla_law["alpha"], abs=0.05)
    assert law.beta == pytest.approx(chinchilla_law["beta"], abs=0.05)
    lo, hi = rep.chinchilla_boot.interval("a", 0.95)
    assert lo <= law.a <= hi
    assert rep.isoflop.a == pytest.approx(chinchilla_law["beta"] / (chinchilla_law["alpha"] + chinchilla_law["beta"]), abs=0.06)
    f = rep.forecast
    assert f["L_opt_interval"][0] <= f["L_opt"] <= f["L_opt_interval"][1]
    assert f["C"] == 1e15 and f["extrapolation"] == pytest.approx(1e15 / 3e13)
    assert rep.backtest_chinchilla is not None and rep.backtest_isoflop is not None
    assert rep.backtest_chinchilla.mean_abs_relative_error < 0.02
    text = report.format_report(rep)
    for needle in ("Approach 2", "Approach 3", "Backtest", "Forecast at C = 1e+15", "95% interval",
                   "downstream", "beyond the fitted range", "other data"):
        assert needle in text


def test_too_little_data_is_reported_not_raised(synthetic_rows):
    rows = synthetic_rows(budgets=(1e12,))[:3]
    rep = report.fit_results(rows, n_bootstrap=5)
    assert rep.isoflop is None and rep.chinchilla is None
    assert any("not fitted" in n for n in rep.notes)
    assert "What this law does not tell you" in report.format_report(rep)


def test_report_json_holds_the_forecast_schema(rep):
    import json

    doc = json.loads(json.dumps(report.to_json(rep)))  # plain JSON all the way down
    f = doc["forecast"]
    assert doc["schema"] == "scaling.report/1" and f["budget"] == 1e15
    for key in ("N_opt", "D_opt", "loss"):
        assert f[key] > 0
    assert f["loss_interval"][0] <= f["loss"] <= f["loss_interval"][1]
    assert f["N_opt_interval"][0] <= f["N_opt"] <= f["N_opt_interval"][1]
    assert doc["approach3"]["alpha"]["interval"][0] <= doc["approach3"]["alpha"]["value"]
    assert doc["backtest"] and all("relative_error" in b for b in doc["backtest"])
