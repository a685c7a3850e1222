"""Sweeps: the plan (D = C / per_token, sizes around the optimum, the printed table, bad
fields), the results table (atomic appends from concurrent writers, dedup), and end to end:
a sweep killed with SIGKILL and restarted, and two workers sharing one sweep directory."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from scaling import results, sweep
from scaling.config import TrainConfig
from scaling.flops import param_counts, per_token
from scaling.model import ModelConfig

BASE = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=64)
TRAIN = TrainConfig(tokens=1, global_batch_size=16, warmup_steps=10)


def _cfg(**kw):
    kw.setdefault("budgets", (1e12, 3e12, 1e13))
    kw.setdefault("model", BASE)
    kw.setdefault("train", TRAIN)
    kw.setdefault("head_dim", 16)
    kw.setdefault("min_steps", 20)
    return sweep.SweepConfig(**kw)


@pytest.mark.parametrize("family", ["grid", "targets"])
@pytest.mark.parametrize("method", ["chinchilla", "6n"])
def test_plan_tokens_horizon_and_spread(family, method):
    kw = dict(widths=(16, 32, 48, 64, 96, 128, 192, 256), depths=(1, 2, 3, 4, 6)) if family == "grid" else {}
    cfg = _cfg(flops_method=method, sizes_per_budget=5, size_spread=3.0, **kw)
    runs = sweep.plan(cfg)
    assert runs
    for r in runs:
        fpt = per_token(r.config.model, method)
        assert r.D == round(r.budget / fpt)                      # D = C / per_token, by the chosen accounting
        assert r.config.train.tokens == r.D                      # schedule horizon = this run's D
        assert r.config.train.flops_method == method
        assert r.N == param_counts(r.config.model).total
        assert r.run_id == f"C{r.budget:.3g}-d{r.config.model.d_model}-L{r.config.model.n_layers}"
        assert r.steps >= cfg.min_steps
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == len(ids)
    assert [r.run_id for r in sweep.plan(cfg)] == ids           # deterministic
    for C in cfg.budgets:
        n_opt = sweep.optimal_size(cfg, C)
        # n_opt solves C = per_token(N) x 20 N on the family (to the interpolation's accuracy)
        sizes = sorted(r.N for r in runs if r.budget == C)
        assert len(sizes) >= 4
        assert sizes[0] < n_opt < sizes[-1], (C, n_opt, sizes)
        below = sum(n < n_opt for n in sizes)
        assert 1 <= below <= len(sizes) - 1
        nearest = min((r for r in runs if r.budget == C), key=lambda r: abs(math.log(r.N / n_opt)))
        assert 20 / 4 < nearest.tokens_per_param < 20 * 4


def test_optimal_size_matches_20_tokens_per_parameter():
    cfg = _cfg(widths=tuple(range(16, 513, 16)), depths=(1, 2, 3, 4, 6, 8))
    for C in (1e12, 1e14):
        n = sweep.optimal_size(cfg, C)
        ladder = sweep._ladder(cfg)
        cfg_near = min(ladder, key=lambda c: abs(math.log(param_counts(c).total / n)))
        ratio = C / (per_token(cfg_near, "chinchilla") * param_counts(cfg_near).total)
        assert 20 / 1.5 < ratio < 20 * 1.5


def test_prior_law_centres_sizes():
    cfg = _cfg(prior_k=0.5, prior_a=0.5, sizes_per_budget=3)
    for r in sweep.plan(cfg):
        pass
    for C in cfg.budgets:
        assert sweep.optimal_size(cfg, C) == pytest.approx(0.5 * C**0.5)


def test_min_steps_skips_with_warning():
    cfg = _cfg(budgets=(1e9, 1e12), min_steps=50)
    with pytest.warns(UserWarning, match="min_steps"):
        runs = sweep.plan(cfg)
    assert all(r.steps >= 50 for r in runs)


def test_wsd_branches_planned_per_run():
    cfg = _cfg(train=TRAIN.replace(schedule="wsd"), wsd_branch_fracs=(0.25, 0.5))
    for r in sweep.plan(cfg):
        assert r.config.train.wsd_branches == (int(0.25 * r.D), int(0.5 * r.D))


def test_plan_table_printed():
    runs = sweep.plan(_cfg())
    text = sweep.format_plan(runs, flops_per_s=1e10, source="test", overhead_s=1.0, done={runs[0].run_id})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["run", "id", "N"]
    for r in runs:
        assert r.run_id in text
    assert "done" in lines[1]
    assert lines[-1].startswith(f"total: {len(runs)} runs ({len(runs) - 1} to do)")
    assert "est." in lines[-1]
    total = sum(sweep.estimate_wall_s(r, 1e10, 1.0) for r in runs[1:])
    assert total == pytest.approx(sum(r.flops / 1e10 + 1.0 for r in runs[1:]))


@pytest.mark.parametrize("field,value,match", [
    ("budgets", (), "SweepConfig.budgets"),
    ("budgets", (1e12, -1.0), "SweepConfig.budgets"),
    ("budgets", (float("nan"),), "SweepConfig.budgets"),
    ("sizes_per_budget", 0, "SweepConfig.sizes_per_budget"),
    ("size_spread", 1.0, "SweepConfig.size_spread"),
    ("flops_method", "7n", "SweepConfig.flops_method"),
    ("count", "some", "SweepConfig.count"),
    ("prior_k", 1.0, "SweepConfig.prior_a"),
    ("prior_a", 1.5, "SweepConfig.prior_k"),
    ("min_steps", 0, "SweepConfig.min_steps"),
    ("widths", (64, 96), "SweepConfig.depths"),
    ("wsd_branch_fracs", (0.5,), "SweepConfig.wsd_branch_fracs"),
    ("head_dim", 0, "SweepConfig.head_dim"),
    ("model", "gpt", "SweepConfig.model"),
    ("tokens_per_param", -20, "SweepConfig.tokens_per_param"),
])
def test_bad_fields_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**{field: value})
    with pytest.raises(ValueError, match="SweepConfig.widths"):
        _cfg(widths=(20, 32), depths=(1,))  # 20 not divisible by head_dim 16


def test_make_rows_main_and_branches():
    run = sweep.plan(_cfg(train=TRAIN.replace(schedule="wsd"), wsd_branch_fracs=(0.5,)))[0]

    class Result:
        status, steps, wall_s = "finished", run.steps, 3.0
        points = [dict(step=10, tokens=run.D // 2, branch=run.D // 2, val_loss=3.0, train_loss=3.1,
                       flops=run.D // 2 * run.flops_per_token, flops_6n=1.0, wall_s=1.0, mfu=0.3),
                  dict(step=20, tokens=run.D, branch=None, val_loss=2.5, train_loss=2.6, val_bpb=3.6,
                       flops=run.D * run.flops_per_token, wall_s=3.0, mfu=0.3)]

    rows = sweep.make_rows(run, Result())
    assert [r["branch"] for r in rows] == [run.D // 2, None]
    main = rows[1]
    assert main["run_id"] == run.run_id and main["status"] == "finished"
    assert main["N"] == run.N and main["N_non_embedding"] == run.N_non_embedding
    assert main["C"] == pytest.approx(run.D * run.flops_per_token)
    assert main["C_chinchilla"] == pytest.approx(run.D * per_token(run.config.model, "chinchilla"))
    assert json.loads(main["config"])["model"]["d_model"] == run.config.model.d_model

    class Diverged:
        status, steps, wall_s, points = "diverged", 3, 1.0, []

    (row,) = sweep.make_rows(run, Diverged())
    assert row["status"] == "diverged" and row["val_loss"] is None


# ---------------------------------------------------------------------------------------
# The table


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
    monkeypatch.setattr(results, "_is_local", lambda path: False)  # exercise the gs:// code path on disk
    results.append_row(tmp_path, {"run_id": "a", "branch": None, "val_loss": 1.0})
    results.append_row(tmp_path, {"run_id": "a", "branch": 7, "val_loss": 2.0})
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["a__7.json", "a__main.json"]
    assert len(results.read_rows(tmp_path)) == 2
    assert results.consolidate(tmp_path) == 2
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    assert len(results.read_rows(tmp_path)) == 2


# ---------------------------------------------------------------------------------------
# End to end: real subprocesses


EXPERIMENT = textwrap.dedent("""
    from scaling.config import TrainConfig
    from scaling.data import DataConfig
    from scaling.model import ModelConfig
    from scaling.sweep import SweepConfig

    def get_config():
        return SweepConfig(
            name="test", budgets=(1e10, 3e10), widths=(16, 32), depths=(1,), head_dim=16,
            sizes_per_budget=2, size_spread=2.0, min_steps=20,
            model=ModelConfig(d_model=16, n_layers=1, n_heads=1, seq_len=32),
            data=DataConfig(source="stdlib"),
            train=TrainConfig(tokens=1, global_batch_size=8, lr=3e-3, warmup_steps=10, eval_batches=2,
                              log_every=50, checkpoint_every=40, progress=False))
