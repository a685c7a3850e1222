"""The memory plan: parameter shapes and their FSDP split match the model, the activation
estimate matches what autodiff keeps, and a run too big for its chip is refused with the
smallest mesh that fits."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling import memory
from scaling import step as step_lib
from scaling.attention import attention_work_fraction
from scaling.config import ModelConfig, RunConfig, TrainConfig
from scaling.data import DataConfig
from scaling.flops import param_counts
from scaling.model import init

GiB = 2**30


def _run(model: ModelConfig, **train) -> RunConfig:
    return RunConfig(model=model, data=DataConfig(), train=TrainConfig(tokens=10**9, **train))


def _state_shapes(model_cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    params = nnx.state(nnx.eval_shape(lambda: init(model_cfg, 0)), nnx.Param)
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        keys = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
        out["/".join(k for k in keys if k != "value")] = tuple(leaf.shape)
    return out


@pytest.mark.parametrize("fields", [
    {}, {"use_bias": True, "tie_embeddings": False}, {"ffn": "swiglu", "positions": "rotary", "d_ff": 96},
    {"head_dim": 8, "n_heads": 3, "loops": 2},
])
def test_param_shapes_are_the_models(fields):
    cfg = ModelConfig(**{"d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 16, "vocab_size": 40, **fields})
    shapes = memory.param_shapes(cfg)
    assert shapes == _state_shapes(cfg)
    assert sum(int(np.prod(s)) for s in shapes.values()) == param_counts(cfg).total


def test_fsdp_axis_splits_matrices_along_their_largest_divisible_dimension():
    assert memory.fsdp_axis((64, 256), 4) == 1
    assert memory.fsdp_axis((256, 64), 4) == 0
    assert memory.fsdp_axis((64, 64), 4) == 0          # ties: the first
    assert memory.fsdp_axis((60, 100), 8) is None      # no dimension divides
    assert memory.fsdp_axis((60, 96), 8) == 1          # the largest that divides, not the largest
    assert memory.fsdp_axis((512,), 8) is None         # vectors stay replicated
    assert memory.fsdp_axis((64, 256), 1) is None
    assert memory.sharded_size((64, 256), 4) == 64 * 64 and memory.sharded_size((512,), 4) == 512


def test_device_memory_table():
    assert memory.device_memory_bytes("TPU v4") == 32 * GiB
    assert memory.device_memory_bytes("TPU v5 lite") == 16 * GiB
    assert memory.device_memory_bytes("TPU v5p") == memory.device_memory_bytes("TPU v5") == 95 * GiB
    assert memory.device_memory_bytes("TPU v6 lite") == 32 * GiB
    assert memory.device_memory_bytes("NVIDIA A100-SXM4-40GB") == 40e9
    assert memory.device_memory_bytes("NVIDIA A100-SXM4-80GB") == 80e9
    assert memory.device_memory_bytes("NVIDIA H100 80GB HBM3") == 80e9
    assert memory.device_memory_bytes("NVIDIA H200") == 141e9
    assert memory.device_memory_bytes("cpu") is None


def test_plan_parts_scale_with_the_mesh():
    model = ModelConfig(d_model=256, n_layers=4, n_heads=4, seq_len=128, vocab_size=512)
    cfg = _run(model, global_batch_size=64)
    one = memory.plan(cfg, 1, 1)
    n = param_counts(model).total
    assert one.params == 4 * n and one.optimizer == 8 * n and one.gradients == 4 * n and one.gathered == 0
    for data, fsdp in ((8, 1), (4, 2), (2, 4), (1, 8)):
        p = memory.plan(cfg, data, fsdp)
        # every matrix of this model divides by 8: only the norm scales stay whole
        vectors = 4 * (2 * model.n_layers + 1) * model.d_model
        assert p.params == pytest.approx((one.params - vectors) / fsdp + vectors)
        assert p.optimizer == 2 * p.params and p.gradients == p.params
        assert p.tokens_per_device == 64 // 8 * 128
        assert p.activations == pytest.approx(one.activations / 8)
        assert (p.gathered > 0) == (fsdp > 1)
    accum = memory.plan(_run(model, global_batch_size=64, grad_accum=4), 8, 1)
    assert accum.gradients == 2 * accum.params and accum.tokens_per_device == 2 * 128
    acts = {r: memory.plan(cfg, 8, 1, remat=r).activations for r in ("none", "dots_saveable", "block")}
    assert acts["none"] > acts["dots_saveable"] > acts["block"]
    assert memory.plan(cfg.replace(model=model.replace(remat="block")), 8, 1).activations == acts["block"]
    with pytest.raises(ValueError, match=r"fsdp=0: must be a positive int"):
        memory.plan(cfg, 8, 0)


def test_attention_probability_share_is_the_kernels():
    for T in (16, 64, 65, 100, 128, 257, 512, 1000, 2048):
        assert memory._attention_probs_fraction(T) == pytest.approx(attention_work_fraction(T), rel=1e-12)


def _residual_bytes(model: ModelConfig, rows: int) -> float:
    """Bytes of everything `jax.vjp` of the training loss keeps for its backward pass."""
    graphdef, params, rest = nnx.split(nnx.eval_shape(lambda: init(model, 0)), nnx.Param, ...)
    tokens = jax.ShapeDtypeStruct((rows, model.seq_len + 1), jnp.int32)

    def residuals(p, t):
        loss = lambda q: jnp.mean(step_lib.token_losses(graphdef, q, rest, t)[0])  # noqa: E731
        return jax.tree.leaves(jax.vjp(loss, p)[1])

    return sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.eval_shape(residuals, params, tokens))


def _measured_per_layer_token(model: ModelConfig) -> float:
    """Per layer and token, by differences over depth (2 vs 4) and rows (1 vs 2): what the
    parameters and the head add cancels out."""
    r = {(L, B): _residual_bytes(model.replace(n_layers=L), B) for L in (2, 4) for B in (1, 2)}
    return ((r[4, 2] - r[4, 1]) - (r[2, 2] - r[2, 1])) / (2 * model.seq_len)


def test_activation_estimate_against_what_autodiff_keeps():
    """'block' keeps exactly each block's input; 'dots_saveable' the matmul outputs (to 10%);
    without remat the estimate is the fused count (Korthikanti et al.'s terms), below what JAX
    keeps before XLA fuses the LayerNorm and GELU intermediates away, and above 40% of it."""
    base = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=128)
    got = {}
    for remat in ("none", "dots_saveable", "block"):
        m = base.replace(remat=remat)
        got[remat] = (memory.activation_bytes_per_token(m)["layer"], _measured_per_layer_token(m))
    print("per layer and token, estimate vs autodiff residuals:", got)
    est, measured = got["block"]
    assert est == measured == 4 * 64
    est, measured = got["dots_saveable"]
    assert est == pytest.approx(measured, rel=0.1)
    est, measured = got["none"]
    assert 0.4 * measured < est <= measured
    assert got["none"][1] > got["dots_saveable"][1] > got["block"][1]


def test_a_run_too_big_for_its_chip_is_refused_with_the_smallest_mesh_that_fits():
    model = ModelConfig(d_model=2048, n_layers=16, n_heads=16, seq_len=1024, vocab_size=32768, dtype="bfloat16")
    cfg = _run(model, global_batch_size=64)
    kind = "TPU v5 lite"
    assert memory.check_fits(cfg, 8, 1, "cpu").capacity is None  # no known limit: never refused
    with pytest.raises(ValueError) as err:
        memory.check_fits(cfg, 8, 1, kind)
    msg = str(err.value)
    print(msg)
    assert msg.startswith("TrainConfig.mesh_fsdp=1: the run needs an estimated") and "TPU v5 lite" in msg
    best = memory.smallest_mesh(cfg, kind)
    assert f"The smallest mesh that fits: {best.data}x{best.fsdp}" in msg
    assert f"TrainConfig.mesh_fsdp={best.fsdp}" in msg
    assert best.fits and best.total <= 16 * GiB
    # ... and it is the smallest: no fewer devices, and no smaller fsdp on as many, fit.
    for n in range(1, best.devices):
        if 64 % n == 0:
            assert not memory.plan(cfg, 1, n, kind).fits
    for f in range(1, best.fsdp):
        if best.devices % f == 0:
            assert not memory.plan(cfg, best.devices // f, f, kind).fits
    # With remat the same run fits on fewer chips.
    remat = memory.smallest_mesh(cfg.replace(model=model.replace(remat="block")), kind)
    assert remat.devices < best.devices


def test_nothing_fits_names_the_way_out():
    model = ModelConfig(d_model=2048, n_layers=48, n_heads=16, seq_len=4096, vocab_size=32768)
    with pytest.raises(ValueError, match="No mesh of up to 2 devices .* fits: turn on ModelConfig.remat='block'"):
        memory.check_fits(_run(model, global_batch_size=2), 2, 1, "TPU v5 lite")


def test_memory_imports_without_jax():
    code = ("import sys, scaling.memory\n"
            "bad = sorted(m for m in ('jax', 'flax', 'optax', 'orbax') if m in sys.modules)\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
