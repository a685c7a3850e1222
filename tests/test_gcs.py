"""gs:// for real: the `scaling sweep` command against a local GCS emulator (fake-gcs-server,
started once per session by the `gcs_emulator` fixture), with gcsfs/epath and
orbax/tensorstore both pointed at it.

A tiny sweep with `--out gs://bucket/...` puts every output in the bucket (checkpoints,
metrics.jsonl, TensorBoard, run.json, the results table, DONE, report.txt, plots) and nothing
on the local disk; a sweep SIGKILLed mid-run resumes from the bucket's checkpoints with the
losses of the uninterrupted sweep, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from scaling import experiment, sweep

pytestmark = pytest.mark.slow

# Two budgets x two widths, 63-317 steps of a 1-layer model; checkpoints every 40 steps
# (the SIGKILL test needs one in the bucket before the kill), every 5th step's loss logged.
EXPERIMENT = textwrap.dedent("""
    from scaling.config import ModelConfig, TrainConfig
    from scaling.data import DataConfig
    from scaling.sweep import SweepConfig

    def get_config():
        return SweepConfig(
            name="gcs", budgets=(3e9, 6e9), widths=(16, 32), depths=(1,), head_dim=16,
            sizes_per_budget=2, size_spread=2.0, min_steps=20,
            model=ModelConfig(d_model=16, n_layers=1, n_heads=1, seq_len=32),
            data=DataConfig(source="stdlib"),
            train=TrainConfig(tokens=1, global_batch_size=8, lr=3e-3, warmup_steps=10, eval_batches=2,
                              log_every=5, checkpoint_every=40, progress=False))
