"""Training that survives: kill -9, SIGTERM, torn checkpoints, TensorBoard, remote (gs://) outputs.

The subprocess tests run the real command line (`python -m scaling train
experiments/cpu_tiny.py --set ... --out DIR`) on 1 CPU device, shrunk to a d_model=32,
1-layer model on 8 x 32 token batches, and compare against an uninterrupted run of the
same command. Batches are a pure function of the step, the checkpoint holds the exact
float32 state, and a restarted process runs the same compiled program on the same device
count: on CPU the resumed losses are therefore equal BITWISE, and the tests assert exact
equality (of the float32 values, round-tripped through JSON and TensorBoard's float32).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scaling import train
from scaling.checkpoint import EXIT_PREEMPTED, Checkpointer
from scaling.metrics import read_jsonl, read_tensorboard_scalars

REPO = Path(__file__).resolve().parents[1]
STEPS, CKPT_EVERY, BATCH = 240, 40, 8
SEED = 20261126  # the random kill / SIGTERM steps come from this


def cli_args(out, steps=STEPS):
    return [sys.executable, "-m", "scaling", "train", str(REPO / "experiments" / "cpu_tiny.py"), "--out", str(out),
            "--set", "model.d_model=32", "--set", "model.n_layers=1", "--set", "model.n_heads=2",
            "--set", "model.seq_len=32", "--set", f"train.global_batch_size={BATCH}",
            "--set", f"train.tokens={steps * BATCH * 32}", "--set", f"train.checkpoint_every={CKPT_EVERY}",
            "--set", "train.eval_every=80", "--set", "train.eval_batches=1", "--set", "train.warmup_steps=10",
            "--set", "train.progress=False"]


ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}


def spawn(out):
    return subprocess.Popen(cli_args(out), cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(out, timeout=240):
    done = subprocess.run(cli_args(out), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def lines(out, kind="train"):
    return [x for x in read_jsonl(Path(out) / "metrics.jsonl") if x["kind"] == kind]


def last_logged_step(out) -> int:
    """The last complete train line's step (reads only the file's tail: cheap to poll)."""
    path = Path(out) / "metrics.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            tail = f.read().decode(errors="replace").splitlines()
    except OSError:
        return 0
    for text in reversed(tail):
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if line.get("kind") == "train":
            return int(line["step"])
    return 0


def committed_steps(out) -> list[int]:
    """Checkpoint steps orbax has committed (it writes into a tmp name, then renames)."""
    d = Path(out) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def interrupt_at(proc, out, step: int, sig, timeout=180) -> int:
    """Send `sig` once the run has a committed checkpoint and has logged `step`; returns the
    last step logged when the signal went out."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if committed_steps(out) and last_logged_step(out) >= step:
            proc.send_signal(sig)
            return last_logged_step(out)
        time.sleep(0.003)
    raise AssertionError(f"the run ended or stalled before step {step}: {proc.communicate()}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (started at once; the interrupted runs overlap with it)."""
    out = tmp_path_factory.mktemp("reference")
    proc = spawn(out)

    def result():
        if proc.returncode is None:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
        return out

    yield result
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_sigterm_then_kill_9_at_random_steps_and_restarts_give_the_uninterrupted_run(reference, tmp_path):
    """One run, interrupted twice: SIGTERM at a random step (saves, exits 75), restarted,
    then kill -9 at a later random step (no goodbye), restarted again to the end."""
    rng = np.random.default_rng(SEED)
    term_at = int(rng.integers(CKPT_EVERY + 1, 100))  # after the first checkpoint
    kill_at = int(rng.integers(140, STEPS - 40))  # after the restart's first checkpoint, before the end
    out = tmp_path / "run"

    # 1. SIGTERM: the state at the next step boundary is saved, exit 75.
    proc = spawn(out)
    term_sent = interrupt_at(proc, out, term_at, signal.SIGTERM)  # the first checkpoint's commit can lag
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-3000:]
    meta = json.loads((out / "run.json").read_text())
    stopped = meta["result"]["steps"]
    assert meta["status"] == "preempted" and term_at <= term_sent <= stopped < kill_at
    assert committed_steps(out)[-1] == stopped  # saved at the step it stopped at ...
    after_term = lines(out)
    assert [x["step"] for x in after_term] == list(range(1, stopped + 1))  # ... having logged exactly that far
    assert lines(out, "status") == [{"kind": "status", "step": stopped, "status": "preempted", "message": ""}]

    # 2. The restart continues from `stopped`; kill -9 it at a later step.
    proc = spawn(out)
    sent_at = interrupt_at(proc, out, kill_at, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed = last_logged_step(out)
    assert kill_at <= sent_at <= killed < STEPS, (kill_at, sent_at, killed)
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # no chance to say goodbye
    after_kill = lines(out)
    assert after_kill[:stopped] == after_term  # the first restart did not redo a step
    resume_from = committed_steps(out)[-1]
    assert stopped <= resume_from <= killed
    print(f"\nSIGTERM: drawn step {term_at}, sent after step {term_sent}, stopped and saved at {stopped}; kill -9: drawn step {kill_at}, "
          f"killed after step {killed}, resumes from checkpoint {resume_from}")

    # 3. The second restart runs to the end.
    finish(out)
    ref = reference()
    got, want = lines(out), lines(ref)
    assert [x["step"] for x in got] == list(range(1, STEPS + 1))  # no lost, no duplicated step
    assert [x["loss"] for x in got] == [x["loss"] for x in want]  # bitwise (float32 -> JSON round trip)
    assert [x["grad_norm"] for x in got] == [x["grad_norm"] for x in want]
    assert [x["lr"] for x in got] == [x["lr"] for x in want]
    assert [x["tokens"] for x in got] == [x["tokens"] for x in want]  # FLOP accounting resumed
    assert got[:resume_from] == after_kill[:resume_from]  # continued from its checkpoint, not from 0
    assert [x["step"] for x in lines(out, "eval")] == [80, 160, 240]
    assert [x["val_loss"] for x in lines(out, "eval")] == [x["val_loss"] for x in lines(ref, "eval")]
    assert [(x["step"], x["status"]) for x in lines(out, "status")] == [(stopped, "preempted"), (STEPS, "finished")]
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["status"] == "finished"
    assert run_json["result"]["points"][0]["val_loss"] == lines(ref, "eval")[-1]["val_loss"]
    # TensorBoard beside the JSONL: each restart's purge marker hides what the interrupted
    # process logged after its checkpoint, so every step shows once, with the same loss.
    tb = read_tensorboard_scalars(out / "tensorboard")
    assert len(list((out / "tensorboard").iterdir())) == 3
    assert tb["train/loss"] == {x["step"]: x["loss"] for x in want}
    assert sorted(tb["eval/val_loss"]) == [80, 160, 240]


# ---------------------------------------------------------------------------------------
# In process: a save torn by a kill, TensorBoard contents, gs:// outputs

# The tiny run (tests/conftest.py) with a checkpoint every 5 steps and an evaluation every 10.
CHECKPOINTED = dict(checkpoint_every=5, eval_every=10)


@pytest.fixture(scope="module")
def tiny_reference(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_ref")
    r = train.run(tiny_run(**CHECKPOINTED), out)
    assert r.status == "finished"
    return out, r


@pytest.mark.slow
def test_a_save_torn_by_a_kill_is_ignored_and_tensorboard_matches_the_jsonl(tiny_run, sigterm_at, tiny_reference, tmp_path):
    ref, ref_result = tiny_reference
    out = tmp_path / "run"
    assert train.run(tiny_run(**CHECKPOINTED), out, hooks=[sigterm_at(12)]).status == "preempted"  # saved at 12
    # As if killed while saving step 15 (orbax writes into a tmp dir and renames it on
    # commit) and while rewriting run.json / the JSONL (both go through a tmp file + rename).
    torn = out / "checkpoints" / "15.orbax-checkpoint-tmp-1795000000000000"
    (torn / "state").mkdir(parents=True)
    (torn / "state" / "manifest.ocdbt").write_bytes(b"\x00torn")
    (out / ".run.json.tmp").write_text('{"status": "fini')
    assert Checkpointer(out / "checkpoints").latest_step() == 12
    r = train.run(tiny_run(**CHECKPOINTED), out)
    assert r.status == "finished" and r.steps == 20
    assert r.points[0]["val_loss"] == ref_result.points[0]["val_loss"]
    assert [x["loss"] for x in lines(out)] == [x["loss"] for x in lines(ref)]
    assert [x["step"] for x in lines(out)] == list(range(1, 21))
    assert committed_steps(out)[-1] == 20
    tb, want = read_tensorboard_scalars(out / "tensorboard"), lines(ref)
    assert len(list((out / "tensorboard").iterdir())) == 2  # the restart did not overwrite the first file
    assert tb["train/loss"] == {x["step"]: x["loss"] for x in want}  # float32 both ways: exact
    assert tb["train/lr"] == pytest.approx({x["step"]: x["lr"] for x in want}, rel=1e-6)
    assert tb["eval/val_loss"] == pytest.approx({x["step"]: x["val_loss"] for x in lines(ref, "eval")}, rel=1e-6)
    assert set(tb["eval/val_loss"]) == {10, 20}


@pytest.mark.slow
def test_gs_outputs_go_through_epath(tiny_run, sigterm_at, fake_gcs, tiny_reference, tmp_path, monkeypatch):
    """run.json, metrics.jsonl and TensorBoard on gs:// (an in-memory fake): a preempted and
    resumed run writes them all there and nothing local. Orbax's checkpoints are not part of
    this: its arrays go through TensorStore's own gcs driver, which needs the network, so the
    checkpoint directory is redirected to a local one here."""
    ref, _ = tiny_reference
    real = train.Checkpointer
    monkeypatch.setattr(train, "Checkpointer",
                        lambda d, **kw: real(str(d).replace("gs://bucket", str(tmp_path)), **kw))
    monkeypatch.chdir(tmp_path)
    out = "gs://bucket/runs/tiny"
    assert train.run(tiny_run(**CHECKPOINTED), out, hooks=[sigterm_at(12)]).status == "preempted"
    assert json.loads(fake_gcs["/bucket/runs/tiny/run.json"].getvalue())["status"] == "preempted"
    r = train.run(tiny_run(**CHECKPOINTED), out)
    assert r.status == "finished" and r.out_dir == out
    assert train.read_run_json(out)["status"] == "finished"
    got = [x for x in read_jsonl(f"{out}/metrics.jsonl") if x["kind"] == "train"]
    assert [x["step"] for x in got] == list(range(1, 21))
    assert [x["loss"] for x in got] == [x["loss"] for x in lines(ref)]
    tb = read_tensorboard_scalars(f"{out}/tensorboard")
    assert tb["train/loss"] == {x["step"]: x["loss"] for x in got}
    assert sorted(os.listdir(tmp_path)) == ["runs"]  # only the redirected checkpoints are local ...
    assert os.listdir(tmp_path / "runs" / "tiny") == ["checkpoints"]
    assert all(k.startswith("/bucket/runs/tiny/") for k in fake_gcs)
