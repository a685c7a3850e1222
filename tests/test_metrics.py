"""Metric sinks: the JSONL writer truncates to the resumed step, TensorBoard's scalars read back
as TensorBoard shows them (purge on resume), NaN survives as strict JSON."""

import json

from scaling.hooks import StepEvent
from scaling.metrics import JsonlWriter, TensorBoardWriter, read_jsonl, read_tensorboard_scalars


def test_jsonl_resume_drops_lines_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = JsonlWriter(path)
    for step in range(1, 6):
        w(StepEvent(step=step, tokens=10, seconds=0.1, metrics={"loss": float(step)}))
    w.write({"kind": "branch", "fork_step": 4, "step": 5})
    w.write({"kind": "eval", "step": 5, "val_loss": float("nan")})
    w.close()
    assert json.loads(path.read_text().splitlines()[-1])["val_loss"] == "nan"  # strict JSON
    again = JsonlWriter(path, resume_step=3)  # the checkpoint was at step 3
    again.close()
    assert [(x["kind"], x["step"]) for x in read_jsonl(path)] == [("train", 1), ("train", 2), ("train", 3)]


def test_jsonl_log_every_and_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = JsonlWriter(path, log_every=2)
    for step in range(1, 6):
        w(StepEvent(step=step, tokens=10, seconds=0.1))
    w.close()
    with open(path, "a") as f:
        f.write('{"kind": "tr')  # killed mid-line
    assert [x["step"] for x in read_jsonl(path)] == [2, 4]


def test_tensorboard_resume_purges_steps_after_the_checkpoint(tmp_path):
    logdir = tmp_path / "tb"
    w = TensorBoardWriter(logdir)
    for step in range(1, 6):
        w(StepEvent(step=step, tokens=1, seconds=0.1, metrics={"loss": 10.0 - step}))
    w.close()
    w = TensorBoardWriter(logdir, resume_step=3)
    for step in range(4, 7):
        w(StepEvent(step=step, tokens=1, seconds=0.1, metrics={"loss": 100.0 + step}))
    w.write("eval", 6, {"val_loss": 1.5, "note": "not a number"})
    w.close()
    scalars = read_tensorboard_scalars(logdir)
    assert scalars["train/loss"] == {1: 9.0, 2: 8.0, 3: 7.0, 4: 104.0, 5: 105.0, 6: 106.0}
    assert scalars["eval/val_loss"] == {6: 1.5}
