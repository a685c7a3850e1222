"""The model family: a decoder-only Transformer in Flax NNX, configured by `ModelConfig`.

One block is the GPT-2 / nanoGPT pre-LayerNorm block (Radford et al. 2019):

    x = x + Attention(LN(x));  x = x + FFN(LN(x))

`loops` re-applies the whole stack of `n_layers` blocks with shared weights (a "looped"
Transformer, e.g. Dehghani et al. 2019 "Universal Transformers"; Giannou et al. 2023): the
compute per token grows by `loops`, the parameter count does not. Scaling laws in N alone
cannot see that difference; laws in C can (see `scaling.flops`).

Shapes carry suffixes: B batch, T sequence, D d_model, H heads, K head dim, F FFN width,
V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

FFN_KINDS = ("gelu", "swiglu")
POSITION_KINDS = ("learned", "rotary")
DTYPES = ("float32", "bfloat16", "float16")


def _fail(field: str, value, why: str) -> None:
    raise ValueError(f"ModelConfig.{field}={value!r}: {why}")


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

    def __post_init__(self):
        for name in ("d_model", "n_layers", "n_heads", "vocab_size", "seq_len", "loops"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                _fail(name, value, "must be an int")
            if value <= 0:
                _fail(name, value, "must be positive")
        for name in ("d_ff", "head_dim"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                _fail(name, value, "must be a positive int or None")
        if not (self.ffn_ratio > 0):
            _fail("ffn_ratio", self.ffn_ratio, "must be positive")
        if self.head_dim is None and self.d_model % self.n_heads:
            _fail("d_model", self.d_model, f"must be divisible by n_heads={self.n_heads} "
                  "(or set head_dim explicitly)")
        if self.ffn not in FFN_KINDS:
            _fail("ffn", self.ffn, f"must be one of {FFN_KINDS}")
        if self.positions not in POSITION_KINDS:
            _fail("positions", self.positions, f"must be one of {POSITION_KINDS}")
        if self.positions == "rotary" and self.k % 2:
            _fail("head_dim", self.k, "rotary positions need an even head dimension")
        if self.dtype not in DTYPES:
            _fail("dtype", self.dtype, f"must be one of {DTYPES}")
        if self.d_ff is None and int(round(self.ffn_ratio * self.d_model)) <= 0:
            _fail("ffn_ratio", self.ffn_ratio, "gives an empty FFN")

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
        return jnp.dtype(self.dtype)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------
# Layers


def _normal(std: float):
    return nnx.initializers.normal(stddev=std)


def rotary(x_BxTxHxK: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding (Su et al. 2021, eq. 34), the half-split variant (GPT-NeoX)."""
    _, T, _, K = x_BxTxHxK.shape
    half = K // 2
    inv_freq_K2 = 1.0 / (base ** (jnp.arange(half, dtype=jnp.float32) / half))
    angle_TxK2 = jnp.arange(T, dtype=jnp.float32)[:, None] * inv_freq_K2[None, :]
    cos = jnp.cos(angle_TxK2)[None, :, None, :].astype(x_BxTxHxK.dtype)
    sin = jnp.sin(angle_TxK2)[None, :, None, :].astype(x_BxTxHxK.dtype)
    x1, x2 = x_BxTxHxK[..., :half], x_BxTxHxK[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK) -> jax.Array:
    """softmax(q k^T / sqrt(K) + causal mask) v, softmax in float32."""
    K = q_BxTxHxK.shape[-1]
    T = q_BxTxHxK.shape[1]
    logits_BxHxTxT = jnp.einsum("bthk,bshk->bhts", q_BxTxHxK, k_BxTxHxK) / math.sqrt(K)
    mask_TxT = jnp.tril(jnp.ones((T, T), dtype=bool))
    logits_BxHxTxT = jnp.where(mask_TxT, logits_BxHxTxT.astype(jnp.float32), -1e30)
    probs_BxHxTxT = jax.nn.softmax(logits_BxHxTxT, axis=-1).astype(v_BxTxHxK.dtype)
    return jnp.einsum("bhts,bshk->bthk", probs_BxHxTxT, v_BxTxHxK)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        std_out = cfg.init_std / math.sqrt(2 * cfg.n_layers * cfg.loops)
        dense = dict(use_bias=cfg.use_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.qkv = nnx.Linear(cfg.d_model, 3 * cfg.d_attn, kernel_init=_normal(cfg.init_std), **dense)
        self.out = nnx.Linear(cfg.d_attn, cfg.d_model, kernel_init=_normal(std_out), **dense)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        B, T, _ = x_BxTxD.shape
        qkv_BxTx3HK = self.qkv(x_BxTxD)
        q, k, v = jnp.split(qkv_BxTx3HK.reshape(B, T, 3, cfg.n_heads, cfg.k), 3, axis=2)
        q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = q[:, :, 0], k[:, :, 0], v[:, :, 0]
        if cfg.positions == "rotary":
            q_BxTxHxK = rotary(q_BxTxHxK, cfg.rope_base)
            k_BxTxHxK = rotary(k_BxTxHxK, cfg.rope_base)
        y_BxTxHxK = causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK)
        return self.out(y_BxTxHxK.reshape(B, T, cfg.d_attn))


