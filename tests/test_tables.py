"""Tables researchers bring (CSV, JSONL, parquet): columns mapped, values checked by name,
a run's intermediate evaluations told apart from its finished point; `scaling fit TABLE`."""

import csv
import json

import pytest

from scaling import cli, tables


def _write_csv(path, records):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)


def _records(synthetic_rows):
    """A W&B-style export of a sweep: its own column names, every budget's runs."""
    return [{"name": r["run_id"], "params": r["N"], "tokens": r["D"], "flops": r["budget"], "eval/loss": r["val_loss"]}
            for r in synthetic_rows(budgets=(1e12, 3e12, 1e13, 3e13, 1e14))]


def test_csv_jsonl_and_parquet_read_the_same_rows(synthetic_rows, tmp_path):
    records = _records(synthetic_rows)
    _write_csv(tmp_path / "t.csv", records)
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    import pandas as pd

    pd.DataFrame(records).to_parquet(tmp_path / "t.parquet")
    got = [tables.to_rows(tables.read_table(tmp_path / f"t.{ext}"), N="params", D="tokens", loss="eval/loss",
                          C="flops", run="name") for ext in ("csv", "jsonl", "parquet")]
    assert got[0] == got[1] == got[2]
    assert [r["N"] for r in got[0]] == [float(r["params"]) for r in records]
    assert all(r["final"] and r["budget"] == r["C"] for r in got[0])


def test_bad_tables_name_the_column_row_and_value(tmp_path):
    records = [{"n": 1e6, "d": 2e7, "l": 3.1}, {"n": "abc", "d": 2e7, "l": 3.0}, {"n": 1e6, "d": -5, "l": 2.9}]
    with pytest.raises(ValueError, match=r"--D 'tokens': no such column \(the table has: n, d, l\)"):
        tables.to_rows(records, N="n", D="tokens", loss="l")
    with pytest.raises(ValueError, match=r"column 'n': row 1 has 'abc', not a finite number"):
        tables.to_rows(records, N="n", D="d", loss="l")
    with pytest.raises(ValueError, match=r"column 'd': row 1 has -5; it must be positive"):
        tables.to_rows([records[0], records[2]] + [records[0]], N="n", D="d", loss="l")
    with pytest.raises(ValueError, match="unknown format '.xlsx'"):
        tables.read_table(tmp_path / "t.xlsx")
    with pytest.raises(ValueError, match="no such file"):
        tables.read_table(tmp_path / "missing.csv")


def test_a_runs_evaluations_before_its_end_are_not_finished():
    records = [{"run": "a", "N": 1e6, "D": d, "L": 4 - d / 1e7} for d in (1e6, 5e6, 2e7)]
    records.append({"run": "b", "N": 2e6, "D": 3e6, "L": 3.5})
    rows = tables.to_rows(records, N="N", D="D", loss="L", run="run")
    assert [r["final"] for r in rows] == [False, False, True, True]
    assert all(r["C"] == pytest.approx(6 * r["N"] * r["D"]) and r["budget"] is None for r in rows)  # 6ND


def test_scaling_fit_on_a_csv_prints_the_forecast_and_writes_report_json(synthetic_rows, tmp_path, capsys):
    path = tmp_path / "export.csv"
    _write_csv(path, _records(synthetic_rows))
    args = ["fit", str(path), "--N", "params", "--D", "tokens", "--loss", "eval/loss", "--C", "flops", "--run",
            "name", "--budget", "1e15", "--bootstrap", "20"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "Law forms compared" in out and "law form (chosen)" in out and "90% interval" in out
    doc = json.loads((tmp_path / "export.report.json").read_text())
    f = doc["forecast"]
    assert f["budget"] == 1e15 and f["loss_interval"][0] <= f["loss"] <= f["loss_interval"][1]
    assert doc["law_forms"]["chosen"] == f["form"] and len(doc["law_forms"]["candidates"]) >= 3
    assert (tmp_path / "export.report.txt").read_text().startswith(out.splitlines()[0])


def test_scaling_fit_on_a_table_needs_its_columns(synthetic_rows, tmp_path, capsys):
    path = tmp_path / "export.csv"
    _write_csv(path, _records(synthetic_rows))
    assert cli.main(["fit", str(path)]) == 2
    assert "name its columns with --N, --D and --loss" in capsys.readouterr().err
    assert cli.main(["fit", str(path), "--N", "params", "--loss", "eval/loss"]) == 2
    assert "--D: required" in capsys.readouterr().err
    assert cli.main(["fit", str(path), "--N", "params", "--D", "tokens", "--loss", "loss"]) == 2
    assert "--loss 'loss': no such column" in capsys.readouterr().err
