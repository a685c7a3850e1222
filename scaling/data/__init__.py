"""Training data: deterministic from a seed, sharded per host, random access by step.

    from scaling.data import DataConfig, make_dataset
    ds = make_dataset(DataConfig(), seq_len=256, split="train")
    x = ds.batch(step, 64, process_index=jax.process_index(), process_count=jax.process_count())
    inputs, targets = x[:, :-1], x[:, 1:]

Sources: "stdlib" (default, no network: byte-level Python standard library
source), "synthetic" (Zipf-Markov chain with an exactly known entropy rate),
"tfds" (any TFDS text dataset through ``tfds.data_source``, no TensorFlow).
See README.md in this package for the design and the formulas.
"""

from .config import DataConfig
from .dataset import Dataset, PackedDataset, SyntheticDataset, bits_per_byte, count_unique_tokens, epochs, make_dataset

__all__ = ["DataConfig", "Dataset", "PackedDataset", "SyntheticDataset", "bits_per_byte", "epochs", "make_dataset",
           "count_unique_tokens"]
