import functools
import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import reference_forward
from flax import nnx

from scaling.config import ModelConfig
from scaling.flops import param_counts
from scaling.model import count_leaves, init


def random_configs(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        n_heads = rng.choice([1, 2, 3, 4])
        head_dim = rng.choice([8, 16])
        explicit_head_dim = rng.random() < 0.3
        d_model = n_heads * head_dim * rng.choice([1, 2]) if not explicit_head_dim else rng.choice([24, 40, 64])
        out.append(ModelConfig(
            d_model=d_model, n_layers=rng.randint(1, 3), n_heads=n_heads,
            head_dim=head_dim if explicit_head_dim else None,
            d_ff=rng.choice([None, 3 * d_model, 50]), vocab_size=rng.choice([17, 64, 256]),
            seq_len=rng.choice([8, 16]), ffn=rng.choice(["gelu", "swiglu"]),
            tie_embeddings=rng.random() < 0.5, positions=rng.choice(["learned", "rotary"]),
            loops=rng.choice([1, 1, 2, 3]), use_bias=rng.random() < 0.5))
    return out


CONFIGS = random_configs(24)


def test_random_shapes_cover_every_option():
    assert {c.tie_embeddings for c in CONFIGS} == {True, False}
    assert {c.loops > 1 for c in CONFIGS} == {True, False}
    assert {c.ffn for c in CONFIGS} == {"gelu", "swiglu"}
    assert {c.positions for c in CONFIGS} == {"learned", "rotary"}
    assert {c.use_bias for c in CONFIGS} == {True, False}


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"D{c.d_model}L{c.n_layers}x{c.loops}{c.ffn}{'T' if c.tie_embeddings else 'U'}")
def test_param_counts_equal_real_leaves(cfg):
    # nnx.eval_shape builds the real module tree with abstract leaves: the same parameters,
    # without spending seconds on random initialisers for two dozen shapes.
    from flax import nnx
    model = nnx.eval_shape(lambda: init(cfg))
    counts = param_counts(cfg)
    assert count_leaves(model) == counts.total
    assert counts.embedding + counts.non_embedding == counts.total


@pytest.mark.parametrize("cfg", CONFIGS[:4], ids=lambda c: f"D{c.d_model}L{c.n_layers}x{c.loops}{c.ffn}")
def test_initialised_model_runs_and_counts(cfg):
    from flax import nnx
    model = init(cfg)
    assert count_leaves(model) == param_counts(cfg).total
    logits = nnx.jit(lambda m, t: m(t))(model, jnp.zeros((2, cfg.seq_len), jnp.int32))
    assert logits.shape == (2, cfg.seq_len, cfg.vocab_size)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_loops_reuse_weights_but_change_the_function():
    base = ModelConfig(d_model=32, n_layers=2, n_heads=2, vocab_size=64, seq_len=8)
    looped = base.replace(loops=3)
    assert param_counts(base).total == param_counts(looped).total
    tokens = jnp.arange(16).reshape(2, 8) % 64
    a, b = init(base, seed=1)(tokens), init(looped, seed=1)(tokens)
    assert not np.allclose(np.asarray(a), np.asarray(b))


def test_model_is_causal():
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=50, seq_len=12, positions="rotary")
    model = init(cfg)
    tokens = jnp.arange(12)[None] % 50
    changed = tokens.at[0, 7].set(3)
    a, b = model(tokens), model(changed)
    np.testing.assert_allclose(np.asarray(a[0, :7]), np.asarray(b[0, :7]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(a[0, 7:]), np.asarray(b[0, 7:]))


def test_bfloat16_compute_keeps_float32_params():
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, vocab_size=64, seq_len=8, dtype="bfloat16")
    model = init(cfg)
    from flax import nnx
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}
    assert model(jnp.zeros((1, 8), jnp.int32)).dtype == jnp.float32