""")
KILLED_BUDGETS = "budgets=(3e9,)"  # the killed sweep: the first budget's runs, configs unchanged
PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("plots/isoflop.png", "plots/loss_vs_compute.png", "plots/optimal_allocation.png", "plots/backtest.png")


@pytest.fixture(scope="module")
def gs_sweep(gcs_emulator, tmp_path_factory):
    """The uninterrupted sweep into gs://bucket/full, run by the CLI in an empty working
    directory: (CompletedProcess, working directory, experiment file, subprocess env)."""
    root = tmp_path_factory.mktemp("gcs_sweep")
    exp = root / "exp" / "gcs_sweep.py"
    exp.parent.mkdir()
    exp.write_text(EXPERIMENT)
    cwd = root / "cwd"
    cwd.mkdir()
    # The JAX compile cache (a local cache, not an output) is shared by this test's processes.
    env = gcs_emulator.subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu",
                                      SCALING_JAX_CACHE=str(root / "jax_cache"))
    done = subprocess.run(_sweep_cmd(exp, "gs://bucket/full", "--bootstrap", "10"), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, cwd, exp, env


def _sweep_cmd(exp, out, *extra):
    return [sys.executable, "-m", "scaling", "sweep", str(exp), "--out", out, *extra]


def _planned_ids(exp, *overrides) -> list[str]:
    return [r.run_id for r in sweep.plan(experiment.load(exp, list(overrides), expect=sweep.SweepConfig))]


def _losses(gcs, run_prefix: str) -> dict[int, float]:
    lines = [json.loads(x) for x in gcs.read_text(f"{run_prefix}/metrics.jsonl").splitlines()]
    return {line["step"]: line["loss"] for line in lines if line["kind"] == "train"}


def _committed_steps(gcs, sweep_prefix: str) -> dict[str, list[int]]:
    """{run_id: steps of its finished checkpoints}: orbax writes a step's top-level
    commit_success.txt last (state/ and meta/ have their own before it)."""
    out: dict[str, list[int]] = {}
    for key in gcs.find(f"{sweep_prefix}/runs"):
        parts = key.split("/")  # <run_id>/checkpoints/<step>/commit_success.txt
        if len(parts) == 4 and parts[1] == "checkpoints" and parts[3] == "commit_success.txt":
            out.setdefault(parts[0], []).append(int(parts[2]))
    return out


def test_sweep_writes_every_output_into_the_bucket(gs_sweep, gcs_emulator):
    done, cwd, exp, _ = gs_sweep
    ids = _planned_ids(exp)
    objects = set(gcs_emulator.find("full"))
    for name in ("DONE", "plan.json", "results.jsonl", "report.txt", *PLOTS):
        assert name in objects, f"gs://bucket/full/{name} missing; bucket holds {sorted(objects)}"
    for name in PLOTS:
        assert gcs_emulator.fs.cat_file(f"bucket/full/{name}")[:8] == PNG
    assert "loss = val_loss" in gcs_emulator.read_text("full/report.txt")
    table = [json.loads(x) for x in gcs_emulator.read_text("full/results.jsonl").splitlines()]
    assert sorted(r["run_id"] for r in table) == sorted(ids)
    assert all(r["status"] == "finished" and r["val_loss"] > 0 and 0 < r["epochs"] < 1 for r in table)
    for run_id in ids:
        run = f"runs/{run_id}"
        info = json.loads(gcs_emulator.read_text(f"full/{run}/run.json"))
        assert info["status"] == "finished" and 0 < info["epochs"] < 1
        steps = info["steps_total"]
        assert f"{run}/checkpoints/{steps}/commit_success.txt" in objects
        assert any(k.startswith(f"{run}/checkpoints/{steps}/state/") for k in objects)  # the arrays
        assert any(k.startswith(f"{run}/tensorboard/events.out.tfevents") for k in objects)
        assert sorted(_losses(gcs_emulator, f"full/{run}")) == list(range(5, steps + 1, 5))
    # No temporary objects left over, and no write fell back from a failed rename (gcsfs logs
    # "ERROR:gcsfs ... moveTo" when one does: the emulator rejects its moveTo request).
    assert not [k for k in objects if k.rsplit("/", 1)[-1].startswith(".")]
    assert "ERROR:gcsfs" not in done.stderr, done.stderr[-3000:]
    # Nothing local: no folder named "gs:" (a path joined with os.path), no stray file.
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in exp.parent.iterdir() if p.name != "__pycache__") == [exp.name]


def test_sigkilled_sweep_resumes_from_the_bucket_with_the_same_losses(gs_sweep, gcs_emulator):
    _, cwd, exp, env = gs_sweep
    ids = _planned_ids(exp, KILLED_BUDGETS)
    cmd = _sweep_cmd(exp, "gs://bucket/killed", "--set", KILLED_BUDGETS, "--no-fit")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:  # the first finished checkpoint
            if _committed_steps(gcs_emulator, "killed"):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    objects = gcs_emulator.find("killed")
    assert "DONE" not in objects
    interrupted = [r for r in ids if f"runs/{r}/run.json" in objects
                   and json.loads(gcs_emulator.read_text(f"killed/runs/{r}/run.json"))["status"] == "running"]
    assert interrupted, f"the kill landed after every run had finished: {objects}"
    assert _committed_steps(gcs_emulator, "killed").get(interrupted[0]), objects

    resumed = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    objects = gcs_emulator.find("killed")
    assert "DONE" in objects
    # The interrupted run continued from its checkpoint in the bucket: its resumed TensorBoard
    # file is named by the step it restored (> 0); a run started over would have step 0.
    run = f"runs/{interrupted[0]}"
    resume_steps = [int(k.rsplit(".", 2)[-2]) for k in objects if k.startswith(f"{run}/tensorboard/")]
    assert max(resume_steps) > 0, resume_steps
    for run_id in ids:  # the same losses at every step as the uninterrupted sweep, bit for bit
        full, killed = _losses(gcs_emulator, f"full/runs/{run_id}"), _losses(gcs_emulator, f"killed/runs/{run_id}")
        assert killed == full, run_id
    full_rows = {r["run_id"]: r["val_loss"] for r in map(json.loads, gcs_emulator.read_text("full/results.jsonl")
                                                         .splitlines())}
    killed_rows = {r["run_id"]: r["val_loss"] for r in map(json.loads, gcs_emulator.read_text("killed/results.jsonl")
                                                           .splitlines())}
    assert killed_rows == {r: full_rows[r] for r in ids}
    assert list(cwd.iterdir()) == []
