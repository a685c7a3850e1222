"""Tables that researchers bring: CSV, JSONL or parquet files of (N, D, loss[, C, run]) rows.

    records = read_table("wandb_export.csv")
    rows = to_rows(records, N="params", D="tokens", loss="eval/loss", C="flops", run="run_name")
    rep = scaling.report.fit_results(rows)

`to_rows` maps the user's columns onto the results-table schema the report fits
(`run_id, N, D, C, budget, val_loss, final`), checking every value: a missing column, a
value that is not a number, or one that is not positive fails naming the column, the row
and the value. Without a C column, C = 6 N D (Kaplan et al. 2020, eq. 2.1; Hoffmann et al.
2022) and no two rows share a budget, so IsoFLOP approach 2 does not apply; with one, rows of
equal C form IsoFLOP budgets. With a run column, a run's rows are its evaluations: the last
one (largest D) is the finished run, the others are intermediate points of a schedule that had
not decayed (biased: left out of the fits, and the report says how many).
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Sequence

from scaling import paths

FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def read_table(path) -> list[dict]:
    """The records of a .csv/.tsv, .jsonl (one object per line, or a .json list) or .parquet
    file, local or gs://. Parquet needs pandas and pyarrow."""
    p = paths.path(path)
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"table={str(path)!r}: unknown format {suffix!r} (one of {', '.join(FORMATS)})")
    if not p.exists():
        raise ValueError(f"table={str(path)!r}: no such file")
    if suffix == ".parquet":
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - depends on the install
            raise ValueError(f"table={str(path)!r}: reading parquet needs pandas and pyarrow "
                             "(pip install pandas pyarrow)") from None
        return pd.read_parquet(io.BytesIO(p.read_bytes())).to_dict("records")
    text = p.read_text()
    if suffix in (".csv", ".tsv"):
        return list(csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
    if suffix == ".json" and text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _number(records: Sequence[dict], column: str, i: int) -> float:
    value = records[i].get(column)
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        raise ValueError(f"column {column!r}: row {i} has {value!r}, not a finite number")
    if x <= 0:
        raise ValueError(f"column {column!r}: row {i} has {value!r}; it must be positive")
    return x


def to_rows(records: Sequence[dict], *, N: str, D: str, loss: str, C: str | None = None,
            run: str | None = None) -> list[dict]:
    """Records -> results-table rows (`run_id, N, D, C, budget, val_loss, final, status`)."""
    if not records:
        raise ValueError("table: no rows")
    columns = list(records[0])
    for flag, column in (("N", N), ("D", D), ("loss", loss), ("C", C), ("run", run)):
        if column is not None and column not in columns:
            raise ValueError(f"--{flag} {column!r}: no such column (the table has: {', '.join(map(str, columns))})")
    rows = []
    for i, record in enumerate(records):
        n, d, value = _number(records, N, i), _number(records, D, i), _number(records, loss, i)
        c = _number(records, C, i) if C is not None else 6.0 * n * d
        rows.append({"run_id": str(record[run]) if run is not None else f"row{i}", "N": n, "D": d, "C": c,
                     "budget": c if C is not None else None, "val_loss": value, "status": "finished",
                     "branch": None, "flops_method": None})
    last: dict[str, dict] = {}
    for row in rows:
        if row["run_id"] not in last or row["D"] > last[row["run_id"]]["D"]:
            last[row["run_id"]] = row
    for row in rows:
        row["final"] = last[row["run_id"]] is row
    return rows
