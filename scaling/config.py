"""What one training run is: frozen, validated dataclasses, importable without JAX.

`ModelConfig` fixes a family member's shape (and so its N and FLOPs), `TrainConfig` the
optimisation and run length, `RunConfig` the whole run (model, data, train). They live apart
from the Flax model (as flax's own examples keep configs apart from modules) so that
`scaling.flops`, `scaling.family` and sweep planning import in milliseconds, without JAX.

Every field is checked in `__post_init__` (`scaling.validate`): a bad value raises
`ValueError("Config.field=value: why")` before anything compiles. Experiment files and
`--set` overrides: `scaling.experiment`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from scaling.data.config import DataConfig
from scaling.schedules import COOLDOWN_SHAPES as COOLDOWNS
from scaling.schedules import SCHEDULES
from scaling.validate import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_optional_int,
    fail,
    file_name,
    is_int,
)

FFN_KINDS = ("gelu", "swiglu")
POSITION_KINDS = ("learned", "rotary")
DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_KINDS = ("auto", "blocked", "cudnn")
REMAT_POLICIES = ("none", "block", "dots_saveable")
# How init and learning rates scale with width and depth (`scaling.parametrization`).
PARAMETRIZATIONS = ("sp", "mup", "completep")
# The FLOP accountings of `scaling.flops` (listed here so that configs validate without it).
FLOPS_METHODS = ("6n", "kaplan", "chinchilla", "palm")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Everything that fixes a family member's shape (and so its N and its FLOPs).

    Fields:
      d_model: residual width D.
      n_layers: number of distinct Transformer blocks.
      n_heads: attention heads H.
      d_ff: FFN hidden width F; None means `ffn_ratio * d_model` (4 for GELU as in GPT-2;
        for SwiGLU the same default is kept so the FLOPs of the two are comparable only if
        the caller sets d_ff = 8/3 d_model, as LLaMA does).
      vocab_size: V.
      seq_len: context length T the model is trained at.
      head_dim: K; None means d_model // n_heads (then d_model must be divisible by
        n_heads). Set it to decouple d_attn = H*K from D, as Chinchilla's "kv_size" does.
      ffn: "gelu" (default) or "swiglu" (Shazeer 2020).
      tie_embeddings: output logits use the token embedding matrix (GPT-2) when True.
      positions: "learned" absolute positions (GPT-2) or "rotary" (Su et al. 2021).
      loops: how many times the stack is applied with shared weights (>= 1).
      use_bias: biases in Linear and LayerNorm layers (GPT-2 has them; nanodo does not).
      dtype: compute dtype ("float32" or "bfloat16"); parameters stay float32 (master
        weights), so bf16 compute is mixed precision.
      rope_base: rotary frequency base.
      attention: which kernel computes the (same) causal attention: "blocked" (XLA einsums
        over query blocks, skipping fully masked key blocks; fastest on CPU), "cudnn"
        (`jax.nn.dot_product_attention(implementation="cudnn")`, flash attention on NVIDIA
        GPUs, bf16/fp16 only), or "auto" (cudnn on a GPU in bf16/fp16, else blocked).
      remat: activation checkpointing of each block (`jax.checkpoint` via `nnx.remat`):
        "none" keeps every activation the backward pass needs; "block" keeps only each
        block's input and recomputes the block in the backward pass (about one extra
        forward: XLA's FLOP count rises, the model FLOPs and so MFU do not); "dots_saveable"
        keeps the matmul outputs and recomputes the cheap elementwise ops between them
        (`jax.checkpoint_policies.dots_saveable`). The same losses either way; memory:
        `scaling.memory`.
      parametrization: how init, forward multipliers and per-tensor Adam learning rates scale
        with size (`scaling.parametrization` has the table): "sp" (standard, the default),
        "mup" (Yang et al. 2022, width), "completep" (Dey et al. 2025, width and depth).
      base_width: muP/CompleteP: the d_model at which the model equals SP (where TrainConfig.lr
        is the tuned rate); required by them, None under SP.
      base_depth: CompleteP: the number of applied blocks (n_layers x loops) at which it equals
        muP; required by it, None otherwise.
      base_head_dim: muP/CompleteP: the head dimension at base_width when K grows with width
        (attention logits q.k sqrt(base_head_dim) / K, TP5's 1/K); None = K does not change.
      depth_alpha: CompleteP: residual branches are multiplied by (depth / base_depth)^-alpha,
        in [0.5, 1]: 1 is CompleteP, 0.5 the depth-muP of Yang et al. 2023.
      output_mult: muP/CompleteP: the logits' multiplier at the base width (TP5's output
        multiplier, a hyperparameter tuned at the base like the learning rate; logits are
        multiplied by output_mult x base_width / d_model). 1 (the default) makes the base model SP.
    """

    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int | None = None
    vocab_size: int = 256
    seq_len: int = 256
    head_dim: int | None = None
    ffn_ratio: float = 4.0
    ffn: Literal["gelu", "swiglu"] = "gelu"
    tie_embeddings: bool = True
    positions: Literal["learned", "rotary"] = "learned"
    loops: int = 1
    use_bias: bool = False
    dtype: str = "float32"
    rope_base: float = 10_000.0
    init_std: float = 0.02
    attention: Literal["auto", "blocked", "cudnn"] = "auto"
    remat: Literal["none", "block", "dots_saveable"] = "none"
    parametrization: Literal["sp", "mup", "completep"] = "sp"
    base_width: int | None = None
    base_depth: int | None = None
    base_head_dim: int | None = None
    depth_alpha: float = 1.0
    output_mult: float = 1.0

    def __post_init__(self):
        c = "ModelConfig"
        for name in ("d_model", "n_layers", "n_heads", "vocab_size", "seq_len", "loops"):
            check_int(c, name, getattr(self, name), low=1, why="must be a positive int")
        for name in ("d_ff", "head_dim"):
            check_optional_int(c, name, getattr(self, name))
        check_number(c, "ffn_ratio", self.ffn_ratio, low=0, low_open=True, why="must be positive")
        check_number(c, "init_std", self.init_std, low=0, low_open=True, why="must be positive")
        check_number(c, "rope_base", self.rope_base, low=1, low_open=True, why="must be > 1")
        if self.head_dim is None and self.d_model % self.n_heads:
            fail(c, "d_model", self.d_model, f"must be divisible by n_heads={self.n_heads} "
                 "(or set head_dim explicitly)")
        check_choice(c, "ffn", self.ffn, FFN_KINDS)
        check_choice(c, "positions", self.positions, POSITION_KINDS)
        if self.positions == "rotary" and self.k % 2:
            fail(c, "head_dim", self.k, "rotary positions need an even head dimension")
        check_choice(c, "dtype", self.dtype, DTYPES)
        check_choice(c, "attention", self.attention, ATTENTION_KINDS)
        check_choice(c, "remat", self.remat, REMAT_POLICIES)
        if self.attention == "cudnn" and self.dtype == "float32":
            fail(c, "attention", self.attention, "cuDNN flash attention needs dtype bfloat16 or float16")
        check_bool(c, "tie_embeddings", self.tie_embeddings)
        check_bool(c, "use_bias", self.use_bias)
        if self.d_ff is None and int(round(self.ffn_ratio * self.d_model)) <= 0:
            fail(c, "ffn_ratio", self.ffn_ratio, "gives an empty FFN")
        self._check_parametrization()

    def _check_parametrization(self):
        c, p = "ModelConfig", self.parametrization
        check_choice(c, "parametrization", p, PARAMETRIZATIONS)
        for name in ("base_width", "base_depth", "base_head_dim"):
            check_optional_int(c, name, getattr(self, name))
        needs = {"sp": (), "mup": ("base_width",), "completep": ("base_width", "base_depth")}[p]
        for name in ("base_width", "base_depth"):
            if name in needs and getattr(self, name) is None:
                fail(c, name, None, f"parametrization={p!r} needs it (the size the learning rate is tuned at)")
            if name not in needs and getattr(self, name) is not None:
                fail(c, name, getattr(self, name), f"is not used by parametrization={p!r}: leave it None")
        if p == "sp" and self.base_head_dim is not None:
            fail(c, "base_head_dim", self.base_head_dim, "is not used by parametrization='sp': leave it None")
        check_number(c, "depth_alpha", self.depth_alpha, low=0.5, high=1.0)
        check_number(c, "output_mult", self.output_mult, low=0, low_open=True, why="must be positive")
        if p == "sp" and self.output_mult != 1.0:
            fail(c, "output_mult", self.output_mult, "is only used by parametrization='mup' or 'completep'")
        if p != "completep" and self.depth_alpha != 1.0:
            fail(c, "depth_alpha", self.depth_alpha, f"is only used by parametrization='completep' (it is {p!r})")

    # Derived sizes: read these, never recompute them elsewhere.
    @property
    def k(self) -> int:
        """Head dimension K."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def d_attn(self) -> int:
        """Width of queries/keys/values across heads, H*K (Kaplan's d_attn)."""
        return self.n_heads * self.k

    @property
    def f(self) -> int:
        """FFN hidden width F."""
        return self.d_ff if self.d_ff is not None else int(round(self.ffn_ratio * self.d_model))

    @property
    def compute_dtype(self):
        """The compute dtype as a JAX dtype (imported here: this module stays free of JAX)."""
        import jax.numpy as jnp

        return jnp.dtype(self.dtype)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


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

    steps_per_dispatch: K > 1 runs K optimizer steps per device call (`lax.scan` over the same
      step, the K batches staged on the device at once), so tiny models are not bound by the
      host's per-step round trip. Each step's loss, rate and hooks are exactly as with K = 1
      (the same update; float32 results agree to rounding, not bitwise); evaluations,
      checkpoints, WSD forks and preemption checks happen at block boundaries, which are
      aligned to them. 1 (default) dispatches every step.

    mesh_fsdp: the devices form a 2-D mesh (data, fsdp) with data = devices / mesh_fsdp.
      Parameters, gradients and AdamW state are sharded over `fsdp` (ZeRO-3 / FSDP: each
      matrix split along one dimension, gathered by XLA where a layer uses it), the batch's
      rows over both axes. 1 (default) is plain data parallelism, parameters replicated.
      It must divide the device count (checked when the mesh is built); a run may resume
      with another value (checkpoints are restored onto the new mesh).
    exact_match_span / exact_match_spans: evaluation also reports the fraction of span-aligned
      chunks of k targets predicted all correctly by greedy argmax: `val_exact_match` for
      k = exact_match_span, and `val_exact_match_<k>` for every k of both fields, in the same
      pass (how exact match of k tokens compares with accuracy^k: `scaling.questions`).
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
    steps_per_dispatch: int = 1     # optimizer steps per device call (a lax.scan); see below
    seed: int = 0
    flops_method: Literal["6n", "kaplan", "chinchilla", "palm"] = "chinchilla"
    eval_every: int = 0              # steps between evaluations; 0 = only at the end
    eval_batches: int = 8
    eval_batch_size: int | None = None  # default: global_batch_size
    exact_match_span: int = 8        # tokens of the all-or-nothing span metric (val_exact_match)
    exact_match_spans: tuple[int, ...] = ()  # more span lengths k, same pass: val_exact_match_<k>
    log_every: int = 1
    checkpoint_every: int = 0        # steps; 0 = only at the end (and on preemption)
    keep_checkpoints: int = 2
    divergence_factor: float = 3.0   # loss above this x its running mean = diverged
    progress: bool = True
    mesh_fsdp: int = 1               # devices per parameter shard group (FSDP); see above

    def __post_init__(self):
        c = "TrainConfig"
        for name in ("tokens", "global_batch_size", "grad_accum", "eval_batches", "keep_checkpoints",
                     "exact_match_span", "log_every", "steps_per_dispatch", "mesh_fsdp"):
            check_int(c, name, getattr(self, name), low=1)
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "seed"):
            check_int(c, name, getattr(self, name), low=0)
        check_optional_int(c, "eval_batch_size", self.eval_batch_size)
        object.__setattr__(self, "exact_match_spans", tuple(self.exact_match_spans)
                           if isinstance(self.exact_match_spans, (list, tuple)) else self.exact_match_spans)
        if not isinstance(self.exact_match_spans, tuple) or not all(is_int(k) and k >= 1 for k in self.exact_match_spans):
            fail(c, "exact_match_spans", self.exact_match_spans, "must be a tuple of ints >= 1")
        for name in ("lr", "eps"):
            check_number(c, name, getattr(self, name), low=0, low_open=True)
        for name in ("weight_decay", "grad_clip"):
            check_number(c, name, getattr(self, name), low=0)
        check_number(c, "final_lr_frac", self.final_lr_frac, low=0, high=1)
        for name in ("beta1", "beta2"):
            check_number(c, name, getattr(self, name), low=0, high=1, high_open=True)
        check_number(c, "cooldown_frac", self.cooldown_frac, low=0, high=1, low_open=True)
        check_number(c, "divergence_factor", self.divergence_factor, low=1, low_open=True, why="must be > 1")
        check_choice(c, "schedule", self.schedule, SCHEDULES)
        check_choice(c, "cooldown_shape", self.cooldown_shape, COOLDOWNS)
        check_choice(c, "flops_method", self.flops_method, FLOPS_METHODS)
        check_bool(c, "progress", self.progress)
        if self.global_batch_size % self.grad_accum:
            fail(c, "grad_accum", self.grad_accum, f"must divide global_batch_size={self.global_batch_size}")
        if self.wsd_branches:
            if self.schedule != "wsd":
                fail(c, "wsd_branches", self.wsd_branches, "need schedule='wsd'")
            for b in self.wsd_branches:
                if not is_int(b) or not 0 < b < self.tokens:
                    fail(c, "wsd_branches", self.wsd_branches,
                         f"each must be an int token count in (0, tokens={self.tokens})")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @property
    def spans(self) -> tuple[int, ...]:
        """Every exact-match span length evaluated: exact_match_span first, then the others
        in increasing order."""
        return (self.exact_match_span,) + tuple(sorted(set(self.exact_match_spans) - {self.exact_match_span}))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One training run: model, data, optimisation. `name` is used for output paths."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    name: str = "run"

    def __post_init__(self):
        file_name("RunConfig", "name", self.name)
        for name, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, name), cls):
                fail("RunConfig", name, getattr(self, name), f"must be a {cls.__name__}")

    def steps(self) -> int:
        """Optimizer steps for the run's token budget."""
        return max(1, math.ceil(self.train.tokens / (self.train.global_batch_size * self.model.seq_len)))

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def to_dict(cfg) -> dict:
    """JSON-ready dict of a config tree (for metadata files and the sweep table)."""
    return dataclasses.asdict(cfg)
