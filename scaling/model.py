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
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

FFN_KINDS = ("gelu", "swiglu")
POSITION_KINDS = ("learned", "rotary")
DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_KINDS = ("auto", "blocked", "cudnn")


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
      attention: which kernel computes the (same) causal attention: "blocked" (XLA einsums
        over query blocks, skipping fully masked key blocks; fastest on CPU), "cudnn"
        (`jax.nn.dot_product_attention(implementation="cudnn")`, flash attention on NVIDIA
        GPUs, bf16/fp16 only), or "auto" (cudnn on a GPU in bf16/fp16, else blocked).
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
        if self.attention not in ATTENTION_KINDS:
            _fail("attention", self.attention, f"must be one of {ATTENTION_KINDS}")
        if self.attention == "cudnn" and self.dtype == "float32":
            _fail("attention", self.attention, "cuDNN flash attention needs dtype bfloat16 or float16")
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
    return _rotary_tk(x_BxTxHxK, base, t_axis=1)


def _rotary_tk(x_xTxK: jax.Array, base: float, t_axis: int) -> jax.Array:
    """`rotary` for any layout whose time axis is `t_axis` and head dim the last axis."""
    T, K = x_xTxK.shape[t_axis], x_xTxK.shape[-1]
    half = K // 2
    inv_freq_K2 = 1.0 / (base ** (jnp.arange(half, dtype=jnp.float32) / half))
    angle_TxK2 = jnp.arange(T, dtype=jnp.float32)[:, None] * inv_freq_K2[None, :]
    shape = [1] * x_xTxK.ndim
    shape[t_axis], shape[-1] = T, half
    cos = jnp.cos(angle_TxK2).reshape(shape).astype(x_xTxK.dtype)
    sin = jnp.sin(angle_TxK2).reshape(shape).astype(x_xTxK.dtype)
    x1, x2 = x_xTxK[..., :half], x_xTxK[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK) -> jax.Array:
    """softmax(q k^T / sqrt(K) + causal mask) v, softmax in float32 ([B, T, H, K] layout)."""
    y_BxHxTxK = causal_attention_bhtk(*(a.transpose(0, 2, 1, 3) for a in (q_BxTxHxK, k_BxTxHxK, v_BxTxHxK)))
    return y_BxHxTxK.transpose(0, 2, 1, 3)


def causal_attention_bhtk(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK) -> jax.Array:
    """`causal_attention` in the heads-major layout [B, H, T, K] the model computes in.

    Batch dimensions leading is what XLA's batched matmuls want: with [B, T, H, K] operands
    XLA inserts transposes around every attention matmul and its gradients.
    """
    T = q_BxHxTxK.shape[2]
    return _blocked_attention(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, _query_blocks(T))


# Query rows per block of the causal attention: block i (rows [i c, (i+1) c)) only multiplies
# against keys [0, (i+1) c), skipping (n-1)/2n of the T x T work, which is exactly zero after
# the softmax (exp(-1e30 - max) underflows to 0 in float32).
ATTENTION_BLOCK = 64
MAX_ATTENTION_BLOCKS = 8


