"""A tiny byte-level GPT on the embedded stdlib corpus: trains in about a minute on 2 CPU cores.

    scaling train experiments/cpu_tiny.py [--set train.tokens=2e6] [--out runs/cpu_tiny]

Measured (2 shared Xeon cores, 1 process): see the README / tests/test_train.py for the
numbers; the validation loss ends well below the corpus's unigram entropy (~3.1 nats).
"""

from scaling.config import ModelConfig, RunConfig, TrainConfig
from scaling.data import DataConfig


def get_config() -> RunConfig:
    model = ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=64, vocab_size=256)
    train = TrainConfig(
        tokens=32 * 64 * 600,        # 600 steps of 32 x 64 tokens
        global_batch_size=32,
        lr=3e-3,
        warmup_steps=30,
        schedule="cosine",
        final_lr_frac=0.1,
        weight_decay=0.1,
        eval_every=200,
        eval_batches=8,
        checkpoint_every=200,
    )
    return RunConfig(model=model, data=DataConfig(source="stdlib"), train=train, name="cpu_tiny")
