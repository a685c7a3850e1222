"""Sweep planning: D = C / per_token, sizes around the optimum, the prior law, min_steps, WSD
branches, the printed plan table. Jax-free."""

from __future__ import annotations

import math

import pytest

from scaling import sweep
from scaling.config import TrainConfig
from scaling.flops import param_counts, per_token
from scaling.sweep.plan import _ladder


@pytest.mark.parametrize("family", ["grid", "targets"])
@pytest.mark.parametrize("method", ["chinchilla", "6n"])
def test_plan_tokens_horizon_and_spread(sweep_config, family, method):
    kw = dict(widths=(16, 32, 48, 64, 96, 128, 192, 256), depths=(1, 2, 3, 4, 6)) if family == "grid" else {}
    cfg = sweep_config(flops_method=method, sizes_per_budget=5, size_spread=3.0, **kw)
    runs = sweep.plan(cfg)
    assert runs
    for r in runs:
        fpt = per_token(r.config.model, method)
        assert r.D == round(r.budget / fpt)                      # D = C / per_token, by the chosen accounting
        assert r.config.train.tokens == r.D                      # schedule horizon = this run's D
        assert r.config.train.flops_method == method
        assert r.N == param_counts(r.config.model).total
        assert r.run_id == f"C{r.budget:.3g}-d{r.config.model.d_model}-L{r.config.model.n_layers}"
        assert r.steps >= cfg.min_steps
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == len(ids)
    assert [r.run_id for r in sweep.plan(cfg)] == ids           # deterministic
    for C in cfg.budgets:
        n_opt = sweep.optimal_size(cfg, C)
        # n_opt solves C = per_token(N) x 20 N on the family (to the interpolation's accuracy)
        sizes = sorted(r.N for r in runs if r.budget == C)
        assert len(sizes) >= 4
        assert sizes[0] < n_opt < sizes[-1], (C, n_opt, sizes)
        below = sum(n < n_opt for n in sizes)
        assert 1 <= below <= len(sizes) - 1
        nearest = min((r for r in runs if r.budget == C), key=lambda r: abs(math.log(r.N / n_opt)))
        assert 20 / 4 < nearest.tokens_per_param < 20 * 4


def test_optimal_size_matches_20_tokens_per_parameter(sweep_config):
    cfg = sweep_config(widths=tuple(range(16, 513, 16)), depths=(1, 2, 3, 4, 6, 8))
    for C in (1e12, 1e14):
        n = sweep.optimal_size(cfg, C)
        ladder = _ladder(cfg)
        cfg_near = min(ladder, key=lambda c: abs(math.log(param_counts(c).total / n)))
        ratio = C / (per_token(cfg_near, "chinchilla") * param_counts(cfg_near).total)
        assert 20 / 1.5 < ratio < 20 * 1.5


def test_prior_law_centres_sizes(sweep_config):
    cfg = sweep_config(prior_k=0.5, prior_a=0.5, sizes_per_budget=3)
    for r in sweep.plan(cfg):
        pass
    for C in cfg.budgets:
        assert sweep.optimal_size(cfg, C) == pytest.approx(0.5 * C**0.5)


def test_min_steps_skips_with_warning(sweep_config):
    cfg = sweep_config(budgets=(1e9, 1e12), min_steps=50)
    with pytest.warns(UserWarning, match="min_steps"):
        runs = sweep.plan(cfg)
    assert all(r.steps >= 50 for r in runs)


def test_wsd_branches_planned_per_run(sweep_config):
    cfg = sweep_config(train=TrainConfig(tokens=1, global_batch_size=16, warmup_steps=10, schedule="wsd"), wsd_branch_fracs=(0.25, 0.5))
    for r in sweep.plan(cfg):
        assert r.config.train.wsd_branches == (int(0.25 * r.D), int(0.5 * r.D))


def test_plan_table_printed(sweep_config):
    runs = sweep.plan(sweep_config())
    text = sweep.format_plan(runs, flops_per_s=1e10, source="test", overhead_s=1.0, done={runs[0].run_id})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["run", "id", "N"]
    for r in runs:
        assert r.run_id in text
    assert "done" in lines[1]
    assert lines[-1].startswith(f"total: {len(runs)} runs ({len(runs) - 1} to do)")
    assert "est." in lines[-1]
    total = sum(sweep.estimate_wall_s(r, 1e10, 1.0) for r in runs[1:])
    assert total == pytest.approx(sum(r.flops / 1e10 + 1.0 for r in runs[1:]))


def test_mup_sweep_passes_the_parametrization_to_every_run_with_one_learning_rate(sweep_config):
    model = sweep_config().model.replace(parametrization="mup", base_width=32)
    cfg = sweep_config(model=model, widths=(16, 32, 64, 128), depths=(1, 2), train=TrainConfig(tokens=1, lr=7e-3))
    runs = sweep.plan(cfg)
    assert {r.config.model.d_model for r in runs} >= {32, 64}
    for r in runs:
        m = r.config.model
        assert (m.parametrization, m.base_width) == ("mup", 32)
        assert r.config.train.lr == 7e-3  # the base rate; muP scales each tensor's rate itself
