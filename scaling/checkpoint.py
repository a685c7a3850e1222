"""Checkpoints (orbax), preemption and multi-host start-up.

A checkpoint at step s holds everything needed to continue as if never stopped:
  state: {"params", "opt_state"} (device arrays, restored with their shardings)
  meta (JSON): the step (the data position: batches are a pure function of the step, so
    the step IS the data iterator's state), the FLOP accounting totals, the running loss
    statistics used by the divergence check, the MFU running sum, and the completed WSD
    branch points.
Saves are asynchronous (orbax copies the arrays off the device before `save` returns and
writes in the background); only the last `keep` are kept, and only finished (committed)
checkpoints are ever listed, so a run killed mid-save resumes from the previous one.
Directories may be local or `gs://` (orbax/epath paths throughout).

Exit codes of `scaling train`:
  EXIT_PREEMPTED = 75 (EX_TEMPFAIL: "try again"): SIGTERM arrived, the state at the next
    step boundary was saved, rerunning the same command continues from it.
  EXIT_DIVERGED = 3: the loss or gradient norm blew up; the last good checkpoint is kept.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from scaling import paths

EXIT_OK = 0
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75


def abstract_like(tree):
    """ShapeDtypeStructs (with shardings) of a tree of arrays: a restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
    """A thin wrapper over `ocp.CheckpointManager` for (state, meta) checkpoints."""

    def __init__(self, directory, *, keep: int = 2, async_save: bool = True):
        # Orbax's tensorstore layer rejects relative local paths ("Checkpoint path should be
        # absolute"), and `--out runs/x` is what users type.
        self.directory = paths.path(paths.absolute(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Start saving; returns once the arrays are off the device (safe to donate them)."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, step: int, target: Any) -> tuple[Any, dict]:
        """(state, meta) at `step`; `target` is a tree like the state (arrays or abstract)."""
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_like(target)), meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class PreemptionWatcher:
    """SIGTERM -> stop at the next step boundary, on every host at the same step.

    One process: the signal handler sets a flag the loop polls. Several processes: a host
    that got SIGTERM must not stop alone (the others would hang in the next collective), so
    every check all-gathers the flags (`multihost_utils.process_allgather`, a few bytes) and
    also asks JAX's preemption sync service (`reached_preemption_sync_point`, which sees
    the cloud's maintenance notices on TPU VMs when `jax.distributed` is initialised);
    all hosts then stop at the same step.
    """

    def __init__(self):
        self.flag = False
        self._previous = None
        self._installed = False

    def _handler(self, signum, frame):
        self.flag = True

    def install(self) -> "PreemptionWatcher":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    def should_stop(self, step: int, *, sync_point: bool = True) -> bool:
        """Whether every host should stop now (a collective when there are several).

        `sync_point=False` skips JAX's preemption service, which wants increasing steps
        (WSD branches re-use step numbers of the main run)."""
        if jax.process_count() == 1:
            return self.flag
        from jax.experimental import multihost_utils

        local = self.flag
        try:
            if sync_point:
                local = local or bool(multihost_utils.reached_preemption_sync_point(step))
        except Exception:  # no preemption service (jax.distributed not initialised with it)
            pass
        flags = multihost_utils.process_allgather(np.array([local], dtype=np.int32))
        stop = bool(np.any(flags))
        # Only ever SET the flag here: a SIGTERM that lands while this host waits in the
        # all-gather (most of this call's time) sets it after `local` was read; assigning
        # the gathered value would erase it and the signal would be lost. It is sent at the
        # next check instead, and every host stops one step later.
        self.flag = self.flag or stop
        return stop


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """`jax.distributed.initialize`: no arguments on TPU VMs / SLURM (auto-detected), or an
    explicit coordinator "host:port" with the process count and this process's id."""
    if coordinator is None and num_processes is None and process_id is None:
        jax.distributed.initialize()
        return
    if coordinator is None or num_processes is None or process_id is None:
        raise ValueError("--coordinator, --num-processes and --process-id go together "
                         f"(got {coordinator!r}, {num_processes!r}, {process_id!r})")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
