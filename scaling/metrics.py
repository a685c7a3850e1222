"""Metric sinks: JSONL, TensorBoard and a progress bar, as hooks (see `scaling.hooks`).

All of them write from process 0 only (the training loop builds them only there).

metrics.jsonl holds one JSON object per line: training steps (`"kind": "train"`),
evaluations (`"kind": "eval"`), WSD branch points (`"kind": "branch"`), and the run's end
(`"kind": "status"`). On resume from step k, `JsonlWriter(path, resume_step=k)` drops every
line that belongs after k (steps > k; branch lines whose fork step is > k), so a restarted
run has each step exactly once.

Paths may be local or remote (`gs://...`): every file operation goes through `scaling.paths`
(TensorBoard's event files too, see `TensorBoardWriter`). Remote files cannot be appended
to, so there the writer keeps the lines in memory and rewrites the file on `flush()` (the
loop flushes at every checkpoint and at the end). Rewrites are atomic (a temporary file,
then a rename), so a kill -9 at any moment leaves either the old or the new file.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any, Mapping

from scaling import paths
from scaling.hooks import StepEvent
from scaling.paths import is_local, write_atomic


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "nan", "inf": strict JSON has no NaN
    return value


def line_position(line: Mapping[str, Any]) -> int:
    """The main-run step a JSONL line belongs to (its fork step for branch lines)."""
    return int(line.get("fork_step", line.get("step", 0)))


def read_jsonl(path) -> list[dict]:
    path = paths.path(path)
    if not path.exists():
        return []
    out = []
    for text in path.read_text().splitlines():
        text = text.strip()
        if not text:
            continue
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError:
            break  # a torn last line from a kill: drop it and what follows
    return out


class JsonlWriter:
    """Appends one line per step (a hook) and any other record via `write(record)`."""

    def __init__(self, path, *, resume_step: int | None = None, log_every: int = 1):
        self.path = paths.path(path)
        self.log_every = log_every
        self.local = is_local(path)
        kept: list[dict] = []
        if resume_step is not None:
            kept = [line for line in read_jsonl(self.path) if line_position(line) <= resume_step]
        self.lines = [json.dumps(line) for line in kept]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The kept lines are written to a new file that replaces the old one atomically: a
        # kill during this rewrite must not lose the lines the checkpoint vouches for.
        write_atomic(self.path, "".join(line + "\n" for line in self.lines))
        self._file = None
        if self.local:
            self.lines = []
            self._file = self.path.open("a")

    def write(self, record: Mapping[str, Any]) -> None:
        text = json.dumps({k: _clean(v) for k, v in record.items()})
        if self._file is not None:
            self._file.write(text + "\n")
            self._file.flush()
        else:
            self.lines.append(text)

    def __call__(self, event: StepEvent) -> None:
        if event.step % self.log_every == 0:
            self.write({"kind": "train", "step": event.step, "step_time_s": event.seconds, **event.metrics})

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        else:
            write_atomic(self.path, "".join(line + "\n" for line in self.lines))

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


class _EpathRecordFile:
    """A write-only event file on a remote path: buffered, uploaded whole on `flush()`
    (what tensorboardX's own S3/GCS writers do), through `etils.epath`."""

    def __init__(self, path: str):
        self.path = paths.path(path)
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> None:
        self.buffer.write(data)

    def flush(self) -> None:
        self.path.write_bytes(self.buffer.getvalue())

    def close(self) -> None:
        self.flush()


class _EpathRecordFactory:
    def open(self, path: str) -> _EpathRecordFile:
        return _EpathRecordFile(path)

    def directory_check(self, path: str) -> None:
        paths.path(path).mkdir(parents=True, exist_ok=True)


class TensorBoardWriter:
    """tensorboardX scalars under `<out>/tensorboard/` (x axis: step).

    A resumed run (`resume_step=k`) writes a new event file that starts with TensorBoard's
    purge marker at step k + 1, so the steps after the checkpoint logged by the interrupted
    run are hidden, not shown twice; the file name carries the resume step and the process
    id, so a restart within the same second never overwrites the earlier file (tensorboardX
    names files by the second). Remote logdirs (`gs://...`) are written through
    `etils.epath` like every other output (tensorboardX's own GCS writer would need
    google-cloud-storage).
    """

    def __init__(self, logdir, *, log_every: int = 1, resume_step: int | None = None):
        from tensorboardX import SummaryWriter, record_writer

        logdir = str(logdir)
        if not is_local(logdir):
            record_writer.register_writer_factory(logdir.split("://")[0], _EpathRecordFactory())
        self.writer = SummaryWriter(logdir, purge_step=resume_step + 1 if resume_step else None,
                                    filename_suffix=f".{resume_step or 0:010d}.{os.getpid()}")
        self.log_every = log_every

    def __call__(self, event: StepEvent) -> None:
        if event.step % self.log_every:
            return
        for k, v in event.metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"train/{k}", v, event.step)

    def write(self, prefix: str, step: int, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class ProgressBar:
    """A tqdm bar over the run's steps showing loss and tokens/s."""

    def __init__(self, total: int, initial: int = 0, desc: str = "train"):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    def __call__(self, event: StepEvent) -> None:
        m = event.metrics
        post = {}
        if "loss" in m:
            post["loss"] = f"{m['loss']:.4f}"
        if "tokens_per_s" in m:
            post["tok/s"] = f"{m['tokens_per_s']:.0f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def read_tensorboard_scalars(logdir) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from the event files under `logdir`, as TensorBoard shows them.

    Event files are TFRecords (uint64 length, uint32 masked CRC of it, the `Event` proto,
    uint32 masked CRC of that). Files are read in name order (tensorboardX names them by
    creation time); a `SessionLog.START` event at step k (a resumed run's purge marker)
    drops every value logged earlier at step >= k, as TensorBoard does; a torn last record
    (a killed writer) ends its file.
    """
    import struct

    from tensorboardX.proto import event_pb2

    logdir = paths.path(logdir)
    out: dict[str, dict[int, float]] = {}
    if not logdir.exists():
        return out
    for path in sorted((p for p in logdir.iterdir() if "tfevents" in p.name), key=lambda p: p.name):
        data, pos = path.read_bytes(), 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            if pos + 12 + length + 4 > len(data):
                break
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                for values in out.values():
                    for step in [s for s in values if s >= event.step]:
                        del values[step]
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    out.setdefault(v.tag, {})[int(event.step)] = float(v.simple_value)
                elif v.HasField("tensor") and v.tensor.float_val:
                    out.setdefault(v.tag, {})[int(event.step)] = float(v.tensor.float_val[0])
    return out
