"""The compiled functions of training: mesh, placement, optimizer, step, evaluation.

    mesh = make_mesh(cfg.train.mesh_fsdp)       # ("data",) or ("data", "fsdp") over every device
    compiled = train_step_for(cfg, mesh)        # cached per shape: one compile per sweep shape
    params, rest, opt_state = compiled.init(np.int32(seed))
    params, opt_state, metrics = compiled.step(params, opt_state, rest, put_batch(mesh, rows, B), lr)

The step: one `jax.jit` function over a mesh with Auto axis types (`Mesh(...)`, not
`jax.make_mesh`'s Explicit default, see the field notes). With `TrainConfig.mesh_fsdp = 1`
the mesh is 1-D, `("data",)`: data-parallel with pmap semantics, parameters and optimizer
state replicated (`P()`), the batch split along its rows (`P("data")`), and XLA inserts the
all-reduce that averages gradients. With mesh_fsdp = f > 1 it is 2-D, `("data", "fsdp")` of
shape (devices / f, f): fully sharded data parallelism (ZeRO-3, Rajbhandari et al. 2020;
PyTorch's FSDP, Zhao et al. 2023) written as `NamedSharding` annotations only. Each matrix
of the parameters, of the AdamW moments and of the gradients is split over `fsdp` along one
dimension (`scaling.memory.fsdp_axis`), vectors are replicated, the batch's rows are split
over both axes; XLA's SPMD partitioner all-gathers a layer's weights where they are used and
reduces each gradient into its shards (a reduce-scatter on GPUs and TPUs; XLA:CPU
all-reduces and slices). Nothing is hand-written: `jit` with out_shardings and
`with_sharding_constraint` on the gradients. The same code runs on 1 device and on many,
on one host and on many: each host builds only its own rows and
`jax.make_array_from_process_local_data` assembles the global batch.

The step is a pure function of (params, opt_state, rest, tokens, lr): the model is split
once (`nnx.split(model, nnx.Param, ...)`) and merged inside the traced function. The
learning rate is an argument computed on the host from the schedule, not baked into optax,
so every run of one shape (same ModelConfig, batch, accumulation, optimizer constants and
devices) shares ONE compiled step, whatever its learning rate or horizon (`_TRAIN_STEPS`,
keyed by `StepKey`; `TRACE_COUNTS` counts traces).

Optimizer: AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") as
optax builds it (`scale_by_adam`, `add_decayed_weights`, times -lr: the decay is scaled by
the scheduled lr, as in PyTorch's AdamW and optax.adamw). Weight decay applies to every
parameter with ndim >= 2 -- all matrices, the embedding tables included, as nanoGPT does --
and not to vectors (LayerNorm scales, biases): decaying gains and offsets towards 0 has no
regularising meaning. Gradients are clipped by global norm (`grad_clip`, 0 = off) before
Adam; the reported grad_norm is the norm before clipping. Under muP/CompleteP
(`ModelConfig.parametrization`) each parameter's update is decayed and scaled by its role's
multipliers (`scaling.parametrization`, through `optax.multi_transform`), still times the one
traced -lr: every parametrization runs the same step function. Gradient accumulation splits the
global batch into `grad_accum` microbatches inside the step (`lax.scan`) and averages
their gradients: with equal microbatches this is exactly the full-batch mean gradient.
Loss: mean token cross-entropy in float32 (the model returns float32 logits also under
bf16 compute; parameters are float32 master weights).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling import flops as flops_lib
from scaling import parametrization
from scaling.config import ModelConfig, RunConfig

# The mesh helpers stay importable from here (`step.data_mesh`, ...): callers build a mesh and a
# step together.
from scaling.mesh import (  # noqa: F401  # noqa: F401
    _replicated,
    _row_axes,
    _rows,
    data_mesh,
    host_rows,
    make_mesh,
    mesh_fsdp,
    put_batch,
    put_batches,
    sharding_of,
    state_shardings,
)
from scaling.model import init

TRACE_COUNTS: collections.Counter = collections.Counter()


# ---------------------------------------------------------------------------------------
# The optimizer, the step and the eval step


def decay_mask(params):
    """Weight decay on ndim >= 2 (matrices and embedding tables), not on vectors."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(weight_decay: float, beta1: float, beta2: float, eps: float,
                   grad_clip: float, model: ModelConfig | None = None) -> optax.GradientTransformation:
    """AdamW without its learning rate (the step multiplies the updates by -lr).

    With a muP/CompleteP `model`, Adam's eps and each role's weight decay and learning rate
    are multiplied as `scaling.parametrization.rules(model)` says (the per-role stage is an
    `optax.multi_transform` over `param_roles`); SP builds exactly the plain AdamW chain.
    """
    r = None if model is None or model.parametrization == "sp" else parametrization.rules(model)
    parts = []
    if grad_clip > 0:
        parts.append(optax.clip_by_global_norm(grad_clip))
    parts.append(optax.scale_by_adam(b1=beta1, b2=beta2, eps=eps if r is None else eps * r.adam_eps))
    if r is None:
        if weight_decay > 0:
            parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    else:
        per_role = {}
        for role in parametrization.ROLES:
            wd = weight_decay * r.weight_decay[role]
            decay = [optax.add_decayed_weights(wd, mask=decay_mask)] if wd > 0 else []
            per_role[role] = optax.chain(*decay, optax.scale(r.lr[role]))
        parts.append(optax.multi_transform(per_role, param_roles))
    return optax.chain(*parts)


