"""The results table: its row schema (make_rows), atomic appends from concurrent writers,
dedup, torn lines, the object-store layout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scaling import results, sweep
from scaling.config import TrainConfig
from scaling.flops import per_token


def test_make_rows_main_and_branches(sweep_config):
    run = sweep.plan(sweep_config(train=TrainConfig(tokens=1, global_batch_size=16, warmup_steps=10, schedule="wsd"), wsd_branch_fracs=(0.5,)))[0]

    class Result:
        status, steps, wall_s = "finished", run.steps, 3.0
        points = [dict(step=10, tokens=run.D // 2, branch=run.D // 2, val_loss=3.0, train_loss=3.1,
                       flops=run.D // 2 * run.flops_per_token, flops_6n=1.0, wall_s=1.0, mfu=0.3),
                  dict(step=20, tokens=run.D, branch=None, val_loss=2.5, train_loss=2.6, val_bpb=3.6,
                       flops=run.D * run.flops_per_token, wall_s=3.0, mfu=0.3)]

    rows = results.make_rows(run, Result())
    assert [r["branch"] for r in rows] == [run.D // 2, None]
    main = rows[1]
    assert main["run_id"] == run.run_id and main["status"] == "finished"
    assert main["N"] == run.N and main["N_non_embedding"] == run.N_non_embedding
    assert main["C"] == pytest.approx(run.D * run.flops_per_token)
    assert main["C_chinchilla"] == pytest.approx(run.D * per_token(run.config.model, "chinchilla"))
    assert json.loads(main["config"])["model"]["d_model"] == run.config.model.d_model
    # Epochs: each point's tokens over the training split's unique tokens.
    assert run.unique_tokens > 10**6 and all(r["unique_tokens"] == run.unique_tokens for r in rows)
    assert main["epochs"] == pytest.approx(run.D / run.unique_tokens)
    assert rows[0]["epochs"] == pytest.approx(run.D // 2 / run.unique_tokens)

    class Diverged:
        status, steps, wall_s, points = "diverged", 3, 1.0, []

    (row,) = results.make_rows(run, Diverged())
    assert row["status"] == "diverged" and row["val_loss"] is None and row["epochs"] is None


def test_rows_roundtrip_dedup_and_torn_line(tmp_path):
    import pandas as pd

    results.append_row(tmp_path, {"run_id": "a", "branch": None, "val_loss": 1.0, "x": float("nan")})
    results.append_row(tmp_path, {"run_id": "a", "branch": 100, "val_loss": 2.0})
    results.append_row(tmp_path, {"run_id": "a", "branch": None, "val_loss": 0.5})  # a rewrite wins
    with open(tmp_path / "results.jsonl", "ab") as f:
        f.write(b'{"run_id": "b", "val_lo')  # a writer killed mid-line
    rows = results.read_rows(tmp_path)
    assert [(r["run_id"], r["branch"], r["val_loss"]) for r in rows] == [("a", 100, 2.0), ("a", None, 0.5)]
    assert results.read_rows(tmp_path / "results.jsonl") == rows
    frame = pd.read_json(tmp_path / "results.jsonl", lines=True, nrows=3)
    assert list(frame["run_id"]) == ["a", "a", "a"]
    assert results.read_rows(tmp_path / "missing") == []


_HAMMER = """
import sys
from scaling import results
path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pad = "x" * (200 + 37 * worker)  # rows of different lengths, several KiB together
for i in range(n):
    results.append_row(path, {"run_id": f"w{worker}-{i}", "branch": None, "worker": worker, "pad": pad * (i % 20)})
"""


def test_two_processes_append_thousands_of_rows_untorn(tmp_path):
    # Separate interpreters (not fork: forking a process that has started JAX's threads can deadlock).
    n = 1500
    procs = [subprocess.Popen([sys.executable, "-c", _HAMMER, str(tmp_path), str(w), str(n)]) for w in range(2)]
    for p in procs:
        assert p.wait(timeout=180) == 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * n
    parsed = [json.loads(line) for line in lines]  # every line whole
    assert {r["run_id"] for r in parsed} == {f"w{w}-{i}" for w in range(2) for i in range(n)}
    assert len(results.read_rows(tmp_path)) == 2 * n


def test_object_store_layout_one_object_per_row(tmp_path, monkeypatch):
    monkeypatch.setattr(results.paths, "is_local", lambda path: False)  # exercise the gs:// code path on disk
    results.append_row(tmp_path, {"run_id": "a", "branch": None, "val_loss": 1.0})
    results.append_row(tmp_path, {"run_id": "a", "branch": 7, "val_loss": 2.0})
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["a__7.json", "a__main.json"]
    assert len(results.read_rows(tmp_path)) == 2
    assert results.consolidate(tmp_path) == 2
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    assert len(results.read_rows(tmp_path)) == 2