class FeedForward(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        std_out = cfg.init_std / math.sqrt(2 * cfg.n_layers * cfg.loops)
        dense = dict(use_bias=cfg.use_bias, dtype=cfg.compute_dtype, rngs=rngs)
        n_in = 2 if cfg.ffn == "swiglu" else 1
        self.up = nnx.Linear(cfg.d_model, n_in * cfg.f, kernel_init=_normal(cfg.init_std), **dense)
        self.down = nnx.Linear(cfg.f, cfg.d_model, kernel_init=_normal(std_out), **dense)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        h_BxTxF = self.up(x_BxTxD)
        if self.cfg.ffn == "swiglu":
            gate_BxTxF, h_BxTxF = jnp.split(h_BxTxF, 2, axis=-1)
            h_BxTxF = jax.nn.silu(gate_BxTxF) * h_BxTxF
        else:
            h_BxTxF = jax.nn.gelu(h_BxTxF, approximate=True)
        return self.down(h_BxTxF)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        norm = dict(use_bias=cfg.use_bias, dtype=cfg.compute_dtype, epsilon=1e-5, rngs=rngs)
        self.ln_attn = nnx.LayerNorm(cfg.d_model, **norm)
        self.attn = Attention(cfg, rngs=rngs)
        self.ln_ffn = nnx.LayerNorm(cfg.d_model, **norm)
        self.ffn = FeedForward(cfg, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        x_BxTxD = x_BxTxD + self.attn(self.ln_attn(x_BxTxD))
        return x_BxTxD + self.ffn(self.ln_ffn(x_BxTxD))


class Transformer(nnx.Module):
    """Decoder-only Transformer: tokens_BxT (int) -> logits_BxTxV (float32)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=_normal(cfg.init_std),
                               dtype=cfg.compute_dtype, rngs=rngs)
        if cfg.positions == "learned":
            self.pos_embed = nnx.Embed(cfg.seq_len, cfg.d_model, embedding_init=_normal(cfg.init_std),
                                       dtype=cfg.compute_dtype, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.ln_final = nnx.LayerNorm(cfg.d_model, use_bias=cfg.use_bias, dtype=cfg.compute_dtype,
                                      epsilon=1e-5, rngs=rngs)
        if not cfg.tie_embeddings:
            self.unembed = nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=cfg.use_bias,
                                      kernel_init=_normal(cfg.init_std), dtype=cfg.compute_dtype,
                                      rngs=rngs)

    def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
        cfg = self.cfg
        T = tokens_BxT.shape[1]
        if T > cfg.seq_len:
            raise ValueError(f"tokens_BxT has T={T} > ModelConfig.seq_len={cfg.seq_len}")
        x_BxTxD = self.embed(tokens_BxT)
        if cfg.positions == "learned":
            x_BxTxD = x_BxTxD + self.pos_embed(jnp.arange(T))[None]
        for _ in range(cfg.loops):
            for block in self.blocks:
                x_BxTxD = block(x_BxTxD)
        x_BxTxD = self.ln_final(x_BxTxD)
        if cfg.tie_embeddings:
            logits_BxTxV = self.embed.attend(x_BxTxD)
        else:
            logits_BxTxV = self.unembed(x_BxTxD)
        return logits_BxTxV.astype(jnp.float32)


def init(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """A freshly initialised model (parameters float32)."""
    return Transformer(cfg, rngs=nnx.Rngs(seed))


def count_leaves(model: nnx.Module) -> int:
    """Number of scalar parameters actually in the model's nnx.Param leaves."""
    state = nnx.state(model, nnx.Param)
    return int(sum(x.size for x in jax.tree.leaves(state)))
