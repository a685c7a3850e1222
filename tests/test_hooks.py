import pytest

from scaling import flops
from scaling.config import ModelConfig
from scaling.hooks import FlopAccounting, StepEvent, call_hooks

CFG = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=32)


def test_flop_accounting_accumulates_and_reports_mfu():
    hook = FlopAccounting(CFG, method="palm", peak_flops=1e12)
    per_token = flops.per_token(CFG, "palm")
    out = hook(StepEvent(step=1, tokens=1000, seconds=0.5))
    assert out["flops"] == pytest.approx(1000 * per_token)
    assert out["flops_per_s"] == pytest.approx(1000 * per_token / 0.5)
    assert out["mfu"] == pytest.approx(1000 * per_token / 0.5 / 1e12)
    out = hook(StepEvent(step=2, tokens=1000, seconds=0.25))
    assert out["tokens"] == 2000
    assert out["flops"] == pytest.approx(2000 * per_token)
    assert out["flops_6n"] == pytest.approx(2000 * flops.per_token(CFG, "6n"))
    assert out["wall_s"] == pytest.approx(0.75)


def test_flop_accounting_resumes_its_totals():
    a = FlopAccounting(CFG)
    a(StepEvent(step=1, tokens=500, seconds=1.0))
    b = FlopAccounting(CFG)
    b.load_state_dict(a.state_dict())
    out = b(StepEvent(step=2, tokens=500, seconds=1.0))
    assert out["tokens"] == 1000 and out["wall_s"] == 2.0


def test_call_hooks_merges_in_order():
    seen = []
    event = StepEvent(step=1, tokens=10, seconds=0.1, metrics={"loss": 2.0})
    metrics = call_hooks([FlopAccounting(CFG), lambda e: seen.append(dict(e.metrics))], event)
    assert "flops" in seen[0] and seen[0]["loss"] == 2.0
    assert metrics["tokens"] == 10
