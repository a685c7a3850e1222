"""scaling.questions on tables with known answers (no training): what a loop is worth, exact
match against accuracy^k, the inference-aware optimum; their text, JSON and figures."""

import json

import numpy as np
import pytest

from scaling import fit, questions
from scaling.report import Report

LAW = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
GAMMA = 0.5


def _rows(cfg, loss_of, extra=lambda run, loss: {}, seed=0, noise=0.002):
    from conftest import make_planned_rows

    rng = np.random.default_rng(seed)

    def point_of(run):
        loss = loss_of(run) * (1 + noise * rng.standard_normal())
        return dict(val_loss=loss, train_loss=loss, **extra(run, loss))

    return make_planned_rows(cfg, point_of)


@pytest.fixture(scope="module")
def loop_rows(sweep_config_module):
    """A sweep at 1, 2 and 4 loops whose losses follow LAW with N_eff = N k^GAMMA."""
    cfg = sweep_config_module(budgets=(1e12, 3e12, 1e13, 3e13), loops=(1, 2, 4), sizes_per_budget=4)

    def loss(run):
        k = run.config.model.loops
        return LAW["E"] + LAW["A"] / (run.N * k**GAMMA) ** LAW["alpha"] + LAW["B"] / run.D ** LAW["beta"]

    return _rows(cfg, loss)


@pytest.fixture(scope="module")
def sweep_config_module():
    from conftest import make_sweep

    return make_sweep


@pytest.fixture(scope="module")
def loops(loop_rows):
    return questions.loops_answer(loop_rows, n_bootstrap=40, forms=("none", "compute", "power"))


def test_a_loop_is_worth_what_the_table_was_made_with(loops, loop_rows):
    assert loops.loops == (1, 2, 4) and len(loops.rows) == len(loop_rows)
    assert loops.law.gamma == pytest.approx(GAMMA, abs=0.03)
    lo, hi = loops.boot.interval("extra_loop")
    assert lo < 2**GAMMA - 1 < hi
    assert loops.comparisons[0].form in ("power", "log")          # forecasts the held-out budget best
    errors = {c.form: c.held_out_rms_log_error for c in loops.comparisons}
    assert errors["power"] < errors["none"] / 2 and errors["power"] < errors["compute"] / 2
    # Each (budget, shape) measured at every loop count: at equal compute, which wins is the data's call.
    assert all(sorted(c["loss"]) == [1, 2, 4] for c in loops.matched)
    g = np.array([g for k, g in loops.g_measured if k == 4])
    assert np.nanmedian(g) == pytest.approx(4**GAMMA, rel=0.1)      # the law inverted at each run
    text = questions.format_loops(loops)
    assert "one extra loop (1 -> 2)" in text and "held-out" in text


def test_no_loops_no_answer_and_laws_fit_on_one_loop_count(loop_rows, synthetic_rows):
    assert questions.loops_answer(synthetic_rows()) is None
    one = questions.single_loops(loop_rows)
    assert {r["loops"] for r in one} == {1} and len(one) == len(loop_rows) // 3
    plain = synthetic_rows()
    assert questions.single_loops(plain) == plain


def _emergence_rows(sweep_config, em_of):
    """Runs whose accuracy rises with compute and whose exact match of k tokens is em_of(acc, k)."""
    cfg = sweep_config(budgets=(1e12, 3e12, 1e13, 3e13), sizes_per_budget=4,
                       train=sweep_config().train.replace(exact_match_spans=(1, 4, 16), eval_batches=64))

    def extra(run, loss):
        acc = 1 / (1 + (loss - LAW["E"]) / 2)  # 0.1 to 0.8 over these runs
        return dict(val_accuracy=acc, val_exact_match=em_of(acc, 8),
                    **{f"val_exact_match_{k}": em_of(acc, k) for k in (1, 4, 8, 16)})

    loss = lambda run: LAW["E"] + LAW["A"] / run.N ** LAW["alpha"] + LAW["B"] / run.D ** LAW["beta"]
    return _rows(cfg, loss, extra)


