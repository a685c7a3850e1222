"""Experiment files and --set overrides: every key checked by name, all values applied
together, then the config validated once (so the order of overrides never matters)."""

import pytest

from scaling import experiment
from scaling.config import RunConfig
from scaling.sweep import SweepConfig

TINY = "experiments/cpu_tiny.py"


def test_load_returns_the_experiment_with_overrides():
    cfg = experiment.load(TINY, ["train.lr=1e-3", "model.d_model=128", "train.tokens=1e6", "name=x"],
                          expect=RunConfig)
    assert cfg.train.lr == 1e-3 and cfg.model.d_model == 128 and cfg.name == "x"
    assert cfg.train.tokens == 1_000_000 and isinstance(cfg.train.tokens, int)  # 1e6 tokens: an int
    assert experiment.load(TINY).train.lr == 3e-3  # the file itself is unchanged


@pytest.mark.parametrize("first,second,invalid_alone,error", [
    ("data.source=tfds", "data.name=my_ds", 0, r"DataConfig\.name=None: a TFDS dataset name"),
    ("model.n_heads=6", "model.d_model=96", 0, r"ModelConfig\.d_model=64: must be divisible by n_heads=6"),
    ("train.schedule=wsd", "train.wsd_branches=(1000,)", 1, r"TrainConfig\.wsd_branches=\(1000,\): need schedule='wsd'"),
])
def test_pairs_invalid_only_in_between_work_in_either_order(first, second, invalid_alone, error):
    base = experiment.load(TINY)
    a = experiment.override(base, [first, second])
    b = experiment.override(base, [second, first])
    assert a == b != base
    with pytest.raises(ValueError, match=error):  # alone, one of them is invalid: still caught, by name
        experiment.override(base, [(first, second)[invalid_alone]])


def test_unknown_keys_and_bad_values_are_named():
    base = experiment.load(TINY)
    with pytest.raises(ValueError, match=r"unknown key 'bogus' in TrainConfig \(known: .*lr"):
        experiment.override(base, ["train.bogus=1"])
    with pytest.raises(ValueError, match=r"--set model.d_model.x: int has no fields"):
        experiment.override(base, ["model.d_model.x=1"])
    with pytest.raises(ValueError, match=r"expected key=value"):
        experiment.override(base, ["train.lr"])
    with pytest.raises(ValueError, match=r"--set train.progress='yes': must be True or False"):
        experiment.override(base, ["train.progress=yes"])
    with pytest.raises(ValueError, match=r"TrainConfig.lr=-1.0: must be a positive finite number \(with --set train.lr=-1.0\)"):
        experiment.override(base, ["train.lr=-1"])


def test_load_checks_the_kind_of_config_and_the_file(tmp_path):
    with pytest.raises(ValueError, match="must return a SweepConfig, got RunConfig"):
        experiment.load(TINY, expect=SweepConfig)
    with pytest.raises(ValueError, match="no such file"):
        experiment.load(tmp_path / "missing.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no get_config"):
        experiment.load(tmp_path / "empty.py")


def test_values_parse_as_python_literals_or_bare_strings():
    assert experiment.parse_value("(1e12, 3e12)") == (1e12, 3e12)
    assert experiment.parse_value("None") is None
    assert experiment.parse_value("synthetic") == "synthetic"
    assert experiment.parse_value("'quoted'") == "quoted"


def test_question_experiments_plan_what_they_promise():
    from scaling import sweep

    loops = experiment.load("experiments/cpu_loops.py", expect=SweepConfig)
    runs = sweep.plan(loops)
    assert {r.config.model.loops for r in runs} == {1, 2, 4} and len(runs) <= 30
    assert all(r.config.train.exact_match_spans == (1, 4, 16) for r in runs)
    task = experiment.load("experiments/cpu_emergence.py", expect=SweepConfig)
    assert task.data.synthetic_task == "repeat" and len(sweep.plan(task)) <= 12
    language = experiment.load("experiments/cpu_emergence.py", ["data.synthetic_task=none"], expect=SweepConfig)
    assert language.data.synthetic_task == "none" and language.model.positions == "rotary"
