"""The command line: parsing, exit codes, one clear error line for bad input."""

from __future__ import annotations

from scaling import cli, plot, results


def test_cli_fit_and_plot(synthetic_rows, tmp_path, capsys):
    for row in synthetic_rows(budgets=(1e12, 3e12, 1e13)):
        results.append_row(tmp_path, row)
    assert cli.main(["fit", str(tmp_path / "results.jsonl"), "--budget", "1e14", "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    assert "Forecast at C = 1e+14" in out and "alpha" in out
    assert cli.main(["plot", str(tmp_path), "--out", str(tmp_path / "plots"), "--bootstrap", "10"]) == 0
    # the report's figures, and the inference-aware optimum of scaling.questions (no loops, no exact match here)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted([*plot.PLOTS, "inference.png"])
    assert cli.main(["fit", str(tmp_path / "nothing")]) == 2  # a clear error, not a traceback


def test_bad_set_key_fails_with_exit_2_naming_it(capsys):
    assert cli.main(["train", "experiments/cpu_tiny.py", "--set", "train.bogus_key=1"]) == 2
    assert "bogus_key" in capsys.readouterr().err
    assert cli.main(["train", "experiments/cpu_tiny.py", "--set", "train.lr=-1"]) == 2
    assert "lr" in capsys.readouterr().err


def test_flops_table_lists_each_member(capsys):
    assert cli.main(["flops", "--widths", "64,128", "--depths", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "N total" in out[0] and len(out) == 3


def test_sweep_plan_only_prints_the_plan_without_training(capsys):
    assert cli.main(["sweep", "experiments/cpu_demo.py", "--plan-only", "--set", "budgets=(5e10,)"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["run", "id", "N"] and "total: " in out


def test_overrides_apply_in_any_order(capsys):
    """Pairs valid together but not one at a time: applied together, validated once."""
    for order in (["model.n_heads=6", "model.d_model=96"], ["model.d_model=96", "model.n_heads=6"]):
        args = ["sweep", "experiments/cpu_demo.py", "--plan-only", "--set", "budgets=(5e10,)"]
        for assignment in order:
            args += ["--set", assignment]
        assert cli.main(args) == 0, capsys.readouterr().err
    assert cli.main(["train", "experiments/cpu_tiny.py", "--set", "model.n_heads=5"]) == 2
    err = capsys.readouterr().err
    assert "ModelConfig.d_model=64" in err and "n_heads=5" in err  # names the field and the value


def test_sweep_plan_only_shows_the_plan_then_refuses_repeated_data(tiny_corpus, capsys):
    args = ["sweep", "experiments/cpu_demo.py", "--plan-only", "--set", "budgets=(5e10,)",
            "--set", f"data.stdlib_path={tiny_corpus!r}"]
    assert cli.main(args) == 2
    out, err = capsys.readouterr()
    assert "epochs" in out.splitlines()[0] and "C5e+10-d8-L2" in out  # the plan is printed first
    assert "SweepConfig.max_epochs=4.0" in err and "C5e+10-d8-L2" in err
    assert cli.main(args + ["--set", "max_epochs=None"]) == 0
