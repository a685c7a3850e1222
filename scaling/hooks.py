"""The hook protocol: what the training loop calls after every step.

A hook is any callable `hook(event) -> Mapping[str, float] | None`. The loop builds one
`StepEvent` per step, calls its hooks in order, and merges what they return into the
step's metrics (so a later hook, e.g. the JSONL writer, sees what an earlier one, e.g. the
FLOP accounting, added). Hooks that hold running totals implement `state_dict()` and
`load_state_dict()`, so a resumed run continues its totals instead of restarting them.
Hooks that own files implement `close()`.

Hooks never touch device arrays: the loop converts metrics to host floats first, so a
hook cannot accidentally force a device sync or hold a buffer alive.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, runtime_checkable

from scaling import flops as flops_lib
from scaling.config import ModelConfig


@dataclasses.dataclass
class StepEvent:
    """One finished training step.

    step: number of optimizer steps completed (1 after the first).
    tokens: tokens this step consumed, across all devices and hosts.
    seconds: wall-clock time of this step.
    metrics: host floats the step produced (loss, lr, grad_norm, ...); hooks add to it.
    """

    step: int
    tokens: int
    seconds: float
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Hook(Protocol):
    def __call__(self, event: StepEvent) -> Mapping[str, float] | None: ...


def call_hooks(hooks, event: StepEvent) -> dict[str, float]:
    """Call each hook in order; what a hook returns is merged into `event.metrics`."""
    for hook in hooks:
        out = hook(event)
        if out:
            event.metrics.update(out)
    return event.metrics


class FlopAccounting:
    """Accumulates tokens, FLOPs and time; reports achieved FLOP/s and MFU every step.

    FLOPs come from `scaling.flops.counts(cfg, tokens, method)`: every count is written once
    there, this hook only accumulates tokens and time. `peak_flops` is the peak of ALL devices
    the step runs on (`scaling.flops.peak_flops_total()`), so MFU is total/total.
    Every accounting method is accumulated side by side (`flops_<method>`), because a sweep
    table wants C by each count; `method` picks the one that drives `flops` and MFU.
    """

    def __init__(self, cfg: ModelConfig, *, method: flops_lib.Method = "chinchilla",
                 peak_flops: float | None = None, causal: bool = False):
        self.cfg = cfg
        self.method = method
        self.causal = causal
        self.peak_flops = peak_flops
        self.tokens = 0
        self.seconds = 0.0

    def __call__(self, event: StepEvent) -> dict[str, float]:
        self.tokens += event.tokens
        self.seconds += event.seconds
        out = {"tokens": float(self.tokens), **flops_lib.counts(self.cfg, self.tokens, self.method, causal=self.causal)}
        if event.seconds > 0:
            step_flops = flops_lib.counts(self.cfg, event.tokens, self.method, causal=self.causal)["flops"]
            out["tokens_per_s"] = event.tokens / event.seconds
            out["flops_per_s"] = step_flops / event.seconds
            if self.peak_flops:
                out["mfu"] = flops_lib.mfu(out["flops_per_s"], self.peak_flops)
        out["wall_s"] = self.seconds
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "seconds": self.seconds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tokens = int(state["tokens"])
        self.seconds = float(state["seconds"])
