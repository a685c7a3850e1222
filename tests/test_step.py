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


# --- FSDP: the (data, fsdp) mesh -------------------------------------------------------------


def test_fsdp_mesh_from_config_and_sizes_that_do_not_divide_name_the_field():
    assert step_lib.make_mesh(1).axis_names == ("data",)  # fsdp = 1 is the data-parallel mesh
    mesh = step_lib.make_mesh(2)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2} and step_lib.mesh_fsdp(mesh) == 2
    assert [d.id for d in mesh.devices[0]] == [0, 1]  # consecutive devices form an fsdp group
    with pytest.raises(ValueError, match=r"TrainConfig\.mesh_fsdp=3: must divide the 8 devices"):
        step_lib.make_mesh(3)
    with pytest.raises(ValueError, match=r"TrainConfig\.mesh_fsdp=0: must be a positive int"):
        from scaling.config import TrainConfig

        TrainConfig(tokens=1000, mesh_fsdp=0)


def _bytes_on(tree, device) -> int:
    """Bytes of `tree`'s arrays that live on `device` (from each array's addressable shards)."""
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == device)


@pytest.mark.parametrize("fsdp", [2, 8])
def test_fsdp_divides_parameter_and_optimizer_bytes_per_device(tiny_run, fsdp):
    from scaling import memory

    cfg = tiny_run(mesh_fsdp=fsdp)
    whole = step_lib.train_step_for(tiny_run(), step_lib.data_mesh(jax.devices()[:1]))
    p1, _, o1 = whole.init(np.int32(0))
    mesh = step_lib.make_mesh(fsdp)
    compiled = step_lib.train_step_for(cfg, mesh)
    params, rest, opt = compiled.init(np.int32(0))
    vector_bytes = sum(x.nbytes for x in jax.tree.leaves(p1) if x.ndim < 2)
    params_1, opt_1 = _bytes_on(p1, jax.devices()[0]), _bytes_on(o1, jax.devices()[0])
    for d in mesh.devices.flat:
        # every matrix of the tiny model divides by 8: matrices / fsdp, vectors whole
        assert _bytes_on(params, d) == (params_1 - vector_bytes) // fsdp + vector_bytes
        assert _bytes_on(params, d) == 4 * memory.params_per_device(cfg.model, fsdp)
        # Adam's two moments likewise (+ its step count, replicated)
        assert _bytes_on(opt, d) - 4 == (opt_1 - 4 - 2 * vector_bytes) // fsdp + 2 * vector_bytes
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p1)):  # the same initial values, sharded
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # ... and the step keeps them sharded.
    tokens = step_lib.put_batch(mesh, make_dataset(DataConfig(), seq_len=32, split="train").batch(0, 16), 16)
    before = jax.tree.map(lambda x: x.sharding, (params, opt))
    params, opt, _ = compiled.step(params, opt, rest, tokens, np.float32(1e-3))
    assert jax.tree.map(lambda x: x.sharding, (params, opt)) == before
    assert _bytes_on(params, mesh.devices.flat[0]) == 4 * memory.params_per_device(cfg.model, fsdp)


def test_step_key_holds_the_mesh_shape(tiny_run):
    cfg = tiny_run()
    flat = step_lib.StepKey.of(cfg, step_lib.data_mesh())
    two_d = step_lib.StepKey.of(cfg, step_lib.make_mesh(2))
    assert flat.device_ids == two_d.device_ids and flat != two_d
    assert flat.mesh_shape == (("data", 8),) and two_d.mesh_shape == (("data", 4), ("fsdp", 2))
    assert step_lib.train_step_for(cfg, step_lib.make_mesh(2)) is step_lib.train_step_for(cfg, step_lib.make_mesh(2))


def test_grad_accumulation_with_fsdp_equals_the_full_batch(tiny_run):
    mesh = step_lib.make_mesh(4)
    tokens = make_dataset(DataConfig(), seq_len=32, split="train").batch(0, 16)
    out = {}
    for accum in (1, 2):
        cfg = tiny_run(grad_accum=accum, mesh_fsdp=4)
        step = step_lib.train_step_for(cfg, mesh)
        params, rest, opt = step.init(np.int32(0))
        params, opt, m = step.step(params, opt, rest, _place(cfg, mesh, tokens), np.float32(1e-3))
        out[accum] = (jax.device_get(params), float(m["loss"]), float(m["grad_norm"]))
    (p1, l1, g1), (p2, l2, g2) = out[1], out[2]
    assert l2 == pytest.approx(l1, rel=1e-6) and g2 == pytest.approx(g1, rel=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


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
