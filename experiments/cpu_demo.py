"""The `scaling demo` sweep as an experiment file (CPU, the embedded stdlib corpus).

    scaling sweep experiments/cpu_demo.py --out sweeps/cpu_demo           # = scaling demo
    scaling sweep experiments/cpu_demo.py --set budgets=(3e10,1e11,3e11) --out sweeps/mine

The config lives in the package (`scaling.sweep.demo_config`) so that `scaling demo` works
from an installed wheel; this file is the place to copy it from and edit.
"""

from scaling.sweep import SweepConfig, demo_config


def get_config(budget: str = "small") -> SweepConfig:
    return demo_config(budget)
