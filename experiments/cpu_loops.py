"""What a loop is worth: the demo's byte-level family at 1, 2 and 4 loops (CPU, stdlib corpus).

    scaling sweep experiments/cpu_loops.py --out sweeps/loops          # ~30 runs, ~10 min on 2 cores
    scaling fit sweeps/loops                                           # + "What a loop is worth"

Every (budget, shape) is trained at each loop count with the same parameters; a looped model
pays every loop's compute, so at one budget it sees 1/k of the tokens. The report fits the
usual laws on the 1-loop runs and the looped law L(N, D, k), N_eff = N g(k), on all of them
(`scaling.questions`, `scaling.fit.looped`); `scaling plot` draws loops.png.
"""

import dataclasses

from scaling.sweep import SweepConfig, demo_config


def get_config() -> SweepConfig:
    base = demo_config("tiny")
    return dataclasses.replace(
        base, name="cpu-loops", loops=(1, 2, 4), budgets=(4e10, 1.2e11, 3.6e11), sizes_per_budget=3,
        size_spread=3.0, min_steps=30, train=base.train.replace(steps_per_dispatch=8))
