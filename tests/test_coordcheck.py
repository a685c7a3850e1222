"""The coordinate check: it sees every layer, and it tells SP from muP (on tiny widths)."""

import pytest

from scaling import cli, coordcheck
from scaling.config import ModelConfig


def test_family_keeps_the_head_dim_or_the_head_count():
    base = ModelConfig(d_model=32, n_layers=2, n_heads=4, seq_len=16)
    assert [(m.d_model, m.n_heads, m.k) for m in coordcheck.family(base, widths=(32, 128))] == [(32, 4, 8), (128, 16, 8)]
    grow_k = base.replace(parametrization="mup", base_width=32, base_head_dim=8)
    assert [(m.n_heads, m.k) for m in coordcheck.family(grow_k, widths=(32, 128))] == [(4, 8), (4, 32)]
    assert [m.n_layers for m in coordcheck.family(base, depths=(2, 8))] == [2, 8]


@pytest.mark.slow
def test_updates_grow_with_width_under_sp_and_not_under_mup():
    # Widths 32 and 128 (4x), two steps at lr 1e-2: SP's hidden-layer updates grow roughly
    # with width (Adam moves every weight by ~lr, summed over fan_in), muP's do not.
    spreads = {}
    for p, fields in (("sp", {}), ("mup", dict(parametrization="mup", base_width=32))):
        base = ModelConfig(d_model=32, n_layers=1, n_heads=4, seq_len=16, **fields)
        res = coordcheck.run(coordcheck.family(base, widths=(32, 128)), steps=2, lr=1e-2, seeds=(0,), batch=8)
        assert {"embed", "pos_embed", "blocks.0.attn.qkv", "blocks.0.attn", "blocks.0.ffn.up", "blocks.0.ffn",
                "blocks.0", "residual.final", "logits"} == set(res.names())
        spreads[p] = {n: res.spread(n, "delta")[2] for n in ("blocks.0.attn.qkv", "blocks.0.ffn.up", "blocks.0.ffn")}
    for name, sp in spreads["sp"].items():
        assert sp > 1.6 and spreads["mup"][name] < 1.3, (name, spreads)


def test_cli_coordcheck_prints_a_row_per_tensor(capsys):
    overrides = ["model.seq_len=16", "train.global_batch_size=4", "model.parametrization='mup'", "model.base_width=16"]
    assert cli.main(["coordcheck", "experiments/cpu_tiny.py", *(a for o in overrides for a in ("--set", o)),
                     "--widths", "16,32", "--steps", "1", "--seeds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["tensor", "d16L2", "d32L2"] and any(line.startswith("logits ") for line in out)
    assert cli.main(["coordcheck", "experiments/cpu_tiny.py", "--widths", "", "--steps", "1"]) == 2
