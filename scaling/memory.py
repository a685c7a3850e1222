"""Bytes per device of a training run, before it starts: will it fit, and on what mesh?

    p = plan(cfg, data=4, fsdp=2, device_kind="TPU v5 lite")   # a MemoryPlan, bytes per device
    print(format_plan(p))
    check_fits(cfg, data=4, fsdp=2, device_kind="TPU v5 lite") # ValueError naming the smallest mesh that fits

Free of JAX (like `scaling.config` and `scaling.flops`), so sweep planning can size a ladder
for chips it is not running on. The estimate, per device of a (data, fsdp) mesh:

- parameters: float32 master weights (bf16 compute casts them per use). Under FSDP each
  matrix is split along one dimension over the `fsdp` devices (`fsdp_axis`, the one rule
  `scaling.step` shards by); vectors (LayerNorm scales, biases) stay replicated.
- optimizer state: AdamW's two float32 moments, sharded like the parameters (ZeRO-3:
  Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
  Models", sec. 5: 4 + 4 + 4 bytes per parameter here, master weights included above).
- gradients: float32, sharded like the parameters (XLA reduce-scatters them); twice that
  under gradient accumulation (the running sum and one microbatch's).
- gathered: with fsdp > 1, the full float32 weights XLA gathers for the layer it is
  computing: counted as three layers' worth (the layer in use, the next one prefetched, and
  one layer's gradient before its reduce-scatter), or the embedding table if larger.
- activations: what the backward pass keeps, per layer and token, following Korthikanti et
  al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", sec. 4.1, eq. 1:
  sbh(34 + 5as/h) bytes per layer for GPT with 16-bit activations and dropout), adapted to
  this model (`activation_bytes_per_token`): no dropout masks, the compute dtype's width,
  the attention kernel's float32 probabilities (blocked) or none (cuDNN flash), and remat
  (sec. 4.3: full recomputation keeps only each layer's input, 2sbh bytes, plus one layer's
  activations while it is recomputed). Plus the logits (float32, and their gradient).

An estimate, not XLA's buffer assignment: it ignores fragmentation, XLA's workspace and
temporaries of fusions, so `check_fits` refuses a run only when the estimate alone exceeds the
chip. `tests/test_memory.py` holds the activation terms against what `jax.vjp` keeps for the
backward pass: "block" remat exactly, "dots_saveable" to 10%; without remat JAX keeps more
than the fused count before XLA optimises (the LayerNorm and tanh-GELU intermediates: 11.0 kB
vs 5.9 kB per layer and token at d_model 64, T 128, float32), and XLA:CPU, which fuses little
and schedules recomputation early, kept about that much (its temp buffers did not shrink with
remat at all). Calibrating the estimate against `compiled.memory_analysis()` and the
allocator's peak on GPUs and TPUs (`bench/gpu_step.py` prints both) is still to be done.
"""

from __future__ import annotations

import dataclasses
import math
import re

from scaling.config import ModelConfig, RunConfig
from scaling.flops import param_counts

GiB = 2**30

# HBM per chip. TPUs: Google Cloud TPU docs (v4: "32 GiB"; v5e: 16, v5p: 95, v6e: 32 "GB",
# binary-sized HBM stacks); keys as `jax.Device.device_kind` spells them (v5e is "TPU v5
# lite", v6e "TPU v6 lite"). GPUs: NVIDIA data sheets, decimal GB (A100 40/80 GB, H100 80 GB,
# H200 141 GB); a size in the device's name ("NVIDIA A100-SXM4-80GB") wins over the table.
DEVICE_MEMORY_BYTES = {
    "TPU v4": 32 * GiB,
    "TPU v5 lite": 16 * GiB,
    "TPU v5e": 16 * GiB,
    "TPU v5p": 95 * GiB,
    "TPU v5": 95 * GiB,
    "TPU v6 lite": 32 * GiB,
    "TPU v6e": 32 * GiB,
    "NVIDIA A100": 40e9,
    "NVIDIA H100": 80e9,
    "NVIDIA H200": 141e9,
}

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def device_memory_bytes(device_kind: str) -> float | None:
    """HBM bytes of one chip of `device_kind`, or None when unknown (CPU: no limit)."""
    if device_kind.startswith("NVIDIA"):
        m = re.search(r"(\d+)\s*GB", device_kind)
        if m:
            return int(m.group(1)) * 1e9
    best = None
    for name in DEVICE_MEMORY_BYTES:
        if device_kind.lower().startswith(name.lower()) and (best is None or len(name) > len(best)):
            best = name
    return None if best is None else DEVICE_MEMORY_BYTES[best]


