"""The demo recipe plans a sound IsoFLOP sweep at every size."""

import pytest

from scaling import sweep


def test_demo_configs_plan():
    for name in sweep.DEMO_BUDGETS:
        cfg = sweep.demo_config(name)
        runs = sweep.plan(cfg, warn=False)
        budgets = sorted({r.budget for r in runs})
        assert len(budgets) == len(sweep.DEMO_BUDGETS[name][0])
        assert budgets[-1] / budgets[0] >= 10  # a decade of compute: a power law can be fitted
        # One shape per size (no depth mixing): N grows with width alone.
        assert len({r.config.model.n_layers for r in runs}) == 1
        by_width = {}
        for r in runs:
            by_width.setdefault(r.config.model.d_model, set()).add(r.N)
        assert all(len(ns) == 1 for ns in by_width.values())
        for C in budgets:
            here = [r for r in runs if r.budget == C]
            assert len(here) >= 4  # a parabola per budget
            assert len({r.N for r in here}) * cfg.seeds == len(here)  # each size once per seed
            assert all(r.steps >= cfg.min_steps for r in here)
            n_opt = sweep.optimal_size(cfg, C)
            assert min(r.N for r in here) < n_opt < max(r.N for r in here)  # the expected optimum is bracketed
        assert max(r.epochs for r in runs) < cfg.max_epochs  # the demo never refuses to start
        sweep.check_repeats(runs, cfg.max_epochs)
        for r in runs:
            tc = r.config.train
            assert tc.lr * r.config.model.d_model == pytest.approx(cfg.train.lr * cfg.lr_width)  # lr ~ 1/width
            assert tc.warmup_steps <= max(1, 0.1 * r.steps)
            assert tc.eval_batches * (tc.eval_batch_size or tc.global_batch_size) * r.config.model.seq_len >= 30_000
    with pytest.raises(ValueError, match="budget="):
        sweep.demo_config("huge")
    with pytest.raises(ValueError, match="SweepConfig.lr_width"):
        sweep.demo_config("tiny").replace(lr_width=0)
