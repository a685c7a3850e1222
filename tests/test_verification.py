"""Forecast against measured runs at the forecast's budget."""

import pytest

from scaling import verification


def test_verification_compares_forecast_with_the_measured_optimum():
    rows = [{"run_id": f"r{n}", "status": "finished", "N": n, "D": 1e6, "C": 1e12, "val_loss": loss}
            for n, loss in ((1e4, 2.10), (2e4, 2.00), (4e4, 2.05))]
    forecast = {"budget": 1e12, "N_opt": 3e4, "loss": 2.02, "loss_interval": [1.95, 2.08]}
    v = verification.verification(forecast, rows)
    assert v["measured_loss"] == 2.00 and v["measured_N"] == 2e4 and v["optimum"] == "inside"
    assert v["loss_error"] == pytest.approx(0.01)
    assert v["inside_interval"] is True
    # the vertex of the parabola in log N through the three runs: left of 2e4 is steeper, so it sits right of it
    assert 2e4 < v["N_opt_measured"] < 4e4
    assert v["N_opt_ratio"] == pytest.approx(3e4 / v["N_opt_measured"])
    edge = verification.verification(dict(forecast, loss_interval=[2.05, 2.2]), rows[1:])
    assert edge["optimum"] == "at the smallest size run" and edge["inside_interval"] is False
    assert "OUTSIDE" in verification.format_verification(edge)
    with pytest.raises(ValueError, match="no finished runs"):
        verification.verification(forecast, [])
