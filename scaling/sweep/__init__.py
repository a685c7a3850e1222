"""IsoFLOP sweeps: plan the runs, run them (resumably, across workers), collect one table.

    cfg = SweepConfig(budgets=(1e13, 3e13, 1e14), widths=(64, 128, 256), depths=(2, 4, 6), model=...)
    runs = plan(cfg)                  # [PlannedRun]: N, D = C / per_token(N), a RunConfig each
    print(format_plan(runs))          # epochs: how often each run repeats its training data
    run_sweep(cfg, "out/sweep")       # out/sweep/results.jsonl, runs/<id>/, DONE

Modules: `config` (SweepConfig, PlannedRun), `plan` (sizes and tokens per budget, the plan
table), `throughput` (timing a step for wall-time estimates; the only module here that
compiles), `run` (running a worker's share), `demo` (the `scaling demo` recipe and why).
Planning imports without JAX; `run_sweep` and the throughput functions load it on first use.
"""

from scaling.sweep.config import PlannedRun, SweepConfig
from scaling.sweep.demo import DEMO_BUDGETS, demo_config
from scaling.sweep.plan import check_repeats, estimate_wall_s, format_plan, optimal_size, plan

_LAZY = {
    "run_sweep": "scaling.sweep.run", "SweepResult": "scaling.sweep.run", "write_plan": "scaling.sweep.run",
    "is_done": "scaling.sweep.run", "DONE_FILE": "scaling.sweep.run", "PLAN_FILE": "scaling.sweep.run",
    "measured_throughput": "scaling.sweep.throughput", "measured_flops_per_s": "scaling.sweep.throughput",
    "step_flops_per_s": "scaling.sweep.throughput",
}

__all__ = ["SweepConfig", "PlannedRun", "plan", "format_plan", "check_repeats", "estimate_wall_s", "optimal_size",
           "DEMO_BUDGETS", "demo_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scaling.sweep' has no attribute {name!r}")
