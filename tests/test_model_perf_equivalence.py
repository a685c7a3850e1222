"""The model's fast paths compute the same mathematics as the plain reference.

`scaling.model` runs its matmuls on 2-D [tokens, features] arrays, attention in the
heads-major [B, H, T, K] layout, and a causal attention that skips the masked blocks with a
hand-written backward. The reference below is the straightforward version the model started
from (Linear layers on [B, T, D], einsum attention on [B, T, H, K] over the full T x T with
autodiff through it), applied to the same parameters: losses and gradients must agree to
float32 tolerance.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from scaling import model as M
from scaling.model import ModelConfig, causal_attention, init, rotary


def reference_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK):
    K = q_BxTxHxK.shape[-1]
    T = q_BxTxHxK.shape[1]
    logits = jnp.einsum("bthk,bshk->bhts", q_BxTxHxK, k_BxTxHxK) / math.sqrt(K)
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


def reference_forward(model, tokens_BxT):
    """The model's original forward pass, layer by layer, on the model's own parameters."""
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
            x = x + block.attn.out(reference_attention(q, k, v).reshape(B, T, cfg.d_attn))
            h = block.ffn.up(block.ln_ffn(x))
            if cfg.ffn == "swiglu":
                gate, h = jnp.split(h, 2, axis=-1)
                h = jax.nn.silu(gate) * h
            else:
                h = jax.nn.gelu(h, approximate=True)
            x = x + block.ffn.down(h)
    x = model.ln_final(x)
    logits = model.embed.attend(x) if cfg.tie_embeddings else model.unembed(x)
    return logits.astype(jnp.float32)


def _loss_and_grads(forward, model, tokens_BxT1):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params):
        m = nnx.merge(graphdef, params, rest)
        logits = forward(m, tokens_BxT1[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens_BxT1[:, 1:]).mean()

    return jax.jit(jax.value_and_grad(loss_fn))(params)


def _assert_trees_close(a, b, rtol, atol):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=atol,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("T", [1, 7, 64, 100, 256, 300, 700])
def test_blocked_attention_matches_reference_values_and_grads(T):
    B, H, K = 2, 3, 16
    keys = jax.random.split(jax.random.key(T), 4)
    q, k, v, dy = (jax.random.normal(kk, (B, T, H, K)) for kk in keys)
    y_ref, vjp_ref = jax.vjp(reference_attention, q, k, v)
    y, vjp = jax.vjp(causal_attention, q, k, v)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(vjp(dy), vjp_ref(dy)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-4, atol=1e-4)


def test_query_blocks_cover_the_context():
    for T in [1, 63, 64, 65, 256, 1000, 1024, 4096]:
        blocks = M._query_blocks(T)
        assert blocks[0] == 0 and blocks[-1] == T
        assert all(b > a for a, b in zip(blocks[:-1], blocks[1:]))
        assert len(blocks) - 1 <= max(M.MAX_ATTENTION_BLOCKS, 1)


def test_blocked_attention_bfloat16_close_to_reference():
    B, T, H, K = 2, 130, 2, 32
    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v, dy = (jax.random.normal(kk, (B, T, H, K), jnp.bfloat16) for kk in keys)
    y_ref, vjp_ref = jax.vjp(reference_attention, q, k, v)
    y, vjp = jax.vjp(causal_attention, q, k, v)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), rtol=3e-2, atol=3e-2)
    for g, g_ref in zip(vjp(dy), vjp_ref(dy)):
        assert g.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(g_ref, np.float32), rtol=5e-2, atol=5e-2)


def test_rotary_public_signature_unchanged():
    x = jax.random.normal(jax.random.key(1), (2, 9, 3, 8))
    np.testing.assert_allclose(np.asarray(rotary(x, 10_000.0)), np.asarray(reference_rotary(x, 10_000.0)),
                               rtol=1e-6, atol=1e-6)


CONFIGS = [
    ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=97, seq_len=80),
    ModelConfig(d_model=48, n_layers=2, n_heads=3, vocab_size=64, seq_len=70, positions="rotary", ffn="swiglu",
                tie_embeddings=False, use_bias=True),
    ModelConfig(d_model=32, n_layers=1, n_heads=2, head_dim=24, vocab_size=50, seq_len=33, loops=2),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["gpt", "rotary-swiglu-untied-bias", "looped-headdim"])
def test_model_loss_and_grads_match_reference(cfg):
    model = init(cfg, seed=3)
    tokens = jax.random.randint(jax.random.key(4), (3, cfg.seq_len + 1), 0, cfg.vocab_size)
    loss, grads = _loss_and_grads(lambda m, t: m(t), model, tokens)
    loss_ref, grads_ref = _loss_and_grads(reference_forward, model, tokens)
    np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-6)
    _assert_trees_close(grads, grads_ref, rtol=1e-4, atol=1e-6)


def test_model_bfloat16_loss_matches_reference():
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=97, seq_len=80, dtype="bfloat16")
    model = init(cfg, seed=3)
    tokens = jax.random.randint(jax.random.key(4), (3, cfg.seq_len + 1), 0, cfg.vocab_size)
    loss, grads = _loss_and_grads(lambda m, t: m(t), model, tokens)
    loss_ref, grads_ref = _loss_and_grads(reference_forward, model, tokens)
    np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-2)
    _assert_trees_close(grads, grads_ref, rtol=1e-1, atol=1e-3)


@pytest.mark.slow
def test_gpu_step_script_runs_tiny_on_cpu():
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    out = subprocess.run([sys.executable, os.path.join(root, "bench", "gpu_step.py"), "--tiny"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["checks"] == {"finite": True, "decreasing": True, "bf16_f32_close": True}
    assert result["model"]["dtype"] == "bfloat16" and result["tokens_per_s"] > 0
