"""`make_dataset` and the `Dataset` interface the training loop calls.

One pipeline for real text: a random-access document source (the stdlib files,
or a ``tfds.data_source``) -> tokenizer -> packer (fixed windows of
``seq_len + 1`` tokens) -> batches. The synthetic language plugs into the same
``Dataset`` interface with a sampler in place of the packer.

(The embedded corpus is not served *through* TFDS: that would make
tensorflow-datasets a hard dependency of the default path, while the pipeline
already treats both as what they are, random-access sequences of documents.)

Batches are a pure function of (config, split, seq_len, step, global row): row
``g`` of the global batch at ``step`` is generated from a key hashed from
(seed, split, step, g), so
  * process ``p`` of ``P`` computes rows ``[p*B/P, (p+1)*B/P)`` and the global
    batch is the same for any ``P``;
  * ``batch(10_000)`` costs what ``batch(0)`` costs: restarting at a step
    replays nothing.

Bits per byte: ``bpb = nats_per_token / (ln 2 * bytes_per_token)``
(``Dataset.bits_per_byte``). Document separators count as one token and one
byte, so byte-level data has bytes_per_token == 1.0 exactly.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from . import rng
from .config import SPLITS, DataConfig
from .packing import DocumentPacker, StreamPacker, build_stream, cap_documents
from .stdlib_corpus import corpus_sha256, load_corpus
from .synthetic import get_chain, mix_repeat_task
from .tokenizers import make_tokenizer


def bits_per_byte(nats_per_token: float, bytes_per_token: float) -> float:
    """Loss in nats per token -> bits per UTF-8 byte."""
    return nats_per_token / (math.log(2) * bytes_per_token)


def epochs(tokens: float, unique_tokens: int | None) -> float:
    """How many times `tokens` of training repeat a split of `unique_tokens` tokens: tokens /
    unique tokens; 0.0 for unlimited data (`unique_tokens=None`, the synthetic language:
    tokens / infinity). Past ~4 epochs repeated tokens are worth markedly less than fresh ones
    (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", Fig. 3), so a law
    fitted on heavily repeated data is not the law of the unique-data regime."""
    return float(tokens) / unique_tokens if unique_tokens else 0.0


def _check_int(name: str, value, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an int >= {minimum}")
    return int(value)


class Dataset:
    """Base class: sharding and argument checks; subclasses make windows.

    Attributes: ``config``, ``split``, ``seq_len``, ``vocab_size``,
    ``entropy_rate`` (None unless synthetic). Properties: ``identity``,
    ``bytes_per_token``, ``unique_tokens`` (tokens of the split; None for
    unlimited data). Method: ``unigram_entropy()``.
    """

    entropy_rate: float | None = None

    def __init__(self, config: DataConfig, seq_len: int, split: str):
        self.config = config
        self.seq_len = seq_len
        self.split = split

    # --- subclasses ---------------------------------------------------------------
    def _windows(self, keys: np.ndarray) -> np.ndarray:  # (n, seq_len + 1) int32
        raise NotImplementedError

    def _source_identity(self) -> dict:
        raise NotImplementedError

    @property
    def bytes_per_token(self) -> float:
        raise NotImplementedError

    @property
    def unique_tokens(self) -> int | None:
        raise NotImplementedError

    def unigram_entropy(self) -> float:
        raise NotImplementedError

    # --- the contract -------------------------------------------------------------
    def batch(self, step: int, global_batch_size: int, *, process_index: int = 0, process_count: int = 1) -> np.ndarray:
        """This process's rows of the global batch at ``step``.

        Returns int32 of shape (global_batch_size // process_count, seq_len + 1);
        inputs are ``[:, :-1]``, targets ``[:, 1:]``.
        """
        step = _check_int("step", step, 0)
        global_batch_size = _check_int("global_batch_size", global_batch_size, 1)
        process_count = _check_int("process_count", process_count, 1)
        process_index = _check_int("process_index", process_index, 0)
        if process_index >= process_count:
            raise ValueError(f"process_index={process_index}: must be < process_count={process_count}")
        if global_batch_size % process_count:
            raise ValueError(
                f"global_batch_size={global_batch_size}: not divisible by process_count={process_count}"
            )
        local = global_batch_size // process_count
        rows = np.arange(process_index * local, (process_index + 1) * local, dtype=np.uint64)
        out = self._windows(rng.row_keys(self.config.seed, self.split, step, rows))
        assert out.shape == (local, self.seq_len + 1) and out.dtype == np.int32
        return out

    def host_batch(self, step: int, global_batch_size: int) -> np.ndarray:
        """``batch`` for this JAX process (``jax.process_index()`` of ``jax.process_count()``)."""
        import jax

        return self.batch(step, global_batch_size, process_index=jax.process_index(), process_count=jax.process_count())

    def iterate(self, global_batch_size: int, *, start_step: int = 0, **shard):
        """Batches ``start_step, start_step + 1, ...`` (an endless generator)."""
        step = start_step
        while True:
            yield self.batch(step, global_batch_size, **shard)
            step += 1

    def bits_per_byte(self, nats_per_token: float) -> float:
        return bits_per_byte(nats_per_token, self.bytes_per_token)

    @property
    def identity(self) -> dict:
        """JSON-serialisable description of exactly which data this is."""
        ident = {
            "source": self.config.source,
            "split": self.split,
            "seq_len": self.seq_len,
            "seed": self.config.seed,
            "vocab_size": self.vocab_size,
        }
        ident.update(self._source_identity())
        ident["bytes_per_token"] = float(self.bytes_per_token)
        ident["unique_tokens"] = self.unique_tokens
        if self.config.unique_tokens is not None and self.split == "train":
            ident["unique_tokens_cap"] = self.config.unique_tokens  # the split was cut (DataConfig.unique_tokens)
        ident["entropy_rate"] = self.entropy_rate
        return ident

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.config.source!r}, split={self.split!r}, seq_len={self.seq_len}, vocab_size={self.vocab_size})"


class PackedDataset(Dataset):
    """Real text: documents -> tokens -> packed windows."""

    def __init__(self, config, seq_len, split, *, packer, tokenizer, source_identity: dict):
        super().__init__(config, seq_len, split)
        self.packer = packer
        self.tokenizer = tokenizer
        self.vocab_size = int(tokenizer.vocab_size)
        self._ident = source_identity

    def _windows(self, keys):
        return self.packer.windows(keys)

    @property
    def bytes_per_token(self) -> float:
        return float(self.packer.bytes_per_token)

    @property
    def unique_tokens(self) -> int:
        return self.packer.unique_tokens

    def unigram_entropy(self) -> float:
        return float(self.packer.unigram_entropy())

    def _source_identity(self) -> dict:
        return {
            **self._ident,
            "tokenizer": self.tokenizer.identity,
            "packing": self.config.resolved_packing(),
            **self.packer.stats,
        }


class SyntheticDataset(Dataset):
    """The Zipf-Markov language (``synthetic.py``); bytes_per_token is defined
    as 1.0, so its "bits per byte" are bits per token. With ``synthetic_task="repeat"``
    some rows repeat their first passage (`synthetic.mix_repeat_task`); the loss floor of
    that mixture is not known in closed form, so ``entropy_rate`` is then None."""

    def __init__(self, config, seq_len, split):
        super().__init__(config, seq_len, split)
        self.chain = get_chain(config.synthetic_vocab_size, float(config.synthetic_zipf_exponent), config.synthetic_chain_seed)
        self.vocab_size = config.synthetic_vocab_size
        self.task = config.synthetic_task
        self.entropy_rate = self.chain.entropy_rate if self.task == "none" else None

    def _windows(self, keys):
        x = self.chain.sample(keys, self.seq_len + 1)
        if self.task == "repeat":
            c = self.config
            x = mix_repeat_task(x, keys, c.synthetic_task_fraction, c.synthetic_task_period, c.synthetic_task_min_period)
        return x

    @property
    def bytes_per_token(self) -> float:
        return 1.0

    @property
    def unique_tokens(self) -> None:
        return None  # every window is a fresh sample of the chain: nothing repeats

    def unigram_entropy(self) -> float:
        return self.chain.unigram_entropy

    def _source_identity(self) -> dict:
        c = self.chain
        return {
            "zipf_exponent": c.zipf_exponent,
            "chain_seed": c.chain_seed,
            "chain_sha256": c.sha256,
            "unigram_entropy": c.unigram_entropy,
            "language_entropy_rate": c.entropy_rate,
            **({"task": self.task, "task_fraction": self.config.synthetic_task_fraction,
                "task_period": self.config.synthetic_task_period,
                "task_min_period": self.config.synthetic_task_min_period} if self.task != "none" else {}),
        }


# Tokenized stdlib streams, per process: tokenizing with SentencePiece takes seconds.
_STDLIB_STREAMS: dict = {}


def _stdlib_dataset(cfg: DataConfig, seq_len: int, split: str) -> PackedDataset:
    corpus = load_corpus(cfg.stdlib_path)
    tok = make_tokenizer(cfg.tokenizer)
    idx = corpus.split_indices(split, cfg.validation_fraction)
    paths = [corpus.paths[i] for i in idx]
    docs = [corpus.contents[i] for i in idx]
    ident = {
        **corpus.identity(),
        "validation_fraction": cfg.validation_fraction,
        "split_files": len(docs),
        "split_bytes": sum(len(d) for d in docs),
        "split_sha256": corpus_sha256(paths, docs),
    }
    if cfg.resolved_packing() == "stream":
        key = (corpus.sha256, split, cfg.validation_fraction, tok.identity.get("sha256", "byte"))
        if key not in _STDLIB_STREAMS:
            _STDLIB_STREAMS[key] = build_stream(docs, tok)
        tokens, nbytes = _STDLIB_STREAMS[key]
        packer = _capped(StreamPacker(None, tok, seq_len, tokens=tokens, nbytes=nbytes), tok, cfg, split)
    else:
        packer = _capped(DocumentPacker(docs, tok, seq_len, stats_documents=cfg.stats_documents), tok, cfg, split)
    return PackedDataset(cfg, seq_len, split, packer=packer, tokenizer=tok, source_identity=ident)


def _capped(packer, tok, cfg: DataConfig, split: str):
    """The packer of the training split cut to ``cfg.unique_tokens`` (`DataConfig`): a fixed
    random sample of its aligned windows (`packing.cap_windows`, the cap rounded down to whole
    windows), or about that many tokens as evenly spaced whole documents
    (`packing.cap_documents`). Validation, and an uncapped config, keep the whole split."""
    cap = cfg.unique_tokens
    if cap is None or split != "train":
        return packer
    if isinstance(packer, StreamPacker):
        return StreamPacker(None, tok, packer.seq_len, tokens=packer.tokens, nbytes=packer.num_bytes, unique_tokens=cap)
    docs = cap_documents(packer.docs, packer.unique_tokens / packer.num_docs, cap)
    return DocumentPacker(docs, tok, packer.seq_len, stats_documents=packer.stats_documents)


def _tfds_dataset(cfg: DataConfig, seq_len: int, split: str) -> PackedDataset:
    from .tfds_source import open_texts

    field = "train_split" if split == "train" else "validation_split"
    texts, ident = open_texts(cfg.name, getattr(cfg, field), data_dir=cfg.data_dir, text_key=cfg.text_key,
                              download=cfg.download, split_field=field)
    tok = make_tokenizer(cfg.tokenizer)
    if cfg.resolved_packing() == "stream":
        packer = _capped(StreamPacker(iter(texts), tok, seq_len), tok, cfg, split)  # batched reads of the whole split
    else:
        packer = _capped(DocumentPacker(texts, tok, seq_len, stats_documents=cfg.stats_documents), tok, cfg, split)
    return PackedDataset(cfg, seq_len, split, packer=packer, tokenizer=tok, source_identity=ident)


def make_dataset(cfg: DataConfig, *, seq_len: int, split: str) -> Dataset:
    """The dataset for one split at one sequence length.

    ``split`` is "train" or "validation" (for tfds these map to
    ``cfg.train_split`` / ``cfg.validation_split``).
    """
    if not isinstance(cfg, DataConfig):
        raise ValueError(f"cfg={cfg!r}: must be a DataConfig")
    seq_len = _check_int("seq_len", seq_len, 1)
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: must be one of {SPLITS}")
    if cfg.source == "synthetic":
        return SyntheticDataset(cfg, seq_len, split)
    if cfg.source == "stdlib":
        return _stdlib_dataset(cfg, seq_len, split)
    return _tfds_dataset(cfg, seq_len, split)


@functools.lru_cache(maxsize=16)
def count_unique_tokens(cfg: DataConfig, *, seq_len: int, split: str = "train") -> int | None:
    """Tokens in one split (``Dataset.unique_tokens``), without JAX, once per process per
    config: what a sweep plan divides each run's tokens by. The stdlib corpus: exact (its
    train split is ~29.7 M bytes = tokens at the byte level on CPython 3.11); TFDS: exact
    with packing="stream", else documents x mean tokens per sampled document; synthetic:
    None (unlimited)."""
    if cfg.source == "synthetic":
        return None
    return make_dataset(cfg, seq_len=seq_len, split=split).unique_tokens
