"""Running a sweep: this worker's share of the plan, resumably, rows appended as runs end.

    run_sweep(cfg, "out/sweep")       # out/sweep/plan.json, runs/<id>/, results.jsonl, DONE

Each run trains through `scaling.train.run` in out_dir/runs/<run_id>/ (which resumes a
killed run from its checkpoints and returns a finished run's stored result); runs whose row
is already in the table are skipped. The table: `scaling.results`. Fitting, reports and
plots are not done here (`scaling.pipeline` chains them).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Sequence

import jax

from scaling import paths
from scaling import results as results_lib
from scaling import step as step_lib
from scaling import train as train_lib
from scaling.config import to_dict
from scaling.sweep.config import PlannedRun, SweepConfig
from scaling.sweep.plan import check_repeats, format_plan, plan
from scaling.sweep.throughput import measured_flops_per_s, measured_throughput

DONE_FILE = "DONE"
PLAN_FILE = "plan.json"
SWEEP_FILE = "sweep.json"


def _done_ids(rows: Sequence[dict]) -> set[str]:
    return {r["run_id"] for r in rows if r.get("branch") is None}


def write_plan(runs: Sequence[PlannedRun], out_dir, sweep: SweepConfig | None = None) -> None:
    """out_dir/plan.json: every planned run's id, budget, N, D and full config; and
    out_dir/sweep.json: the SweepConfig itself (its recipe: what `scaling verify` trains with)."""
    path = paths.makedirs(out_dir)
    doc = [{"run_id": r.run_id, "budget": r.budget, "N": r.N, "N_non_embedding": r.N_non_embedding, "D": r.D,
            "steps": r.steps, "config": to_dict(r.config)} for r in runs]
    paths.write_atomic(path / PLAN_FILE, json.dumps(doc, indent=1, default=str))
    if sweep is not None:
        paths.write_atomic(path / SWEEP_FILE, json.dumps(to_dict(sweep), indent=1, default=str))


def read_sweep(out_dir) -> SweepConfig:
    """The SweepConfig a sweep directory was run with (its sweep.json)."""
    from scaling.experiment import from_dict

    path = paths.path(out_dir) / SWEEP_FILE
    if not path.exists():
        raise ValueError(f"sweep_dir={str(out_dir)!r}: no {SWEEP_FILE} (not a sweep directory, or run by an older "
                         "version: rerun `scaling sweep` on it once to write it)")
    return from_dict(SweepConfig, json.loads(path.read_text()))


def _maybe_done(runs: Sequence[PlannedRun], out_dir) -> bool:
    rows = results_lib.read_rows(out_dir)
    missing = {r.run_id for r in runs} - _done_ids(rows)
    if missing:
        return False
    results_lib.consolidate(out_dir)
    (paths.path(out_dir) / DONE_FILE).write_text(f"{len(rows)} rows, {len(runs)} runs\n")
    return True


@dataclasses.dataclass
class SweepResult:
    """What `run_sweep` did: runs trained now, runs skipped (already in the table), whether a
    run was preempted (the caller should exit with EXIT_PREEMPTED), and whether DONE exists."""

    trained: list[str]
    skipped: list[str]
    preempted: bool
    done: bool
    wall_s: float


def run_sweep(sweep: SweepConfig, out_dir, *, worker: int = 0, workers: int = 1, per_host: bool = False,
              hooks=(), verbose: bool = True, overhead_s: float | None = None,
              runs: Sequence[PlannedRun] | None = None) -> SweepResult:
    """Run this worker's share of the plan: runs i, i + workers, ... (i = worker).

    `runs` replaces `plan(sweep)` with runs planned elsewhere (`scaling verify` plans its own
    sizes at one budget with the sweep's recipe).

    Each run trains through `scaling.train.run` in out_dir/runs/<run_id>/ (which resumes a
    killed run from its checkpoints and returns a finished run's stored result); runs whose
    main row is already in the table are skipped. Rows are appended as each run finishes.

    Multi-host (jax.process_count() > 1): by default every host runs every run together on
    one global mesh, and only process 0 writes rows and DONE. With `per_host=True` each host
    takes its own runs (worker index worker x process_count + process_index) on a mesh of its
    local devices, and writes its own rows.

    When every planned run has its row, out_dir/DONE is written (by whichever worker notices).
    """
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker={worker}, workers={workers}: need 0 <= worker < workers")
    t0 = time.perf_counter()
    runs = list(runs) if runs is not None else plan(sweep)
    if not runs:
        raise ValueError(f"SweepConfig.budgets={sweep.budgets!r}: every planned run is under min_steps="
                         f"{sweep.min_steps}; raise the budgets or lower min_steps")
    check_repeats(runs, sweep.max_epochs)  # before anything is written or trained
    n_proc, proc = jax.process_count(), jax.process_index()
    mesh = None
    writer = True
    if n_proc > 1 and per_host:
        mesh = step_lib.make_mesh(sweep.train.mesh_fsdp, jax.local_devices())
        worker, workers = worker * n_proc + proc, workers * n_proc
    elif n_proc > 1:
        writer = proc == 0
    mine = runs[worker::workers]
    rows = results_lib.read_rows(out_dir)
    done = _done_ids(rows)
    if writer and worker == 0:
        write_plan(runs, out_dir, sweep)
    if verbose:
        todo = [r for r in mine if r.run_id not in done]
        if any(r.get("branch") is None for r in rows) or not todo or n_proc > 1:
            fps, source = measured_flops_per_s(rows)
        else:
            fps, source = measured_throughput(todo, mesh=mesh)
        if overhead_s is None:
            overhead_s = 3.0 if jax.default_backend() == "cpu" else 20.0
        print(f"sweep {sweep.name!r}: worker {worker} of {workers}, {len(mine)} of {len(runs)} runs, out_dir={out_dir}")
        devices = mesh.size if mesh is not None else jax.device_count()
        print(format_plan(mine, flops_per_s=fps, source=source, overhead_s=overhead_s, done=done, devices=devices,
                          device_kind=jax.devices()[0].device_kind))
        sys.stdout.flush()
    trained, skipped = [], []
    preempted = False
    for i, run in enumerate(mine):
        if run.run_id in done:
            skipped.append(run.run_id)
            continue
        if verbose:
            print(f"[{i + 1}/{len(mine)}] {run.run_id}: N={run.N:,} D={run.D:,} steps={run.steps}", flush=True)
        run_dir = paths.join(out_dir, "runs", run.run_id)
        result = train_lib.run(run.config, run_dir, hooks=hooks, mesh=mesh)
        if result.status == "preempted":
            preempted = True
            break
        if writer:
            for row in results_lib.make_rows(run, result, worker=worker):
                results_lib.append_row(out_dir, row)
        trained.append(run.run_id)
        if verbose:
            main = next((p for p in (result.points or []) if p.get("branch") is None), {})
            print(f"    {result.status}: val_loss={main.get('val_loss', float('nan')):.4f} "
                  f"wall={result.wall_s:.1f}s", flush=True)
    is_done = (not preempted) and writer and _maybe_done(runs, out_dir)
    return SweepResult(trained=trained, skipped=skipped, preempted=preempted, done=is_done,
                       wall_s=time.perf_counter() - t0)


def is_done(out_dir) -> bool:
    return (paths.path(out_dir) / DONE_FILE).exists()
