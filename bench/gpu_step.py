"""Check and time scaling's training step on one GPU in bfloat16; prints ONE JSON line.

    python bench/gpu_step.py                 # ~124M GPT (D 768, L 12, H 12, T 1024, V 50304), bf16
    python bench/gpu_step.py --batch 8 --steps 30
    python bench/gpu_step.py --tiny          # a tiny member on CPU (what the tests run)
    python bench/gpu_step.py --remat block   # activation checkpointing (ModelConfig.remat)

Self-contained: no network, no pip install (the repository root is put on sys.path), only
jax/flax/optax APIs present in jax 0.10 and 0.11. The model computes in bfloat16
(ModelConfig.dtype="bfloat16") with float32 master weights; the step is scaling's own
(`scaling.step.train_step_for`: jit, donated state, AdamW + clip, lr a traced argument),
built by `bench/train_step.py`'s `scaling_step`, as in the CPU benchmark.

What it does (a few minutes on an H100):
 1. correctness: the bf16 and float32 models (same parameters) give close losses at step 0;
    then `--check-steps` training steps on one fixed batch of text (this Python's standard
    library sources as bytes) must give finite, decreasing losses;
 2. speed: compile time, then `--steps` timed steps (after 2 warm-up steps) on a fixed
    random batch: median step time, tokens/s, and MFU = scaling.flops.per_step(cfg, B,
    "palm") / step time / the card's dense bf16 peak (scaling.flops.PEAK_BF16_FLOPS; on CPU
    the measured float32 matmul rate instead).
If the batch does not fit in memory it is halved (and says so) until it does. The JSON also
holds `scaling.memory`'s estimate of the step's bytes on this chip beside the allocator's
measured peak, to calibrate the plan.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from train_step import scaling_step  # noqa: E402  (bench/train_step.py: scaling's own compiled step)

from scaling import flops as flops_lib  # noqa: E402
from scaling import memory as memory_lib  # noqa: E402
from scaling.config import ModelConfig  # noqa: E402
from scaling.model import init  # noqa: E402


def text_batch(batch: int, seq_len: int) -> np.ndarray:
    """[batch, seq_len + 1] byte tokens from this Python's standard library sources."""
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    data = bytearray()
    need = batch * (seq_len + 1)
    for name in sorted(os.listdir(stdlib)):
        if name.endswith(".py"):
            try:
                with open(os.path.join(stdlib, name), "rb") as f:
                    data += f.read()
            except OSError:
                continue
        if len(data) >= need:
            break
    if len(data) < need:  # no readable stdlib: a deterministic, learnable byte pattern
        data += bytes((i * 7 + (i // 13)) % 97 + 32 for i in range(need - len(data)))
    return np.frombuffer(bytes(data[:need]), np.uint8).astype(np.int32).reshape(batch, seq_len + 1)


def eval_loss(cfg: ModelConfig, params, rest, tokens) -> float:
    """Mean next-token loss of `cfg`'s model with the given parameters (no update)."""
    from flax import nnx

    from scaling.step import token_losses

    graphdef, _, _ = nnx.split(nnx.eval_shape(lambda: init(cfg)), nnx.Param, ...)
    loss = jax.jit(lambda p, r, t: token_losses(graphdef, p, r, t)[0].mean())
    return float(loss(params, rest, tokens))


def is_oom(e: Exception) -> bool:
    text = str(e)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def peak_flops(device) -> tuple[float, str]:
    if device.platform == "cpu":
        return flops_lib.measured_matmul_peak(), "measured float32 matmul (CPU)"
    return flops_lib.peak_flops_per_device(device), f"PEAK_BF16_FLOPS[{device.device_kind!r}] (dense bf16 data sheet)"


def run(args, batch: int) -> dict:
    dev = jax.devices()[0]
    cfg = ModelConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, vocab_size=args.vocab,
                      seq_len=args.seq_len, dtype=args.dtype, attention=args.attention, remat=args.remat)
    out = {"device": str(dev), "device_kind": dev.device_kind, "platform": dev.platform, "jax": jax.__version__,
           "model": {"d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
                     "seq_len": cfg.seq_len, "vocab_size": cfg.vocab_size, "dtype": cfg.dtype,
                     "attention": cfg.attention, "remat": cfg.remat},
           "params": flops_lib.param_counts(cfg).total, "batch": batch}

    t0 = time.perf_counter()
    step, params, opt_state, rest, source = scaling_step(cfg, batch)
    jax.block_until_ready(params)
    out["step_source"], out["init_s"] = source, time.perf_counter() - t0

    # 1. correctness: bf16 vs f32 at step 0 (same parameters), then loss decreasing.
    text = jnp.asarray(text_batch(batch, cfg.seq_len))
    loss_lo = eval_loss(cfg, params, rest, text)
    loss_f32 = eval_loss(cfg.replace(dtype="float32", attention="blocked"), params, rest, text)
    out["loss0_bf16"], out["loss0_f32"] = loss_lo, loss_f32
    out["loss0_rel_diff"] = abs(loss_lo - loss_f32) / abs(loss_f32)

    lr = np.float32(args.lr)
    t0 = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, rest, text, lr)
    first = float(loss)
    out["first_call_s"] = time.perf_counter() - t0
    losses = [first]
    for _ in range(args.check_steps - 1):
        params, opt_state, loss = step(params, opt_state, rest, text, lr)
        losses.append(float(loss))
    out["check_losses"] = [round(x, 4) for x in losses]

    # 2. speed, on a fixed random batch (the step was compiled above).
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, cfg.seq_len + 1)), jnp.int32)
    for _ in range(2):
        params, opt_state, loss = step(params, opt_state, rest, tokens, lr)
    jax.block_until_ready(loss)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, rest, tokens, lr)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(args.steps):  # pipelined: the host does not wait between steps
        params, opt_state, loss = step(params, opt_state, rest, tokens, lr)
    jax.block_until_ready(loss)
    pipelined = (time.perf_counter() - t0) / args.steps

    step_s = statistics.median(times)
    flops = flops_lib.per_step(cfg, batch, "palm")
    peak, peak_source = peak_flops(dev)
    out.update(step_s=step_s, step_s_pipelined=pipelined, step_s_min=min(times),
               compile_s=max(out["first_call_s"] - step_s, 0.0), tokens_per_s=batch * cfg.seq_len / pipelined,
               flops_per_step_palm=flops, flops_per_step_chinchilla=flops_lib.per_step(cfg, batch, "chinchilla"),
               peak_flops=peak, peak_source=peak_source, mfu_palm=flops / pipelined / peak,
               final_loss=float(loss))
    try:
        stats = dev.memory_stats() or {}
        out["peak_memory_gb"] = stats.get("peak_bytes_in_use", 0) / 2**30
    except Exception:  # not every backend has memory_stats
        pass
    from scaling.config import RunConfig, TrainConfig
    from scaling.data import DataConfig

    plan = memory_lib.plan(RunConfig(model=cfg, data=DataConfig(), train=TrainConfig(tokens=1, global_batch_size=batch)),
                           1, 1, dev.device_kind)
    out["memory_plan_gb"] = plan.total / 2**30
    out["memory_plan_activations_gb"] = plan.activations / 2**30

    finite = all(math.isfinite(x) for x in losses) and math.isfinite(out["final_loss"])
    decreasing = losses[-1] < losses[0] - args.min_drop
    close = out["loss0_rel_diff"] < args.bf16_tol
    out["checks"] = {"finite": finite, "decreasing": decreasing, "bf16_f32_close": close}
    out["ok"] = finite and decreasing and close
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny model for CPU (tests)")
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--n-layers", type=int, default=12)
    ap.add_argument("--n-heads", type=int, default=12)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--attention", default="auto", choices=["auto", "blocked", "cudnn"],
                    help="ModelConfig.attention (auto = cuDNN flash attention on a GPU in bf16)")
    ap.add_argument("--remat", default="none", choices=["none", "block", "dots_saveable"],
                    help="ModelConfig.remat: activation checkpointing of each block")
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--check-steps", type=int, default=8, help="training steps of the loss-decrease check")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-drop", type=float, default=0.05, help="required loss decrease over the check")
    ap.add_argument("--bf16-tol", type=float, default=0.01, help="max relative |loss_bf16 - loss_f32| at step 0")
    args = ap.parse_args(argv)
    if args.tiny:
        args.d_model, args.n_layers, args.n_heads, args.seq_len, args.vocab = 64, 2, 2, 64, 256
        args.batch, args.steps, args.check_steps = min(args.batch, 4), min(args.steps, 5), min(args.check_steps, 6)

    batch = args.batch
    while True:
        try:
            out = run(args, batch)
            break
        except Exception as e:  # jaxlib's XlaRuntimeError moved between versions: match the text
            if not is_oom(e) or batch == 1:
                raise
            print(f"gpu_step: batch {batch} does not fit ({str(e).splitlines()[0][:200]}); trying {batch // 2}",
                  file=sys.stderr)
            batch //= 2
            import gc

            gc.collect()
            jax.clear_caches()
    out["batch_requested"] = args.batch
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["ok"] else 1)
