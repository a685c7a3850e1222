"""Coordinate check: do activations and their updates keep their size as the model grows?

    from scaling import coordcheck
    models = coordcheck.family(ModelConfig(..., parametrization="mup", base_width=32), widths=(32, ..., 512))
    result = coordcheck.run(models, steps=4, lr=1e-2)
    print(coordcheck.format_table(result))

Yang et al. 2022 (Tensor Programs V, sec. 7 and Fig. 5; "coordinate check") diagnose a
parametrization by training models of several widths for a few steps at one learning rate and
plotting the typical size (RMS) of every layer's output x_t and of its change since
initialisation x_t - x_0: under muP both stay flat across widths, under SP they grow (the
updates of hidden layers roughly as width, so the optimal learning rate has to shrink). Here
every model trains with the library's own compiled step (`scaling.step.train_step_for`: the
parametrization's per-role learning rates included) and the outputs are read with
`nnx.capture` (every submodule's method outputs), so the check sees exactly the model and
optimizer a run uses. `spread` of a tensor at step t is max / min of its RMS over the models.

Tensors, named by module path: embed, pos_embed; per block i: blocks.i.attn.qkv (q, k, v
before attention), blocks.i.attn (the attention branch), blocks.i.ffn.up (the FFN
pre-activation), blocks.i.ffn (the FFN branch), blocks.i (the residual stream after the
block; ".loop j" for looped models); residual.final (the stream before the final LayerNorm)
and logits (the model's output, after muP's 1/m_d multiplier). LayerNorm outputs (unit RMS by
construction) and the readout before its multiplier are left out.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling import step as step_lib
from scaling.config import ModelConfig, RunConfig, TrainConfig
from scaling.data import DataConfig, make_dataset

_SKIPPED = ("ln_attn", "ln_ffn", "ln_final", "attend", "unembed", "out", "down")


def family(model: ModelConfig, *, widths: Iterable[int] = (), depths: Iterable[int] = ()) -> list[ModelConfig]:
    """`model` at each width (heads = width / K, K fixed, unless model.base_head_dim is set:
    then the head count is fixed and K grows) or at each depth (n_layers)."""
    out = []
    for w in widths:
        heads = model.n_heads if model.base_head_dim is not None else w // model.k
        out.append(model.replace(d_model=w, n_heads=heads, head_dim=None))
    out += [model.replace(n_layers=n) for n in depths]
    return out


@dataclasses.dataclass
class Result:
    """RMS of each tensor: `rms[i][name][t]` for model i after t steps, `delta` likewise for
    x_t - x_0 (t = 0 is zero), averaged over seeds."""

    models: list[ModelConfig]
    steps: int
    lr: float
    rms: list[dict[str, np.ndarray]]
    delta: list[dict[str, np.ndarray]]

    def names(self) -> list[str]:
        """The tensors every model has, in the first model's order."""
        common = set.intersection(*(set(r) for r in self.rms))
        return [n for n in self.rms[0] if n in common]

    def spread(self, name: str, kind: str = "rms") -> np.ndarray:
        """max / min over the models of `name`'s RMS (or its change) at each step."""
        table = np.array([getattr(self, kind)[i][name] for i in range(len(self.models))])
        with np.errstate(invalid="ignore"):  # the change at t = 0 is 0 / 0
            return table.max(axis=0) / table.min(axis=0)


def _name(path: tuple, n_calls: int, call: int) -> str | None:
    """'blocks.0.attn' for the captured output of blocks[0].attn.__call__ (None: left out)."""
    keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    keys = [k for k in keys if k != "value"]
    method = keys.pop()
    if method != "__call__" or not keys or keys[-1] in _SKIPPED:
        return None
    return ".".join(keys) + (f".loop{call}" if n_calls > 1 else "")