def param_roles(params):
    """Each parameter's role (`scaling.parametrization.ROLES`), a tree like `params`."""
    def role(path, _):
        names = tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path)
        return parametrization.role_of(tuple(n for n in names if n != "value"))

    return jax.tree_util.tree_map_with_path(role, params)


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
    mesh_shape: tuple[tuple[str, int], ...] = ()  # (("data", 4), ("fsdp", 2)): how the devices are arranged

    @classmethod
    def of(cls, cfg: RunConfig, mesh: Mesh) -> "StepKey":
        t = cfg.train
        return cls(cfg.model, t.global_batch_size, t.grad_accum, float(t.weight_decay), float(t.beta1),
                   float(t.beta2), float(t.eps), float(t.grad_clip), tuple(int(d.id) for d in mesh.devices.flat),
                   _mesh_key(mesh))


def _mesh_key(mesh: Mesh) -> tuple[tuple[str, int], ...]:
    return tuple((str(k), int(v)) for k, v in mesh.shape.items())


@dataclasses.dataclass
class CompiledStep:
    """The jitted functions of one StepKey: init(seed), step(...), steps(...), copy(tree)."""

    key: StepKey
    graphdef: Any
    init: Callable  # int32 seed -> (params, rest, opt_state), placed by `state_shardings`
    step: Callable  # (params, opt_state, rest, tokens_BxT1, lr) -> (params, opt_state, metrics)
    steps: Callable  # (params, opt_state, rest, tokens_KxBxT1, lrs_K, valid_K) -> (params, opt_state, metrics_K)
    copy: Callable  # tree -> a device copy (for WSD branches)


_TRAIN_STEPS: dict[StepKey, CompiledStep] = {}
_EVAL_STEPS: dict[tuple, Callable] = {}


def _init_params_for(model_cfg: ModelConfig, mesh: Mesh) -> Callable:
    """Jitted seed -> (params, rest), params placed by `state_shardings` on `mesh`, rest
    replicated (cached per model shape: compiling the initialisers costs seconds on CPU).
    Each device computes only its own shards: JAX's partitionable threefry draws the same
    numbers whatever the sharding. Remat changes no parameter: one init serves every policy."""
    model_cfg = model_cfg.replace(remat="none")
    key = ("init", model_cfg, tuple(int(d.id) for d in mesh.devices.flat), _mesh_key(mesh))
    if key not in _EVAL_STEPS:
        def init_fn(seed):
            TRACE_COUNTS["init"] += 1
            # nnx.Rngs(int) is nnx.Rngs(jax.random.key(int)): a traced seed needs the key form.
            _, params, rest = nnx.split(init(model_cfg, jax.random.key(seed)), nnx.Param, ...)
            return params, rest

        repl = _replicated(mesh)
        if mesh_fsdp(mesh) == 1:
            shardings = repl
        else:
            _, abstract, _ = nnx.split(nnx.eval_shape(lambda: init(model_cfg, 0)), nnx.Param, ...)
            shardings = (state_shardings(abstract, mesh), repl)
        _EVAL_STEPS[key] = jax.jit(init_fn, out_shardings=shardings)
    return _EVAL_STEPS[key]


