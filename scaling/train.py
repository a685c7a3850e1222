"""One training run, end to end, data-parallel on every device of every host.

    from scaling.train import run
    result = run(cfg, "runs/tiny")          # -> RunResult(status, steps, tokens, ..., points)

The step (`train_step_for`): one `jax.jit` function, data-parallel with pmap semantics over
a 1-D mesh `Mesh(devices, ("data",))` with Auto axis types (not `jax.make_mesh`'s Explicit
default, see the field notes): parameters and optimizer state replicated (`P()`), the batch
split along its rows (`P("data")`); XLA inserts the all-reduce that averages gradients. The
same code runs on 1 device and on many, on one host and on many: each host builds only its
own rows (`Dataset.batch(..., process_index=, process_count=)`) and
`jax.make_array_from_process_local_data` assembles the global batch.

The step is a pure function of (params, opt_state, rest, tokens, lr): the model is split
once (`nnx.split(model, nnx.Param, ...)`) and merged inside the traced function. The
learning rate is an argument computed on the host from the schedule, not baked into optax,
so every run of one shape (same ModelConfig, batch, accumulation, optimizer constants and
devices) shares ONE compiled step, whatever its learning rate or horizon: a sweep compiles
each shape once (`_TRAIN_STEPS`, keyed by `StepKey`; `TRACE_COUNTS` counts traces).

Optimizer: AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") as
optax builds it (`scale_by_adam`, `add_decayed_weights`, times -lr: the decay is scaled by
the scheduled lr, as in PyTorch's AdamW and optax.adamw). Weight decay applies to every
parameter with ndim >= 2 -- all matrices, the embedding tables included, as nanoGPT does --
and not to vectors (LayerNorm scales, biases): decaying gains and offsets towards 0 has no
regularising meaning. Gradients are clipped by global norm (`grad_clip`, 0 = off) before
Adam; the reported grad_norm is the norm before clipping. Gradient accumulation splits the
global batch into `grad_accum` microbatches inside the step (`lax.scan`) and averages
their gradients: with equal microbatches this is exactly the full-batch mean gradient.
Loss: mean token cross-entropy in float32 (the model returns float32 logits also under
bf16 compute; parameters are float32 master weights).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import sys
import time
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling import flops as flops_lib
from scaling import schedules
from scaling.checkpoint import Checkpointer, PreemptionWatcher
from scaling.config import RunConfig, to_dict
from scaling.data import make_dataset
from scaling.hooks import FlopAccounting, StepEvent, call_hooks
from scaling.metrics import write_atomic
from scaling.model import ModelConfig, init

# Steps of the main run whose mean training loss is reported with an evaluated point.
TRAIN_LOSS_WINDOW = 10
# Divergence: the ratio test starts after this many steps (early losses fall fast).
DIVERGENCE_WARMIN = 10
# Decay of the running (exponential) mean the ratio test compares against.
DIVERGENCE_EMA = 0.9

TRACE_COUNTS: collections.Counter = collections.Counter()


# ---------------------------------------------------------------------------------------
# Mesh and placement


def data_mesh(devices=None) -> Mesh:
    """A 1-D data-parallel mesh over `devices` (default: every device of every host)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), ("data",))


