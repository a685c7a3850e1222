"""The blocked causal attention and rotary positions compute the plain reference's maths.

`scaling.attention` computes attention in the heads-major [B, H, T, K] layout, in query
blocks that skip fully masked key blocks, with a hand-written backward. Values and gradients
must match the straightforward einsum attention (tests/_reference.py) to float32 tolerance,
and closely in bfloat16.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import reference_attention, reference_rotary

from scaling import attention as A
from scaling.attention import causal_attention, rotary


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
        blocks = A._query_blocks(T)
        assert blocks[0] == 0 and blocks[-1] == T
        assert all(b > a for a, b in zip(blocks[:-1], blocks[1:]))
        assert len(blocks) - 1 <= max(A.MAX_ATTENTION_BLOCKS, 1)


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


def test_work_fraction_is_the_share_of_scores_computed():
    assert A.attention_work_fraction(64) == 1.0           # one block: the full T x T
    f = A.attention_work_fraction(1024)
    assert 0.5 < f < 1.0                                   # towards the causal triangle
    blocks = A._query_blocks(1024)
    assert f == sum((r1 - r0) * r1 for r0, r1 in zip(blocks[:-1], blocks[1:])) / 1024**2


def test_use_cudnn_only_when_asked_or_on_a_gpu_in_16_bits():
    from scaling.config import ModelConfig

    base = dict(d_model=32, n_layers=1, n_heads=2)
    assert A.use_cudnn(ModelConfig(**base, attention="cudnn", dtype="bfloat16"))
    assert not A.use_cudnn(ModelConfig(**base, attention="blocked", dtype="bfloat16"))
    on_gpu = jax.default_backend() == "gpu"
    assert A.use_cudnn(ModelConfig(**base, attention="auto", dtype="bfloat16")) == on_gpu
    assert not A.use_cudnn(ModelConfig(**base, attention="auto", dtype="float32"))
