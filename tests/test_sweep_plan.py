"""Sweep planning: D = C / per_token, sizes around the optimum, the prior law, min_steps, WSD
branches, epochs of the data and the max_epochs check, the printed plan table. Jax-free."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from scaling import sweep
from scaling.config import TrainConfig
from scaling.data import DataConfig
from scaling.data.stdlib_corpus import load_corpus
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


def test_seeds_repeat_each_point_with_its_own_seed(sweep_config):
    one = sweep.plan(sweep_config())
    three = sweep.plan(sweep_config(seeds=3))
    assert len(three) == 3 * len(one)
    for r in one:
        copies = [t for t in three if t.run_id.rsplit("-s", 1)[0] == r.run_id]
        assert [t.config.train.seed for t in copies] == [0, 1, 2]
        assert all(t.D == r.D and t.config.model == r.config.model for t in copies)
    with pytest.raises(ValueError, match="SweepConfig.seeds=0"):
        sweep_config(seeds=0)


def _train_split_tokens(stdlib_path: str, validation_fraction: float = 0.05) -> int:
    corpus = load_corpus(stdlib_path)
    files = [corpus.contents[i] for i in corpus.split_indices("train", validation_fraction)]
    return sum(len(c) for c in files) + len(files)  # byte tokens + one separator per file


def test_runs_know_how_often_they_repeat_their_data(sweep_config, tiny_corpus):
    runs = sweep.plan(sweep_config(data=DataConfig(stdlib_path=tiny_corpus)))
    unique = _train_split_tokens(tiny_corpus)
    for r in runs:
        tokens = r.steps * r.config.train.global_batch_size * r.config.model.seq_len
        assert r.unique_tokens == unique and r.tokens == tokens >= r.D
        assert r.epochs == pytest.approx(tokens / unique) and r.epochs > 50  # a 5 kB corpus
    text = sweep.format_plan(runs)
    end = text.splitlines()[0].index("epochs") + len("epochs")  # columns are right-aligned
    for r, line in zip(runs, text.splitlines()[1:]):
        assert line[:end].split()[-1] == f"{r.epochs:.2f}", line
    assert f"up to {max(r.epochs for r in runs):.2f} epochs of" in text.splitlines()[-1]


def test_synthetic_data_never_repeats(sweep_config):
    runs = sweep.plan(sweep_config(data=DataConfig(source="synthetic")))
    assert all(r.unique_tokens is None and r.epochs == 0.0 for r in runs)
    assert "unlimited data" in sweep.format_plan(runs)
    sweep.check_repeats(runs, 4.0)


def test_check_repeats_refuses_runs_over_max_epochs(sweep_config, tiny_corpus):
    runs = sweep.plan(sweep_config(data=DataConfig(stdlib_path=tiny_corpus)))
    worst = max(runs, key=lambda r: r.epochs)
    with pytest.raises(ValueError, match=r"SweepConfig.max_epochs=4.0: .*" + re.escape(worst.run_id)):
        sweep.check_repeats(runs, 4.0)
    with pytest.raises(ValueError, match=r"SweepConfig.max_epochs"):
        sweep.check_repeats(runs, worst.epochs * 0.999)
    sweep.check_repeats(runs, worst.epochs)  # at the limit: allowed
    sweep.check_repeats(runs, None)  # no limit
    # The default corpus: these small sweeps stay well under the default limit.
    stdlib_runs = sweep.plan(sweep_config())
    assert max(r.epochs for r in stdlib_runs) < 4
    sweep.check_repeats(stdlib_runs, sweep_config().max_epochs)


def test_plan_table_shows_bytes_per_device_and_flags_runs_too_big_for_the_chip(sweep_config):
    from scaling import memory

    runs = sweep.plan(sweep_config())
    text = sweep.format_plan(runs, devices=8)
    assert "mem/device" in text.splitlines()[0]
    for r in runs:
        line = next(x for x in text.splitlines() if x.startswith(r.run_id))
        assert memory.fmt_bytes(memory.plan(r.config, 8, 1).total) in line and "!" not in line
    assert "!" not in sweep.format_plan(runs, devices=8, device_kind="TPU v5 lite")  # they fit 16 GiB chips
    # With 16,384 rows of 64 tokens per device the larger ones do not.
    big = [dataclasses.replace(r, config=r.config.replace(train=r.config.train.replace(global_batch_size=8 * 16384)))
           for r in runs]
    flagged = sweep.format_plan(big, devices=8, device_kind="TPU v5 lite")
    over = [r for r in big if not memory.plan(r.config, 8, 1, "TPU v5 lite").fits]
    assert over and flagged.count("!") == len(over) + 1
    assert f"{len(over)} runs (!) exceed a TPU v5 lite chip's memory" in flagged


def test_loops_run_each_shape_at_every_loop_count_with_its_own_tokens(sweep_config):
    one = sweep.plan(sweep_config(min_steps=1))
    looped = sweep.plan(sweep_config(min_steps=1, loops=(1, 2, 4)))
    assert len(looped) == 3 * len(one)
    for r in one:
        copies = {t.config.model.loops: t for t in looped if t.run_id.split("-x")[0] == r.run_id}
        assert sorted(copies) == [1, 2, 4]
        assert copies[1].run_id == r.run_id and copies[2].run_id == r.run_id + "-x2"
        for k, t in copies.items():
            assert t.config.model == r.config.model.replace(loops=k)     # the same shape, so the same N
            assert t.N == r.N and t.budget == r.budget
            assert t.D == round(t.budget / per_token(t.config.model, "chinchilla"))
        assert copies[4].D < copies[2].D < copies[1].D                   # each loop's compute is paid
    assert sweep.plan(sweep_config(min_steps=1, loops=(2,)))[0].run_id.endswith("-x2")
    for bad in ((0,), (1, 1), (1.5,)):
        with pytest.raises(ValueError, match="SweepConfig.loops"):
            sweep_config(loops=bad)


def test_mup_sweep_passes_the_parametrization_to_every_run_with_one_learning_rate(sweep_config):
    model = sweep_config().model.replace(parametrization="mup", base_width=32)
    cfg = sweep_config(model=model, widths=(16, 32, 64, 128), depths=(1, 2), train=TrainConfig(tokens=1, lr=7e-3))
    runs = sweep.plan(cfg)
    assert {r.config.model.d_model for r in runs} >= {32, 64}
    for r in runs:
        m = r.config.model
        assert (m.parametrization, m.base_width) == ("mup", 32)
        assert r.config.train.lr == 7e-3  # the base rate; muP scales each tensor's rate itself


def test_caps_run_each_shape_at_every_cap_with_the_same_tokens_and_more_epochs(sweep_config):
    one = sweep.plan(sweep_config(min_steps=1))
    capped = sweep.plan(sweep_config(min_steps=1, unique_tokens=(None, 300_000, 60_000), max_epochs=None))
    assert len(capped) == 3 * len(one)
    for r in one:
        copies = {t.config.data.unique_tokens: t for t in capped if t.run_id.split("-u")[0] == r.run_id}
        assert sorted(copies, key=lambda c: c or 0) == [None, 60_000, 300_000]
        assert copies[None].run_id == r.run_id and copies[60_000].run_id == r.run_id + "-u60000"
        for cap, t in copies.items():
            assert (t.N, t.D, t.steps, t.budget) == (r.N, r.D, r.steps, r.budget)   # same model, same tokens
            assert t.config.data == r.config.data.replace(unique_tokens=cap)
            window = t.config.model.seq_len + 1  # a cap keeps whole windows
            assert t.unique_tokens == (cap // window * window if cap else r.unique_tokens)
            assert t.epochs == pytest.approx(t.tokens / t.unique_tokens)
        assert copies[60_000].epochs == pytest.approx(5 * copies[300_000].epochs)
    assert re.search(r"of 60k-[0-9.]+M unique training tokens", sweep.format_plan(capped))
    with pytest.raises(ValueError, match="SweepConfig.max_epochs=4.0"):
        sweep.check_repeats(sweep.plan(sweep_config(min_steps=1, unique_tokens=(60_000,))), 4.0)
    for bad in ((0,), (60_000, 60_000), (2.5,)):
        with pytest.raises(ValueError, match="SweepConfig.unique_tokens"):
            sweep_config(unique_tokens=bad)
    with pytest.raises(ValueError, match="SweepConfig.unique_tokens.*synthetic"):
        sweep_config(unique_tokens=(1000,), data=DataConfig(source="synthetic"))