""")


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _sweep_cmd(exp, out, *extra):
    return [sys.executable, "-m", "scaling", "sweep", str(exp), "--out", str(out), "--no-fit", *extra]


def _planned_ids(exp):
    return {r.run_id for r in sweep.plan(sweep.load_sweep(exp))}


@pytest.mark.slow
def test_sweep_killed_mid_run_resumes_with_one_row_per_run(tmp_path):
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    out = tmp_path / "sweep"
    table = out / "results.jsonl"
    proc = subprocess.Popen(_sweep_cmd(exp, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 150
    while time.time() < deadline and proc.poll() is None:
        if table.exists() and table.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rows_at_kill = len(results.read_rows(out))
    assert 1 <= rows_at_kill < len(_planned_ids(exp))
    assert not (out / "DONE").exists()

    done = subprocess.run(_sweep_cmd(exp, out), env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "done" in done.stdout  # the restarted plan marks the finished runs
    lines = [json.loads(line) for line in table.read_text().splitlines()]
    assert sorted(r["run_id"] for r in lines) == sorted(_planned_ids(exp))  # exactly one row per run
    assert all(r["status"] == "finished" and r["val_loss"] > 0 for r in lines)
    assert (out / "DONE").exists()


@pytest.mark.slow
def test_two_workers_share_a_sweep(tmp_path):
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    out = tmp_path / "sweep"
    procs = [subprocess.Popen(_sweep_cmd(exp, out, "--worker", str(i), "--workers", "2"), env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, o in zip(procs, outputs):
        assert p.returncode == 0, o[-3000:]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["run_id"] for r in lines) == sorted(_planned_ids(exp))
    assert {r["worker"] for r in lines} == {0, 1}
    assert (out / "DONE").exists()
