"""Steps per dispatch: one optimizer step per device call against K steps in one `lax.scan`.

    python bench/dispatch.py [--k 16] [--widths 8,16,32,48,64,80] [--steps 96]

The demo's models (d_model 8-80, 2 layers, 64-token contexts, 16 sequences a batch) do a few
MFLOP per step: the host's per-step round trip (Python, dispatch, batch transfer, reading the
loss back) costs as much as the arithmetic. `TrainConfig.steps_per_dispatch = K` stages K
batches at once and runs K steps per call. Both paths are timed side by side in one process,
alternating, with the run's own data pipeline (`Trainer.advance`, the code a run uses),
after a warm-up call that compiles; printed: ms per step, FLOP/s by the chinchilla count and
the speed-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

from scaling import flops  # noqa: E402
from scaling import step as step_lib  # noqa: E402
from scaling.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from scaling.data import DataConfig  # noqa: E402
from scaling.train import Trainer  # noqa: E402


def trainer(d_model: int, k: int, out_dir: str) -> Trainer:
    model = ModelConfig(d_model=d_model, n_layers=2, n_heads=max(1, d_model // 8), vocab_size=256, seq_len=64)
    train = TrainConfig(tokens=10**9, global_batch_size=16, steps_per_dispatch=k, progress=False, eval_batches=1)
    cfg = RunConfig(model=model, data=DataConfig(), train=train, name=f"d{d_model}k{k}")
    return Trainer(cfg, out_dir, mesh=step_lib.data_mesh(jax.devices()[:1]))


def time_steps(t: Trainer, steps: int) -> float:
    """Seconds per step over `steps` steps taken in blocks of the trainer's K."""
    k = t.cfg.train.steps_per_dispatch
    t.params, t.opt_state, _, _ = t.advance(t.params, t.opt_state, 0, k, t.total)  # compiles
    t0 = time.perf_counter()
    s = k
    while s < k + steps:
        t.params, t.opt_state, _, _ = t.advance(t.params, t.opt_state, s, s + k, t.total)
        s += k
    return (time.perf_counter() - t0) / (s - k)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--widths", default="8,16,32,48,64,80")
    p.add_argument("--steps", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import tempfile

    print(f"{'d_model':>7} {'N':>8} {'K=1 ms/step':>12} {f'K={args.k} ms/step':>13} {'K=1 FLOP/s':>11} "
          f"{f'K={args.k} FLOP/s':>12} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for d in (int(w) for w in args.widths.split(",")):
            one, many = trainer(d, 1, f"{tmp}/a{d}"), trainer(d, args.k, f"{tmp}/b{d}")
            t1 = min(time_steps(one, args.steps) for _ in range(args.repeats))
            tk = min(time_steps(many, args.steps) for _ in range(args.repeats))
            per_step = flops.per_step(one.cfg.model, 16)
            print(f"{d:>7} {flops.param_counts(one.cfg.model).total:>8,} {1e3 * t1:>12.2f} {1e3 * tk:>13.2f} "
                  f"{per_step / t1:>11.3g} {per_step / tk:>12.3g} {t1 / tk:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
