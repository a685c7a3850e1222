"""The compiled step: gradient accumulation equals the full batch, clipping acts before Adam,
weight decay only on matrices, and XLA's FLOP count of the real step is available."""

import jax
import numpy as np
import optax
import pytest

from scaling import step as step_lib
from scaling.data import DataConfig, make_dataset


def _place(cfg, mesh, tokens):
    return step_lib.put_batch(mesh, tokens, cfg.train.global_batch_size)


def test_grad_accumulation_equals_the_full_batch_and_clipping_is_active(tiny_run):
    mesh = step_lib.data_mesh()
    tokens = make_dataset(DataConfig(), seq_len=32, split="train").batch(0, 16)
    results = {}
    for accum in (1, 2):  # microbatches of 8 rows: one per device
        cfg = tiny_run(grad_accum=accum, grad_clip=1.0)
        step = step_lib.train_step_for(cfg, mesh)
        params, rest, opt = step.init(np.int32(0))
        params, opt, m = step.step(params, opt, rest, _place(cfg, mesh, tokens), np.float32(1e-3))
        results[accum] = (jax.device_get(params), jax.device_get(opt), float(m["loss"]), float(m["grad_norm"]))
    (p1, o1, l1, g1), (p2, o2, l2, g2) = results[1], results[2]
    assert l2 == pytest.approx(l1, rel=1e-6) and g2 == pytest.approx(g1, rel=1e-5)
    # The gradients (Adam's first moment = 0.1 x grad) agree to float32 rounding ...
    mu1, mu2 = optax.tree_utils.tree_get(o1, "mu"), optax.tree_utils.tree_get(o2, "mu")
    for a, b in zip(jax.tree.leaves(mu1), jax.tree.leaves(mu2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)
    # ... and so do the updates, up to Adam's g / (|g| + eps) amplifying rounding where
    # |g| ~ eps: compare at 1% of one update (lr = 1e-3).
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    # Adam's first moment after one step is (1 - beta1) x the gradient AFTER clipping:
    # the raw norm is above grad_clip=1, so |mu| = 0.1 x 1, not 0.1 x |g|.
    assert g1 > 1.2
    assert float(optax.tree.norm(mu1)) == pytest.approx((1 - 0.9) * 1.0, rel=1e-4)


def test_weight_decay_only_on_matrices(tiny_run):
    step = step_lib.train_step_for(tiny_run(), step_lib.data_mesh())
    params, _, _ = step.init(np.int32(0))
    mask = step_lib.decay_mask(params)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(mask)}
    assert any("embed" in k and v for k, v in flat.items())
    assert any("kernel" in k and v for k, v in flat.items())
    assert not any("scale" in k and v for k, v in flat.items())


def test_mesh_spans_every_device_and_rows_are_sharded(tiny_run):
    mesh = step_lib.data_mesh()
    assert mesh.size == len(jax.devices()) == 8 and mesh.axis_names == ("data",)
    assert step_lib.host_rows(mesh) == (0, 1)
    batch = step_lib.put_batch(mesh, np.zeros((16, 33), np.int32), 16)
    assert batch.shape == (16, 33)
    assert {s.data.shape for s in batch.addressable_shards} == {(2, 33)}  # 16 rows over 8 devices


def test_step_xla_flops_counts_the_compiled_step(tiny_run):
    cfg = tiny_run()
    xla = step_lib.step_xla_flops(cfg)
    from scaling import flops

    analytic = flops.per_step(cfg.model, cfg.train.global_batch_size, "palm")
    assert 0.8 < xla / analytic < 1.3  # the same step; bench/flops_vs_xla.py prints the exact ratios


def test_exact_match_of_several_span_lengths_in_one_pass(tiny_run):
    """Exact match of k-token spans, for every k at once, equals counting argmax hits by hand,
    on sequences the model itself generated greedily with 1 token in 8 corrupted (so every k
    has matches and misses); val_exact_match stays the one of exact_match_span."""
    cfg = tiny_run(exact_match_span=8, exact_match_spans=(1, 4, 16))
    mesh = step_lib.data_mesh(jax.devices()[:1])
    compiled = step_lib.train_step_for(cfg, mesh)
    params, rest, _ = compiled.init(np.int32(0))
    rng = np.random.default_rng(0)
    T, B = cfg.model.seq_len, 8
    tokens = rng.integers(0, 256, size=(B, T + 1)).astype(np.int32)
    forward = jax.jit(lambda t: step_lib.token_losses(compiled.graphdef, params, rest, t)[1])
    for t in range(T):  # greedy continuation: position t + 1 = argmax after t, unless corrupted
        guess = np.asarray(forward(tokens))[:, t].argmax(-1)
        tokens[:, t + 1] = np.where(rng.random(B) < 0.125, (guess + 1) % 256, guess)
    correct = np.asarray(forward(tokens)).argmax(-1) == tokens[:, 1:]
    eval_fn = step_lib.eval_step_for(cfg.model, B, cfg.train.spans, mesh)
    out = step_lib.evaluate(eval_fn, params, rest, [step_lib.put_batch(mesh, tokens, B)], _UnitBytes())
    assert cfg.train.spans == (8, 1, 4, 16)
    for k in (1, 4, 8, 16):
        expected = correct[:, : T // k * k].reshape(B, T // k, k).all(-1).mean()
        assert out[f"val_exact_match_{k}"] == pytest.approx(expected)
        if k > 1:
            assert 0 < expected < 1
    assert out["val_exact_match"] == out["val_exact_match_8"]
    assert out["val_accuracy"] == pytest.approx(correct.mean()) == out["val_exact_match_1"]


class _UnitBytes:
    def bits_per_byte(self, loss):
        return loss