def train_step_for(cfg: RunConfig, mesh: Mesh) -> CompiledStep:
    """The cached compiled step for `cfg`'s shape on `mesh` (built on first use)."""
    key = StepKey.of(cfg, mesh)
    if key in _TRAIN_STEPS:
        return _TRAIN_STEPS[key]
    model_cfg, accum, B = key.model, key.grad_accum, key.global_batch_size
    tx = make_optimizer(key.weight_decay, key.beta1, key.beta2, key.eps, key.grad_clip, model=model_cfg)
    graphdef, abstract_params, _ = nnx.split(nnx.eval_shape(lambda: init(model_cfg, 0)), nnx.Param, ...)
    repl = _replicated(mesh)
    n_dev = mesh.size
    if mesh_fsdp(mesh) == 1:  # data parallel: everything replicated, exactly as without FSDP
        param_sh = opt_sh = repl
        shard_grads = lambda grads: grads  # noqa: E731
    else:
        param_sh = state_shardings(abstract_params, mesh)
        opt_sh = state_shardings(jax.eval_shape(tx.init, abstract_params), mesh)
        # Gradients live where their parameters do: XLA reduces each layer's gradient into
        # its shards as the backward pass produces it, never holding the whole set.
        shard_grads = lambda grads: jax.lax.with_sharding_constraint(grads, param_sh)  # noqa: E731

    init_params = _init_params_for(model_cfg, mesh)
    init_opt = jax.jit(tx.init, out_shardings=opt_sh)

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
            grads = shard_grads(grads)
        else:
            T1 = tokens_BxT1.shape[1]
            # Microbatch a = rows a, a + accum, a + 2 accum, ...: with contiguous row shards
            # every microbatch is spread over all devices.
            micro_AxMxT1 = tokens_BxT1.reshape(B // accum, accum, T1).swapaxes(0, 1)
            if (B // accum) % n_dev == 0:
                micro_AxMxT1 = jax.lax.with_sharding_constraint(micro_AxMxT1,
                                                                NamedSharding(mesh, P(None, _row_axes(mesh))))

            def body(carry, tokens_MxT1):
                loss_sum, grad_sum = carry
                loss, grads = grad_fn(params, rest, tokens_MxT1)
                return (loss_sum + loss, shard_grads(jax.tree.map(jnp.add, grad_sum, shard_grads(grads)))), None

            zeros = shard_grads(jax.tree.map(jnp.zeros_like, params))
            (loss_sum, grad_sum), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), micro_AxMxT1)
            loss = loss_sum / accum
            grads = jax.tree.map(lambda g: g / accum, grad_sum)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        lr = jnp.asarray(lr, jnp.float32)
        params = jax.tree.map(lambda p, u: (p - lr * u).astype(p.dtype), params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": grad_norm}

    def steps_fn(params, opt_state, rest, tokens_KxBxT1, lrs_K, valid_K):
        """K optimizer steps in one dispatch (`lax.scan` over `step_fn`): for tiny models the
        per-step host round trip, not the arithmetic, bounds the speed. Steps whose `valid`
        is False leave the state untouched (a block shorter than K keeps one compiled shape)."""
        TRACE_COUNTS["train_steps"] += 1

        def body(carry, x):
            params, opt_state = carry
            tokens_BxT1, lr, valid = x
            new_params, new_opt, metrics = step_fn(params, opt_state, rest, tokens_BxT1, lr)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(valid, a, b), new, old)
            return (keep(new_params, params), keep(new_opt, opt_state)), metrics

        (params, opt_state), metrics_K = jax.lax.scan(body, (params, opt_state), (tokens_KxBxT1, lrs_K, valid_K))
        return params, opt_state, metrics_K

    state_out = (param_sh, opt_sh, repl)
    compiled = CompiledStep(
        key=key, graphdef=graphdef,
        init=init_fn,
        step=jax.jit(step_fn, donate_argnums=(0, 1), out_shardings=state_out),
        steps=jax.jit(steps_fn, donate_argnums=(0, 1), out_shardings=state_out),
        # No out_shardings: a copy stays where its input is (params or optimizer state).
        copy=jax.jit(lambda tree: jax.tree.map(lambda x: x.copy(), tree)),
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


def eval_step_for(model_cfg: ModelConfig, batch_size: int, spans: int | tuple[int, ...], mesh: Mesh) -> Callable:
    """Jitted (params, rest, tokens_BxT1) -> summed eval statistics (cached by shape).

    `spans`: the exact-match span length k, or several (`TrainConfig.spans`), all counted
    from the one forward pass."""
    spans = (spans,) if isinstance(spans, int) else tuple(spans)
    key = (model_cfg, batch_size, spans, tuple(int(d.id) for d in mesh.devices.flat), _mesh_key(mesh))
    if key in _EVAL_STEPS:
        return _EVAL_STEPS[key]
    graphdef, _, _ = nnx.split(nnx.eval_shape(lambda: init(model_cfg, 0)), nnx.Param, ...)

    def eval_fn(params, rest, tokens_BxT1):
        TRACE_COUNTS["eval_step"] += 1
        nll_BxT, logits_BxTxV = token_losses(graphdef, params, rest, tokens_BxT1)
        B, T = nll_BxT.shape
        correct_BxT = jnp.argmax(logits_BxTxV, axis=-1) == tokens_BxT1[:, 1:]
        out = {"nll_sum": jnp.sum(nll_BxT), "correct": jnp.sum(correct_BxT), "tokens": B * T}
        for k in spans:
            n_spans = T // k
            spans_BxS = jnp.all(correct_BxT[:, : n_spans * k].reshape(B, n_spans, k), axis=-1)
            out[f"spans_correct_{k}"], out[f"spans_{k}"] = jnp.sum(spans_BxS), B * n_spans
        out["spans_correct"], out["spans"] = out[f"spans_correct_{spans[0]}"], out[f"spans_{spans[0]}"]
        return out

    fn = jax.jit(eval_fn, out_shardings=_replicated(mesh))
    _EVAL_STEPS[key] = fn
    return fn


def evaluate(eval_fn, params, rest, batches, val_ds) -> dict[str, float]:
    """Validation metrics over the fixed eval batches.

    val_loss: nats per target token; val_bpb: bits per UTF-8 byte (`Dataset.bits_per_byte`);
    val_accuracy: greedy next-token accuracy; val_exact_match_<k>, for each span length k the
    eval step counts: the fraction of span-aligned chunks of k targets predicted ALL correctly
    by greedy argmax; val_exact_match: the same for the first k (`TrainConfig.exact_match_span`).
    The last is deliberately all-or-nothing: Schaeffer et al. 2023 ("Are Emergent Abilities of
    Large Language Models a Mirage?") show that such discontinuous metrics turn a smooth
    per-token improvement (p^k) into an apparently sudden "emergent" jump; logging it for
    several k beside the smooth loss and accuracy lets a sweep test that on its own models.
    """
    totals = collections.Counter()
    for tokens in batches:
        out = jax.device_get(eval_fn(params, rest, tokens))
        for k, v in out.items():
            totals[k] += float(v)
    loss = totals["nll_sum"] / totals["tokens"]
    spans = sorted(int(k.removeprefix("spans_correct_")) for k in totals if k.startswith("spans_correct_"))
    matches = {f"val_exact_match_{k}": totals[f"spans_correct_{k}"] / max(totals[f"spans_{k}"], 1.0) for k in spans}
    return {"val_loss": loss, "val_bpb": val_ds.bits_per_byte(loss),
            "val_accuracy": totals["correct"] / totals["tokens"],
            "val_exact_match": totals["spans_correct"] / max(totals["spans"], 1.0), **matches}