def test_exact_match_that_is_accuracy_to_the_k_tracks(sweep_config):
    ans = questions.emergence_answer(_emergence_rows(sweep_config, lambda acc, k: acc**k))
    assert ans.spans == (1, 4, 8, 16) and len(ans.best) == 4
    assert [c["k"] for c in ans.checks] == [4, 8, 16]
    assert all(c["departing"] == 0 and c["median_ratio"] == pytest.approx(1.0) for c in ans.checks)
    by_k = {c["k"]: c["verdict"] for c in ans.checks}
    # acc ~0.1-0.18: 16 right tokens in a row are expected in ~1e-12 of the 4,096 spans scored: no evidence.
    assert by_k[4] == "tracks accuracy^k" and by_k[16].startswith("too rare to tell")
    assert "k=4: tracks accuracy^k" in questions.format_emergence(ans)


def test_all_or_nothing_spans_depart(sweep_config):
    # Spans right or wrong together: exact match ~ accuracy itself, far above accuracy^k.
    ans = questions.emergence_answer(_emergence_rows(sweep_config, lambda acc, k: acc))
    by_k = {c["k"]: c for c in ans.checks}
    assert all(c["verdict"] == "departs from accuracy^k" for c in ans.checks)
    assert by_k[16]["departing"] == by_k[16]["runs"] and by_k[16]["worst"]["ratio"] > 1e3


def test_a_small_gap_within_sampling_noise_is_not_a_departure(sweep_config):
    # 3x above acc^16, but acc^16 x (spans scored) is tiny: a handful of spans is no evidence.
    rows = _emergence_rows(sweep_config, lambda acc, k: 3 * acc**k if k == 16 else acc**k)
    for r in rows:
        r["config"] = r["config"].replace('"eval_batches": 64', '"eval_batches": 1')
    ans = questions.emergence_answer(rows)
    check16 = next(c for c in ans.checks if c["k"] == 16)
    expected = [p["accuracy"] ** 16 * p["n_spans"][16] for p in ans.points]
    assert max(expected) < 2
    assert check16["departing"] == 0 and check16["verdict"] != "departs from accuracy^k"


def test_spans_too_rare_to_score_are_no_evidence(sweep_config):
    ans = questions.emergence_answer(_emergence_rows(sweep_config, lambda acc, k: 0.0 if k == 16 else acc**k))
    by_k = {c["k"]: c["verdict"] for c in ans.checks}
    assert by_k[16].startswith("too rare to tell") and by_k[4] == "tracks accuracy^k"


def _report(rows, C=1e15):
    """A report holding LAW as its fitted law (what `inference_answer` reads), without fitting."""
    fpt = fit.interpolated_flops_per_token([r["N"] for r in rows], [r["C"] for r in rows], [r["D"] for r in rows])
    return Report(rows=rows, metric="val_loss", level=0.95, budget=C, flops_method="chinchilla",
                  chinchilla=fit.ChinchillaLaw(**LAW), forecast={"C": C}, fpt=fpt)


def test_inference_answer_at_the_forecast_budget(synthetic_rows):
    rep = _report(synthetic_rows())
    ans = questions.inference_answer(rep)
    assert ans.C == rep.forecast["C"]
    served = [o.inference_tokens / ans.D_opt for o in ans.optima]
    assert served == [0.0, 1.0, 10.0, 100.0]
    assert ans.optima[0].N == pytest.approx(rep.chinchilla.compute_optimal(ans.C, flops_per_token=rep.fpt)[0], rel=1e-6)
    assert [o.N for o in ans.optima] == sorted((o.N for o in ans.optima), reverse=True)
    assert np.all(np.diff(ans.curve["saving"]) > 0) and np.all(ans.curve["N_ratio"] < 1)
    assert "Inference-aware optimum" in questions.format_inference(ans)


def test_answers_text_json_and_figures(loops, loop_rows, sweep_config, synthetic_rows, tmp_path):
    from scaling import question_plots

    rep = _report(questions.single_loops(loop_rows))
    ans = questions.Answers(loops=loops, emergence=questions.emergence_answer(
        _emergence_rows(sweep_config, lambda acc, k: acc)), inference=questions.inference_answer(rep))
    text = questions.format_answers(ans)
    for part in ("What a loop is worth", "Emergence or measurement", "Inference-aware optimum"):
        assert part in text
    doc = json.loads(json.dumps(questions.to_json(ans)))
    assert doc["loops"]["gamma"] == pytest.approx(loops.law.gamma)
    assert len(doc["inference"]) == 4 and doc["emergence"]["spans"] == [1, 4, 8, 16]
    written = question_plots.plot_all(ans, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in map(str, written)] == ["loops.png", "emergence.png", "inference.png"]
    assert all((tmp_path / name).stat().st_size > 10_000 for name in ("loops.png", "emergence.png", "inference.png"))
    assert questions.format_answers(questions.Answers()) == ""


