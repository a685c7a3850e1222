"""Run configuration: what one training run is, as frozen, validated dataclasses.

Config as code (as big_vision and the Flax examples do): an experiment file is Python with a
`get_config()` returning a `RunConfig` (or, for sweeps, a `SweepConfig` from
`scaling.sweep`). `override(cfg, ["train.lr=3e-4", "model.d_model=512"])` applies
command-line `--set key=value` pairs, rejecting unknown keys and bad values by name before
anything compiles.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import math
from pathlib import Path
from typing import Any, Literal

from scaling.data import DataConfig
from scaling.model import ModelConfig

SCHEDULES = ("cosine", "wsd", "constant")
COOLDOWNS = ("linear", "1-sqrt")


def _fail(cls: str, field: str, value, why: str):
    raise ValueError(f"{cls}.{field}={value!r}: {why}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation and run length.

    The run's length is `tokens` (its D); steps = ceil(tokens / (global_batch_size x seq_len)).
    The learning-rate schedule's horizon is exactly the run's steps: a cosine longer than the
    run biases the loss upward (Hoffmann et al. 2022, sec. 3.1 and Fig. A1).

    schedule:
      "cosine": linear warmup to `lr`, cosine decay to `lr x final_lr_frac` at the last step.
      "wsd": warmup-stable-decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024): warmup, then
        `lr` held constant; the main run cools down over its last `cooldown_frac` of steps, and
        each token count in `wsd_branches` (< tokens) forks a branch from the stable phase that
        cools down over `cooldown_frac` of ITS length and is evaluated as its own (N, D) point.
      "constant": warmup then constant.
    """

    tokens: int
    global_batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    final_lr_frac: float = 0.1
    cooldown_frac: float = 0.2
    cooldown_shape: Literal["linear", "1-sqrt"] = "1-sqrt"
    wsd_branches: tuple[int, ...] = ()
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    grad_accum: int = 1
    seed: int = 0
    flops_method: Literal["6n", "kaplan", "chinchilla", "palm"] = "chinchilla"
    eval_every: int = 0              # steps between evaluations; 0 = only at the end
    eval_batches: int = 8
    eval_batch_size: int | None = None  # default: global_batch_size
    exact_match_span: int = 8        # tokens of the all-or-nothing span metric
    log_every: int = 1
    checkpoint_every: int = 0        # steps; 0 = only at the end (and on preemption)
    keep_checkpoints: int = 2
    divergence_factor: float = 3.0   # loss above this x its running mean = diverged
    progress: bool = True

    def __post_init__(self):
        c = "TrainConfig"
        for name in ("tokens", "global_batch_size", "grad_accum", "eval_batches", "keep_checkpoints",
                     "exact_match_span", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                _fail(c, name, v, "must be a positive int")
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                _fail(c, name, v, "must be a non-negative int")
        for name in ("lr", "eps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                _fail(c, name, v, "must be a positive finite number")
        for name in ("weight_decay", "grad_clip"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                _fail(c, name, v, "must be a non-negative finite number")
        for name in ("final_lr_frac", "beta1", "beta2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 1 + (name == "final_lr_frac")):
                _fail(c, name, v, "must be in [0, 1]" if name == "final_lr_frac" else "must be in [0, 1)")
        if not 0 < self.cooldown_frac <= 1:
            _fail(c, "cooldown_frac", self.cooldown_frac, "must be in (0, 1]")
        if self.divergence_factor <= 1:
            _fail(c, "divergence_factor", self.divergence_factor, "must be > 1")
        if self.schedule not in SCHEDULES:
            _fail(c, "schedule", self.schedule, f"must be one of {SCHEDULES}")
        if self.cooldown_shape not in COOLDOWNS:
            _fail(c, "cooldown_shape", self.cooldown_shape, f"must be one of {COOLDOWNS}")
        if self.flops_method not in ("6n", "kaplan", "chinchilla", "palm"):
            _fail(c, "flops_method", self.flops_method, "must be one of 6n, kaplan, chinchilla, palm")
        if self.global_batch_size % self.grad_accum:
            _fail(c, "grad_accum", self.grad_accum,
                  f"must divide global_batch_size={self.global_batch_size}")
        if self.wsd_branches:
            if self.schedule != "wsd":
                _fail(c, "wsd_branches", self.wsd_branches, "need schedule='wsd'")
            for b in self.wsd_branches:
                if isinstance(b, bool) or not isinstance(b, int) or not 0 < b < self.tokens:
                    _fail(c, "wsd_branches", self.wsd_branches, f"each must be an int token count in (0, tokens={self.tokens})")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One training run: model, data, optimisation. `name` is used for output paths."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    name: str = "run"

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            _fail("RunConfig", "name", self.name, "must be a non-empty file name")

    def steps(self) -> int:
        """Optimizer steps for the run's token budget."""
        return max(1, math.ceil(self.train.tokens / (self.train.global_batch_size * self.model.seq_len)))

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------
# Experiment files and --set overrides


def load_experiment(path: str | Path, **kwargs) -> Any:
    """Import an experiment file and return its `get_config(**kwargs)`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"experiment={str(path)!r}: no such file")
    spec = importlib.util.spec_from_file_location(f"scaling_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"experiment={str(path)!r}: defines no get_config()")
    return module.get_config(**kwargs)


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # bare strings: --set data.source=synthetic


def _coerce(cls_name: str, field: dataclasses.Field, key: str, value):
    """Check `value` against the field's declared type, converting the harmless cases."""
    current_type = str(field.type)
    if "tuple" in current_type and isinstance(value, (list, tuple)):
        return tuple(value)
    if current_type.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if current_type.startswith("int") and isinstance(value, float) and value.is_integer() and "float" not in current_type:
        return int(value)  # 1e6 tokens
    if current_type.startswith("bool") and not isinstance(value, bool):
        raise ValueError(f"--set {key}={value!r}: must be True or False")
    return value


def override(cfg, assignments: list[str]):
    """Apply 'a.b=value' assignments to a tree of frozen dataclasses, validating each."""
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--set {assignment!r}: expected key=value")
        key, text = assignment.split("=", 1)
        cfg = _set_path(cfg, key.strip().split("."), key.strip(), _parse_value(text.strip()))
    return cfg


def _set_path(node, parts: list[str], key: str, value):
    if not dataclasses.is_dataclass(node):
        raise ValueError(f"--set {key}: {type(node).__name__} has no fields")
    fields = {f.name: f for f in dataclasses.fields(node)}
    head = parts[0]
    if head not in fields:
        raise ValueError(f"--set {key}: unknown key {head!r} in {type(node).__name__} "
                         f"(known: {', '.join(sorted(fields))})")
    if len(parts) > 1:
        return dataclasses.replace(node, **{head: _set_path(getattr(node, head), parts[1:], key, value)})
    value = _coerce(type(node).__name__, fields[head], key, value)
    try:
        return dataclasses.replace(node, **{head: value})
    except (TypeError, ValueError) as e:
        raise ValueError(f"--set {key}={value!r}: {e}") from None


def to_dict(cfg) -> dict:
    """JSON-ready dict of a config tree (for metadata files and the sweep table)."""
    return dataclasses.asdict(cfg)
