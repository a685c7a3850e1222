"""Causal self-attention kernels and rotary positions, apart from the model that uses them.

- `causal_attention_bhtk`: softmax(q k^T / sqrt(K) + causal mask) v in the heads-major layout,
  computed in query blocks that skip fully masked key blocks, with a hand-written backward
  (the FlashAttention gradient identity); the fastest exact attention on XLA:CPU here.
- `use_cudnn`: when the model calls cuDNN's flash attention instead (NVIDIA GPUs, 16-bit).
- `rotary`: rotary position embeddings (Su et al. 2021).
- `attention_work_fraction`: the share of the T x T scores the blocked kernel computes, which
  is what XLA's FLOP count sees (`bench/flops_vs_xla.py`).

Shapes carry suffixes: B batch, T (or C, S for a block of) sequence, H heads, K head dim.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from scaling.config import ModelConfig


def rotary(x_BxTxHxK: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding (Su et al. 2021, eq. 34), the half-split variant (GPT-NeoX)."""
    return rotary_tk(x_BxTxHxK, base, t_axis=1)


def rotary_tk(x_xTxK: jax.Array, base: float, t_axis: int) -> jax.Array:
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


def causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, scale: float | None = None) -> jax.Array:
    """softmax(q k^T / sqrt(K) + causal mask) v, softmax in float32 ([B, T, H, K] layout).

    `scale`, when given, replaces 1/sqrt(K) as the multiplier of q k^T (muP's 1/K attention,
    `scaling.parametrization`)."""
    qkv = (a.transpose(0, 2, 1, 3) for a in (q_BxTxHxK, k_BxTxHxK, v_BxTxHxK))
    return causal_attention_bhtk(*qkv, scale=scale).transpose(0, 2, 1, 3)


def causal_attention_bhtk(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, scale: float | None = None) -> jax.Array:
    """`causal_attention` in the heads-major layout [B, H, T, K] the model computes in.

    Batch dimensions leading is what XLA's batched matmuls want: with [B, T, H, K] operands
    XLA inserts transposes around every attention matmul and its gradients.
    """
    T = q_BxHxTxK.shape[2]
    return _blocked_attention(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, _query_blocks(T), scale)


def _scaled(logits, K: int, scale: float | None):
    """q.k (or its gradient) times the attention scale: / sqrt(K) by default, exactly as before
    the scale became a parameter, or * scale."""
    return logits / math.sqrt(K) if scale is None else logits * scale


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


def _block_probs(q_BxHxCxK, k_BxHxSxK, row0: int, scale: float | None):
    """float32 softmax(q k^T / sqrt(K) + causal mask) of query rows [row0, row0 + C) over keys [0, S)."""
    K = q_BxHxCxK.shape[-1]
    C, S = q_BxHxCxK.shape[2], k_BxHxSxK.shape[2]
    logits_BxHxCxS = _scaled(jnp.einsum("bhtk,bhsk->bhts", q_BxHxCxK, k_BxHxSxK), K, scale)
    mask_CxS = (row0 + jnp.arange(C))[:, None] >= jnp.arange(S)[None, :]
    logits_BxHxCxS = jnp.where(mask_CxS, logits_BxHxCxS.astype(jnp.float32), -1e30)
    return jax.nn.softmax(logits_BxHxCxS, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _blocked_attention(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, blocks, scale):
    return _blocked_attention_fwd(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, blocks, scale)[0]


def _blocked_attention_fwd(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, blocks, scale):
    ys, probs = [], []
    for r0, r1 in zip(blocks[:-1], blocks[1:]):
        p_BxHxCxS = _block_probs(q_BxHxTxK[:, :, r0:r1], k_BxHxTxK[:, :, :r1], r0, scale)
        ys.append(jnp.einsum("bhts,bhsk->bhtk", p_BxHxCxS.astype(v_BxHxTxK.dtype), v_BxHxTxK[:, :, :r1]))
        probs.append(p_BxHxCxS)
    y_BxHxTxK = ys[0] if len(ys) == 1 else jnp.concatenate(ys, axis=2)
    return y_BxHxTxK, (q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, y_BxHxTxK, probs)


def _blocked_attention_bwd(blocks, scale, residuals, dy_BxHxTxK):
    """The softmax-attention gradient, block by block.

    Per block: dP = dY V^T, dS = P (dP - rowsum(dY * Y)) / sqrt(K) (or * scale) (rowsum(dP * P) =
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
        ds_BxHxCxS = _scaled((p_BxHxCxS * (dp_BxHxCxS - rowsum_BxHxT[:, :, r0:r1, None])).astype(dt), K, scale)
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


def use_cudnn(cfg: ModelConfig) -> bool:
    """cuDNN flash attention when asked, or on "auto" on a GPU computing in 16 bits."""
    if cfg.attention == "cudnn":
        return True
    return cfg.attention == "auto" and cfg.dtype != "float32" and jax.default_backend() == "gpu"