@pytest.mark.parametrize("field,value,fragment", [
    ("d_model", 0, "d_model=0"),
    ("n_layers", -1, "n_layers=-1"),
    ("n_heads", 0, "n_heads=0"),
    ("vocab_size", 0, "vocab_size=0"),
    ("loops", 0, "loops=0"),
    ("d_ff", -5, "d_ff=-5"),
    ("ffn", "relu", "ffn='relu'"),
    ("positions", "alibi", "positions='alibi'"),
    ("dtype", "int8", "dtype='int8'"),
    ("d_model", 30.0, "d_model=30.0"),
])
def test_bad_fields_raise_naming_field_and_value(field, value, fragment):
    kwargs = dict(d_model=32, n_layers=2, n_heads=4)
    kwargs[field] = value
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        ModelConfig(**kwargs)


def test_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model=30.*n_heads=4"):
        ModelConfig(d_model=30, n_layers=2, n_heads=4)
    # An explicit head_dim decouples d_attn from d_model, as in Chinchilla's Table A9.
    assert ModelConfig(d_model=30, n_layers=2, n_heads=4, head_dim=8).d_attn == 32


def test_sequence_longer_than_context_is_rejected():
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, vocab_size=10, seq_len=4)
    with pytest.raises(ValueError, match="seq_len=4"):
        init(cfg)(jnp.zeros((1, 5), jnp.int32))


# --- the fast paths against the plain reference forward (tests/_reference.py) ------------
# The model runs its matmuls on 2-D [tokens, features] arrays and attention heads-major with
# a blocked kernel; on the same parameters losses and gradients must match the reference.


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


REFERENCE_CONFIGS = [
    ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=97, seq_len=80),
    ModelConfig(d_model=48, n_layers=2, n_heads=3, vocab_size=64, seq_len=70, positions="rotary", ffn="swiglu",
                tie_embeddings=False, use_bias=True),
    ModelConfig(d_model=32, n_layers=1, n_heads=2, head_dim=24, vocab_size=50, seq_len=33, loops=2),
]


@pytest.mark.parametrize("cfg", REFERENCE_CONFIGS, ids=["gpt", "rotary-swiglu-untied-bias", "looped-headdim"])
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


def test_remat_policies_train_to_the_same_losses_and_xla_counts_the_recompute(tiny_run):
    """Activation checkpointing changes what the backward pass keeps, not what it computes:
    the same losses step by step (measured bitwise equal on XLA:CPU; asserted to 1e-6), while
    XLA's FLOP count of the step rises by the recomputed forward ("block") or a little less
    ("dots_saveable": only the elementwise ops between the matmuls are recomputed)."""
    from scaling import step as step_lib
    from scaling.data import DataConfig, make_dataset

    mesh = step_lib.data_mesh(jax.devices()[:1])
    ds = make_dataset(DataConfig(), seq_len=32, split="train")
    losses, flops = {}, {}
    for remat in ("none", "block", "dots_saveable"):
        cfg = tiny_run(model=ModelConfig(d_model=32, n_layers=2, n_heads=2, seq_len=32, loops=2, remat=remat), batch=8)
        compiled = step_lib.train_step_for(cfg, mesh)
        params, rest, opt = compiled.init(np.int32(0))
        batches = [step_lib.put_batch(mesh, ds.batch(i, 8), 8) for i in range(4)]
        step = compiled.step.lower(params, opt, rest, batches[0], np.float32(3e-3)).compile()  # one compile for both
        cost = step.cost_analysis()
        flops[remat] = float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
        losses[remat] = []
        for tokens in batches:
            params, opt, m = step(params, opt, rest, tokens, np.float32(3e-3))
            losses[remat].append(float(m["loss"]))
    print(f"XLA FLOPs per step relative to no remat: block {flops['block'] / flops['none']:.3f}, "
          f"dots_saveable {flops['dots_saveable'] / flops['none']:.3f}; losses bitwise equal: "
          f"{losses['block'] == losses['none'] and losses['dots_saveable'] == losses['none']}")
    for remat in ("block", "dots_saveable"):
        np.testing.assert_allclose(losses[remat], losses["none"], rtol=1e-6)
    assert flops["block"] > 1.1 * flops["none"] and flops["none"] < flops["dots_saveable"] < flops["block"]


