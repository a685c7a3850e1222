"""Parameter and FLOP accounting: the one place where N and C are defined.

A scaling law is only as good as the N and C it is fitted on. Much of the gap between the
exponents of Kaplan et al. 2020 and Hoffmann et al. 2022 came from counting: Kaplan's N
excludes embeddings and Chinchilla's includes them (Pearce & Song 2024, "Reconciling
Kaplan and Chinchilla Scaling Laws"). So every count here is exact for `scaling.model`
and says which terms it holds. Everything else in the library asks this module.

Conventions:
- A multiply-add is 2 FLOPs. A training step is forward + backward = 3 x forward
  (backward = 2 x forward: Kaplan et al. 2020, sec. 2.1; Hoffmann et al. 2022, App. F).
- Looped models (`ModelConfig.loops`) run every block `loops` times: every per-layer
  FLOP term is multiplied by `loops`, while parameters count the shared weights once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable, Literal

from scaling.config import FLOPS_METHODS, ModelConfig

METHODS = FLOPS_METHODS
Method = Literal["6n", "kaplan", "chinchilla", "palm"]


# ---------------------------------------------------------------------------------------
# Parameters


@dataclasses.dataclass(frozen=True)
class ParamCounts:
    """Exact parameter counts of a `ModelConfig` (equal to the initialised model's leaves).

    embedding: the token embedding, learned position embedding and, when untied, the output
      (unembedding) matrix and its bias: every vocabulary- or position-sized table.
    non_embedding: everything else: blocks and the final LayerNorm (Kaplan et al. 2020's N,
      who also exclude the embeddings; they drop biases and norms as negligible, we count them).
    per_layer: one block (shared by every loop).
    """

    total: int
    embedding: int
    non_embedding: int
    per_layer: int


def _norm_params(cfg: ModelConfig) -> int:
    return cfg.d_model * (2 if cfg.use_bias else 1)


def layer_matmul_params(cfg: ModelConfig) -> int:
    """Weights of one block that take part in matrix multiplies (no biases, no norms).

    QKV: D x 3HK, output projection: HK x D, FFN: D x F x (2 for GELU, 3 for SwiGLU).
    """
    ffn_mats = 3 if cfg.ffn == "swiglu" else 2
    return 4 * cfg.d_model * cfg.d_attn + ffn_mats * cfg.d_model * cfg.f


def param_counts(cfg: ModelConfig) -> ParamCounts:
    """Total, embedding and non-embedding parameter counts, by formula."""
    D, V, A, F = cfg.d_model, cfg.vocab_size, cfg.d_attn, cfg.f
    bias = cfg.use_bias
    n_ffn_in = 2 if cfg.ffn == "swiglu" else 1
    per_layer = (
        2 * _norm_params(cfg)
        + D * 3 * A + (3 * A if bias else 0)            # qkv
        + A * D + (D if bias else 0)                    # attention output
        + D * n_ffn_in * F + (n_ffn_in * F if bias else 0)  # FFN in (and gate)
        + F * D + (D if bias else 0)                    # FFN out
    )
    embedding = V * D
    if cfg.positions == "learned":
        embedding += cfg.seq_len * D
    if not cfg.tie_embeddings:
        embedding += D * V + (V if bias else 0)
    non_embedding = cfg.n_layers * per_layer + _norm_params(cfg)
    return ParamCounts(total=embedding + non_embedding, embedding=embedding,
                       non_embedding=non_embedding, per_layer=per_layer)


# ---------------------------------------------------------------------------------------
# FLOPs per token


def chinchilla_terms(cfg: ModelConfig) -> dict[str, float]:
    """Forward FLOPs per token, term by term, as Hoffmann et al. 2022, Appendix F writes them.

    Appendix F counts per sequence; dividing by seq_len T gives per token:
      embeddings     2 V D            (the lookup counted as a one-hot matmul)
      qkv            2 x 3 D (K H)    per layer
      logits         2 T (K H)        per layer (QK^T over the full T x T: no causal discount)
      softmax        3 H T            per layer
      reduction      2 T (K H)        per layer (softmax @ V)
      projection     2 (K H) D        per layer
      ffn            2 (D F + D F)    per layer (3 D F for SwiGLU's gate)
      final_logits   2 D V
    Per-layer terms are multiplied by n_layers x loops.
    """
    D, V, T, H, A, F = cfg.d_model, cfg.vocab_size, cfg.seq_len, cfg.n_heads, cfg.d_attn, cfg.f
    layers = cfg.n_layers * cfg.loops
    ffn_mats = 3 if cfg.ffn == "swiglu" else 2
    return {
        "embeddings": 2.0 * V * D,
        "qkv": layers * 2.0 * 3 * D * A,
        "logits": layers * 2.0 * T * A,
        "softmax": layers * 3.0 * H * T,
        "reduction": layers * 2.0 * T * A,
        "projection": layers * 2.0 * A * D,
        "ffn": layers * 2.0 * ffn_mats * D * F,
        "final_logits": 2.0 * D * V,
    }


def per_token(cfg: ModelConfig, method: Method = "chinchilla", *, n: Literal["total", "non_embedding"] = "total",
              causal: bool = False, training: bool = True) -> float:
    """FLOPs per token of one training step (or of the forward pass when training=False).

    method:
      "6n"          6N (Kaplan et al. 2020, eq. 2.1 and sec. 2.1; Hoffmann et al. 2022, C = 6ND).
                    `n` picks N = total or non-embedding parameters. For looped models the
                    per-layer parameters are counted once per loop (the weights are shared
                    but each application costs 6 FLOPs per weight per token).
      "kaplan"      Kaplan et al. 2020, Table 1: C_fwd = 2N + 2 n_layer n_ctx d_attn, plus the
                    table's embedding term 4 d_model; N = 2 d_model n_layer (2 d_attn + d_ff)
                    (the block matmul weights; 3 d_model d_ff for SwiGLU). The unembedding is
                    not in Kaplan's table and so not counted.
      "chinchilla"  Hoffmann et al. 2022, Appendix F: the sum of `chinchilla_terms`,
                    embeddings and final logits included.
      "palm"        The PaLM / nanoGPT MFU count (Chowdhery et al. 2022, App. B):
                    6N + 12 L H Q T with N the weights used in matmuls per token (block
                    matmul weights and the unembedding matrix, tied or not; not the embedding
                    lookup or positions), L layers (x loops), H heads, Q head dim, T context.
                    `causal=True` halves the attention term as MaxText does (only the lower
                    triangle of QK^T is useful work).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: must be one of {METHODS}")
    if n not in ("total", "non_embedding"):
        raise ValueError(f"n={n!r}: must be 'total' or 'non_embedding'")
    extra_loops = cfg.loops - 1
    counts = param_counts(cfg)
    if method == "6n":
        N = counts.total if n == "total" else counts.non_embedding
        train = 6.0 * (N + extra_loops * cfg.n_layers * counts.per_layer)
    elif method == "kaplan":
        layers = cfg.n_layers * cfg.loops
        fwd = 2.0 * layers * layer_matmul_params(cfg) + 2.0 * layers * cfg.seq_len * cfg.d_attn + 4.0 * cfg.d_model
        train = 3.0 * fwd
    elif method == "chinchilla":
        train = 3.0 * sum(chinchilla_terms(cfg).values())
    else:  # palm
        layers = cfg.n_layers * cfg.loops
        N = layers * layer_matmul_params(cfg) + cfg.d_model * cfg.vocab_size
        attention = 12.0 * layers * cfg.n_heads * cfg.k * cfg.seq_len
        train = 6.0 * N + (0.5 if causal else 1.0) * attention
    return train if training else train / 3.0


@functools.lru_cache(maxsize=1024)
def _per_token_table(cfg: ModelConfig, causal: bool) -> tuple[tuple[str, float], ...]:
    table = [(f"flops_{m}", per_token(cfg, m, causal=causal)) for m in METHODS]
    table.append(("flops_6n_non_embedding", per_token(cfg, "6n", n="non_embedding")))
    return tuple(table)


def counts(cfg: ModelConfig, tokens: float, method: Method = "chinchilla", *, causal: bool = False) -> dict[str, float]:
    """Every training-FLOP count of `tokens` tokens of `cfg`, side by side: the one function
    hooks, training points and sweep rows ask, so that a table's C columns always agree.

    Keys: "flops" (by `method`, the run's own accounting), "flops_6n", "flops_kaplan",
    "flops_chinchilla", "flops_palm" (each `per_token(cfg, m) x tokens`) and
    "flops_6n_non_embedding" (6 x Kaplan's non-embedding N x tokens). Cached per config.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: must be one of {METHODS}")
    out = {key: tokens * c for key, c in _per_token_table(cfg, causal)}
    return {"flops": out[f"flops_{method}"], **out}


def per_step(cfg: ModelConfig, global_batch_size: int, method: Method = "chinchilla", **kwargs) -> float:
    """Training FLOPs of one step over `global_batch_size` sequences of cfg.seq_len tokens."""
    return per_token(cfg, method, **kwargs) * global_batch_size * cfg.seq_len


def tokens_for_budget(cfg: ModelConfig, flops: float, method: Method = "chinchilla", **kwargs) -> float:
    """D such that D x per_token(cfg) = flops (C = cost per token x tokens)."""
    return flops / per_token(cfg, method, **kwargs)


# ---------------------------------------------------------------------------------------
# XLA's own count


def xla_flops(fn: Callable, *args, **kwargs) -> float:
    """XLA's FLOP count of `fn(*args)` compiled (`jit(fn).lower(...).compile().cost_analysis()`).

    Current JAX returns a dict, older versions a one-element list of dicts; both are read.
    Caveats (measured, see the field notes): a `lax.scan` body is counted once, not once per
    iteration, so count scanned models unrolled; rematerialisation adds its recompute; the
    causal mask is not discounted (attention counts the full T x T); the embedding gather
    counts nothing.
    """
    import jax

    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    cost = jitted.lower(*args, **kwargs).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    if not cost or "flops" not in cost:
        raise RuntimeError(f"XLA returned no FLOP count for {fn!r} (cost_analysis={cost!r})")
    return float(cost["flops"])


# ---------------------------------------------------------------------------------------
# Peaks and MFU

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets.
PEAK_BF16_FLOPS = {
    "TPU v4": 275e12,        # Google Cloud TPU v4 docs
    "TPU v5 lite": 197e12,   # v5e
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,   # v6e / Trillium
    "TPU v6e": 918e12,
    "NVIDIA A100": 312e12,   # A100 data sheet, dense (no sparsity)
    "NVIDIA H100": 989e12,   # H100 SXM data sheet, dense
    "NVIDIA H200": 989e12,
}


def _lookup_peak(device_kind: str) -> float | None:
    best = None
    for name, peak in PEAK_BF16_FLOPS.items():
        if device_kind.lower().startswith(name.lower()) and (best is None or len(name) > len(best[0])):
            best = (name, peak)
    return None if best is None else best[1]


@functools.lru_cache(maxsize=None)
def measured_matmul_peak(n: int = 2048, dtype: str = "float32", repeats: int = 5) -> float:
    """FLOP/s of an n x n matmul on the default device, best of `repeats` (after a warm-up).

    Used as the CPU 'peak' (no data sheet applies): MFU on CPU is relative to what XLA's
    matmul reaches on this machine in this process.
    """
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), dtype) * 0.5
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def peak_flops_per_device(device=None) -> float:
    """Peak FLOP/s of one device: the data-sheet bf16 figure, or a measured matmul on CPU."""
    import jax

    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return measured_matmul_peak()
    peak = _lookup_peak(device.device_kind)
    if peak is None:
        raise ValueError(f"device_kind={device.device_kind!r}: no peak FLOP/s known; pass peak_flops explicitly")
    return peak


def peak_flops_total(devices=None) -> float:
    """Peak FLOP/s of all `devices` together (default: every device of every host).

    On CPU, however many (fake) devices there are, they share one host's cores: the total
    is the measured matmul rate of that host times the number of hosts.
    """
    import jax

    devices = list(devices) if devices is not None else jax.devices()
    if devices[0].platform == "cpu":
        return measured_matmul_peak() * len({d.process_index for d in devices})
    return sum(peak_flops_per_device(d) for d in devices)


def mfu(flops_per_second: float, peak_flops: float) -> float:
    """Model FLOPs utilisation (Chowdhery et al. 2022, App. B): achieved / peak."""
    return flops_per_second / peak_flops