def _query_blocks(T: int) -> tuple[int, ...]:
    """Row boundaries [0, c, 2c, ..., T] of the query blocks for context T."""
    if T <= ATTENTION_BLOCK:
        return (0, T)
    c = max(ATTENTION_BLOCK, -(-T // MAX_ATTENTION_BLOCKS))
    return tuple(range(0, T, c)) + (T,)


def attention_work_fraction(T: int) -> float:
    """Fraction of the T x T score matrix the blocked causal attention actually computes.

    1.0 for one block (T <= ATTENTION_BLOCK); towards 1/2 (the causal triangle) as blocks get
    finer. XLA's FLOP count of the model sees this fraction of the full-matrix attention terms;
    the analytic counts in `scaling.flops` count the full matrix (or half with causal=True).
    """
    blocks = _query_blocks(T)
    return sum((r1 - r0) * r1 for r0, r1 in zip(blocks[:-1], blocks[1:])) / (T * T)


def _block_probs(q_BxHxCxK, k_BxHxSxK, row0: int):
    """float32 softmax(q k^T / sqrt(K) + causal mask) of query rows [row0, row0 + C) over keys [0, S)."""
    K = q_BxHxCxK.shape[-1]
    C, S = q_BxHxCxK.shape[2], k_BxHxSxK.shape[2]
    logits_BxHxCxS = jnp.einsum("bhtk,bhsk->bhts", q_BxHxCxK, k_BxHxSxK) / math.sqrt(K)
    mask_CxS = (row0 + jnp.arange(C))[:, None] >= jnp.arange(S)[None, :]
    logits_BxHxCxS = jnp.where(mask_CxS, logits_BxHxCxS.astype(jnp.float32), -1e30)
    return jax.nn.softmax(logits_BxHxCxS, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _blocked_attention(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, blocks):
    return _blocked_attention_fwd(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, blocks)[0]


def _blocked_attention_fwd(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, blocks):
    ys, probs = [], []
    for r0, r1 in zip(blocks[:-1], blocks[1:]):
        p_BxHxCxS = _block_probs(q_BxHxTxK[:, :, r0:r1], k_BxHxTxK[:, :, :r1], r0)
        ys.append(jnp.einsum("bhts,bhsk->bhtk", p_BxHxCxS.astype(v_BxHxTxK.dtype), v_BxHxTxK[:, :, :r1]))
        probs.append(p_BxHxCxS)
    y_BxHxTxK = ys[0] if len(ys) == 1 else jnp.concatenate(ys, axis=2)
    return y_BxHxTxK, (q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, y_BxHxTxK, probs)


def _blocked_attention_bwd(blocks, residuals, dy_BxHxTxK):
    """The softmax-attention gradient, block by block.

    Per block: dP = dY V^T, dS = P (dP - rowsum(dY * Y)) / sqrt(K) (rowsum(dP * P) =
    rowsum(dY * Y) since Y = P V: the FlashAttention identity, a [T, K] instead of a
    [T, T] reduction), dQ = dS K, dK = dS^T Q, dV = P^T dY. Same dtypes as autodiff of the
    forward: matmuls in the compute dtype, the softmax algebra in float32.
    """
    q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, y_BxHxTxK, probs = residuals
    K, T = q_BxHxTxK.shape[-1], q_BxHxTxK.shape[2]
    dt = q_BxHxTxK.dtype
    rowsum_BxHxT = jnp.sum(dy_BxHxTxK.astype(jnp.float32) * y_BxHxTxK.astype(jnp.float32), axis=-1)
    dq, dk, dv = [], None, None
    for (r0, r1), p_BxHxCxS in zip(zip(blocks[:-1], blocks[1:]), probs):
        dy_BxHxCxK = dy_BxHxTxK[:, :, r0:r1]
        dp_BxHxCxS = jnp.einsum("bhtk,bhsk->bhts", dy_BxHxCxK, v_BxHxTxK[:, :, :r1]).astype(jnp.float32)
        ds_BxHxCxS = (p_BxHxCxS * (dp_BxHxCxS - rowsum_BxHxT[:, :, r0:r1, None])).astype(dt) / math.sqrt(K)
        dq.append(jnp.einsum("bhts,bhsk->bhtk", ds_BxHxCxS, k_BxHxTxK[:, :, :r1]))
        pad = ((0, 0), (0, 0), (0, T - r1), (0, 0))
        dk_i = jnp.pad(jnp.einsum("bhts,bhtk->bhsk", ds_BxHxCxS, q_BxHxTxK[:, :, r0:r1]), pad)
        dv_i = jnp.pad(jnp.einsum("bhts,bhtk->bhsk", p_BxHxCxS.astype(v_BxHxTxK.dtype), dy_BxHxCxK), pad)
        # Sum the blocks' contributions in float32 (one matmul would accumulate in f32 too).
        dk_i, dv_i = dk_i.astype(jnp.float32), dv_i.astype(jnp.float32)
        dk = dk_i if dk is None else dk + dk_i
        dv = dv_i if dv is None else dv + dv_i
    dq_BxHxTxK = dq[0] if len(dq) == 1 else jnp.concatenate(dq, axis=2)
    return dq_BxHxTxK, dk.astype(k_BxHxTxK.dtype), dv.astype(v_BxHxTxK.dtype)


_blocked_attention.defvjp(_blocked_attention_fwd, _blocked_attention_bwd)


def _dense(layer: nnx.Linear, x_NxD: jax.Array) -> jax.Array:
    """`layer` applied to the rows of a 2-D [tokens, features] array.

    Kept 2-D on purpose: on XLA:CPU a Linear on [B, T, D] makes the kernel gradient a dot
    contracting two dimensions, which XLA lays out with a slow transposed copy of the
    [B, T, F] activation gradient (measured: an MLP fwd+bwd 2.9x slower than on [B*T, D]).
    """
    return layer(x_NxD)


def _use_cudnn(cfg: ModelConfig) -> bool:
    """cuDNN flash attention when asked, or on "auto" on a GPU computing in 16 bits."""
    if cfg.attention == "cudnn":
        return True
    return cfg.attention == "auto" and cfg.dtype != "float32" and jax.default_backend() == "gpu"


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        std_out = cfg.init_std / math.sqrt(2 * cfg.n_layers * cfg.loops)
        dense = dict(use_bias=cfg.use_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.qkv = nnx.Linear(cfg.d_model, 3 * cfg.d_attn, kernel_init=_normal(cfg.init_std), **dense)
        self.out = nnx.Linear(cfg.d_attn, cfg.d_model, kernel_init=_normal(std_out), **dense)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        B, T, D = x_BxTxD.shape
        qkv_NxC = _dense(self.qkv, x_BxTxD.reshape(B * T, D))
        if _use_cudnn(cfg):
            qkv_BxTx3xHxK = qkv_NxC.reshape(B, T, 3, cfg.n_heads, cfg.k)
            q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = (qkv_BxTx3xHxK[:, :, i] for i in range(3))
            if cfg.positions == "rotary":
                q_BxTxHxK = _rotary_tk(q_BxTxHxK, cfg.rope_base, t_axis=1)
                k_BxTxHxK = _rotary_tk(k_BxTxHxK, cfg.rope_base, t_axis=1)
            y_BxTxHxK = jax.nn.dot_product_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, is_causal=True,
                                                     implementation="cudnn")
            return _dense(self.out, y_BxTxHxK.reshape(B * T, cfg.d_attn)).reshape(B, T, D)
        # One transpose to heads-major [3, B, H, T, K] (the same split as [B, T, 3, H, K]).
        qkv_3xBxHxTxK = qkv_NxC.reshape(B, T, 3, cfg.n_heads, cfg.k).transpose(2, 0, 3, 1, 4)
        q_BxHxTxK, k_BxHxTxK, v_BxHxTxK = qkv_3xBxHxTxK[0], qkv_3xBxHxTxK[1], qkv_3xBxHxTxK[2]
        if cfg.positions == "rotary":
            q_BxHxTxK = _rotary_tk(q_BxHxTxK, cfg.rope_base, t_axis=2)
            k_BxHxTxK = _rotary_tk(k_BxHxTxK, cfg.rope_base, t_axis=2)
        y_BxHxTxK = causal_attention_bhtk(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK)
        y_NxA = y_BxHxTxK.transpose(0, 2, 1, 3).reshape(B * T, cfg.d_attn)
        return _dense(self.out, y_NxA).reshape(B, T, D)


class FeedForward(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        std_out = cfg.init_std / math.sqrt(2 * cfg.n_layers * cfg.loops)
        dense = dict(use_bias=cfg.use_bias, dtype=cfg.compute_dtype, rngs=rngs)
        n_in = 2 if cfg.ffn == "swiglu" else 1
        self.up = nnx.Linear(cfg.d_model, n_in * cfg.f, kernel_init=_normal(cfg.init_std), **dense)
        self.down = nnx.Linear(cfg.f, cfg.d_model, kernel_init=_normal(std_out), **dense)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        B, T, D = x_BxTxD.shape
        h_NxF = _dense(self.up, x_BxTxD.reshape(B * T, D))
        if self.cfg.ffn == "swiglu":
            gate_NxF, h_NxF = jnp.split(h_NxF, 2, axis=-1)
            h_NxF = jax.nn.silu(gate_NxF) * h_NxF
        else:
            h_NxF = jax.nn.gelu(h_NxF, approximate=True)
        return _dense(self.down, h_NxF).reshape(B, T, D)


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
        B, _, D = x_BxTxD.shape
        x_NxD = self.ln_final(x_BxTxD).reshape(B * T, D)
        if cfg.tie_embeddings:
            logits_NxV = self.embed.attend(x_NxD)
        else:
            logits_NxV = _dense(self.unembed, x_NxD)
        return logits_NxV.reshape(B, T, cfg.vocab_size).astype(jnp.float32)


def init(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """A freshly initialised model (parameters float32)."""
    return Transformer(cfg, rngs=nnx.Rngs(seed))


def count_leaves(model: nnx.Module) -> int:
    """Number of scalar parameters actually in the model's nnx.Param leaves."""
    state = nnx.state(model, nnx.Param)
    return int(sum(x.size for x in jax.tree.leaves(state)))