def _replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _rows(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def _local_rows(mesh: Mesh, global_rows: int) -> tuple[int, int]:
    """(process_index, process_count) for the data of `mesh`'s hosts."""
    procs = sorted({d.process_index for d in mesh.devices.flat})
    return procs.index(jax.process_index()), len(procs)


def put_batch(mesh: Mesh, local_BxT1: np.ndarray, global_rows: int) -> jax.Array:
    """This host's rows -> the global batch array sharded P('data') over `mesh`."""
    return jax.make_array_from_process_local_data(_rows(mesh), local_BxT1, (global_rows, local_BxT1.shape[1]))


# ---------------------------------------------------------------------------------------
# The optimizer, the step and the eval step


def decay_mask(params):
    """Weight decay on ndim >= 2 (matrices and embedding tables), not on vectors."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(weight_decay: float, beta1: float, beta2: float, eps: float,
                   grad_clip: float) -> optax.GradientTransformation:
    """AdamW without its learning rate (the step multiplies the updates by -lr)."""
    parts = []
    if grad_clip > 0:
        parts.append(optax.clip_by_global_norm(grad_clip))
    parts.append(optax.scale_by_adam(b1=beta1, b2=beta2, eps=eps))
    if weight_decay > 0:
        parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    return optax.chain(*parts)


def token_losses(graphdef, params, rest, tokens_BxT1):
    """(nll_BxT, logits_BxTxV): next-token cross-entropy in float32."""
    model = nnx.merge(graphdef, params, rest)
    inputs_BxT, targets_BxT = tokens_BxT1[:, :-1], tokens_BxT1[:, 1:]
    logits_BxTxV = model(inputs_BxT).astype(jnp.float32)
    nll_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, targets_BxT)
    return nll_BxT, logits_BxTxV


@dataclasses.dataclass(frozen=True)
class StepKey:
    """What a compiled training step depends on (and nothing else: not lr, not horizon)."""

    model: ModelConfig
    global_batch_size: int
    grad_accum: int
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    grad_clip: float
    device_ids: tuple[int, ...]

    @classmethod
    def of(cls, cfg: RunConfig, mesh: Mesh) -> "StepKey":
        t = cfg.train
        return cls(cfg.model, t.global_batch_size, t.grad_accum, float(t.weight_decay), float(t.beta1),
                   float(t.beta2), float(t.eps), float(t.grad_clip), tuple(int(d.id) for d in mesh.devices.flat))


@dataclasses.dataclass
class CompiledStep:
    """The jitted functions of one StepKey: init(seed), step(...), copy(tree)."""

    key: StepKey
    graphdef: Any
    init: Callable  # int32 seed -> (params, rest, opt_state), replicated
    step: Callable  # (params, opt_state, rest, tokens_BxT1, lr) -> (params, opt_state, metrics)
    copy: Callable  # tree -> a device copy (for WSD branches)


_TRAIN_STEPS: dict[StepKey, CompiledStep] = {}
_EVAL_STEPS: dict[tuple, Callable] = {}


def _init_params_for(model_cfg: ModelConfig, mesh: Mesh) -> Callable:
    """Jitted seed -> (params, rest), replicated on `mesh` (cached per model shape: compiling
    the initialisers costs seconds on CPU)."""
    key = ("init", model_cfg, tuple(int(d.id) for d in mesh.devices.flat))
    if key not in _EVAL_STEPS:
        def init_fn(seed):
            TRACE_COUNTS["init"] += 1
            # nnx.Rngs(int) is nnx.Rngs(jax.random.key(int)): a traced seed needs the key form.
            _, params, rest = nnx.split(init(model_cfg, jax.random.key(seed)), nnx.Param, ...)
            return params, rest

        _EVAL_STEPS[key] = jax.jit(init_fn, out_shardings=_replicated(mesh))
    return _EVAL_STEPS[key]


def train_step_for(cfg: RunConfig, mesh: Mesh) -> CompiledStep:
    """The cached compiled step for `cfg`'s shape on `mesh` (built on first use)."""
    key = StepKey.of(cfg, mesh)
    if key in _TRAIN_STEPS:
        return _TRAIN_STEPS[key]
    model_cfg, accum, B = key.model, key.grad_accum, key.global_batch_size
    tx = make_optimizer(key.weight_decay, key.beta1, key.beta2, key.eps, key.grad_clip)
    graphdef, _, _ = nnx.split(nnx.eval_shape(lambda: init(model_cfg, 0)), nnx.Param, ...)
    repl = _replicated(mesh)
    n_dev = mesh.size

    init_params = _init_params_for(model_cfg, mesh)
    init_opt = jax.jit(tx.init, out_shardings=repl)

    def init_fn(seed):
        params, rest = init_params(seed)
        return params, rest, init_opt(params)

    def mean_loss(params, rest, tokens_BxT1):
        nll_BxT, _ = token_losses(graphdef, params, rest, tokens_BxT1)
        return jnp.mean(nll_BxT)

    grad_fn = jax.value_and_grad(mean_loss)

    def step_fn(params, opt_state, rest, tokens_BxT1, lr):
        TRACE_COUNTS["train_step"] += 1
        if accum == 1:
            loss, grads = grad_fn(params, rest, tokens_BxT1)
        else:
            T1 = tokens_BxT1.shape[1]
            # Microbatch a = rows a, a + accum, a + 2 accum, ...: with contiguous row shards
            # every microbatch is spread over all devices.
            micro_AxMxT1 = tokens_BxT1.reshape(B // accum, accum, T1).swapaxes(0, 1)
            if (B // accum) % n_dev == 0:
                micro_AxMxT1 = jax.lax.with_sharding_constraint(micro_AxMxT1, NamedSharding(mesh, P(None, "data")))

            def body(carry, tokens_MxT1):
                loss_sum, grad_sum = carry
                loss, grads = grad_fn(params, rest, tokens_MxT1)
                return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            (loss_sum, grad_sum), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), micro_AxMxT1)
            loss = loss_sum / accum
            grads = jax.tree.map(lambda g: g / accum, grad_sum)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        lr = jnp.asarray(lr, jnp.float32)
        params = jax.tree.map(lambda p, u: (p - lr * u).astype(p.dtype), params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": grad_norm}

    compiled = CompiledStep(
        key=key, graphdef=graphdef,
        init=init_fn,
        step=jax.jit(step_fn, donate_argnums=(0, 1), out_shardings=repl),
        copy=jax.jit(lambda tree: jax.tree.map(lambda x: x.copy(), tree), out_shardings=repl),
    )
    _TRAIN_STEPS[key] = compiled
    return compiled


def step_xla_flops(cfg: RunConfig, mesh: Mesh | None = None) -> float:
    """XLA's FLOP count of one compiled training step of `cfg` (the real step: forward,
    backward, clipping, AdamW), for checking the analytic counts of `scaling.flops`."""
    mesh = mesh or data_mesh(jax.devices()[:1])
    compiled = train_step_for(cfg, mesh)
    params, rest, opt_state = compiled.init(np.int32(cfg.train.seed))
    tokens_BxT1 = jnp.zeros((cfg.train.global_batch_size, cfg.model.seq_len + 1), jnp.int32)
    return flops_lib.xla_flops(compiled.step, params, opt_state, rest, tokens_BxT1, jnp.float32(0.0))


def eval_step_for(model_cfg: ModelConfig, batch_size: int, span: int, mesh: Mesh) -> Callable:
    """Jitted (params, rest, tokens_BxT1) -> summed eval statistics (cached by shape)."""
    key = (model_cfg, batch_size, span, tuple(int(d.id) for d in mesh.devices.flat))
    if key in _EVAL_STEPS:
        return _EVAL_STEPS[key]
    graphdef, _, _ = nnx.split(nnx.eval_shape(lambda: init(model_cfg, 0)), nnx.Param, ...)

    def eval_fn(params, rest, tokens_BxT1):
        TRACE_COUNTS["eval_step"] += 1
        nll_BxT, logits_BxTxV = token_losses(graphdef, params, rest, tokens_BxT1)
        B, T = nll_BxT.shape
        correct_BxT = jnp.argmax(logits_BxTxV, axis=-1) == tokens_BxT1[:, 1:]
        n_spans = T // span
        spans_BxS = jnp.all(correct_BxT[:, : n_spans * span].reshape(B, n_spans, span), axis=-1)
        return {"nll_sum": jnp.sum(nll_BxT), "correct": jnp.sum(correct_BxT), "tokens": B * T,
                "spans_correct": jnp.sum(spans_BxS), "spans": B * n_spans}

    fn = jax.jit(eval_fn, out_shardings=_replicated(mesh))
    _EVAL_STEPS[key] = fn
    return fn


def evaluate(eval_fn, params, rest, batches, val_ds) -> dict[str, float]:
    """Validation metrics over the fixed eval batches.

    val_loss: nats per target token; val_bpb: bits per UTF-8 byte (`Dataset.bits_per_byte`);
    val_accuracy: greedy next-token accuracy; val_exact_match: the fraction of span-aligned
    chunks of `exact_match_span` targets predicted ALL correctly by greedy argmax. The last is
    deliberately all-or-nothing: Schaeffer et al. 2023 ("Are Emergent Abilities of Large
    Language Models a Mirage?") show that such discontinuous metrics turn a smooth per-token
    improvement (p^span) into an apparently sudden "emergent" jump; logging it beside the
    smooth loss and accuracy lets a sweep show that effect on its own models.
    """
    totals = collections.Counter()
    for tokens in batches:
        out = jax.device_get(eval_fn(params, rest, tokens))
        for k, v in out.items():
            totals[k] += float(v)
    loss = totals["nll_sum"] / totals["tokens"]
    return {"val_loss": loss, "val_bpb": val_ds.bits_per_byte(loss),
            "val_accuracy": totals["correct"] / totals["tokens"],
            "val_exact_match": totals["spans_correct"] / max(totals["spans"], 1.0)}


# ---------------------------------------------------------------------------------------
# Running statistics, results


class LossMonitor:
    """Running loss statistics for divergence checks and the reported train loss.

    Diverged means: a non-finite loss or gradient norm; or a loss above
    `factor` x the first step's loss (for a fresh model about ln V, so this catches
    explosions at any time); or, after DIVERGENCE_WARMIN steps, a loss above `factor` x
    its exponential running mean.
    """

    def __init__(self, factor: float):
        self.factor = factor
        self.count = 0
        self.ema = None
        self.first = None
        self.recent: collections.deque = collections.deque(maxlen=TRAIN_LOSS_WINDOW)

    def check(self, step: int, loss: float, grad_norm: float) -> str | None:
        """A message when (loss, grad_norm) diverged, else None (and the stats update)."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return f"diverged at step {step}: loss={loss!r}, grad_norm={grad_norm!r} (not finite)"
        if self.first is not None and loss > self.factor * self.first:
            return (f"diverged at step {step}: loss={loss:.6g} > {self.factor} x the first step's loss "
                    f"{self.first:.6g} (grad_norm={grad_norm:.6g})")
        if self.count >= DIVERGENCE_WARMIN and loss > self.factor * self.ema:
            return (f"diverged at step {step}: loss={loss:.6g} > {self.factor} x running mean "
                    f"{self.ema:.6g} (grad_norm={grad_norm:.6g})")
        self.count += 1
        self.first = loss if self.first is None else self.first
        self.ema = loss if self.ema is None else DIVERGENCE_EMA * self.ema + (1 - DIVERGENCE_EMA) * loss
        self.recent.append(loss)
        return None

    def train_loss(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")

    def state_dict(self) -> dict:
        return {"count": self.count, "ema": self.ema, "first": self.first, "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.ema, self.first = int(state["count"]), state["ema"], state["first"]
        self.recent = collections.deque(state["recent"], maxlen=TRAIN_LOSS_WINDOW)


@dataclasses.dataclass
class RunResult:
    """What one run produced.

    status: "finished" | "diverged" | "preempted".
    steps / tokens: optimizer steps done and tokens consumed by the main run.
    wall_s: wall-clock seconds spent in `run` (summed over restarts).
    points: one dict per evaluated (N, D) point: the main run's final point (branch=None,
      only when finished) and one per WSD branch (branch = its configured token count),
      with keys step, tokens, branch, train_loss, val_loss, val_bpb, val_accuracy,
      val_exact_match, flops (by flops_method), flops_6n, flops_kaplan, flops_chinchilla,
      flops_palm, flops_6n_non_embedding (C of that point's tokens), wall_s, mfu (mean over
      the run's steps, each process's first, compiling step excluded).
    message: why a run stopped early (divergence), else "".
    """

    status: str
    steps: int
    tokens: int
    wall_s: float
    out_dir: str
    points: list[dict] = dataclasses.field(default_factory=list)
    message: str = ""


def _point_flops(cfg: RunConfig, tokens: int) -> dict[str, float]:
    out = {m: tokens * flops_lib.per_token(cfg.model, m) for m in flops_lib.METHODS}
    point = {"flops": out[cfg.train.flops_method]}
    point.update({f"flops_{m}": c for m, c in out.items()})
    point["flops_6n_non_embedding"] = tokens * flops_lib.per_token(cfg.model, "6n", n="non_embedding")
    return point


def _jsonable(cfg: RunConfig) -> dict:
    return json.loads(json.dumps(to_dict(cfg)))


def read_run_json(out_dir) -> dict | None:
    path = epath.Path(out_dir) / "run.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _branch_plan(cfg: RunConfig, total_steps: int) -> list[dict]:
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


# ---------------------------------------------------------------------------------------
# The run


def run(cfg: RunConfig, out_dir, *, hooks: Iterable[Callable] = (), mesh: Mesh | None = None) -> RunResult:
    """Train `cfg` into `out_dir` (local or gs://), resuming from its latest checkpoint.

    A run whose run.json says finished (or diverged) returns its stored result without
    training. Writes metrics.jsonl, tensorboard/, checkpoints/ and run.json (process 0).
    `hooks` are called every step after the FLOP accounting (see `scaling.hooks`).
    `mesh` (default `data_mesh()`: all devices) is the 1-D ("data",) mesh to train on.
    """
    t_start = time.perf_counter()
    out = epath.Path(out_dir)
    is_main = jax.process_index() == 0
    stored = read_run_json(out)
    if stored is not None:
        if stored.get("config") != _jsonable(cfg):
            raise ValueError(f"out_dir={str(out_dir)!r}: holds a run with a different config; use another --out")
        if stored.get("status") in ("finished", "diverged") and stored.get("result"):
            return RunResult(**stored["result"])

    tc, mc = cfg.train, cfg.model
    mesh = mesh if mesh is not None else data_mesh()
    n_dev = mesh.size
    B, T = tc.global_batch_size, mc.seq_len
    eval_bs = tc.eval_batch_size or B
    if B % n_dev:
        raise ValueError(f"TrainConfig.global_batch_size={B}: must be divisible by the {n_dev} devices")
    if eval_bs % n_dev:
        raise ValueError(f"TrainConfig.eval_batch_size={eval_bs}: must be divisible by the {n_dev} devices")
    if tc.exact_match_span > T:
        raise ValueError(f"TrainConfig.exact_match_span={tc.exact_match_span}: longer than seq_len={T}")
    total = cfg.steps()
    plan = _branch_plan(cfg, total)
    train_ds = make_dataset(cfg.data, seq_len=T, split="train")
    val_ds = make_dataset(cfg.data, seq_len=T, split="validation")
    if train_ds.vocab_size > mc.vocab_size:
        raise ValueError(f"ModelConfig.vocab_size={mc.vocab_size}: smaller than the data's vocabulary "
                         f"({train_ds.vocab_size})")
    p_index, p_count = _local_rows(mesh, B)

    compiled = train_step_for(cfg, mesh)
    eval_fn = eval_step_for(mc, eval_bs, tc.exact_match_span, mesh)
    params, rest, opt_state = compiled.init(np.int32(tc.seed))

    def batch_at(step: int) -> jax.Array:
        return put_batch(mesh, train_ds.batch(step, B, process_index=p_index, process_count=p_count), B)

    eval_batches = [put_batch(mesh, val_ds.batch(i, eval_bs, process_index=p_index, process_count=p_count), eval_bs)
                    for i in range(tc.eval_batches)]

    # --- restore -------------------------------------------------------------------------
    ckpt = Checkpointer(out / "checkpoints", keep=tc.keep_checkpoints)
    accounting = FlopAccounting(mc, method=tc.flops_method,
                                peak_flops=flops_lib.peak_flops_total(list(mesh.devices.flat)))
    monitor = LossMonitor(tc.divergence_factor)
    branch_points: list[dict] = []
    mfu_sum, mfu_count, wall_before = 0.0, 0, 0.0
    start = ckpt.latest_step() or 0
    last_saved = [start]
    if start:
        state, meta = ckpt.restore(start, {"params": params, "opt_state": opt_state})
        params, opt_state = state["params"], state["opt_state"]
        accounting.load_state_dict(meta["accounting"])
        monitor.load_state_dict(meta["loss"])
        branch_points = list(meta["branch_points"])
        mfu_sum, mfu_count, wall_before = meta["mfu_sum"], meta["mfu_count"], meta["wall_s"]
    done_branches = {p["branch"] for p in branch_points}

    # --- writers (process 0) -------------------------------------------------------------
    writers: list = []
    jsonl = tb = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        jsonl = writers_append(writers, _make_jsonl(out, start or None, tc.log_every))
        try:
            tb = writers_append(writers, _make_tb(out, tc.log_every, start or None))
        except Exception as e:  # TensorBoard is a convenience, never a reason to fail a run
            print(f"scaling.train: TensorBoard disabled: {e}", file=sys.stderr)
        if tc.progress:
            from scaling.metrics import ProgressBar

            writers_append(writers, ProgressBar(total, start, desc=cfg.name))
    all_hooks = [accounting, *hooks, *writers]

    info = {
        "config": _jsonable(cfg),
        "data": {"train": train_ds.identity, "validation": val_ds.identity},
        "jax_version": jax.__version__,
        "devices": [str(d) for d in mesh.devices.flat],
        "device_kind": mesh.devices.flat[0].device_kind,
        "process_count": jax.process_count(),
        "n_params": flops_lib.param_counts(mc).total,
        "steps_total": total,
    }

    def write_run_json(status: str, result: RunResult | None = None, message: str = "") -> None:
        if is_main:
            doc = {**info, "status": status, "message": message,
                   "result": dataclasses.asdict(result) if result is not None else None}
            write_atomic(out / "run.json", json.dumps(doc, indent=2))  # a kill never leaves half a file

    write_run_json("running")

    def wall_now() -> float:
        return wall_before + time.perf_counter() - t_start

    def save(step: int) -> None:
        meta = {"step": step, "accounting": accounting.state_dict(), "loss": monitor.state_dict(),
                "branch_points": branch_points, "mfu_sum": mfu_sum, "mfu_count": mfu_count,
                "wall_s": wall_now()}
        for w in (jsonl, tb):  # what the checkpoint vouches for is on disk before it
            if w is not None:
                w.flush()
        ckpt.save(step, {"params": params, "opt_state": opt_state}, meta)
        last_saved[0] = step

    def point(step: int, branch, train_loss: float, metrics: dict, wall_s: float) -> dict:
        tokens = step * B * T
        return {"step": step, "tokens": tokens, "branch": branch, "train_loss": train_loss, **metrics,
                **_point_flops(cfg, tokens), "wall_s": wall_s,
                "mfu": mfu_sum / mfu_count if mfu_count else float("nan")}

    def run_branch(b: dict, main_params, main_opt) -> dict | None:
        """Cool down a copy of the state from b["fork"] to b["steps"]; None if preempted."""
        p, o = compiled.copy(main_params), compiled.copy(main_opt)
        losses: collections.deque = collections.deque(maxlen=TRAIN_LOSS_WINDOW)
        t0 = time.perf_counter()
        for s in range(b["fork"], b["steps"]):
            if watcher.should_stop(s, sync_point=False):
                return None
            lr = schedules.lr_at(tc, s, b["steps"])
            p, o, m = compiled.step(p, o, rest, batch_at(s), np.float32(lr))
            losses.append(float(m["loss"]))
            if not math.isfinite(losses[-1]):
                break
        metrics = evaluate(eval_fn, p, rest, eval_batches, val_ds)
        return point(b["steps"], b["branch"], float(np.mean(losses)), metrics,
                     accounting.seconds + time.perf_counter() - t0)

    # --- the loop ------------------------------------------------------------------------
    watcher = PreemptionWatcher().install()
    status, message = "finished", ""
    step = start
    first_step_here = True
    batch = batch_at(step) if step < total else None
    try:
        while True:
            for b in plan:
                if b["fork"] == step and b["branch"] not in done_branches:
                    res = run_branch(b, params, opt_state)
                    if res is None:
                        break
                    branch_points.append(res)
                    done_branches.add(b["branch"])
                    if jsonl is not None:
                        jsonl.write({"kind": "branch", "fork_step": step, **res})
                    if tb is not None:
                        tb.write(f"branch_{b['branch']}", res["step"], res)
            if tc.eval_every and 0 < step < total and step % tc.eval_every == 0 and step != start:
                metrics = evaluate(eval_fn, params, rest, eval_batches, val_ds)
                if jsonl is not None:
                    jsonl.write({"kind": "eval", "step": step, "tokens": step * B * T, **metrics})
                if tb is not None:
                    tb.write("eval", step, metrics)
            if step >= total:
                break
            if step != start and tc.checkpoint_every and step % tc.checkpoint_every == 0:
                save(step)
            if watcher.should_stop(step):
                if last_saved[0] != step:
                    save(step)
                status = "preempted"
                break

            lr = schedules.lr_at(tc, step, total)
            t0 = time.perf_counter()
            params, opt_state, m = compiled.step(params, opt_state, rest, batch, np.float32(lr))
            if step + 1 < total:
                batch = batch_at(step + 1)  # host work overlaps the device's step
            loss, grad_norm = float(m["loss"]), float(m["grad_norm"])
            seconds = time.perf_counter() - t0
            step += 1
            message = monitor.check(step, loss, grad_norm)
            if message:
                status = "diverged"
                if is_main:
                    print(f"scaling.train: {message}", file=sys.stderr)
                break
            event = StepEvent(step=step, tokens=B * T, seconds=seconds,
                              metrics={"loss": loss, "lr": lr, "grad_norm": grad_norm})
            metrics = call_hooks(all_hooks, event)
            if not first_step_here and "mfu" in metrics:
                mfu_sum += metrics["mfu"]
                mfu_count += 1
            first_step_here = False
    finally:
        watcher.uninstall()

    points = sorted(branch_points, key=lambda p: p["tokens"])
    if status == "finished":
        metrics = evaluate(eval_fn, params, rest, eval_batches, val_ds)
        main_point = point(total, None, monitor.train_loss(), metrics, accounting.seconds)
        points.append(main_point)
        if jsonl is not None:
            jsonl.write({"kind": "eval", "step": total, "tokens": total * B * T, **metrics})
        if tb is not None:
            tb.write("eval", total, metrics)
        if last_saved[0] != total:
            save(total)
    ckpt.close()
    result = RunResult(status=status, steps=step, tokens=step * B * T, wall_s=wall_now(), out_dir=str(out_dir),
                       points=points, message=message or "")
    if jsonl is not None:
        jsonl.write({"kind": "status", "step": step, "status": status, "message": message or ""})
    for w in writers:
        if hasattr(w, "close"):
            w.close()
    write_run_json(status, result, message or "")
    return result


def writers_append(writers: list, w):
    writers.append(w)
    return w


def _make_jsonl(out, start: int, log_every: int):
    from scaling.metrics import JsonlWriter

    return JsonlWriter(out / "metrics.jsonl", resume_step=start, log_every=log_every)


def _make_tb(out, log_every: int, start: int | None = None):
    from scaling.metrics import TensorBoardWriter

    return TensorBoardWriter(out / "tensorboard", log_every=log_every, resume_step=start)
