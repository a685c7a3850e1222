"""The results table of a sweep: one row per evaluated (N, D) point, appended atomically.

Layout of a sweep directory (local path or ``gs://...``, through ``etils.epath``):

    out_dir/results.jsonl     one JSON object per line (``pd.read_json(path, lines=True)``)
    out_dir/rows/<key>.json   gs:// and other object stores only: one object per row
    out_dir/runs/<run_id>/    each run's own directory (checkpoints, metrics)
    out_dir/plan.json         the planned runs (ids and configs)
    out_dir/DONE              written once every planned run has its row

Atomic appends, and why they hold:
- Local file systems: the row is serialised to ONE line (``json.dumps`` escapes newlines) and
  written with a single ``os.write`` on a file descriptor opened ``O_APPEND``, while holding an
  exclusive ``fcntl.flock`` on that descriptor. ``O_APPEND`` makes the seek-to-end and the
  write one atomic step (POSIX), so two processes never interleave inside a line; the lock
  also serialises writers on file systems where large appends may be split, and a short
  write (disk full) is completed in the loop while still holding it. Killing a writer between
  rows loses nothing written; a writer killed *inside* a write can at worst leave one partial
  last line, which the reader skips (and the run, having no complete row, is redone).
- Object stores (``gs://``): objects cannot be appended to, so each row is its own object
  ``rows/<run_id>__<branch>.json`` written whole (object writes are atomic: readers see all of
  it or nothing). ``read_rows`` merges ``results.jsonl`` and ``rows/``; ``consolidate`` writes
  the merged table to ``results.jsonl`` (the sweep does this when it writes DONE).

Columns (`make_rows`, the one place that defines them): the run's identity and recipe
(run_id, status, budget, N, N_non_embedding, N_embedding, D_planned, flops_method, shape,
batch, lr, schedule, data_source, unique_tokens of the training split, config as JSON), the point
(branch, step, D, C by the run's accounting and C_<method> by every accounting of
`scaling.flops.counts`, tokens_per_param, epochs = D / unique_tokens: how many times the point
repeats its data, 0 for unlimited synthetic data)
and its measurements (train_loss, val_loss, val_bpb, val_accuracy, val_exact_match,
val_exact_match_<k> for each evaluated span length k, wall_s, mfu).

Reading deduplicates by ``(run_id, branch)``, keeping the last row written: appending the same
point twice (a run whose row was written just before the worker was killed) is harmless.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Sequence

from scaling import flops as flops_lib
from scaling import paths
from scaling.config import to_dict
from scaling.data import epochs as data_epochs

RESULTS_FILE = "results.jsonl"
ROWS_DIR = "rows"


def _json_safe(value):
    """Plain JSON values: NaN and inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def row_key(row: dict) -> tuple[str, int | None]:
    """The identity of a row: (run id, WSD branch token count or None for the main run)."""
    branch = row.get("branch")
    if branch is not None and not (isinstance(branch, float) and math.isnan(branch)):
        branch = int(branch)
    else:
        branch = None
    return str(row["run_id"]), branch


def _row_object_name(row: dict) -> str:
    run_id, branch = row_key(row)
    return f"{run_id}__{'main' if branch is None else branch}.json"


def encode_row(row: dict) -> bytes:
    """One line of JSON, newline-terminated (NaN written as null)."""
    line = json.dumps(_json_safe(row), sort_keys=False, allow_nan=False, separators=(",", ":"))
    assert "\n" not in line
    return (line + "\n").encode("utf-8")


def append_row(out_dir, row: dict) -> None:
    """Append one row to the sweep table under `out_dir`, atomically (see the module doc)."""
    if "run_id" not in row:
        raise ValueError(f"row: has no run_id (keys: {sorted(row)})")
    data = encode_row(row)
    if paths.is_local(out_dir):
        paths.makedirs(out_dir)
        _append_local(paths.join(out_dir, RESULTS_FILE), data)
    else:
        rows = paths.path(out_dir) / ROWS_DIR
        rows.mkdir(parents=True, exist_ok=True)
        (rows / _row_object_name(row)).write_bytes(data)


def _append_local(path: str, data: bytes) -> None:
    import fcntl

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _parse_lines(text: str) -> Iterable[dict]:
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a writer killed mid-write: its run is redone
        if isinstance(row, dict) and "run_id" in row:
            yield row


def results_path(path):
    """The results.jsonl of a sweep directory, or `path` itself when it names a file."""
    p = paths.path(path)
    return p if p.name.endswith(".jsonl") else p / RESULTS_FILE