# ---------------------------------------------------------------------------------------
# Parameters and how FSDP splits them


def fsdp_axis(shape: tuple[int, ...], fsdp: int) -> int | None:
    """The dimension FSDP splits an array of `shape` along over `fsdp` devices, or None.

    Matrices (ndim >= 2) are split along their largest dimension divisible by `fsdp` (the
    first on ties): shards are as large as possible and every device holds an equal share.
    Vectors (LayerNorm scales, biases) and arrays no dimension of which divides stay whole
    on every device: they are small, and gathering them would cost a collective each.
    """
    if fsdp == 1 or len(shape) < 2:
        return None
    divisible = [i for i, n in enumerate(shape) if n % fsdp == 0]
    if not divisible:
        return None
    return max(divisible, key=lambda i: (shape[i], -i))


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of `scaling.model.Transformer(cfg)` by state path ("blocks/0/attn/qkv/kernel").

    Their sizes add up to `flops.param_counts(cfg).total` (tests/test_memory.py checks both
    the paths and the shapes against the initialised model)."""
    D, A, F, V = cfg.d_model, cfg.d_attn, cfg.f, cfg.vocab_size
    n_in = 2 if cfg.ffn == "swiglu" else 1
    shapes: dict[str, tuple[int, ...]] = {"embed/embedding": (V, D)}
    if cfg.positions == "learned":
        shapes["pos_embed/embedding"] = (cfg.seq_len, D)

    def linear(name, n_in_, n_out):
        shapes[f"{name}/kernel"] = (n_in_, n_out)
        if cfg.use_bias:
            shapes[f"{name}/bias"] = (n_out,)

    def norm(name):
        shapes[f"{name}/scale"] = (D,)
        if cfg.use_bias:
            shapes[f"{name}/bias"] = (D,)

    for i in range(cfg.n_layers):
        norm(f"blocks/{i}/ln_attn")
        linear(f"blocks/{i}/attn/qkv", D, 3 * A)
        linear(f"blocks/{i}/attn/out", A, D)
        norm(f"blocks/{i}/ln_ffn")
        linear(f"blocks/{i}/ffn/up", D, n_in * F)
        linear(f"blocks/{i}/ffn/down", F, D)
    norm("ln_final")
    if not cfg.tie_embeddings:
        linear("unembed", D, V)
    return shapes


def sharded_size(shape: tuple[int, ...], fsdp: int) -> int:
    """Elements of an array of `shape` on each device under FSDP over `fsdp` devices."""
    n = math.prod(shape)
    return n // fsdp if fsdp_axis(shape, fsdp) is not None else n


def params_per_device(cfg: ModelConfig, fsdp: int) -> int:
    """Parameters (elements) each device holds when sharded over `fsdp` devices."""
    return sum(sharded_size(s, fsdp) for s in param_shapes(cfg).values())


# ---------------------------------------------------------------------------------------
# Activations


def _attention_probs_fraction(T: int) -> float:
    """The share of the T x T probabilities the blocked kernel keeps (`scaling.attention`:
    query blocks of max(64, T/8) rows against their causal prefix; the test holds the two
    equal)."""
    if T <= 64:
        return 1.0
    c = max(64, -(-T // 8))
    blocks = list(range(0, T, c)) + [T]
    return sum((r1 - r0) * r1 for r0, r1 in zip(blocks[:-1], blocks[1:])) / (T * T)


def uses_flash_attention(cfg: ModelConfig, device_kind: str = "") -> bool:
    """Whether the attention keeps no T x T probabilities (cuDNN flash attention; the same
    choice as `scaling.attention.use_cudnn`, decided here from the device kind)."""
    if cfg.attention == "cudnn":
        return True
    return cfg.attention == "auto" and cfg.dtype != "float32" and device_kind.startswith("NVIDIA")


def activation_bytes_per_token(cfg: ModelConfig, remat: str | None = None, device_kind: str = "") -> dict[str, float]:
    """Bytes the backward pass keeps per token: {"layer": per layer, "live": once (the layer
    being recomputed under remat), "head": embeddings, final norm and logits}.

    Without remat, per layer (Korthikanti et al. 2022, sec. 4.1, their terms in elements of
    the compute dtype, D = d_model, A = heads x head dim, F = FFN width): the two LayerNorm
    inputs 2D, the QKV input D, Q, K, V 3A, the attention output twice A + A (the kernel's
    heads-major residual and the output projection's input), the FFN input D, and the FFN
    hidden 2F (GELU input and output; SwiGLU: gate, value, silu(gate), product = 4F); their
    GPT count without dropout is the same with one A fewer. The blocked attention also keeps
    its float32 probabilities, H x T x (the causal share it computes) per token; flash keeps
    none. "block" remat keeps only the block input D (their sec. 4.3, "2sbh"), plus one
    layer's full set live while it is recomputed; "dots_saveable" keeps the matmul outputs
    (QKV 3A, attention output A, projections D + D, FFN input projection n_in F) and the
    block input D, and recomputes the norms and the activation function; the attention
    kernel's probabilities are the output of its own matmuls and stay.
    """
    remat = cfg.remat if remat is None else remat
    a = _DTYPE_BYTES[cfg.dtype]
    D, A, F, V, H, T = cfg.d_model, cfg.d_attn, cfg.f, cfg.vocab_size, cfg.n_heads, cfg.seq_len
    n_in = 2 if cfg.ffn == "swiglu" else 1
    hidden = 4 * F if cfg.ffn == "swiglu" else 2 * F
    probs = 0.0 if uses_flash_attention(cfg, device_kind) else 4.0 * H * T * _attention_probs_fraction(T)
    full = a * (2 * D + D + 3 * A + 2 * A + D + hidden) + probs
    if remat == "none":
        layer, live = full, 0.0
    elif remat == "block":
        layer, live = a * D, full
    elif remat == "dots_saveable":
        layer, live = a * (D + 3 * A + A + 2 * D + n_in * F) + probs, a * (3 * D + hidden)
    else:
        raise ValueError(f"ModelConfig.remat={remat!r}: must be one of ('none', 'block', 'dots_saveable')")
    # Embedding output, final norm input and output; logits in the compute dtype, in float32,
    # and their float32 gradient (the cross-entropy's backward).
    head = a * 3 * D + V * (a + 4 + 4)
    return {"layer": layer, "live": live, "head": head}


# ---------------------------------------------------------------------------------------
# The plan


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Estimated bytes per device of one run on a (data, fsdp) mesh (see the module doc)."""

    data: int
    fsdp: int
    device_kind: str
    capacity: float | None  # the chip's bytes, None when unknown (CPU)
    params: float
    optimizer: float
    gradients: float
    gathered: float
    activations: float
    tokens_per_device: int  # tokens of one microbatch on one device
    remat: str

    @property
    def devices(self) -> int:
        return self.data * self.fsdp

    @property
    def total(self) -> float:
        return self.params + self.optimizer + self.gradients + self.gathered + self.activations

    @property
    def fits(self) -> bool:
        return self.capacity is None or self.total <= self.capacity


def plan(cfg: RunConfig, data: int, fsdp: int, device_kind: str = "", *, remat: str | None = None,
         capacity: float | None = None) -> MemoryPlan:
    """The memory estimate of `cfg` on a data x fsdp mesh of `device_kind` chips (bytes per
    device). `remat` overrides `cfg.model.remat`; `capacity` the chip's table entry."""
    for name, v in (("data", data), ("fsdp", fsdp)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name}={v!r}: must be a positive int")
    mc, tc = cfg.model, cfg.train
    remat = mc.remat if remat is None else remat
    n_dev = data * fsdp
    p = 4.0 * params_per_device(mc, fsdp)
    grads = p * (2 if tc.grad_accum > 1 else 1)
    gathered = 0.0
    if fsdp > 1:
        pc = param_counts(mc)
        gathered = 4.0 * max(3 * pc.per_layer, mc.vocab_size * mc.d_model)
    rows = math.ceil(tc.global_batch_size / tc.grad_accum / n_dev)
    tokens = rows * mc.seq_len
    per = activation_bytes_per_token(mc, remat, device_kind)
    layers = mc.n_layers * mc.loops
    acts = tokens * (layers * per["layer"] + per["live"] + per["head"])
    if capacity is None:
        capacity = device_memory_bytes(device_kind) if device_kind else None
    return MemoryPlan(data=data, fsdp=fsdp, device_kind=device_kind, capacity=capacity, params=p, optimizer=2 * p,
                      gradients=grads, gathered=gathered, activations=acts, tokens_per_device=tokens, remat=remat)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def smallest_mesh(cfg: RunConfig, device_kind: str, *, capacity: float | None = None,
                  devices: int | None = None) -> MemoryPlan | None:
    """The plan of the smallest mesh on which `cfg` fits: fewest devices first (any device
    count dividing the global batch, or exactly `devices`), then the smallest fsdp.
    None if none fits (every device would need less than one row)."""
    counts = [devices] if devices is not None else _divisors(cfg.train.global_batch_size)
    for n in counts:
        for fsdp in _divisors(n):
            p = plan(cfg, n // fsdp, fsdp, device_kind, capacity=capacity)
            if p.fits:
                return p
    return None


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def format_plan(p: MemoryPlan) -> str:
    """One line: the parts, their total and the chip's memory."""
    of = f" of {fmt_bytes(p.capacity)}" if p.capacity is not None else " (no limit known)"
    kind = f" {p.device_kind}" if p.device_kind else ""
    return (f"memory per device, mesh {p.data}x{p.fsdp} (data x fsdp){kind}: params {fmt_bytes(p.params)}, "
            f"AdamW {fmt_bytes(p.optimizer)}, grads {fmt_bytes(p.gradients)}, gathered {fmt_bytes(p.gathered)}, "
            f"activations {fmt_bytes(p.activations)} (remat {p.remat}, {p.tokens_per_device:,} tokens) "
            f"= {fmt_bytes(p.total)}{of}")


def check_fits(cfg: RunConfig, data: int, fsdp: int, device_kind: str, *, capacity: float | None = None) -> MemoryPlan:
    """The plan, or a ValueError when it exceeds the chip's memory, naming the smallest mesh
    that would fit (and the fsdp that would fit on these data x fsdp devices, if any).
    No limit is known for CPUs: their plans always pass."""
    p = plan(cfg, data, fsdp, device_kind, capacity=capacity)
    if p.fits:
        return p
    here = smallest_mesh(cfg, device_kind, capacity=p.capacity, devices=data * fsdp)
    best = smallest_mesh(cfg, device_kind, capacity=p.capacity)
    msg = (f"TrainConfig.mesh_fsdp={fsdp}: the run needs an estimated {fmt_bytes(p.total)} per device, more than "
           f"the {fmt_bytes(p.capacity)} of a {device_kind} chip ({format_plan(p)}).")
    if here is not None:
        msg += f" On these {data * fsdp} devices mesh_fsdp={here.fsdp} fits ({fmt_bytes(here.total)} per device)."
    if best is not None:
        msg += (f" The smallest mesh that fits: {best.data}x{best.fsdp} (data x fsdp, {best.devices} devices, "
                f"TrainConfig.mesh_fsdp={best.fsdp}, {fmt_bytes(best.total)} per device).")
    else:
        msg += (f" No mesh of up to {cfg.train.global_batch_size} devices (one row each) fits: turn on "
                f"ModelConfig.remat='block' or raise TrainConfig.grad_accum.")
    raise ValueError(msg)
