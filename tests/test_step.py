"""The compiled step: gradient accumulation equals the full batch, clipping acts before Adam,
weight decay only on matrices, and XLA's FLOP count of the real step is available."""

import jax
import jax.numpy as jnp
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


# --- parametrizations: SP unchanged, muP/CompleteP multipliers in the same compiled step ---

from scaling.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from scaling.parametrization import rules  # noqa: E402

_SP = ModelConfig(d_model=32, n_layers=2, n_heads=2, seq_len=32)


def _train(model, steps, lr=3e-3, **train):
    """`steps` steps of `model` on one device: (init params, final params, losses)."""
    cfg = RunConfig(model=model, data=DataConfig(),
                    train=TrainConfig(tokens=steps * 8 * 32, global_batch_size=8, **train))
    mesh = step_lib.data_mesh(jax.devices()[:1])
    compiled = step_lib.train_step_for(cfg, mesh)
    params, rest, opt = compiled.init(np.int32(0))
    first = jax.device_get(params)
    ds = make_dataset(DataConfig(), seq_len=model.seq_len, split="train")
    losses = []
    for s in range(steps):
        params, opt, m = compiled.step(params, opt, rest, step_lib.put_batch(mesh, ds.batch(s, 8), 8), np.float32(lr))
        losses.append(float(m["loss"]))
    return first, jax.device_get(params), losses


def test_sp_is_unchanged_and_every_parametrization_is_sp_at_its_base():
    # The first three losses of this SP run, recorded at commit 525baef (before
    # parametrizations existed); init and step were also compared there bit for bit.
    init_sp, params_sp, losses = _train(_SP, 3)
    np.testing.assert_allclose(losses, [5.49148083, 5.35529709, 5.30099916], rtol=2e-6)
    # At its base width (and depth) muP / CompleteP are the same model and the same step.
    for model in (_SP.replace(parametrization="mup", base_width=32),
                  _SP.replace(parametrization="completep", base_width=32, base_depth=2, depth_alpha=0.5)):
        init_p, params_p, losses_p = _train(model, 3)
        assert losses_p == losses
        for a, b in zip(jax.tree.leaves((init_sp, params_sp)), jax.tree.leaves((init_p, params_p))):
            np.testing.assert_array_equal(a, b)


def test_mup_step_scales_each_roles_learning_rate_and_compiles_once_per_shape():
    # Width 128 on a base of 32: Adam's first update is lr x mult x g / (|g| + eps), so the
    # largest |change| of each tensor is lr x its multiplier: 1/4 for the block matrices
    # (TP5 Table 3, hidden weights), 1 for embeddings, vectors and the readout.
    model = ModelConfig(d_model=128, n_layers=1, n_heads=8, seq_len=32, tie_embeddings=False, use_bias=True,
                        parametrization="mup", base_width=32)
    before, after, _ = _train(model, 1, lr=1e-2, weight_decay=0.0, grad_clip=0.0)
    flat = jax.tree_util.tree_leaves_with_path(before)
    for (path, p0), p1 in zip(flat, jax.tree.leaves(after)):
        name = jax.tree_util.keystr(path)
        expected = 0.25 if name.endswith("['kernel'].value") and "blocks" in name else 1.0
        assert float(np.max(np.abs(p1 - p0))) / 1e-2 == pytest.approx(expected, rel=2e-3), name
    # Another run of this shape (other lr, seed, horizon, schedule) reuses the compiled step.
    traces = dict(step_lib.TRACE_COUNTS)
    _train(model, 2, lr=3e-3, weight_decay=0.0, grad_clip=0.0, seed=1, schedule="constant")
    assert dict(step_lib.TRACE_COUNTS) == traces


def test_completep_optimizer_scales_decay_and_eps_per_table_1():
    # Width 4x and depth 4x the base, alpha 1/2 (depth-muP).
    model = ModelConfig(d_model=64, n_layers=4, n_heads=4, seq_len=8, parametrization="completep",
                        base_width=16, base_depth=1, depth_alpha=0.5)
    m_d, m_L = 4.0, 4.0
    from flax import nnx

    from scaling.model import init

    _, params, _ = nnx.split(init(model), nnx.Param, ...)
    wd, eps = 0.1, 1e-8
    tx = step_lib.make_optimizer(wd, 0.9, 0.95, eps, 0.0, model=model)
    hidden = lambda name: "blocks" in name and name.endswith("['kernel'].value")  # noqa: E731
    # Zero gradients: Adam's part is 0, the update is the decay: wd x (wd mult) x (lr mult) x p.
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    for (path, u), p in zip(jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(params)):
        name = jax.tree_util.keystr(path)
        if hidden(name):  # decay x m_d, lr / m_d x m_L^(alpha - 1): wd x m_L^-1/2 of p
            np.testing.assert_allclose(u, wd * m_L ** -0.5 * p, rtol=1e-6)
        elif p.ndim >= 2:  # embeddings: plain AdamW decay
            np.testing.assert_allclose(u, wd * p, rtol=1e-6)
        else:
            assert not np.any(u), name
    # Gradients equal to the scaled eps: Adam gives g / (|g| + eps') = 1/2, times the lr mult.
    eps_scaled = eps / (m_d * m_L ** 0.5)
    assert rules(model).adam_eps * eps == pytest.approx(eps_scaled)
    tx = step_lib.make_optimizer(0.0, 0.9, 0.95, eps, 0.0, model=model)
    grads = jax.tree.map(lambda p: jnp.full_like(p, eps_scaled), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        name = jax.tree_util.keystr(path)
        mult = m_L ** -0.5 / m_d if hidden(name) else (m_L ** -0.5 if "blocks" in name else 1.0)
        np.testing.assert_allclose(u, 0.5 * mult, rtol=1e-5, err_msg=name)
