"""What a repeated token is worth: the demo's byte-level family at 4 caps of unique data (CPU, stdlib corpus).

    scaling sweep experiments/cpu_epochs.py --out sweeps/epochs        # 36 runs, ~5 min on 2 cores
    scaling fit sweeps/epochs                                          # + "Repeated data"

Every (budget, shape) is trained on the whole training split (29.7M tokens: under 0.1 epochs)
and on the split cut to 300k, 100k and 30k unique tokens (`DataConfig.unique_tokens`: a
fixed random sample of its 65-token windows), with the same N and D: only the number of
epochs changes, from ~0.4 to ~70. The report fits the usual laws on the uncapped
runs and the data-constrained law L(N, D, U) of Muennighoff et al. 2023 on all of them
(`scaling.questions`, `scaling.fit.data_constrained`); `scaling plot` draws epochs.png.
`max_epochs` is raised on purpose: repeating the data is what this sweep measures.
"""

import dataclasses

from scaling.sweep import SweepConfig, demo_config


def get_config() -> SweepConfig:
    base = demo_config("tiny")
    return dataclasses.replace(
        base, name="cpu-epochs", unique_tokens=(None, 300_000, 100_000, 30_000), max_epochs=100.0,
        budgets=(2.5e10, 8e10, 2.5e11), sizes_per_budget=3, size_spread=3.0, min_steps=30,
        train=base.train.replace(steps_per_dispatch=8))
