"""One training run, end to end, data-parallel on every device of every host.

    from scaling.train import run
    result = run(cfg, "runs/tiny")          # -> RunResult(status, steps, tokens, ..., points)

`run` builds a `Trainer` and calls `fit()`, whose loop reads top to bottom: restore the
latest checkpoint, then per step fork any WSD cooldown branch due here, evaluate when asked,
checkpoint, honour a preemption, take one compiled step (`scaling.step`) and run the hooks;
at the end evaluate the final point, save, and write `run.json`. Everything a restart needs
(the step, accounting totals, loss statistics, finished branch points) is in the checkpoint:
batches are a pure function of (seed, step, row), so a run killed at any point resumes to
bitwise the same losses (tests/test_resilience.py).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import sys
import time
from typing import Callable, Iterable

import jax
import numpy as np
from jax.sharding import Mesh

from scaling import flops as flops_lib
from scaling import mesh as mesh_lib
from scaling import paths, schedules
from scaling import step as step_lib
from scaling.checkpoint import Checkpointer, PreemptionWatcher
from scaling.config import RunConfig, to_dict
from scaling.data import epochs as data_epochs
from scaling.data import make_dataset
from scaling.hooks import FlopAccounting, StepEvent, call_hooks
from scaling.monitor import TRAIN_LOSS_WINDOW, LossMonitor
from scaling.paths import write_atomic


@dataclasses.dataclass
class RunResult:
    """What one run produced.

    status: "finished" | "diverged" | "preempted".
    steps / tokens: optimizer steps done and tokens consumed by the main run.
    wall_s: wall-clock seconds spent in `run` (summed over restarts).
    points: one dict per evaluated (N, D) point: the main run's final point (branch=None,
      only when finished) and one per WSD branch (branch = its configured token count),
      with keys step, tokens, branch, train_loss, val_loss, val_bpb, val_accuracy,
      val_exact_match, val_exact_match_<k> (each k of `TrainConfig.spans`), the FLOP counts of `scaling.flops.counts` (flops by flops_method,
      flops_6n, flops_kaplan, flops_chinchilla, flops_palm, flops_6n_non_embedding: C of
      that point's tokens), wall_s, mfu (mean over the run's steps, each process's first,
      compiling step excluded).
    message: why a run stopped early (divergence), else "".
    """

    status: str
    steps: int
    tokens: int
    wall_s: float
    out_dir: str
    points: list[dict] = dataclasses.field(default_factory=list)
    message: str = ""


def _jsonable(cfg: RunConfig) -> dict:
    return json.loads(json.dumps(to_dict(cfg)))


# Fields that change where and how a run computes, not what: a run may resume with them
# changed (trained on an 8x1 mesh, resumed as 4x2; remat turned on after running out of memory).
_LAYOUT_FIELDS = (("train", "mesh_fsdp"), ("model", "remat"))


def _same_run(stored: dict | None, cfg: RunConfig) -> bool:
    def what(config: dict) -> dict:
        config = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
        for part, field in _LAYOUT_FIELDS:
            config.get(part, {}).pop(field, None)
        return config
    return stored is not None and what(stored) == what(_jsonable(cfg))


def read_run_json(out_dir) -> dict | None:
    path = paths.path(out_dir) / "run.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def branch_plan(cfg: RunConfig, total_steps: int) -> list[dict]:
    """The WSD cooldown branches: for each, its token count, its length in steps and the main
    run's step it forks from (where its own cooldown starts)."""
    t = cfg.train
    tokens_per_step = t.global_batch_size * cfg.model.seq_len
    plan = []
    for branch in sorted(set(t.wsd_branches)):
        steps = max(1, math.ceil(branch / tokens_per_step))
        if steps >= total_steps:
            raise ValueError(f"TrainConfig.wsd_branches: {branch} tokens = {steps} steps, not shorter than "
                             f"the run's {total_steps} steps")
        plan.append({"branch": branch, "steps": steps, "fork": schedules.cooldown_start(steps, t.cooldown_frac)})
    return plan


