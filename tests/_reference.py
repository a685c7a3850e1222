"""Plain reference implementations the fast paths are checked against (tests only).

The straightforward versions the model started from: einsum attention on [B, T, H, K] over
the full T x T with autodiff through it, rotary on [B, T, H, K], and the forward pass with
Linear layers on [B, T, D], applied to a model's own parameters.
"""

import math

import jax
import jax.numpy as jnp


def reference_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, scale=None):
    K = q_BxTxHxK.shape[-1]
    T = q_BxTxHxK.shape[1]
    logits = jnp.einsum("bthk,bshk->bhts", q_BxTxHxK, k_BxTxHxK)
    logits = logits / math.sqrt(K) if scale is None else logits * scale
    mask = jnp.tril(jnp.ones((T, T), dtype=bool))
    logits = jnp.where(mask, logits.astype(jnp.float32), -1e30)
    probs = jax.nn.softmax(logits, axis=-1).astype(v_BxTxHxK.dtype)
    return jnp.einsum("bhts,bshk->bthk", probs, v_BxTxHxK)


def reference_rotary(x, base):
    _, T, _, K = x.shape
    half = K // 2
    inv_freq = 1.0 / (base ** (jnp.arange(half, dtype=jnp.float32) / half))
    angle = jnp.arange(T, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    cos = jnp.cos(angle)[None, :, None, :].astype(x.dtype)
    sin = jnp.sin(angle)[None, :, None, :].astype(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def reference_forward(model, tokens_BxT, *, residual=1.0, logits_mult=1.0, attention_scale=None):
    """The model's original forward pass, layer by layer, on the model's own parameters.

    The keywords are a parametrization's multipliers, given by the caller (muP / CompleteP):
    of every residual branch, of the output logits, and of q.k (None: 1/sqrt(K)).
    """
    cfg = model.cfg
    B, T = tokens_BxT.shape
    x = model.embed(tokens_BxT)
    if cfg.positions == "learned":
        x = x + model.pos_embed(jnp.arange(T))[None]
    for _ in range(cfg.loops):
        for block in model.blocks:
            h = block.ln_attn(x)
            qkv = block.attn.qkv(h)  # Linear on [B, T, D]
            q, k, v = jnp.split(qkv.reshape(B, T, 3, cfg.n_heads, cfg.k), 3, axis=2)
            q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
            if cfg.positions == "rotary":
                q, k = reference_rotary(q, cfg.rope_base), reference_rotary(k, cfg.rope_base)
            x = x + residual * block.attn.out(reference_attention(q, k, v, attention_scale).reshape(B, T, cfg.d_attn))
            h = block.ffn.up(block.ln_ffn(x))
            if cfg.ffn == "swiglu":
                gate, h = jnp.split(h, 2, axis=-1)
                h = jax.nn.silu(gate) * h
            else:
                h = jax.nn.gelu(h, approximate=True)
            x = x + residual * block.ffn.down(h)
    x = model.ln_final(x)
    logits = model.embed.attend(x) if cfg.tie_embeddings else model.unembed(x)
    return (logits_mult * logits).astype(jnp.float32)
