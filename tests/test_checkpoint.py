"""Checkpoints, resume, preemption (SIGTERM) and divergence."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from scaling import cli, train
from scaling import step as step_lib
from scaling.checkpoint import EXIT_DIVERGED, EXIT_PREEMPTED, Checkpointer

REPO = Path(__file__).resolve().parents[1]


def test_resume_after_preemption_gives_the_uninterrupted_run(metric_lines, sigterm_at, tiny_run, tmp_path):
    tpb = 16 * 32
    cfg = tiny_run(30, schedule="wsd", wsd_branches=(10 * tpb,), checkpoint_every=5, eval_every=10)
    ref = train.run(cfg, tmp_path / "ref")
    stopped = train.run(cfg, tmp_path / "run", hooks=[sigterm_at(12)])
    assert stopped.status == "preempted" and stopped.steps == 12
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "preempted"
    assert Checkpointer(tmp_path / "run" / "checkpoints").latest_step() == 12
    assert signal.getsignal(signal.SIGTERM) is not None  # handler restored
    resumed = train.run(cfg, tmp_path / "run")
    assert resumed.status == "finished" and resumed.steps == 30
    a, b = metric_lines(tmp_path / "ref"), metric_lines(tmp_path / "run")
    assert [x["step"] for x in b] == list(range(1, 31))  # no duplicated, no lost step
    np.testing.assert_allclose([x["loss"] for x in b], [x["loss"] for x in a], rtol=1e-6)
    assert [x["tokens"] for x in b] == [x["tokens"] for x in a]  # accounting resumed
    assert [x["step"] for x in metric_lines(tmp_path / "run", "eval")] == [10, 20, 30]
    assert len(metric_lines(tmp_path / "run", "branch")) == 1
    assert [p["branch"] for p in resumed.points] == [p["branch"] for p in ref.points]
    for p, q in zip(resumed.points, ref.points):
        assert p["val_loss"] == pytest.approx(q["val_loss"], rel=1e-6) and p["tokens"] == q["tokens"]


def test_completep_run_resumes_to_the_uninterrupted_run(metric_lines, sigterm_at, tiny_run, tmp_path):
    # The per-role optimizer state (optax.multi_transform) goes through orbax and back.
    from scaling.config import ModelConfig

    model = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=32, parametrization="completep", base_width=32,
                        base_depth=1)
    cfg = tiny_run(8, model=model, checkpoint_every=4)
    ref = train.run(cfg, tmp_path / "ref")
    assert train.run(cfg, tmp_path / "run", hooks=[sigterm_at(5)]).status == "preempted"
    resumed = train.run(cfg, tmp_path / "run")
    assert resumed.status == "finished" and resumed.steps == 8
    np.testing.assert_allclose([x["loss"] for x in metric_lines(tmp_path / "run")],
                               [x["loss"] for x in metric_lines(tmp_path / "ref")], rtol=1e-6)
    assert resumed.points[0]["val_loss"] == pytest.approx(ref.points[0]["val_loss"], rel=1e-6)


def test_kill_between_checkpoints_truncates_the_jsonl(metric_lines, sigterm_at, tiny_run, tmp_path):
    """A run that died at step 17 with a checkpoint at 15 resumes at 15 and logs 16.. once."""
    cfg = tiny_run(steps=20, checkpoint_every=5)
    ref = train.run(cfg, tmp_path / "ref")
    out = tmp_path / "run"
    train.run(cfg, out, hooks=[sigterm_at(15)])  # checkpoint at 15 ...
    with open(out / "metrics.jsonl", "a") as f:  # ... and lines past it, as if killed at 17
        for x in metric_lines(tmp_path / "ref")[15:17]:
            f.write(json.dumps(x) + "\n")
        f.write('{"kind": "train", "st')  # torn line
    r = train.run(cfg, out)
    assert r.status == "finished"
    assert [x["step"] for x in metric_lines(out)] == list(range(1, 21))
    np.testing.assert_allclose([x["loss"] for x in metric_lines(out)], [x["loss"] for x in metric_lines(tmp_path / "ref")], rtol=1e-6)
    assert ref.points[0]["val_loss"] == pytest.approx(r.points[0]["val_loss"], rel=1e-6)


def test_huge_learning_rate_diverges_and_keeps_the_last_good_checkpoint(metric_lines, tmp_path, capsys):
    exp = tmp_path / "exp.py"
    exp.write_text(
        "from scaling.config import RunConfig, TrainConfig\n"
        "from scaling.data import DataConfig\n"
        "from scaling.config import ModelConfig\n"
        "def get_config():\n"
        "    return RunConfig(model=ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=32),\n"
        "                     data=DataConfig(), train=TrainConfig(tokens=30 * 16 * 32, global_batch_size=16,\n"
        "                     lr=3e-3, warmup_steps=3, eval_batches=2, progress=False, checkpoint_every=1,\n"
        "                     schedule='constant'), name='tiny')\n")
    out = tmp_path / "out"
    code = cli.main(["train", str(exp), "--set", "train.lr=1e3", "--set", "train.warmup_steps=0", "--out", str(out)])
    assert code == EXIT_DIVERGED
    err = capsys.readouterr().err
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "diverged"
    step = meta["result"]["steps"]
    assert f"diverged at step {step}: loss=" in err and f"diverged at step {step}" in meta["message"]
    status = metric_lines(out, "status")[-1]
    assert status["status"] == "diverged" and status["step"] == step
    assert all(x["step"] < step for x in metric_lines(out))
    ckpt = Checkpointer(out / "checkpoints")
    good = ckpt.latest_step()
    assert good is not None and good == step - 1  # checkpoint_every=1: the last step before the blow-up
    compiled = step_lib.train_step_for(meta_cfg(exp, lr=1e3), step_lib.data_mesh())
    params, _, opt = compiled.init(np.int32(0))
    state, restored_meta = ckpt.restore(good, {"params": params, "opt_state": opt})
    ckpt.close()
    assert restored_meta["step"] == good
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))
    # A diverged run is final: calling it again returns the stored result.
    assert train.run(meta_cfg(exp, lr=1e3), out).status == "diverged"


def meta_cfg(exp, lr):
    from scaling.experiment import load_experiment, override

    return override(load_experiment(exp), [f"train.lr={lr}", "train.warmup_steps=0"])


@pytest.mark.slow
def test_sigterm_saves_exits_75_and_the_restart_continues(metric_lines, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "scaling", "train", str(REPO / "experiments" / "cpu_tiny.py"), "--out", str(out),
            "--set", "model.d_model=32", "--set", "model.n_layers=1", "--set", "model.n_heads=2",
            "--set", "model.seq_len=32", "--set", "train.global_batch_size=8", "--set", f"train.tokens={300 * 8 * 32}",
            "--set", "train.checkpoint_every=20", "--set", "train.eval_every=0", "--set", "train.eval_batches=1",
            "--set", "train.progress=False"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    ckpts = out / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "preempted"
    stopped_at = meta["result"]["steps"]
    assert 20 <= stopped_at < 300
    assert Checkpointer(out / "checkpoints").latest_step() == stopped_at
    before = metric_lines(out)
    assert [x["step"] for x in before] == list(range(1, stopped_at + 1))
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    steps = [x["step"] for x in metric_lines(out)]
    assert steps == list(range(1, 301))
    # It continued from stopped_at: the lines before it are the first process's, untouched
    # (a restart from 0 would have rewritten them, with new step times). Bitwise loss
    # equality with an uninterrupted run: tests/test_resilience.py.
    assert metric_lines(out)[:stopped_at] == before
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


# Checkpoints under a relative output directory (what `--out runs/x` gives).
def test_relative_directory_saves_and_restores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import jax.numpy as jnp

    state = {"w": jnp.arange(6.0).reshape(2, 3)}
    ckpt = Checkpointer("runs/relative/checkpoints", keep=1)
    ckpt.save(3, state, {"step": 3})
    ckpt.close()
    assert (tmp_path / "runs" / "relative" / "checkpoints" / "3").is_dir()
    again = Checkpointer("runs/relative/checkpoints", keep=1)
    restored, meta = again.restore(again.latest_step(), state)
    again.close()
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))
    assert meta == {"step": 3}


# Sharded state onto another mesh shape.
def test_resume_onto_another_mesh_shape(metric_lines, sigterm_at, tiny_run, tmp_path):
    """Trained as 8 x 1 (data parallel), preempted, resumed as 4 x 2 (FSDP): the restore puts
    the checkpoint's arrays on the new mesh's shardings and the run continues to the losses
    of the uninterrupted run."""
    ref = train.run(tiny_run(20, checkpoint_every=5), tmp_path / "ref")
    stopped = train.run(tiny_run(20, checkpoint_every=5), tmp_path / "run", hooks=[sigterm_at(8)])
    assert stopped.status == "preempted" and stopped.steps == 8
    resumed = train.run(tiny_run(20, checkpoint_every=5, mesh_fsdp=2), tmp_path / "run")
    assert resumed.status == "finished" and resumed.steps == 20
    a, b = metric_lines(tmp_path / "ref"), metric_lines(tmp_path / "run")
    assert [x["step"] for x in b] == list(range(1, 21))
    np.testing.assert_allclose([x["loss"] for x in b], [x["loss"] for x in a], rtol=1e-5)
    assert resumed.points[0]["val_loss"] == pytest.approx(ref.points[0]["val_loss"], rel=1e-5)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["train"]["mesh_fsdp"] == 2
    with pytest.raises(ValueError, match="different config"):  # the mesh may change, the run may not
        train.run(tiny_run(20, checkpoint_every=5, mesh_fsdp=2, lr=1e-3), tmp_path / "run")


@pytest.mark.parametrize("fsdp_from,fsdp_to", [(1, 4), (8, 2)])
def test_checkpoint_restores_onto_the_target_meshs_shardings(tiny_run, tmp_path, fsdp_from, fsdp_to):
    saved_step = step_lib.train_step_for(tiny_run(mesh_fsdp=fsdp_from), step_lib.make_mesh(fsdp_from))
    params, _, opt = saved_step.init(np.int32(3))
    ckpt = Checkpointer(tmp_path / "c", keep=1)
    ckpt.save(1, {"params": params, "opt_state": opt}, {"step": 1})
    ckpt.close()
    target_mesh = step_lib.make_mesh(fsdp_to)
    target_step = step_lib.train_step_for(tiny_run(mesh_fsdp=fsdp_to), target_mesh)
    p0, _, o0 = target_step.init(np.int32(0))  # other values, the target's shardings
    again = Checkpointer(tmp_path / "c", keep=1)
    state, _ = again.restore(1, {"params": p0, "opt_state": o0})
    again.close()
    for got, want, like in zip(jax.tree.leaves(state), jax.tree.leaves({"params": params, "opt_state": opt}),
                               jax.tree.leaves({"params": p0, "opt_state": o0})):
        assert got.sharding == like.sharding
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert any("fsdp" in tuple(x.sharding.spec) for x in jax.tree.leaves(state))  # sharded, not gathered
