"""Running sweeps end to end in real subprocesses: a sweep killed with SIGKILL and restarted
has exactly one row per run, and two workers share one sweep directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from scaling import experiment, results, sweep

EXPERIMENT = textwrap.dedent("""
    from scaling.config import TrainConfig
    from scaling.data import DataConfig
    from scaling.config import ModelConfig
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
    return {r.run_id for r in sweep.plan(experiment.load(exp, expect=sweep.SweepConfig))}


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


def test_run_sweep_refuses_to_start_when_runs_repeat_data(tiny_corpus, tmp_path):
    from scaling.data import DataConfig
    from scaling.sweep.run import run_sweep

    cfg = experiment.load_experiment(_write(tmp_path)).replace(data=DataConfig(stdlib_path=tiny_corpus))
    with pytest.raises(ValueError, match="SweepConfig.max_epochs=4.0"):
        run_sweep(cfg, tmp_path / "sweep", verbose=False)
    assert not (tmp_path / "sweep").exists()  # refused before writing or training anything


def _write(tmp_path):
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    return exp
