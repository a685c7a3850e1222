import pytest

from scaling import family
from scaling.flops import param_counts


def test_grid_is_the_product():
    cfgs = family.grid([128, 256], [2, 4, 6], vocab_size=256, seq_len=64)
    assert [(c.d_model, c.n_layers) for c in cfgs] == [(128, 2), (128, 4), (128, 6), (256, 2), (256, 4), (256, 6)]
    assert all(c.n_heads == c.d_model // 64 for c in cfgs)
    assert all(c.seq_len == 64 for c in cfgs)


def test_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="d_model=100"):
        family.grid([100], [2])
    with pytest.raises(ValueError, match="depths: 0"):
        family.grid([128], [0])
    with pytest.raises(ValueError, match="widths: -64"):
        family.grid([-64], [2])
    with pytest.raises(ValueError, match="ffn='relu'"):
        family.grid([128], [2], ffn="relu")


@pytest.mark.parametrize("target", [2e5, 1e6, 5e6, 3e7, 1e8])
def test_target_params_are_hit(target):
    (cfg,) = family.from_target_params([target], aspect_ratio=32, head_dim=32)
    n = param_counts(cfg).non_embedding
    # One head_dim step of width is the resolution of the family.
    assert abs(n / target - 1) < 0.25, (cfg, n)
    assert cfg.d_model % 32 == 0
    assert 8 <= cfg.d_model / cfg.n_layers <= 128


def test_target_params_sorted_and_deduplicated():
    cfgs = family.from_target_params([1e7, 1e5, 1e6, 1.0001e6], aspect_ratio=32, head_dim=32)
    sizes = [param_counts(c).non_embedding for c in cfgs]
    assert sizes == sorted(sizes) and len(cfgs) == 3


def test_target_params_rejects_bad_input():
    with pytest.raises(ValueError, match="targets: -1"):
        family.from_target_params([-1])
    with pytest.raises(ValueError, match="aspect_ratio"):
        family.from_target_params([1e6], aspect_ratio=0)
    with pytest.raises(ValueError, match="count: 'all'"):
        family.from_target_params([1e6], count="all")


def test_table_lists_every_member():
    cfgs = family.grid([64, 128], [2])
    text = family.table(cfgs)
    assert len(text.splitlines()) == 3
    assert f"{param_counts(cfgs[1]).total:,}" in text
