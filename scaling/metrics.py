"""Metric sinks: JSONL, TensorBoard and a progress bar, as hooks (see `scaling.hooks`).

All of them write from process 0 only (the training loop builds them only there).

metrics.jsonl holds one JSON object per line: training steps (`"kind": "train"`),
evaluations (`"kind": "eval"`), WSD branch points (`"kind": "branch"`), and the run's end
(`"kind": "status"`). On resume from step k, `JsonlWriter(path, resume_step=k)` drops every
line that belongs after k (steps > k; branch lines whose fork step is > k), so a restarted
run has each step exactly once.

Paths may be local or remote (`gs://...`, through `etils.epath`). Remote files cannot be
appended to, so there the writer keeps the lines in memory and rewrites the file on
`flush()` (the loop flushes at every checkpoint and at the end).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from etils import epath

from scaling.hooks import StepEvent


def _is_local(path) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "nan", "inf": strict JSON has no NaN
    return value


def line_position(line: Mapping[str, Any]) -> int:
    """The main-run step a JSONL line belongs to (its fork step for branch lines)."""
    return int(line.get("fork_step", line.get("step", 0)))


def read_jsonl(path) -> list[dict]:
    path = epath.Path(path)
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
        self.path = epath.Path(path)
        self.log_every = log_every
        self.local = _is_local(path)
        kept: list[dict] = []
        if resume_step is not None:
            kept = [line for line in read_jsonl(self.path) if line_position(line) <= resume_step]
        self.lines = [json.dumps(line) for line in kept] if not self.local else []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.local:
            self._file = open(str(self.path).removeprefix("file://"), "w")
            for line in kept:
                self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        else:
            self._file = None
            self.flush()

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
            self.path.write_text("".join(line + "\n" for line in self.lines))

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoardWriter:
    """tensorboardX scalars under `<out>/tensorboard/` (x axis: step)."""

    def __init__(self, logdir, *, log_every: int = 1):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(logdir))
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
