"""How fast a sweep's runs will go: the only part of sweeping that compiles a step.

Wall-time estimates for the plan table: a short measured throughput of the plan's smallest
and largest model (their compiled steps are cached by shape, so the runs reuse them), or
the FLOP/s of this sweep's finished runs, or a fraction of the devices' peak.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

from scaling import results as results_lib
from scaling.sweep.config import PlannedRun


def step_flops_per_s(run: PlannedRun, *, steps: int = 3, mesh=None) -> float:
    """Training FLOP/s of `run`'s compiled step, timed over a few steps (after one untimed
    step) on a batch of zeros. The compiled step is cached by shape (`scaling.step.train_step_for`),
    so the run itself reuses this compilation: the measurement costs a few steps."""
    import jax
    import numpy as np

    from scaling import step as step_lib

    cfg = run.config
    mesh = mesh or step_lib.make_mesh(cfg.train.mesh_fsdp)
    compiled = step_lib.train_step_for(cfg, mesh)
    params, rest, opt_state = compiled.init(np.int32(cfg.train.seed))
    B, T = cfg.train.global_batch_size, cfg.model.seq_len
    tokens = step_lib.put_batch(mesh, np.zeros((B, T + 1), np.int32), B)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        params, opt_state, metrics = compiled.step(params, opt_state, rest, tokens, np.float32(0.0))
        jax.block_until_ready(metrics)
        if i:
            times.append(time.perf_counter() - t0)
    return run.flops_per_token * B * T / sorted(times)[len(times) // 2]


def measured_throughput(runs: Sequence[PlannedRun], *, mesh=None):
    """(run -> FLOP/s, source): a short measured throughput of the smallest and the largest
    model of the plan, interpolated in log N for the sizes between (small models reach a lower
    fraction of peak than large ones, so one number would misestimate one end)."""
    by_size = sorted(runs, key=lambda r: r.N)
    ends = [by_size[0]] if by_size[0].N == by_size[-1].N else [by_size[0], by_size[-1]]
    rates = [(math.log(r.N), step_flops_per_s(r, mesh=mesh)) for r in ends]

    def rate(run: PlannedRun) -> float:
        if len(rates) == 1:
            return rates[0][1]
        (x0, y0), (x1, y1) = rates
        w = min(max((math.log(run.N) - x0) / (x1 - x0), 0.0), 1.0)
        return math.exp((1 - w) * math.log(y0) + w * math.log(y1))

    names = " and ".join(f"{r.run_id} {y:.3g} FLOP/s" for r, (_, y) in zip(ends, rates))
    return rate, f"measured over 3 steps: {names}"


def measured_flops_per_s(rows: Sequence[dict] = (), *, assumed_mfu: float = 0.3) -> tuple[float, str]:
    """Training FLOP/s for wall-time estimates, and where it came from: the finished rows of
    this sweep when there are any (their FLOPs over their wall time), else the measured (CPU)
    or data-sheet peak of the local devices times `assumed_mfu`."""
    done = [r for r in rows if r.get("branch") is None and results_lib.finite(r.get("wall_s"))
            and results_lib.finite(r.get("C")) and r.get("wall_s", 0) > 0]
    if done:
        return sum(r["C"] for r in done) / sum(r["wall_s"] for r in done), f"measured on {len(done)} finished runs"
    import jax

    from scaling.flops import peak_flops_total

    peak = peak_flops_total(jax.local_devices())
    return peak * assumed_mfu, f"{assumed_mfu:.0%} of the measured peak {peak:.3g} FLOP/s"
