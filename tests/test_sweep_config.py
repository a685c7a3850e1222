"""SweepConfig: every bad field is named, with its value, before anything is planned."""

import pytest


@pytest.mark.parametrize("field,value,match", [
    ("budgets", (), "SweepConfig.budgets"),
    ("budgets", (1e12, -1.0), "SweepConfig.budgets"),
    ("budgets", (float("nan"),), "SweepConfig.budgets"),
    ("sizes_per_budget", 0, "SweepConfig.sizes_per_budget"),
    ("size_spread", 1.0, "SweepConfig.size_spread"),
    ("flops_method", "7n", "SweepConfig.flops_method"),
    ("count", "some", "SweepConfig.count"),
    ("prior_k", 1.0, "SweepConfig.prior_a"),
    ("prior_a", 1.5, "SweepConfig.prior_k"),
    ("min_steps", 0, "SweepConfig.min_steps"),
    ("widths", (64, 96), "SweepConfig.depths"),
    ("wsd_branch_fracs", (0.5,), "SweepConfig.wsd_branch_fracs"),
    ("head_dim", 0, "SweepConfig.head_dim"),
    ("model", "gpt", "SweepConfig.model"),
    ("tokens_per_param", -20, "SweepConfig.tokens_per_param"),
    ("max_epochs", 0, "SweepConfig.max_epochs"),
    ("max_epochs", -4.0, "SweepConfig.max_epochs"),
    ("max_epochs", float("nan"), "SweepConfig.max_epochs"),
    ("max_epochs", "4", "SweepConfig.max_epochs"),
    ("max_epochs", True, "SweepConfig.max_epochs"),
])
def test_bad_fields_name_the_field(sweep_config, field, value, match):
    with pytest.raises(ValueError, match=match):
        sweep_config(**{field: value})
    with pytest.raises(ValueError, match="SweepConfig.widths"):
        sweep_config(widths=(20, 32), depths=(1,))  # 20 not divisible by head_dim 16


def test_max_epochs_defaults_to_four_and_accepts_no_limit(sweep_config):
    assert sweep_config().max_epochs == 4.0
    assert sweep_config(max_epochs=None).max_epochs is None
    assert sweep_config(max_epochs=float("inf")).max_epochs == float("inf")


def test_lr_width_and_mup_do_not_both_scale_the_learning_rate(sweep_config):
    from scaling.config import ModelConfig

    mup = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=64, parametrization="mup", base_width=64)
    with pytest.raises(ValueError, match=r"SweepConfig\.lr_width=32: must be None with model\.parametrization='mup'"):
        sweep_config(model=mup, lr_width=32)
    assert sweep_config(model=mup).lr_width is None
