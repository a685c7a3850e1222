"""Two JAX processes on localhost (jax.distributed, CPU, gloo) train like one.

Two `scaling train ... --coordinator 127.0.0.1:PORT --num-processes 2 --process-id I`
processes with one CPU device each form a 2-device mesh; each builds only its own half of
every global batch (`Dataset.batch(step, B, process_index=, process_count=)`) and
`jax.make_array_from_process_local_data` assembles the global array. The reference is ONE
process with two CPU devices and the same global batch: the same mesh shape, the same
per-device program, the gradient all-reduce over 2 operands (gloo between processes,
in-process otherwise; a + b is exact in either order). The losses are expected to agree
bitwise; the test allows 1e-5 relative, the tolerance of the 1- vs 8-device test in
test_train.py, and prints the measured difference.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scaling.checkpoint import EXIT_PREEMPTED
from scaling.data import DataConfig, make_dataset
from scaling.metrics import read_jsonl, read_tensorboard_scalars

REPO = Path(__file__).resolve().parents[1]
STEPS, CKPT_EVERY, BATCH = 120, 20, 8
SEED = 20261127


def cli_sets(steps=STEPS, checkpoint_every=CKPT_EVERY, extra=()) -> list[str]:
    return ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.seq_len=32",
            f"train.global_batch_size={BATCH}", f"train.tokens={steps * BATCH * 32}",
            f"train.checkpoint_every={checkpoint_every}", "train.eval_every=40", "train.eval_batches=2",
            "train.warmup_steps=10", "train.progress=False", *extra]


def cli_args(out, **sets):
    args = [sys.executable, "-m", "scaling", "train", str(REPO / "experiments" / "cpu_tiny.py"), "--out", str(out)]
    for s in cli_sets(**sets):
        args += ["--set", s]
    return args


def env(devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_pair(out, **sets) -> list[subprocess.Popen]:
    port = free_port()
    return [subprocess.Popen(cli_args(out, **sets) + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                              "--process-id", str(i)],
                             cwd=REPO, env=env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]


def wait_all(procs, timeout=240) -> list[tuple[int, str, str]]:
    deadline = time.time() + timeout
    out = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, o, e))
    return out


def lines(out, kind="train"):
    return [x for x in read_jsonl(Path(out) / "metrics.jsonl") if x["kind"] == kind]


def committed_steps(out) -> list[int]:
    d = Path(out) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def test_the_processes_rows_make_the_global_batch():
    """What each process feeds (train.py's batch_at) is its slice of the one-process batch."""
    ds = make_dataset(DataConfig(), seq_len=32, split="train")
    for step in (0, 7):
        whole = ds.batch(step, 8)
        parts = [ds.batch(step, 8, process_index=i, process_count=2) for i in range(2)]
        assert [p.shape for p in parts] == [(4, 33), (4, 33)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.slow
def test_two_processes_train_like_one_and_survive_sigterm_to_both(tmp_path):
    ref_out, out = tmp_path / "one_process", tmp_path / "two_processes"
    t0 = time.perf_counter()
    ref = subprocess.Popen(cli_args(ref_out), cwd=REPO, env=env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    pair = spawn_pair(out)
    try:
        # 1. SIGTERM to both processes (a maintenance event) at a random step after the first
        #    checkpoint: they agree on one step, save there together and both exit 75.
        term_at = int(np.random.default_rng(SEED).integers(CKPT_EVERY + 1, STEPS - 40))
        deadline = time.time() + 180
        while time.time() < deadline and all(p.poll() is None for p in pair):
            done = lines(out) if (out / "metrics.jsonl").exists() else []
            if committed_steps(out) and done and done[-1]["step"] >= term_at:
                for p in reversed(pair):  # process 1 first, then 0: not at the same instant
                    p.send_signal(signal.SIGTERM)
                break
            time.sleep(0.005)
        results = wait_all(pair)
        t_first = time.perf_counter() - t0
        for i, (code, _, err) in enumerate(results):
            assert code == EXIT_PREEMPTED, f"process {i}: exit {code}\n{err[-3000:]}"
        meta = json.loads((out / "run.json").read_text())
        stopped = meta["result"]["steps"]
        assert meta["status"] == "preempted" and term_at <= stopped < STEPS
        assert meta["process_count"] == 2 and len(meta["devices"]) == 2
        assert committed_steps(out)[-1] == stopped
        # Orbax's multi-host save: every process wrote its part of one checkpoint.
        state = out / "checkpoints" / str(stopped) / "state"
        assert {p.name for p in state.iterdir() if p.name.startswith("ocdbt.process_")} == {"ocdbt.process_0",
                                                                                            "ocdbt.process_1"}
        before = lines(out)
        assert [x["step"] for x in before] == list(range(1, stopped + 1))
        print(f"\n2 processes: SIGTERM drawn at step {term_at}, both stopped and saved at {stopped}")

        # 2. Restart both: they continue from the checkpoint to the end.
        t1 = time.perf_counter()
        results = wait_all(spawn_pair(out))
        t_second = time.perf_counter() - t1
        for i, (code, _, err) in enumerate(results):
            assert code == 0, f"process {i}: exit {code}\n{err[-3000:]}"
        ((code, _, err),) = wait_all([ref])
        assert code == 0, err[-3000:]
    finally:
        for p in [ref, *pair]:
            if p.poll() is None:
                p.kill()
                p.wait()

    got, want = lines(out), lines(ref_out)
    # Process 0 alone writes the logs: every step exactly once, one TensorBoard file per launch.
    assert [x["step"] for x in got] == list(range(1, STEPS + 1))
    assert got[:stopped] == before  # the restart continued, it did not redo these steps
    assert [(x["step"], x["status"]) for x in lines(out, "status")] == [(stopped, "preempted"), (STEPS, "finished")]
    assert len(list((out / "tensorboard").iterdir())) == 2
    loss2, loss1 = np.array([x["loss"] for x in got]), np.array([x["loss"] for x in want])
    rel = np.max(np.abs(loss2 - loss1) / np.abs(loss1))
    val2, val1 = [x["val_loss"] for x in lines(out, "eval")], [x["val_loss"] for x in lines(ref_out, "eval")]
    print(f"2 processes vs 1 process x 2 devices: max relative loss difference {rel:.3g} over {STEPS} steps "
          f"(bitwise: {np.array_equal(loss2, loss1)}), val_loss {val2} vs {val1}; wall: first launch "
          f"{t_first:.1f} s, restart {t_second:.1f} s")
    assert rel <= 1e-5
    np.testing.assert_allclose(val2, val1, rtol=1e-5)
    assert [x["tokens"] for x in got] == [x["tokens"] for x in want]
    tb = read_tensorboard_scalars(out / "tensorboard")
    assert tb["train/loss"] == {x["step"]: x["loss"] for x in got}
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and meta["result"]["steps"] == STEPS


@pytest.mark.slow
def test_two_processes_train_with_parameters_sharded_across_them(tmp_path):
    """TrainConfig.mesh_fsdp=2 over two processes of one CPU device each: every parameter
    matrix and its AdamW moments are split between the processes, XLA gathers them over gloo.
    The reference is one process with two devices and the same 1 x 2 mesh. Each process
    saves its own shards (orbax), and the final checkpoints restore onto a 4 x 2 mesh here."""
    steps, sets = 20, dict(steps=20, checkpoint_every=10, extra=("train.mesh_fsdp=2",))
    ref_out, out = tmp_path / "one_process", tmp_path / "two_processes"
    t0 = time.perf_counter()
    ref = subprocess.Popen(cli_args(ref_out, **sets), cwd=REPO, env=env(2), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        results = wait_all(spawn_pair(out, **sets) + [ref])
    finally:
        if ref.poll() is None:
            ref.kill()
    wall = time.perf_counter() - t0
    for i, (code, _, err) in enumerate(results):
        assert code == 0, f"process {i}: exit {code}\n{err[-3000:]}"
    (_, out0, _), (_, out1, _), _ = results
    assert "mesh 1x2 (data x fsdp)" in out0 and "memory per device" not in out1  # the plan, from process 0
    got, want = np.array([x["loss"] for x in lines(out)]), np.array([x["loss"] for x in lines(ref_out)])
    assert len(got) == len(want) == steps
    rel = np.max(np.abs(got - want) / np.abs(want))
    print(f"\nfsdp=2 over 2 processes vs 1 process x 2 devices: max relative loss difference {rel:.3g} "
          f"(bitwise: {np.array_equal(got, want)}); wall {wall:.1f} s")
    assert rel <= 1e-5
    state = out / "checkpoints" / str(steps) / "state"
    assert {p.name for p in state.iterdir() if p.name.startswith("ocdbt.process_")} == {"ocdbt.process_0",
                                                                                        "ocdbt.process_1"}
    import jax

    from scaling import experiment
    from scaling import step as step_lib
    from scaling.checkpoint import Checkpointer
    from scaling.config import RunConfig

    cfg = experiment.load(REPO / "experiments" / "cpu_tiny.py", cli_sets(**sets), expect=RunConfig)
    mesh = step_lib.make_mesh(2)
    params, _, opt = step_lib.train_step_for(cfg.replace(train=cfg.train.replace(mesh_fsdp=2)), mesh).init(np.int32(0))
    restored = []
    for d in (out, ref_out):
        ckpt = Checkpointer(d / "checkpoints")
        restored.append(ckpt.restore(steps, {"params": params, "opt_state": opt})[0])
        ckpt.close()
    target = jax.tree.leaves({"params": params, "opt_state": opt})
    for a, b, like in zip(jax.tree.leaves(restored[0]), jax.tree.leaves(restored[1]), target):
        assert a.sharding == like.sharding
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_a_sigterm_during_the_flag_all_gather_is_not_lost(monkeypatch):
    """The watcher's per-step all-gather is where a host spends its check waiting for the
    others; a signal landing there must survive to the next check (it used to be erased)."""
    import jax
    from jax.experimental import multihost_utils

    from scaling.checkpoint import PreemptionWatcher

    watcher = PreemptionWatcher()

    def gather_while_signalled(x):
        watcher._handler(signal.SIGTERM, None)  # the signal arrives mid-collective
        return np.stack([x, np.zeros_like(x)])  # neither host had it when they sent

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(multihost_utils, "process_allgather", gather_while_signalled)
    assert watcher.should_stop(5, sync_point=False) is False  # this step: nobody knew yet
    monkeypatch.setattr(multihost_utils, "process_allgather", lambda x: np.stack([x, np.zeros_like(x)]))
    assert watcher.should_stop(6, sync_point=False) is True  # the next: every host stops