# --- parametrizations (scaling.parametrization): init and forward multipliers ------------
# The expected numbers are the papers' formulas written out here, not read from the module.


def _std(x) -> float:
    return float(np.std(np.asarray(x)))


def test_mup_init_stds_follow_the_base_width():
    # Width 256 = 8 x the base 32: hidden matrices N(0, 0.02^2 / 8) (TP5 Table 3, variance
    # ~ 1/fan_in), the residual projections also / sqrt(2 L); embeddings keep 0.02.
    cfg = ModelConfig(d_model=256, n_layers=2, n_heads=16, vocab_size=256, seq_len=16, tie_embeddings=False,
                      parametrization="mup", base_width=32)
    m = init(cfg, seed=0)
    block = m.blocks[0]
    assert _std(block.attn.qkv.kernel[...]) == pytest.approx(0.02 / math.sqrt(8), rel=0.02)
    assert _std(block.ffn.up.kernel[...]) == pytest.approx(0.02 / math.sqrt(8), rel=0.02)
    assert _std(block.attn.out.kernel[...]) == pytest.approx(0.02 / math.sqrt(2 * 2 * 8), rel=0.02)
    assert _std(block.ffn.down.kernel[...]) == pytest.approx(0.02 / math.sqrt(2 * 2 * 8), rel=0.02)
    assert _std(m.embed.embedding[...]) == pytest.approx(0.02, rel=0.02)
    assert _std(m.unembed.kernel[...]) == pytest.approx(0.02, rel=0.02)
    sp = init(cfg.replace(parametrization="sp", base_width=None), seed=0)
    assert _std(sp.blocks[0].attn.qkv.kernel[...]) == pytest.approx(0.02, rel=0.02)


PARAMETRIZED = [
    # (config, residual, logits multiplier, attention scale) from the papers' formulas
    (ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=64, seq_len=80, positions="rotary", ffn="swiglu",
                 tie_embeddings=False, use_bias=True, parametrization="mup", base_width=32, base_head_dim=8),
     1.0, 32 / 64, math.sqrt(8) / 16),
    (ModelConfig(d_model=48, n_layers=2, n_heads=3, vocab_size=50, seq_len=33, loops=2, parametrization="completep",
                 base_width=16, base_depth=1), 1 / 4, 16 / 48, None),
    (ModelConfig(d_model=32, n_layers=3, n_heads=2, vocab_size=50, seq_len=33, parametrization="completep",
                 base_width=64, base_depth=12, base_head_dim=32, depth_alpha=0.5), (12 / 3) ** 0.5, 2.0,
     math.sqrt(32) / 16),
]


@pytest.mark.parametrize("cfg,residual,logits_mult,attention_scale", PARAMETRIZED,
                         ids=["mup-1/K-untied", "completep-looped", "depth-mup-shallow"])
def test_parametrized_forward_and_grads_match_the_reference(cfg, residual, logits_mult, attention_scale):
    # Residual branches x residual, logits x base_width / d_model, q.k x sqrt(K_base)/K:
    # the fast paths (the blocked attention's hand-written backward included) against the
    # plain forward with those multipliers written in.
    model = init(cfg, seed=3)
    tokens = jax.random.randint(jax.random.key(4), (3, cfg.seq_len + 1), 0, cfg.vocab_size)
    loss, grads = _loss_and_grads(lambda m, t: m(t), model, tokens)
    ref = functools.partial(reference_forward, residual=residual, logits_mult=logits_mult,
                            attention_scale=attention_scale)
    loss_ref, grads_ref = _loss_and_grads(ref, model, tokens)
    np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-6)
    _assert_trees_close(grads, grads_ref, rtol=1e-4, atol=1e-6)
