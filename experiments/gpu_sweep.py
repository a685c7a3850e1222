"""An IsoFLOP sweep on one NVIDIA GPU: bf16 compute, 256-token contexts, byte-level stdlib data.

    scaling sweep experiments/gpu_sweep.py --plan-only                 # the plan and its estimated time
    scaling sweep experiments/gpu_sweep.py --out sweeps/gpu --budget 1e19

Budgets 1e15..1e17 FLOPs (chinchilla accounting) with shapes at d_model / n_layers ~ 64
(`scaling.family.from_target_params`), 5 sizes per budget around the 20-tokens-per-parameter
optimum. 7.2e17 FLOPs in all: on an H100 at ~35% MFU about 35 minutes of compute plus one compile per
shape; drop the last budget for ~10 minutes.
Swap in TFDS text (data=DataConfig(source="tfds", name="lm1b", tokenizer=...)) for real text.
"""

from scaling.config import ModelConfig, TrainConfig
from scaling.data import DataConfig
from scaling.sweep import SweepConfig


def get_config() -> SweepConfig:
    return SweepConfig(
        name="gpu-sweep",
        budgets=(1e15, 3e15, 1e16, 3e16, 1e17),
        sizes_per_budget=5,
        size_spread=3.0,
        aspect_ratio=64.0,
        head_dim=64,
        count="total",
        flops_method="chinchilla",
        min_steps=200,
        model=ModelConfig(d_model=256, n_layers=4, n_heads=4, vocab_size=256, seq_len=256, dtype="bfloat16",
                          positions="rotary", ffn="swiglu", d_ff=None),
        data=DataConfig(source="stdlib"),
        train=TrainConfig(tokens=1, global_batch_size=64, lr=2e-3, warmup_steps=200, schedule="cosine",
                          eval_batches=16, log_every=50, checkpoint_every=1000, progress=True),
    )
