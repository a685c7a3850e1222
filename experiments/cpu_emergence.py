"""Emergence or measurement: a sweep whose data hold a task with a sharp transition (CPU).

    scaling sweep experiments/cpu_emergence.py --out sweeps/emergence               # ~10 min, 2 cores
    scaling sweep experiments/cpu_emergence.py --set data.synthetic_task=none --out sweeps/language
    scaling fit sweeps/emergence && scaling plot sweeps/emergence --out sweeps/emergence/plots

The synthetic Zipf-Markov language (V = 256, known entropy rate), half of whose rows repeat
their first 8 tokens to the end of the row (`DataConfig.synthetic_task="repeat"`): models
that have formed a copying head predict every repeated token, the others do not. Exact
match of 1, 4, 8 and 16 tokens is scored in the same evaluation; the report checks whether
it tracks accuracy^k (the language alone: each token an independent trial) or departs from
it (copied spans are right or wrong together). Rotary positions (a copy head attends a fixed
offset back); otherwise the demo's recipe (2 layers, width-scaled learning rate).
"""

import dataclasses

from scaling.config import ModelConfig
from scaling.data import DataConfig
from scaling.sweep import SweepConfig, demo_config


def get_config() -> SweepConfig:
    base = demo_config("tiny")
    return dataclasses.replace(
        base, name="cpu-emergence", budgets=(3e10, 1e11, 3e11, 7e11), widths=(16, 24, 32, 48, 64, 96), depths=(2,),
        sizes_per_budget=3, size_spread=3.0, tokens_per_param=20.0, min_steps=40,
        model=ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=256, seq_len=64, positions="rotary"),
        data=DataConfig(source="synthetic", synthetic_task="repeat", synthetic_task_fraction=0.5,
                        synthetic_task_period=8),
        train=base.train.replace(steps_per_dispatch=8, eval_batches=8))
