"""What JAX's persistent compilation cache saves: a second process compiling the same step.

    python bench/compile_cache.py                      # default shape 256,4,4,16
    python bench/compile_cache.py --shape 512,8,8,16 --json out.json

Runs three fresh child processes, one after the other, each building scaling's training step
(`scaling.step.train_step_for`, as a run does) and timing its first call:
  1. no persistent cache (jax_compilation_cache_dir unset),
  2. cache enabled on an EMPTY directory (cold: compiles and writes the entry),
  3. cache enabled on the same directory again (warm: reads the entry instead of compiling).
"compile" = first call of the step (trace + lower + compile or cache read + one step) minus
the median of the following steps; "init" = first call of the jitted init (also cached).
Inside one process a sweep reuses train.py's `_TRAIN_STEPS` cache (no recompilation at all
for a second run of the same shape); the persistent cache is what helps a NEW process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(args) -> None:
    sys.path.insert(0, ROOT)
    t_import = time.perf_counter()
    import jax

    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import numpy as np

    from scaling.config import ModelConfig, RunConfig, TrainConfig
    from scaling.data import DataConfig
    from scaling.step import data_mesh, train_step_for

    d, layers, heads, batch = (int(v) for v in args.shape.split(","))
    cfg = ModelConfig(d_model=d, n_layers=layers, n_heads=heads, vocab_size=256, seq_len=256)
    run_cfg = RunConfig(model=cfg, data=DataConfig(), train=TrainConfig(tokens=batch * 256 * 10, global_batch_size=batch))
    t0 = time.perf_counter()
    compiled = train_step_for(run_cfg, data_mesh(jax.devices()[:1]))
    params, rest, opt_state = jax.block_until_ready(compiled.init(np.int32(0)))
    t_init = time.perf_counter() - t0
    tokens = jax.numpy.asarray(np.random.default_rng(0).integers(0, 256, (batch, 257)), jax.numpy.int32)
    lr = np.float32(1e-3)
    t0 = time.perf_counter()
    params, opt_state, m = compiled.step(params, opt_state, rest, tokens, lr)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    steady = []
    for _ in range(3):
        t0 = time.perf_counter()
        params, opt_state, m = compiled.step(params, opt_state, rest, tokens, lr)
        jax.block_until_ready(m)
        steady.append(time.perf_counter() - t0)
    step = statistics.median(steady)
    print(json.dumps({"init_s": t_init, "first_step_s": first, "step_s": step, "compile_s": max(first - step, 0.0),
                      "process_s": time.perf_counter() - t_import, "loss": float(m["loss"])}))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="256,4,4,16", help="d_model,n_layers,n_heads,batch")
    ap.add_argument("--json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    def run(cache: str | None) -> dict:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--shape", args.shape]
        if cache:
            cmd += ["--cache", cache]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as cache:
        result = {"shape": args.shape, "no_cache": run(None), "cold": run(cache), "warm": run(cache),
                  "cache_bytes": sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(cache) for f in fs)}
    cold, warm, none = result["cold"], result["warm"], result["no_cache"]
    print(f"shape {args.shape}: step compile {none['compile_s']:.2f} s without cache, {cold['compile_s']:.2f} s cold, "
          f"{warm['compile_s']:.2f} s warm ({cold['compile_s'] / max(warm['compile_s'], 1e-9):.1f}x); "
          f"init {none['init_s']:.2f} / {cold['init_s']:.2f} / {warm['init_s']:.2f} s; "
          f"whole process {none['process_s']:.1f} / {cold['process_s']:.1f} / {warm['process_s']:.1f} s; "
          f"cache {result['cache_bytes'] / 1e6:.1f} MB; losses equal: {cold['loss'] == warm['loss'] == none['loss']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
