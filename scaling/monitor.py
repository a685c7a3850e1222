"""Running loss statistics of a training run: the reported train loss and divergence checks.

A diverged run is stopped at once (exit code 3) with the step and the values that tripped the
check, and its last good checkpoint is kept: a blown-up run is a bad point on an IsoFLOP
profile, not a reason to keep spending compute. The statistics are part of every checkpoint,
so a resumed run continues them.
"""

from __future__ import annotations

import collections
import math

import numpy as np

# Steps of the main run whose mean training loss is reported with an evaluated point.
TRAIN_LOSS_WINDOW = 10
# Divergence: the ratio test starts after this many steps (early losses fall fast).
DIVERGENCE_WARMIN = 10
# Decay of the running (exponential) mean the ratio test compares against.
DIVERGENCE_EMA = 0.9


class LossMonitor:
    """Running loss statistics for divergence checks and the reported train loss.

    Diverged means: a non-finite loss or gradient norm; or a loss above
    `factor` x the first step's loss (for a fresh model about ln V, so this catches
    explosions at any time); or, after DIVERGENCE_WARMIN steps, a loss above `factor` x
    its exponential running mean.
    """

    def __init__(self, factor: float):
        self.factor = factor
        self.count = 0
        self.ema = None
        self.first = None
        self.recent: collections.deque = collections.deque(maxlen=TRAIN_LOSS_WINDOW)

    def check(self, step: int, loss: float, grad_norm: float) -> str | None:
        """A message when (loss, grad_norm) diverged, else None (and the stats update)."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return f"diverged at step {step}: loss={loss!r}, grad_norm={grad_norm!r} (not finite)"
        if self.first is not None and loss > self.factor * self.first:
            return (f"diverged at step {step}: loss={loss:.6g} > {self.factor} x the first step's loss "
                    f"{self.first:.6g} (grad_norm={grad_norm:.6g})")
        if self.count >= DIVERGENCE_WARMIN and loss > self.factor * self.ema:
            return (f"diverged at step {step}: loss={loss:.6g} > {self.factor} x running mean "
                    f"{self.ema:.6g} (grad_norm={grad_norm:.6g})")
        self.count += 1
        self.first = loss if self.first is None else self.first
        self.ema = loss if self.ema is None else DIVERGENCE_EMA * self.ema + (1 - DIVERGENCE_EMA) * loss
        self.recent.append(loss)
        return None

    def train_loss(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")

    def state_dict(self) -> dict:
        return {"count": self.count, "ema": self.ema, "first": self.first, "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.ema, self.first = int(state["count"]), state["ema"], state["first"]
        self.recent = collections.deque(state["recent"], maxlen=TRAIN_LOSS_WINDOW)
