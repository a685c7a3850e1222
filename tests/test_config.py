"""Run configs: importable without JAX, every field validated with its name and value."""

import re
import subprocess
import sys

import pytest

from scaling.config import ModelConfig, RunConfig, TrainConfig
from scaling.data import DataConfig


@pytest.mark.parametrize("field,value,why", [
    ("tokens", 0, "must be a positive int"),
    ("warmup_steps", -1, "must be a non-negative int"),
    ("lr", 0.0, "must be a positive finite number"),
    ("lr", float("nan"), "must be a positive finite number"),
    ("weight_decay", -0.1, "must be a non-negative finite number"),
    ("beta2", 1.0, r"must be in \[0, 1\)"),
    ("final_lr_frac", 1.5, r"must be in \[0, 1\]"),
    ("cooldown_frac", 0.0, r"must be in \(0, 1\]"),
    ("schedule", "step", "must be one of"),
    ("flops_method", "7n", "must be one of"),
    ("eval_batch_size", 0, "must be a positive int or None"),
    ("divergence_factor", 1.0, "must be > 1"),
    ("progress", "yes", "must be True or False"),
])
def test_train_config_names_bad_fields(field, value, why):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}={re.escape(repr(value))}: {why}"):
        TrainConfig(**{"tokens": 1000, field: value})


def test_cross_field_rules():
    with pytest.raises(ValueError, match=r"TrainConfig\.grad_accum=3: must divide global_batch_size=32"):
        TrainConfig(tokens=1000, grad_accum=3)
    with pytest.raises(ValueError, match=r"TrainConfig\.wsd_branches=\(10,\): need schedule='wsd'"):
        TrainConfig(tokens=1000, wsd_branches=(10,))
    with pytest.raises(ValueError, match=r"each must be an int token count in \(0, tokens=1000\)"):
        TrainConfig(tokens=1000, schedule="wsd", wsd_branches=(1000,))
    with pytest.raises(ValueError, match="rotary positions need an even head dimension"):
        ModelConfig(d_model=30, n_layers=1, n_heads=2, positions="rotary")
    with pytest.raises(ValueError, match="cuDNN flash attention needs dtype bfloat16"):
        ModelConfig(d_model=32, n_layers=1, n_heads=2, attention="cudnn")


@pytest.mark.parametrize("fields,message", [
    (dict(parametrization="ntk"), r"ModelConfig\.parametrization='ntk': must be one of \('sp', 'mup', 'completep'\)"),
    (dict(parametrization="mup"), r"ModelConfig\.base_width=None: parametrization='mup' needs it"),
    (dict(parametrization="completep", base_width=32), r"ModelConfig\.base_depth=None: parametrization='completep'"),
    (dict(base_width=32), r"ModelConfig\.base_width=32: is not used by parametrization='sp'"),
    (dict(parametrization="mup", base_width=32, base_depth=2), r"ModelConfig\.base_depth=2: is not used by "
                                                                 r"parametrization='mup'"),
    (dict(base_head_dim=8), r"ModelConfig\.base_head_dim=8: is not used by parametrization='sp'"),
    (dict(parametrization="mup", base_width=0), r"ModelConfig\.base_width=0: must be a positive int or None"),
    (dict(parametrization="mup", base_width=32.0), r"ModelConfig\.base_width=32\.0: must be a positive int"),
    (dict(parametrization="mup", base_width=32, depth_alpha=0.5), r"ModelConfig\.depth_alpha=0\.5: is only used "
                                                                    r"by parametrization='completep'"),
    (dict(parametrization="completep", base_width=32, base_depth=2, depth_alpha=0.25),
     r"ModelConfig\.depth_alpha=0\.25: must be in \[0\.5, 1\]"),
    (dict(output_mult=8.0), r"ModelConfig\.output_mult=8\.0: is only used by parametrization='mup' or 'completep'"),
    (dict(parametrization="mup", base_width=32, output_mult=0.0), r"ModelConfig\.output_mult=0\.0: must be positive"),
])
def test_parametrization_fields_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(d_model=32, n_layers=2, n_heads=4, **fields)


def test_run_config_steps_name_and_parts():
    model = ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=32)
    cfg = RunConfig(model=model, data=DataConfig(), train=TrainConfig(tokens=16 * 32 * 10 + 1, global_batch_size=16))
    assert cfg.steps() == 11  # whole steps, rounded up
    for name in ("", "a/b", ".x"):
        with pytest.raises(ValueError, match=r"RunConfig\.name"):
            cfg.replace(name=name)
    with pytest.raises(ValueError, match=r"RunConfig\.model='gpt': must be a ModelConfig"):
        cfg.replace(model="gpt")


def test_derived_sizes():
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, ffn_ratio=3.0)
    assert (cfg.k, cfg.d_attn, cfg.f) == (16, 64, 192)
    assert ModelConfig(d_model=64, n_layers=2, n_heads=4, head_dim=8, d_ff=100).d_attn == 32


def test_configs_flops_family_and_planning_import_without_jax():
    code = ("import sys, scaling.config, scaling.flops, scaling.family, scaling.sweep, scaling.sweep.plan, "
            "scaling.experiment, scaling.results, scaling.parametrization\n"
            "from scaling import sweep\n"
            "sweep.plan(sweep.demo_config('tiny'), warn=False)\n"
            "bad = sorted(m for m in ('jax', 'flax', 'optax', 'orbax') if m in sys.modules)\n"
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