def read_rows(path) -> list[dict]:
    """Every row of a sweep (a directory or a results.jsonl), deduplicated by (run_id, branch),
    the last written winning, in first-written order. Missing table: []."""
    p = paths.path(path)
    directory = p.parent if p.name.endswith(".jsonl") else p
    rows: list[dict] = []
    table = results_path(path)
    if table.exists():
        rows.extend(_parse_lines(table.read_text()))
    rows_dir = directory / ROWS_DIR
    if rows_dir.exists():
        for obj in sorted(rows_dir.glob("*.json")):
            rows.extend(_parse_lines(obj.read_text()))
    latest: dict[tuple, dict] = {}
    for row in rows:
        key = row_key(row)
        latest.pop(key, None)  # re-insert: keep last write, ordered by it
        latest[key] = row
    return list(latest.values())


def read_frame(path):
    """The deduplicated table as a pandas DataFrame (pandas imported here, not at module load)."""
    import pandas as pd

    rows = read_rows(path)
    frame = pd.DataFrame(rows)
    if "branch" in frame:
        frame["branch"] = frame["branch"].astype("Int64")
    return frame


def consolidate(out_dir) -> int:
    """Object stores: write out_dir/results.jsonl as the deduplicated merge of rows/ (one
    whole-object write), so `pd.read_json(".../results.jsonl", lines=True)` sees every row.
    Local directories already hold every row in results.jsonl, and it is left as it is
    (rewriting it could lose a row appended by a worker during the rewrite); readers dedup.
    Returns the number of distinct rows."""
    rows = read_rows(out_dir)
    if not paths.is_local(out_dir):
        (paths.path(out_dir) / RESULTS_FILE).write_bytes(b"".join(encode_row(r) for r in rows))
    return len(rows)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def usable(rows: Sequence[dict], metric: str = "val_loss") -> list[dict]:
    """Finished rows with a finite, positive metric and positive N, D, C: what a fit may use."""
    return [r for r in rows if r.get("status", "finished") == "finished"
            and all(finite(r.get(k)) and r.get(k) > 0 for k in (metric, "N", "D", "C"))]


def make_rows(run, result, *, worker: int = 0) -> list[dict]:
    """Table rows of one finished (or diverged) run: the main point and each WSD branch.

    `run` is a `scaling.sweep.PlannedRun` (run_id, budget, N, N_non_embedding, D,
    flops_per_token, config, unique_tokens); `result` a `scaling.train.RunResult`. A run with no evaluated
    point (diverged before its first evaluation) gets one row with its status and no losses,
    so that the sweep counts it as done and the fit can skip it.
    """
    cfg = run.config
    base = {
        "run_id": run.run_id, "status": getattr(result, "status", "finished"), "budget": run.budget,
        "N": run.N, "N_non_embedding": run.N_non_embedding, "N_embedding": run.N - run.N_non_embedding,
        "D_planned": run.D, "flops_method": cfg.train.flops_method,
        "d_model": cfg.model.d_model, "n_layers": cfg.model.n_layers, "n_heads": cfg.model.n_heads,
        "seq_len": cfg.model.seq_len, "vocab_size": cfg.model.vocab_size, "loops": cfg.model.loops,
        "global_batch_size": cfg.train.global_batch_size, "lr": cfg.train.lr, "schedule": cfg.train.schedule,
        "seed": cfg.train.seed,
        "data_source": cfg.data.source, "unique_tokens": run.unique_tokens, "run_steps": getattr(result, "steps", None),
        "run_wall_s": getattr(result, "wall_s", None), "worker": worker,
        "config": json.dumps(to_dict(cfg), sort_keys=True, default=str),
    }
    points = list(getattr(result, "points", None) or [])
    if not points:
        return [dict(base, branch=None, D=None, C=None, epochs=None, val_loss=None, train_loss=None)]
    out = []
    for p in points:
        tokens = p.get("tokens")
        row = dict(base)
        row.update({
            "branch": p.get("branch"), "step": p.get("step"), "D": tokens,
            "tokens_per_param": tokens / run.N if tokens else None,
            "epochs": data_epochs(tokens, run.unique_tokens) if tokens else None,
            "C": p.get("flops", tokens * run.flops_per_token if tokens else None),
        })
        counts = flops_lib.counts(cfg.model, tokens, cfg.train.flops_method) if tokens else {}
        for key in counts:
            if key != "flops":
                row["C_" + key.removeprefix("flops_")] = p.get(key, counts[key])
        for k in ("train_loss", "val_loss", "val_bpb", "val_accuracy", "val_exact_match", "wall_s", "mfu"):
            row[k] = p.get(k)
        row.update({k: v for k, v in p.items() if k.startswith("val_exact_match_")})
        out.append(row)
    return out