def _probe(graphdef, model: ModelConfig):
    """Jitted (params, rest, tokens) -> {tensor name: activations} of every module output."""
    last = f"blocks.{model.n_layers - 1}" + (f".loop{model.loops - 1}" if model.loops > 1 else "")

    def probe(params, rest, tokens_BxT):
        module = nnx.merge(graphdef, params, rest)
        logits, captured = nnx.capture(module, nnx.Intermediate, method_outputs=nnx.Intermediate)(tokens_BxT)
        out = {}
        for path, calls in jax.tree_util.tree_flatten_with_path(captured, is_leaf=lambda x: isinstance(x, tuple))[0]:
            for j, x in enumerate(calls):
                name = _name(path, len(calls), j)
                if name is not None:
                    out[name] = x.astype(jnp.float32)
        out["residual.final"] = out[last]
        out["logits"] = logits
        return out

    return jax.jit(probe)


def _rms(x) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.square(x))))


def run(models: Sequence[ModelConfig], *, steps: int = 4, lr: float = 1e-2, seeds: Sequence[int] = (0, 1, 2),
        batch: int = 16, data: DataConfig | None = None, weight_decay: float = 0.0,
        grad_clip: float = 0.0) -> Result:
    """Train each model `steps` steps from each seed at a constant `lr` (the same batches for
    all) and measure every tensor on a fixed validation batch before and after each step.

    Weight decay and clipping are off by default: over a few steps decay is negligible, and a
    global-norm clip would rescale the update differently at each width (the gradient norm
    itself depends on width), which is not what the parametrization prescribes.
    """
    data = data or DataConfig()
    mesh = step_lib.data_mesh(jax.devices()[:1])
    rms_all, delta_all = [], []
    for model in models:
        cfg = RunConfig(model=model, data=data, train=TrainConfig(
            tokens=steps * batch * model.seq_len, global_batch_size=batch, weight_decay=weight_decay,
            grad_clip=grad_clip, warmup_steps=0, progress=False))
        compiled = step_lib.train_step_for(cfg, mesh)
        probe = _probe(compiled.graphdef, model)
        train_ds = make_dataset(data, seq_len=model.seq_len, split="train")
        probe_BxT = jnp.asarray(make_dataset(data, seq_len=model.seq_len, split="validation").batch(0, batch)[:, :-1])
        sums: dict[str, np.ndarray] = {}
        dsums: dict[str, np.ndarray] = {}
        for seed in seeds:
            params, rest, opt_state = compiled.init(np.int32(seed))
            first = None
            for t in range(steps + 1):
                acts = probe(params, rest, probe_BxT)
                first = acts if first is None else first
                for name, x in acts.items():
                    sums.setdefault(name, np.zeros(steps + 1))[t] += _rms(x) / len(seeds)
                    dsums.setdefault(name, np.zeros(steps + 1))[t] += _rms(x - first[name]) / len(seeds)
                if t < steps:
                    tokens = step_lib.put_batch(mesh, train_ds.batch(t, batch), batch)
                    params, opt_state, _ = compiled.step(params, opt_state, rest, tokens, np.float32(lr))
        rms_all.append(sums)
        delta_all.append(dsums)
    return Result(models=list(models), steps=steps, lr=lr, rms=rms_all, delta=delta_all)


def format_table(result: Result, label=lambda m: f"d{m.d_model}L{m.n_layers}") -> str:
    """One row per tensor: RMS after the last step for each model, then the worst spread
    (max/min over models) of the RMS over steps 0..T and of the change over steps 1..T."""
    T = result.steps
    head = ["tensor"] + [label(m) for m in result.models] + ["spread x", "spread dx"]
    rows = [head]
    for name in result.names():
        vals = [f"{r[name][T]:.3g}" for r in result.rms]
        rows.append([name] + vals + [f"{result.spread(name).max():.2f}",
                                     f"{result.spread(name, 'delta')[1:].max():.2f}" if T else "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    return "\n".join(lines + [f"RMS after {T} steps at lr {result.lr:g}; spread = max/min over the models, "
                              "worst over the steps (dx: change since init)"])
