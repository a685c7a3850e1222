"""An IsoFLOP sweep on a TPU v4 / v5e slice: TFDS lm1b from a gs:// data_dir (or the stdlib corpus).

    # on every host of the slice (tpu/launch.sh does this), writing to a bucket:
    SCALING_TFDS_DIR=gs://BUCKET/tensorflow_datasets \
      scaling sweep experiments/tpu_v5e.py --out gs://BUCKET/RUN --distributed
    # several independent slices / VMs on one sweep:  --worker i --workers n
    # one slice, each host its own runs on its local chips:  --per-host

Every host runs each run together on one global mesh by default; the table is
gs://BUCKET/RUN/results.jsonl (one object per row under rows/ while it runs) and
gs://BUCKET/RUN/DONE appears when every planned run has its row (tpu/babysit.sh waits for it).
Without SCALING_TFDS_DIR the byte-level stdlib corpus is used (no network needed).
Budgets 1e16..1e18 FLOPs (7.2e18 in all): a v5e-8 at ~40% MFU of 8 x 197 TFLOP/s needs about
3 hours of compute (`--plan-only` prints the estimate); add 3e18 and 1e19 for a longer law.
"""

import os

from scaling.config import ModelConfig, TrainConfig
from scaling.data import DataConfig
from scaling.sweep import SweepConfig


def get_config() -> SweepConfig:
    data_dir = os.environ.get("SCALING_TFDS_DIR")
    if data_dir:
        data = DataConfig(source="tfds", name="lm1b", data_dir=data_dir, text_key="text",
                          train_split="train", validation_split="test")
    else:
        data = DataConfig(source="stdlib")
    return SweepConfig(
        name="tpu-v5e",
        budgets=(1e16, 3e16, 1e17, 3e17, 1e18),
        sizes_per_budget=5,
        size_spread=3.0,
        aspect_ratio=64.0,
        head_dim=128,
        flops_method="chinchilla",
        min_steps=500,
        model=ModelConfig(d_model=512, n_layers=8, n_heads=4, vocab_size=256, seq_len=512, dtype="bfloat16",
                          positions="rotary"),
        data=data,
        train=TrainConfig(tokens=1, global_batch_size=256, lr=1e-3, warmup_steps=500, schedule="cosine",
                          eval_batches=32, log_every=100, checkpoint_every=500, progress=False),
    )
