"""Parametrizations: the numbers each one gives, checked against the papers' tables written
out here by hand (Yang et al. 2022, TP5 Tables 3 and 8; Dey et al. 2025, CompleteP Table 1),
the roles of the model's parameters, and that no choice changes N or FLOPs. Jax-free."""

import math

import pytest

from scaling import flops
from scaling.config import ModelConfig
from scaling.parametrization import ROLES, role_of, rules

BASE = ModelConfig(d_model=32, n_layers=2, n_heads=4, seq_len=16)


def test_sp_is_the_gpt2_recipe_with_every_multiplier_one():
    r = rules(BASE.replace(n_layers=3, loops=2))
    assert r.hidden_std == r.embed_std == 0.02
    assert r.out_std == 0.02 / math.sqrt(2 * 3 * 2)  # GPT-2's residual projections
    assert r.residual == r.logits == r.adam_eps == 1.0 and r.attention_scale is None
    assert set(r.lr.values()) == set(r.weight_decay.values()) == {1.0}


@pytest.mark.parametrize("width", [16, 32, 128, 512])
def test_mup_follows_tp5_relative_to_the_base_width(width):
    cfg = BASE.replace(d_model=width, n_heads=width // 8, parametrization="mup", base_width=32)
    r = rules(cfg)
    m = width / 32
    # TP5 Table 3 (Adam): hidden weights init var ~ 1/fan_in, lr ~ 1/fan_in; input weights and
    # all biases/gains: constant init and lr; Table 8: output multiplier 1/fan_in, constant lr.
    assert r.hidden_std == pytest.approx(0.02 * math.sqrt(32 / width), rel=1e-12)
    assert r.out_std == pytest.approx(0.02 / math.sqrt(2 * 2) * math.sqrt(32 / width), rel=1e-12)
    assert r.embed_std == 0.02
    assert r.lr == pytest.approx({"input": 1.0, "hidden": 32 / width, "vector": 1.0, "output": 1.0})
    assert r.logits == pytest.approx(32 / width) and r.width_mult == m
    assert r.residual == 1.0 and r.adam_eps == 1.0 and set(r.weight_decay.values()) == {1.0}
    assert r.attention_scale is None  # K = 8 at every width: 1/sqrt(K) is already width-free


def test_output_mult_multiplies_the_logits_at_every_width():
    for width in (32, 256):
        cfg = BASE.replace(d_model=width, n_heads=width // 8, parametrization="mup", base_width=32, output_mult=8.0)
        assert rules(cfg).logits == pytest.approx(8.0 * 32 / width)


def test_mup_attention_is_one_over_k_when_the_head_dim_grows():
    # 4 heads at every width: K = d_model / 4 grows, logits q.k sqrt(K_base) / K (TP5 sec. 4).
    for width in (32, 128, 512):
        cfg = BASE.replace(d_model=width, parametrization="mup", base_width=32, base_head_dim=8)
        assert rules(cfg).attention_scale == pytest.approx(math.sqrt(8) / (width // 4))
    assert rules(BASE.replace(parametrization="mup", base_width=32, base_head_dim=8)).attention_scale == \
        pytest.approx(1 / math.sqrt(8))  # = SP at the base


@pytest.mark.parametrize("alpha", [0.5, 1.0])
@pytest.mark.parametrize("layers,loops", [(2, 1), (8, 1), (4, 4)])
def test_completep_follows_table_1(alpha, layers, loops):
    cfg = BASE.replace(d_model=128, n_heads=16, n_layers=layers, loops=loops, parametrization="completep",
                       base_width=32, base_depth=2, depth_alpha=alpha)
    r = rules(cfg)
    m_d, m_L = 4.0, layers * loops / 2
    assert r.residual == pytest.approx(m_L ** -alpha)
    assert r.lr["hidden"] == pytest.approx(m_L ** (alpha - 1) / m_d)
    assert r.lr["vector"] == pytest.approx(m_L ** (alpha - 1))
    assert r.lr["input"] == r.lr["output"] == 1.0
    assert r.weight_decay["hidden"] == pytest.approx(m_d)
    assert r.adam_eps == pytest.approx(1 / (m_d * m_L ** alpha))
    assert r.hidden_std == pytest.approx(0.02 / math.sqrt(m_d))
    assert r.out_std == pytest.approx(0.02 / math.sqrt(2 * 2 * m_d))  # no depth in the init
    assert r.logits == pytest.approx(1 / m_d)


def test_every_parametrization_is_sp_at_its_base():
    sp = rules(BASE)
    for cfg in (BASE.replace(parametrization="mup", base_width=32),
                BASE.replace(parametrization="completep", base_width=32, base_depth=2, depth_alpha=0.5)):
        assert rules(cfg).__dict__ == sp.__dict__ | {"width_mult": 1.0, "depth_mult": 1.0}


def test_roles_of_the_model_parameters():
    assert role_of(("blocks", 0, "attn", "qkv", "kernel")) == "hidden"
    assert role_of(("blocks", 3, "ffn", "down", "kernel")) == "hidden"
    assert role_of(("blocks", 0, "attn", "qkv", "bias")) == "vector"
    assert role_of(("blocks", 1, "ln_ffn", "scale")) == "vector"
    assert role_of(("embed", "embedding")) == "input" and role_of(("pos_embed", "embedding")) == "input"
    assert role_of(("unembed", "kernel")) == "output" and role_of(("ln_final", "scale")) == "output"
    with pytest.raises(ValueError, match="path=\\('head', 'kernel'\\)"):
        role_of(("head", "kernel"))
    assert set(ROLES) == {"input", "hidden", "vector", "output"}


@pytest.mark.parametrize("cfg", [BASE, BASE.replace(d_model=96, n_heads=12, tie_embeddings=False, loops=2)])
def test_counts_do_not_depend_on_the_parametrization(cfg):
    variants = [cfg, cfg.replace(parametrization="mup", base_width=16, base_head_dim=4),
                cfg.replace(parametrization="completep", base_width=64, base_depth=1, depth_alpha=0.5)]
    counts = [(flops.param_counts(v), {m: flops.per_token(v, m) for m in flops.METHODS}) for v in variants]
    assert counts[1] == counts[0] and counts[2] == counts[0]