# --------------------------------------------------------------------------- finite data

R_D_STAR = 6.0


@pytest.fixture(scope="module")
def capped_rows(sweep_config_module):
    """A sweep at 3 caps of unique tokens (and the whole split) whose losses follow the
    data-constrained law with LAW and R_D* = R_D_STAR."""
    cfg = sweep_config_module(budgets=(1e12, 3e12, 1e13), sizes_per_budget=4, min_steps=1, max_epochs=None,
                              unique_tokens=(None, 1_000_000, 300_000, 100_000))
    law = fit.DataConstrainedLaw("data", **LAW, R_D_star=R_D_STAR)
    return _rows(cfg, lambda run: law.predict(run.N, run.D, run.unique_tokens), noise=0.001)


@pytest.fixture(scope="module")
def data(capped_rows):
    return questions.data_answer(capped_rows, n_bootstrap=40, forms=("data",))


def test_a_repeated_token_is_worth_what_the_table_was_made_with(data, capped_rows):
    assert len(data.rows) == len(capped_rows) == 4 * len(data.matched)
    assert data.law.form == "data" and data.law.R_D_star == pytest.approx(R_D_STAR, rel=0.03)
    lo, hi = data.boot.interval("R_D_star")  # (its coverage: tests/test_fit_data_constrained.py)
    assert lo < data.law.R_D_star < hi and hi - lo < 0.1 * R_D_STAR
    truth = fit.DataConstrainedLaw("data", **LAW, R_D_star=R_D_STAR)
    assert data.law.repeated_worth(4) == pytest.approx(float(truth.repeated_worth(4)), abs=0.005)
    # Each (budget, shape) measured at the whole split and every cap: equal N and D, more epochs, higher loss.
    for cell in data.matched:
        assert len(cell["loss"]) == 4 and list(cell["loss"]) == sorted(cell["loss"], reverse=True)
    # The allocation under caps U = D_chin / k: less data, more epochs, worse loss; never worse than
    # Chinchilla's (N, D) on the same data; unlimited data is Chinchilla's optimum.
    free, *capped = data.optima
    assert data.C == 1e14 and free.N == pytest.approx(free.N_chinchilla, rel=1e-4)
    assert [o.U for o in capped] == pytest.approx([free.D_chinchilla / k for k in questions.CAP_EPOCHS])
    assert all(o.loss <= o.loss_chinchilla_at_cap + 1e-12 for o in capped)
    losses = [free.loss] + [o.loss for o in capped]
    assert losses == sorted(losses) and capped[-1].epochs > capped[0].epochs
    text = questions.format_data(data)
    assert "R_D* = " in text and "at 4 epochs the 3 repeated epochs are worth" in text
    assert "compute-optimal allocation at C = 1e+14" in text


def test_no_caps_no_answer_and_laws_fit_on_the_whole_split(capped_rows, synthetic_rows):
    assert questions.data_answer(synthetic_rows()) is None
    whole = questions.fewest_repeats(capped_rows)
    assert len(whole) == len(capped_rows) // 4 and all(r["epochs"] < 1 for r in whole)
    plain = synthetic_rows()
    assert questions.fewest_repeats(plain) == plain


def test_data_answer_json_and_figure(data, tmp_path):
    from scaling import question_plots

    ans = questions.Answers(data=data)
    assert "Repeated data" in questions.format_answers(ans)
    doc = json.loads(json.dumps(questions.to_json(ans)))["data"]
    assert doc["params"]["R_D_star"] == pytest.approx(data.law.R_D_star)
    assert doc["R_D_star_interval"][0] < doc["params"]["R_D_star"] < doc["R_D_star_interval"][1]
    assert len(doc["optima"]) == 1 + len(questions.CAP_EPOCHS) and doc["optima"][0]["U"] is None
    written = question_plots.plot_all(ans, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in map(str, written)] == ["epochs.png"]
    assert (tmp_path / "epochs.png").stat().st_size > 10_000
