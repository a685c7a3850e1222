"""The rows each question reads: loop counts, caps of unique tokens, budgets; a table printer."""

from __future__ import annotations

import math
from typing import Sequence

from scaling.results import finite, usable


def _loops(row: dict) -> int:
    return int(row.get("loops") or 1)


def single_loops(rows: Sequence[dict]) -> list[dict]:
    """The rows a law in (N, D) may be fitted on: with several loop counts in one table, only
    the runs with the fewest loops (a loop adds compute, not parameters: mixing them would
    make N mean different things); otherwise every row."""
    counts = {_loops(r) for r in rows}
    return list(rows) if len(counts) <= 1 else [r for r in rows if _loops(r) == min(counts)]


def _unique(row: dict) -> float:
    """The run's unique training tokens (math.inf: unlimited, as the synthetic language)."""
    return float(row["unique_tokens"]) if finite(row.get("unique_tokens")) else math.inf


def fewest_repeats(rows: Sequence[dict]) -> list[dict]:
    """The rows the unique-data laws may be fitted on: with several caps of unique tokens in
    one table (`SweepConfig.unique_tokens`), only the runs with the most unique tokens (the
    whole split: repeated tokens are worth less than fresh ones, so a law fitted on them is
    not the unique-data law); otherwise every row."""
    caps = {_unique(r) for r in rows}
    return list(rows) if len(caps) <= 1 else [r for r in rows if _unique(r) == max(caps)]


def _main(rows: Sequence[dict], metric: str) -> list[dict]:
    return [r for r in usable(rows, metric) if r.get("branch") is None]


def _budget(row: dict) -> float:
    return float(row["budget"]) if finite(row.get("budget")) else float(row["C"])


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join([title] + ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows])
