"""Learning-rate schedules: pure functions of the step, computed on the host.

Convention: `step` is the 0-based index of the optimizer update the rate is used for, so a
run of `total_steps` updates uses steps 0 .. total_steps - 1, and "the last step" is
`total_steps - 1`. The rate is a plain Python float handed to the compiled step as a traced
scalar (so one compiled step serves every learning rate and every horizon of a sweep).

Horizon: a schedule's length is exactly the run's length. A cosine that is longer than the
run it is used for leaves the run at a higher loss than one tuned to its horizon (Hoffmann
et al. 2022, sec. 3.1 and Fig. A1) -- which is why Kaplan et al.'s fixed-horizon schedule
overestimated the loss of short runs and biased their D exponent.

Warmup is linear from lr/warmup_steps (step 0) to lr (step warmup_steps - 1). When a
schedule's decay overlaps its warmup (very short runs) the smaller of the two factors wins.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "wsd", "constant")
COOLDOWN_SHAPES = ("linear", "1-sqrt")


def _warmup_factor(step: int, warmup_steps: int) -> float:
    if warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def constant(step: int, *, lr: float, warmup_steps: int = 0, **_) -> float:
    """Linear warmup, then `lr`."""
    return lr * _warmup_factor(step, warmup_steps)


def cosine(step: int, *, lr: float, total_steps: int, warmup_steps: int = 0, final_lr_frac: float = 0.1, **_) -> float:
    """Linear warmup, then cosine decay from `lr` to exactly `lr * final_lr_frac` at the
    last step (`total_steps - 1`) (Loshchilov & Hutter 2017, SGDR, without restarts; the
    horizon set to the run's length as Hoffmann et al. 2022 prescribe).

    The decay starts after the warmup: progress = (step - w) / (total_steps - 1 - w), where
    w = min(warmup_steps, total_steps - 1).
    """
    w = min(warmup_steps, max(total_steps - 1, 0))
    if step < w:
        return lr * _warmup_factor(step, w)
    denom = total_steps - 1 - w
    progress = 1.0 if denom <= 0 else min(max((step - w) / denom, 0.0), 1.0)
    final = lr * final_lr_frac
    if progress >= 1.0:
        return final
    return final + (lr - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cooldown_steps(total_steps: int, cooldown_frac: float) -> int:
    """Length of a WSD cooldown: round(cooldown_frac x total_steps), at least 1."""
    return max(1, min(total_steps, int(round(cooldown_frac * total_steps))))


def cooldown_start(total_steps: int, cooldown_frac: float) -> int:
    """First step of the WSD cooldown (= the fork step of a branch of this length)."""
    return total_steps - cooldown_steps(total_steps, cooldown_frac)


def wsd(step: int, *, lr: float, total_steps: int, warmup_steps: int = 0, cooldown_frac: float = 0.2,
        cooldown_shape: str = "1-sqrt", final_lr_frac: float = 0.0, **_) -> float:
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024, "Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations").

    Linear warmup, `lr` held constant, then over the last `cooldown_steps(total_steps,
    cooldown_frac)` steps a cooldown to `lr * final_lr_frac`, reached exactly at the last
    step. Hägele et al. cool down to 0; here the floor is `final_lr_frac` so one knob sets
    the end of every schedule (set it to 0 for the paper's setting). Cooldown shapes, with
    p in (0, 1] the fraction of the cooldown done after this step:
      "linear": factor 1 - p
      "1-sqrt": factor 1 - sqrt(p)   (Hägele et al. 2024, sec. 3: better than linear, and
                 matches a cosine run of the same length)
    Because the stable phase does not depend on `total_steps`, a run of any shorter length
    is the same run up to its cooldown start: that is what makes WSD branches exact.
    """
    if cooldown_shape not in COOLDOWN_SHAPES:
        raise ValueError(f"cooldown_shape={cooldown_shape!r}: must be one of {COOLDOWN_SHAPES}")
    factor = _warmup_factor(step, warmup_steps)
    n_cool = cooldown_steps(total_steps, cooldown_frac)
    start = total_steps - n_cool
    if step >= start:
        p = min((step - start + 1) / n_cool, 1.0)
        decay = 1.0 - (p if cooldown_shape == "linear" else math.sqrt(p))
        final = final_lr_frac
        factor = min(factor, final + (1.0 - final) * decay)
    return lr * factor


def lr_at(train_cfg, step: int, total_steps: int) -> float:
    """The rate of update `step` of a run of `total_steps` under `train_cfg` (a TrainConfig)."""
    t = train_cfg
    kw = dict(lr=t.lr, total_steps=total_steps, warmup_steps=t.warmup_steps, final_lr_frac=t.final_lr_frac)
    if t.schedule == "cosine":
        return cosine(step, **kw)
    if t.schedule == "wsd":
        return wsd(step, cooldown_frac=t.cooldown_frac, cooldown_shape=t.cooldown_shape, **kw)
    if t.schedule == "constant":
        return constant(step, **kw)
    raise ValueError(f"TrainConfig.schedule={t.schedule!r}: must be one of {SCHEDULES}")
