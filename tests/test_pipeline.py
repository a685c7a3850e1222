"""`scaling demo` end to end, as CI runs it: real runs, fits, plots (the pipeline chains
sweep -> table -> report -> figures)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest
from conftest import make_planned_rows

from scaling import results, sweep


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


def test_summarize_writes_report_and_plots_beside_a_gs_table(synthetic_rows, fake_gcs, capsys):
    """The table, report.txt and every figure of a sweep on gs:// stay on gs:// (they used to
    land in a local folder named `gs:`)."""
    from scaling import paths, pipeline, plot

    out = "gs://bucket/sweep"
    for row in synthetic_rows(budgets=(1e12, 3e12, 1e13)):
        results.append_row(out, row)
    rep = pipeline.summarize(out, budget=1e14, n_bootstrap=10, plot_dir=paths.join(out, "plots"))
    assert rep.chinchilla is not None
    text = fake_gcs["/bucket/sweep/report.txt"].getvalue().decode()
    assert "Forecast at C = 1e+14" in text and text.strip() in capsys.readouterr().out
    for name in (*plot.PLOTS, "inference.png"):
        assert fake_gcs[f"/bucket/sweep/plots/{name}"].getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Inference-aware optimum at C = 1e+14" in text  # scaling.questions, appended
    assert not (paths.path("gs:").exists())


@pytest.mark.slow
def test_summarize_a_looped_sweep_fits_the_usual_laws_on_one_loop_count(sweep_config, tmp_path):
    """A table at 1 and 2 loops: approach 2 and 3 see the 1-loop runs only (N means the same
    thing in every row they fit), the looped law sees all, and loops.png is drawn."""
    import json

    from scaling import pipeline

    cfg = sweep_config(budgets=(1e12, 3e12, 1e13), loops=(1, 2), sizes_per_budget=4)

    def point_of(run):
        loss = 1.69 + 406.4 / (run.N * run.config.model.loops**0.5) ** 0.34 + 410.7 / run.D ** 0.28
        return dict(val_loss=loss, train_loss=loss)

    for row in make_planned_rows(cfg, point_of):
        results.append_row(tmp_path, row)
    rep = pipeline.summarize(tmp_path, n_bootstrap=10, plot_dir=tmp_path / "plots")
    assert {r["loops"] for r in rep.rows} == {1} and len(rep.rows) == len(sweep.plan(cfg)) // 2
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["questions"]["loops"]["gamma"] == pytest.approx(0.5, abs=0.05)
    assert "What a loop is worth" in (tmp_path / "report.txt").read_text()
    assert (tmp_path / "plots" / "loops.png").stat().st_size > 10_000


@pytest.mark.slow
def test_summarize_a_capped_sweep_fits_the_usual_laws_on_the_whole_split(sweep_config, tmp_path):
    """A table at the whole split and two caps of unique tokens: approach 2 and 3 see the
    whole-split runs only, the data-constrained law sees all, and epochs.png is drawn."""
    import json

    from scaling import fit, pipeline

    cfg = sweep_config(budgets=(1e12, 3e12, 1e13), unique_tokens=(None, 1_000_000, 200_000), sizes_per_budget=4,
                       max_epochs=None)
    law = fit.DataConstrainedLaw("data", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, R_D_star=6.0)

    def point_of(run):
        loss = float(law.predict(run.N, run.D, run.unique_tokens))
        return dict(val_loss=loss, train_loss=loss)

    for row in make_planned_rows(cfg, point_of):
        results.append_row(tmp_path, row)
    rep = pipeline.summarize(tmp_path, n_bootstrap=10, plot_dir=tmp_path / "plots")
    assert all(r["epochs"] < 1 for r in rep.rows) and len(rep.rows) == len(sweep.plan(cfg)) // 3
    assert rep.chinchilla.alpha == pytest.approx(0.34, rel=1e-3)  # the unique-data law, untouched by repeats
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["questions"]["data"]["params"]["R_D_star"] == pytest.approx(6.0, rel=1e-3)
    assert "Repeated data" in (tmp_path / "report.txt").read_text()
    assert (tmp_path / "plots" / "epochs.png").stat().st_size > 10_000


@pytest.mark.slow
def test_verify_trains_the_forecast_optimum_and_its_neighbours(synthetic_rows, sweep_config, tmp_path, capsys):
    """A sweep directory (its recipe in sweep.json, a table whose law is known) is verified at a
    budget: the sizes around the forecast's N_opt are trained with the recipe, compared, and
    the comparison lands in report.json."""
    import json

    from scaling import pipeline
    from scaling.config import ModelConfig, TrainConfig
    from scaling.sweep.run import write_plan

    sweep_dir = tmp_path / "sweep"
    for row in synthetic_rows(budgets=(1e12, 3e12, 1e13)):
        results.append_row(sweep_dir, row)
    recipe = sweep_config(widths=(16, 32, 48, 64), depths=(1,), head_dim=16, min_steps=10,
                          model=ModelConfig(d_model=16, n_layers=1, n_heads=1, seq_len=32),
                          train=TrainConfig(tokens=1, global_batch_size=8, warmup_steps=5, eval_batches=2,
                                            progress=False, steps_per_dispatch=8))
    write_plan([], sweep_dir, recipe)
    v = pipeline.verify(sweep_dir, budget=3e10, n_bootstrap=10)
    assert v["budget"] == 3e10 and 2 <= len(v["runs"]) <= 3
    assert {r["run_id"].split("-")[0] for r in v["runs"]} == {"C3e+10"}
    assert v["optimum"] in ("inside", "at the smallest size run", "at the largest size run")
    assert v["loss_error"] == pytest.approx(v["forecast_loss"] / v["measured_loss"] - 1)
    doc = json.loads((sweep_dir / "report.json").read_text())
    assert doc["verification"]["measured_loss"] == v["measured_loss"] and doc["forecast"]["budget"] == 3e10
    assert "Verification at C = 3e+10" in capsys.readouterr().out
    assert pipeline.verify(sweep_dir, budget=3e10, n_bootstrap=10)["runs"] == v["runs"]  # resumes: nothing retrained