def _check_fits(cfg: RunConfig, mesh: Mesh) -> None:
    B, T, n_dev = cfg.train.global_batch_size, cfg.model.seq_len, mesh.size
    eval_bs = cfg.train.eval_batch_size or B
    if B % n_dev:
        raise ValueError(f"TrainConfig.global_batch_size={B}: must be divisible by the {n_dev} devices")
    if eval_bs % n_dev:
        raise ValueError(f"TrainConfig.eval_batch_size={eval_bs}: must be divisible by the {n_dev} devices")
    if cfg.train.exact_match_span > T:
        raise ValueError(f"TrainConfig.exact_match_span={cfg.train.exact_match_span}: longer than seq_len={T}")
    if any(k > T for k in cfg.train.exact_match_spans):
        raise ValueError(f"TrainConfig.exact_match_spans={cfg.train.exact_match_spans}: longer than seq_len={T}")


class Trainer:
    """One run's state and the loop over it; `fit()` returns the `RunResult`.

    Built by `run`. Holds the compiled functions, data, checkpointer, metric writers (process
    0 only), FLOP accounting and loss monitor, and the model state (params, opt_state).
    `device_kind` plans the memory for that chip instead of the mesh's (`scaling.mesh.plan_memory`).
    """

    def __init__(self, cfg: RunConfig, out_dir, *, hooks: Iterable[Callable] = (), mesh: Mesh | None = None,
                 device_kind: str | None = None):
        mesh = mesh if mesh is not None else step_lib.make_mesh(cfg.train.mesh_fsdp)
        _check_fits(cfg, mesh)
        self.memory = mesh_lib.plan_memory(cfg, mesh, device_kind)
        self.t_start = time.perf_counter()
        self.cfg, self.mesh, self.out_dir = cfg, mesh, out_dir
        self.out = paths.path(out_dir)
        self.is_main = jax.process_index() == 0
        tc, mc = cfg.train, cfg.model
        self.B, self.T = tc.global_batch_size, mc.seq_len
        self.eval_bs = tc.eval_batch_size or self.B
        self.total = cfg.steps()
        self.branches = branch_plan(cfg, self.total)
        self.train_ds = make_dataset(cfg.data, seq_len=self.T, split="train")
        self.val_ds = make_dataset(cfg.data, seq_len=self.T, split="validation")
        if self.train_ds.vocab_size > mc.vocab_size:
            raise ValueError(f"ModelConfig.vocab_size={mc.vocab_size}: smaller than the data's vocabulary "
                             f"({self.train_ds.vocab_size})")
        self.host_index, self.host_count = step_lib.host_rows(mesh)
        self.compiled = step_lib.train_step_for(cfg, mesh)
        self.eval_fn = step_lib.eval_step_for(mc, self.eval_bs, tc.spans, mesh)
        self.params, self.rest, self.opt_state = self.compiled.init(np.int32(tc.seed))
        self.eval_batches = [self._put(self.val_ds, i, self.eval_bs) for i in range(tc.eval_batches)]
        self.ckpt = Checkpointer(self.out / "checkpoints", keep=tc.keep_checkpoints)
        self.accounting = FlopAccounting(mc, method=tc.flops_method,
                                         peak_flops=flops_lib.peak_flops_total(list(mesh.devices.flat)))
        self.monitor = LossMonitor(tc.divergence_factor)
        self.branch_points: list[dict] = []
        self.mfu_sum, self.mfu_count, self.wall_before = 0.0, 0, 0.0
        self.hooks = list(hooks)
        self.watcher = PreemptionWatcher()

    # --- data --------------------------------------------------------------------------
    def _put(self, ds, index: int, rows: int) -> jax.Array:
        local = ds.batch(index, rows, process_index=self.host_index, process_count=self.host_count)
        return step_lib.put_batch(self.mesh, local, rows)

    def batch_at(self, step: int) -> jax.Array:
        return self._put(self.train_ds, step, self.B)

    # --- restore -----------------------------------------------------------------------
    def restore(self) -> int:
        """Load the latest checkpoint, if any; returns the step to continue from."""
        start = self.ckpt.latest_step() or 0
        if start:
            state, meta = self.ckpt.restore(start, {"params": self.params, "opt_state": self.opt_state})
            self.params, self.opt_state = state["params"], state["opt_state"]
            self.accounting.load_state_dict(meta["accounting"])
            self.monitor.load_state_dict(meta["loss"])
            self.branch_points = list(meta["branch_points"])
            self.mfu_sum, self.mfu_count, self.wall_before = meta["mfu_sum"], meta["mfu_count"], meta["wall_s"]
        self.last_saved = start
        return start

    def open_writers(self, start: int) -> None:
        """JSONL, TensorBoard and progress bar (process 0), truncated to the restored step."""
        from scaling.metrics import JsonlWriter, ProgressBar, TensorBoardWriter

        tc = self.cfg.train
        self.writers: list = []
        self.jsonl = self.tb = None
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.jsonl = JsonlWriter(self.out / "metrics.jsonl", resume_step=start or None, log_every=tc.log_every)
            self.writers.append(self.jsonl)
            try:
                self.tb = TensorBoardWriter(self.out / "tensorboard", log_every=tc.log_every, resume_step=start or None)
                self.writers.append(self.tb)
            except Exception as e:  # TensorBoard is a convenience, never a reason to fail a run
                print(f"scaling.train: TensorBoard disabled: {e}", file=sys.stderr)
            if tc.progress:
                self.writers.append(ProgressBar(self.total, start, desc=self.cfg.name))

    def log_eval(self, step: int, metrics: dict) -> None:
        if self.jsonl is not None:
            self.jsonl.write({"kind": "eval", "step": step, "tokens": step * self.B * self.T, **metrics})
        if self.tb is not None:
            self.tb.write("eval", step, metrics)

    def log_branch(self, fork_step: int, point: dict) -> None:
        if self.jsonl is not None:
            self.jsonl.write({"kind": "branch", "fork_step": fork_step, **point})
        if self.tb is not None:
            self.tb.write(f"branch_{point['branch']}", point["step"], point)

    # --- points, saving ----------------------------------------------------------------
    def wall_now(self) -> float:
        return self.wall_before + time.perf_counter() - self.t_start

    def evaluate(self, params) -> dict[str, float]:
        return step_lib.evaluate(self.eval_fn, params, self.rest, self.eval_batches, self.val_ds)

    def point(self, step: int, branch, train_loss: float, metrics: dict, wall_s: float) -> dict:
        tokens = step * self.B * self.T
        return {"step": step, "tokens": tokens, "branch": branch, "train_loss": train_loss, **metrics,
                **flops_lib.counts(self.cfg.model, tokens, self.cfg.train.flops_method), "wall_s": wall_s,
                "mfu": self.mfu_sum / self.mfu_count if self.mfu_count else float("nan")}

    def save(self, step: int) -> None:
        meta = {"step": step, "accounting": self.accounting.state_dict(), "loss": self.monitor.state_dict(),
                "branch_points": self.branch_points, "mfu_sum": self.mfu_sum, "mfu_count": self.mfu_count,
                "wall_s": self.wall_now()}
        for w in (self.jsonl, self.tb):  # what the checkpoint vouches for is on disk before it
            if w is not None:
                w.flush()
        self.ckpt.save(step, {"params": self.params, "opt_state": self.opt_state}, meta)
        self.last_saved = step

    def write_run_json(self, status: str, result: RunResult | None = None, message: str = "") -> None:
        if not self.is_main:
            return
        info = {
            "config": _jsonable(self.cfg),
            "data": {"train": self.train_ds.identity, "validation": self.val_ds.identity},
            "jax_version": jax.__version__,
            "devices": [str(d) for d in self.mesh.devices.flat],
            "device_kind": self.mesh.devices.flat[0].device_kind,
            "process_count": jax.process_count(),
            "n_params": flops_lib.param_counts(self.cfg.model).total,
            "steps_total": self.total,
            # How many times the run repeats its training split's unique tokens (0: unlimited).
            "epochs": data_epochs(self.total * self.B * self.T, self.train_ds.unique_tokens),
        }
        doc = {**info, "status": status, "message": message,
               "result": dataclasses.asdict(result) if result is not None else None}
        write_atomic(self.out / "run.json", json.dumps(doc, indent=2))  # a kill never leaves half a file

    # --- steps, branches ---------------------------------------------------------------
    def advance(self, params, opt_state, start: int, stop: int, horizon: int):
        """Optimizer steps start .. stop - 1 (rates from the schedule of a run of `horizon`
        steps) in one dispatch: (params, opt_state, [(lr, loss, grad_norm)] per step, seconds).
        Blocks of more than one step go through the compiled `lax.scan` of K steps."""
        tc = self.cfg.train
        lrs = [schedules.lr_at(tc, s, horizon) for s in range(start, stop)]
        t0 = time.perf_counter()
        if tc.steps_per_dispatch == 1:
            assert stop == start + 1
            params, opt_state, m = self.compiled.step(params, opt_state, self.rest, self._next_batch(start),
                                                      np.float32(lrs[0]))
            if stop < horizon:  # the host builds the next batch while the device runs this step
                self._prefetched = (stop, self.batch_at(stop))
            stats = [(lrs[0], float(m["loss"]), float(m["grad_norm"]))]
        else:
            K, n = tc.steps_per_dispatch, stop - start
            tokens = self._stage(start, stop)
            lrs_K = np.zeros(K, np.float32)
            lrs_K[:n] = lrs
            valid_K = np.arange(K) < n
            params, opt_state, m = self.compiled.steps(params, opt_state, self.rest, tokens, lrs_K, valid_K)
            losses, norms = np.asarray(m["loss"])[:n], np.asarray(m["grad_norm"])[:n]
            stats = [(lr, float(a), float(b)) for lr, a, b in zip(lrs, losses, norms)]
        return params, opt_state, stats, time.perf_counter() - t0

    def _next_batch(self, step: int) -> jax.Array:
        """The batch of `step`, built while the previous step ran when it was the one expected."""
        batch, self._prefetched = getattr(self, "_prefetched", None), None
        if batch is None or batch[0] != step:
            return self.batch_at(step)
        return batch[1]

    def _stage(self, start: int, stop: int) -> jax.Array:
        """Batches start .. stop - 1 as one [K, B, T + 1] device array (zeros past stop)."""
        K = self.cfg.train.steps_per_dispatch
        rows = [self.train_ds.batch(s, self.B, process_index=self.host_index, process_count=self.host_count)
                for s in range(start, stop)]
        local_KxBxT1 = np.zeros((K, *rows[0].shape), rows[0].dtype)
        local_KxBxT1[:len(rows)] = np.stack(rows)
        return step_lib.put_batches(self.mesh, local_KxBxT1, self.B)

    def block_end(self, step: int, stop: int, every: tuple[int, ...] = ()) -> int:
        """Where a block starting at `step` ends: K steps on, at the latest at `stop`, and never
        past the next multiple of any of `every` (evaluations, checkpoints) or a WSD fork."""
        end = min(stop, step + self.cfg.train.steps_per_dispatch)
        for period in every:
            if period:
                end = min(end, (step // period + 1) * period)
        for b in self.branches:
            if step < b["fork"] < end:
                end = b["fork"]
        return end

    def branch(self, b: dict) -> dict | None:
        """Cool down a copy of the state from b["fork"] to b["steps"]; None if preempted."""
        p, o = self.compiled.copy(self.params), self.compiled.copy(self.opt_state)
        losses: collections.deque = collections.deque(maxlen=TRAIN_LOSS_WINDOW)
        t0 = time.perf_counter()
        s = b["fork"]
        while s < b["steps"]:
            if self.watcher.should_stop(s, sync_point=False):
                return None
            end = min(b["steps"], s + self.cfg.train.steps_per_dispatch)
            p, o, stats, _ = self.advance(p, o, s, end, b["steps"])
            losses.extend(loss for _, loss, _ in stats)
            s = end
            if not all(math.isfinite(loss) for _, loss, _ in stats):
                break
        return self.point(b["steps"], b["branch"], float(np.mean(losses)), self.evaluate(p),
                          self.accounting.seconds + time.perf_counter() - t0)

    # --- the loop ----------------------------------------------------------------------
    def fit(self) -> RunResult:
        tc, B, T, total = self.cfg.train, self.B, self.T, self.total
        start = self.restore()
        done_branches = {p["branch"] for p in self.branch_points}
        self.open_writers(start)
        all_hooks = [self.accounting, *self.hooks, *self.writers]
        self.write_run_json("running")
        self.watcher.install()
        status, message = "finished", ""
        step, first_block_here = start, True
        try:
            while True:
                for b in self.branches:
                    if b["fork"] == step and b["branch"] not in done_branches:
                        res = self.branch(b)
                        if res is None:
                            break
                        self.branch_points.append(res)
                        done_branches.add(b["branch"])
                        self.log_branch(step, res)
                if tc.eval_every and 0 < step < total and step % tc.eval_every == 0 and step != start:
                    self.log_eval(step, self.evaluate(self.params))
                if step >= total:
                    break
                if step != start and tc.checkpoint_every and step % tc.checkpoint_every == 0:
                    self.save(step)
                if self.watcher.should_stop(step):
                    if self.last_saved != step:
                        self.save(step)
                    status = "preempted"
                    break
                end = self.block_end(step, total, (tc.eval_every, tc.checkpoint_every))
                self.params, self.opt_state, stats, seconds = self.advance(self.params, self.opt_state, step, end, total)
                for i, (lr, loss, grad_norm) in enumerate(stats):
                    step += 1
                    message = self.monitor.check(step, loss, grad_norm)
                    if message:
                        break
                    event = StepEvent(step=step, tokens=B * T, seconds=seconds / len(stats),
                                      metrics={"loss": loss, "lr": lr, "grad_norm": grad_norm})
                    metrics = call_hooks(all_hooks, event)
                    # MFU excludes each process's first dispatch (it compiles).
                    if not first_block_here and "mfu" in metrics:
                        self.mfu_sum += metrics["mfu"]
                        self.mfu_count += 1
                if message:
                    status = "diverged"
                    if self.is_main:
                        print(f"scaling.train: {message}", file=sys.stderr)
                    break
                first_block_here = False
        finally:
            self.watcher.uninstall()
        return self.finish(status, step, message or "")

    def finish(self, status: str, step: int, message: str) -> RunResult:
        """Evaluate the final point of a finished run, save, close the writers, write run.json."""
        points = sorted(self.branch_points, key=lambda p: p["tokens"])
        if status == "finished":
            metrics = self.evaluate(self.params)
            points.append(self.point(self.total, None, self.monitor.train_loss(), metrics, self.accounting.seconds))
            self.log_eval(self.total, metrics)
            if self.last_saved != self.total:
                self.save(self.total)
        self.ckpt.close()
        result = RunResult(status=status, steps=step, tokens=step * self.B * self.T, wall_s=self.wall_now(),
                           out_dir=str(self.out_dir), points=points, message=message)
        if self.jsonl is not None:
            self.jsonl.write({"kind": "status", "step": step, "status": status, "message": message})
        for w in self.writers:
            if hasattr(w, "close"):
                w.close()
        self.write_run_json(status, result, message)
        return result


def run(cfg: RunConfig, out_dir, *, hooks: Iterable[Callable] = (), mesh: Mesh | None = None) -> RunResult:
    """Train `cfg` into `out_dir` (local or gs://), resuming from its latest checkpoint.

    A run whose run.json says finished (or diverged) returns its stored result without
    training. Writes metrics.jsonl, tensorboard/, checkpoints/ and run.json (process 0).
    `hooks` are called every step after the FLOP accounting (see `scaling.hooks`).
    `mesh` (default `scaling.step.make_mesh(cfg.train.mesh_fsdp)`: all devices) is the
    ("data",) or ("data", "fsdp") mesh; a run may resume on another mesh shape.
    """
    stored = read_run_json(out_dir)
    if stored is not None:
        if not _same_run(stored.get("config"), cfg):
            raise ValueError(f"out_dir={str(out_dir)!r}: holds a run with a different config; use another --out")
        if stored.get("status") in ("finished", "diverged") and stored.get("result"):
            return RunResult(**stored["result"])
    return Trainer(cfg, out_dir, hooks=hooks, mesh=mesh).fit()
