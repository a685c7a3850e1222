"""The model family: a decoder-only Transformer in Flax NNX, configured by `ModelConfig`.

One block is the GPT-2 / nanoGPT pre-LayerNorm block (Radford et al. 2019):

    x = x + Attention(LN(x));  x = x + FFN(LN(x))

`ModelConfig.remat` wraps each block in `nnx.remat` (`jax.checkpoint`): the backward pass
recomputes what the policy did not keep (Chen et al. 2016, "Training Deep Nets with Sublinear
Memory Cost"); the values, and so the losses, are the same.

`loops` re-applies the whole stack of `n_layers` blocks with shared weights (a "looped"
Transformer, e.g. Dehghani et al. 2019 "Universal Transformers"; Giannou et al. 2023): the
compute per token grows by `loops`, the parameter count does not. Scaling laws in N alone
cannot see that difference; laws in C can (see `scaling.flops`).

`ModelConfig.parametrization` (SP, muP, CompleteP) sets the init stds, the residual-branch
and logit multipliers and the attention scale, all read from `scaling.parametrization.rules`;
under SP every multiplier is 1 and is not applied at all.

Shapes carry suffixes: B batch, T sequence, D d_model, H heads, K head dim, F FFN width,
V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.attention import causal_attention_bhtk, rotary_tk, use_cudnn
from scaling.config import ModelConfig  # noqa: F401  (re-exported: scaling.model.ModelConfig)
from scaling.parametrization import rules

# ---------------------------------------------------------------------------------------
# Layers


def _normal(std: float):
    return nnx.initializers.normal(stddev=std)


def _dense(layer: nnx.Linear, x_NxD: jax.Array) -> jax.Array:
    """`layer` applied to the rows of a 2-D [tokens, features] array.

    Kept 2-D on purpose: on XLA:CPU a Linear on [B, T, D] makes the kernel gradient a dot
    contracting two dimensions, which XLA lays out with a slow transposed copy of the
    [B, T, F] activation gradient (measured: an MLP fwd+bwd 2.9x slower than on [B*T, D]).
    """
    return layer(x_NxD)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        r = rules(cfg)
        dense = dict(use_bias=cfg.use_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.qkv = nnx.Linear(cfg.d_model, 3 * cfg.d_attn, kernel_init=_normal(r.hidden_std), **dense)
        self.out = nnx.Linear(cfg.d_attn, cfg.d_model, kernel_init=_normal(r.out_std), **dense)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        B, T, D = x_BxTxD.shape
        qkv_NxC = _dense(self.qkv, x_BxTxD.reshape(B * T, D))
        if use_cudnn(cfg):
            qkv_BxTx3xHxK = qkv_NxC.reshape(B, T, 3, cfg.n_heads, cfg.k)
            q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = (qkv_BxTx3xHxK[:, :, i] for i in range(3))
            if cfg.positions == "rotary":
                q_BxTxHxK = rotary_tk(q_BxTxHxK, cfg.rope_base, t_axis=1)
                k_BxTxHxK = rotary_tk(k_BxTxHxK, cfg.rope_base, t_axis=1)
            y_BxTxHxK = jax.nn.dot_product_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, is_causal=True,
                                                     scale=rules(cfg).attention_scale, implementation="cudnn")
            return _dense(self.out, y_BxTxHxK.reshape(B * T, cfg.d_attn)).reshape(B, T, D)
        # One transpose to heads-major [3, B, H, T, K] (the same split as [B, T, 3, H, K]).
        qkv_3xBxHxTxK = qkv_NxC.reshape(B, T, 3, cfg.n_heads, cfg.k).transpose(2, 0, 3, 1, 4)
        q_BxHxTxK, k_BxHxTxK, v_BxHxTxK = qkv_3xBxHxTxK[0], qkv_3xBxHxTxK[1], qkv_3xBxHxTxK[2]
        if cfg.positions == "rotary":
            q_BxHxTxK = rotary_tk(q_BxHxTxK, cfg.rope_base, t_axis=2)
            k_BxHxTxK = rotary_tk(k_BxHxTxK, cfg.rope_base, t_axis=2)
        y_BxHxTxK = causal_attention_bhtk(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, scale=rules(cfg).attention_scale)
        y_NxA = y_BxHxTxK.transpose(0, 2, 1, 3).reshape(B * T, cfg.d_attn)
        return _dense(self.out, y_NxA).reshape(B, T, D)


class FeedForward(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        r = rules(cfg)
        dense = dict(use_bias=cfg.use_bias, dtype=cfg.compute_dtype, rngs=rngs)
        n_in = 2 if cfg.ffn == "swiglu" else 1
        self.up = nnx.Linear(cfg.d_model, n_in * cfg.f, kernel_init=_normal(r.hidden_std), **dense)
        self.down = nnx.Linear(cfg.f, cfg.d_model, kernel_init=_normal(r.out_std), **dense)

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
        self.residual = rules(cfg).residual  # CompleteP's branch multiplier (1 otherwise)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        x_BxTxD = x_BxTxD + self._branch(self.attn(self.ln_attn(x_BxTxD)))
        return x_BxTxD + self._branch(self.ffn(self.ln_ffn(x_BxTxD)))

    def _branch(self, y_BxTxD: jax.Array) -> jax.Array:
        return y_BxTxD if self.residual == 1.0 else y_BxTxD * jnp.asarray(self.residual, y_BxTxD.dtype)


# ModelConfig.remat -> the jax.checkpoint policy of each block: "block" keeps nothing but the
# block's input; "dots_saveable" keeps every matmul's output.
_REMAT_POLICIES = {"block": None, "dots_saveable": jax.checkpoint_policies.dots_saveable}


def _apply_block(block: Block, x_BxTxD: jax.Array) -> jax.Array:
    return block(x_BxTxD)


class Transformer(nnx.Module):
    """Decoder-only Transformer: tokens_BxT (int) -> logits_BxTxV (float32)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        r = rules(cfg)
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=_normal(r.embed_std),
                               dtype=cfg.compute_dtype, rngs=rngs)
        if cfg.positions == "learned":
            self.pos_embed = nnx.Embed(cfg.seq_len, cfg.d_model, embedding_init=_normal(r.embed_std),
                                       dtype=cfg.compute_dtype, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.ln_final = nnx.LayerNorm(cfg.d_model, use_bias=cfg.use_bias, dtype=cfg.compute_dtype,
                                      epsilon=1e-5, rngs=rngs)
        if not cfg.tie_embeddings:
            self.unembed = nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=cfg.use_bias,
                                      kernel_init=_normal(r.embed_std), dtype=cfg.compute_dtype,
                                      rngs=rngs)

    def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
        cfg = self.cfg
        T = tokens_BxT.shape[1]
        if T > cfg.seq_len:
            raise ValueError(f"tokens_BxT has T={T} > ModelConfig.seq_len={cfg.seq_len}")
        x_BxTxD = self.embed(tokens_BxT)
        if cfg.positions == "learned":
            x_BxTxD = x_BxTxD + self.pos_embed(jnp.arange(T))[None]
        apply = _apply_block
        if cfg.remat != "none":
            apply = nnx.remat(_apply_block, policy=_REMAT_POLICIES[cfg.remat])
        for _ in range(cfg.loops):
            for block in self.blocks:
                x_BxTxD = apply(block, x_BxTxD)
        B, _, D = x_BxTxD.shape
        x_NxD = self.ln_final(x_BxTxD).reshape(B * T, D)
        if cfg.tie_embeddings:
            logits_NxV = self.embed.attend(x_NxD)
        else:
            logits_NxV = _dense(self.unembed, x_NxD)
        logit_mult = rules(cfg).logits  # muP's 1 / m_d readout multiplier (1 under SP)
        if logit_mult != 1.0:
            logits_NxV = logits_NxV * jnp.asarray(logit_mult, logits_NxV.dtype)
        return logits_NxV.reshape(B, T, cfg.vocab_size).astype(jnp.float32)


def init(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """A freshly initialised model (parameters float32)."""
    return Transformer(cfg, rngs=nnx.Rngs(seed))


def count_leaves(model: nnx.Module) -> int:
    """Number of scalar parameters actually in the model's nnx.Param leaves."""
    state = nnx.state(model, nnx.Param)
    return int(sum(x.size for x in jax.tree.leaves(state)))
