"""`DataConfig`: everything that decides which tokens a run sees.

The config is a frozen dataclass so that it can be hashed, logged and stored
next to a checkpoint; together with (split, seq_len, step, row) it determines
every batch bit for bit. Validation happens here, eagerly, so that a typo in an
experiment file fails at start-up with a message naming the field, not after
the model has compiled.

Seeds, deliberately separate:
  * ``seed`` only chooses *which windows* are drawn (data order). Changing it
    never changes the corpus, the train/validation split or the synthetic
    language, so evaluation losses stay comparable across seeds.
  * ``synthetic_chain_seed`` chooses the synthetic language itself.
  * The stdlib train/validation split is a function of file paths only.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from scaling.validate import check_bool, check_choice, check_int, check_number, check_optional_int, check_str, fail

SOURCES = ("stdlib", "synthetic", "tfds")
PACKINGS = ("auto", "stream", "documents")
SPLITS = ("train", "validation")
# Tasks that can be mixed into the synthetic language (`synthetic.py`, "A task with a sharp transition").
SYNTHETIC_TASKS = ("none", "repeat")
# The synthetic chain stores a (V, V) successor table; 4096 keeps it <= 32 MiB.
MAX_SYNTHETIC_VOCAB = 4096


def _fail(field: str, value, why: str) -> None:
    fail("DataConfig", field, value, why)


@dataclass(frozen=True)
class DataConfig:
    """Which data a run trains and evaluates on.

    Fields (all have defaults, so ``DataConfig()`` is the no-network default,
    byte-level Python standard library source):

    source: "stdlib" (embedded corpus), "synthetic" (Zipf-Markov language with
        known entropy rate) or "tfds" (any TFDS text dataset by ``name``).
    seed: data-order seed (window positions); >= 0.
    name: TFDS dataset name, e.g. "lm1b", "lm1b:1.1.0" (a version) or "c4/en" (a config); required for tfds.
    data_dir: TFDS data dir, local or ``gs://bucket/tensorflow_datasets``.
    text_key: feature holding the text in each TFDS record.
    train_split / validation_split: TFDS split names that ``split="train"`` /
        ``split="validation"`` map to (stdlib and synthetic ignore them).
    tokenizer: "byte" (vocab 256) or a path to a SentencePiece ``.model``.
    synthetic_vocab_size: V of the synthetic chain, 2..4096.
    synthetic_zipf_exponent: exponent s of the Zipf rows (p_k ~ k^-s), >= 0.
    synthetic_chain_seed: seed of the synthetic language (not of data order).
    synthetic_task: "none", or "repeat": a fraction of the rows are a passage of the
        language repeated to the end of the row (copying, learned by an attention head in
        a sharp transition: Olsson et al. 2022; see synthetic.py). Every repeated token is
        then predictable, so exact match of spans can reach 1.
    synthetic_task_fraction: fraction of rows that carry the task, in (0, 1].
    synthetic_task_period: the passage length m repeated in a task row (>= 1).
    synthetic_task_min_period: None (every task row repeats with period m), or a smaller
        period: each task row's period is then uniform in [min, m], which only an
        induction head (matching content, not position) can copy.
    validation_fraction: stdlib only, fraction of files held out, in (0, 1).
    stdlib_path: stdlib root to read; default ``sysconfig`` of this Python.
    packing: "auto" (stream for stdlib, documents for tfds), "stream"
        (materialise the split's token stream, windows uniform over tokens) or
        "documents" (random document, random offset, then following documents:
        nothing materialised, for datasets too big for memory).
    download: let TFDS download and prepare a missing dataset. Off by default:
        a training job should fail fast rather than start a download.
    stats_documents: documents sampled to estimate ``bytes_per_token`` and the
        unigram entropy when packing="documents" (exact in stream mode).
    unique_tokens: None (the whole training split), or a cap: the training split is cut,
        deterministically and whatever the seed, to a fixed random sample of its windows
        holding this many tokens (rounded down to whole windows of seq_len + 1:
        `packing.cap_windows`; with packing="documents" about this many, as evenly spaced
        whole documents), so a run of D tokens repeats them D / unique_tokens times:
        data-constrained training (Muennighoff et al. 2023). Validation is never cut.
        Not for the synthetic language (it is unlimited: every window is fresh).
    """

    source: str = "stdlib"
    seed: int = 0
    name: str | None = None
    data_dir: str | None = None
    text_key: str = "text"
    train_split: str = "train"
    validation_split: str = "test"
    tokenizer: str = "byte"
    synthetic_vocab_size: int = 256
    synthetic_zipf_exponent: float = 1.0
    synthetic_chain_seed: int = 0
    synthetic_task: str = "none"
    synthetic_task_fraction: float = 0.25
    synthetic_task_period: int = 8
    synthetic_task_min_period: int | None = None
    validation_fraction: float = 0.05
    stdlib_path: str | None = None
    packing: str = "auto"
    download: bool = False
    stats_documents: int = 2000
    unique_tokens: int | None = None

    def __post_init__(self) -> None:
        c = "DataConfig"
        check_choice(c, "source", self.source, SOURCES)
        for field in ("seed", "synthetic_chain_seed"):
            check_int(c, field, getattr(self, field), low=0, high=2**64 - 1, why="must be an int in [0, 2**64)")
        if self.source == "tfds" and not (isinstance(self.name, str) and self.name):
            _fail("name", self.name, 'a TFDS dataset name (e.g. "lm1b") is required when source="tfds"')
        check_str(c, "name", self.name, optional=True)
        check_str(c, "data_dir", self.data_dir, optional=True,
                  why="must be a non-empty str (local path or gs://...) or None")
        for field in ("text_key", "train_split", "validation_split"):
            check_str(c, field, getattr(self, field))
        check_str(c, "tokenizer", self.tokenizer, why='"byte" or a path to a SentencePiece .model file')
        if self.tokenizer != "byte" and "://" not in self.tokenizer and not os.path.isfile(self.tokenizer):
            _fail("tokenizer", self.tokenizer, 'not "byte" and no SentencePiece model file exists at this path')
        check_int(c, "synthetic_vocab_size", self.synthetic_vocab_size, low=2, high=MAX_SYNTHETIC_VOCAB)
        check_number(c, "synthetic_zipf_exponent", self.synthetic_zipf_exponent, low=0)
        check_choice(c, "synthetic_task", self.synthetic_task, SYNTHETIC_TASKS)
        check_number(c, "synthetic_task_fraction", self.synthetic_task_fraction, low=0, high=1, low_open=True)
        check_int(c, "synthetic_task_period", self.synthetic_task_period, low=1)
        if self.synthetic_task_min_period is not None:
            check_int(c, "synthetic_task_min_period", self.synthetic_task_min_period, low=1,
                      high=self.synthetic_task_period, why=f"must be None or an int in [1, synthetic_task_period="
                      f"{self.synthetic_task_period}]")
        if self.synthetic_task != "none" and self.source != "synthetic":
            _fail("synthetic_task", self.synthetic_task, f'needs source="synthetic" (it is {self.source!r})')
        check_number(c, "validation_fraction", self.validation_fraction, low=0, high=1, low_open=True,
                      high_open=True)
        if self.stdlib_path is not None and not os.path.isdir(str(self.stdlib_path)):
            _fail("stdlib_path", self.stdlib_path, "is not a directory")
        check_choice(c, "packing", self.packing, PACKINGS)
        check_bool(c, "download", self.download)
        check_int(c, "stats_documents", self.stats_documents, low=1)
        check_optional_int(c, "unique_tokens", self.unique_tokens)
        if self.unique_tokens is not None and self.source == "synthetic":
            _fail("unique_tokens", self.unique_tokens, "the synthetic language is unlimited (every window is a fresh "
                  "sample); a cap needs source='stdlib' or 'tfds'")

    def replace(self, **changes) -> "DataConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def resolved_packing(self) -> str:
        """The packing actually used: "auto" resolves per source."""
        if self.packing != "auto":
            return self.packing
        return "documents" if self.source == "tfds" else "stream"
