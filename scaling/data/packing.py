"""Packing documents into fixed windows of ``seq_len + 1`` tokens, randomly
addressable by (step, row).

Every window is the token stream ``doc_a, SEP, doc_b, SEP, ...`` (each document
followed by the tokenizer's separator: byte 0 for bytes, eos for SentencePiece)
cut at some position. Two ways to pick the cut, same stream format:

* ``StreamPacker`` ("stream"): the split is tokenized once into one in-memory
  array; a window starts at an offset drawn uniformly over all
  ``len(stream) - seq_len`` positions. Every token is equally likely to be
  seen, and statistics (bytes per token, unigram entropy) are exact. Right for
  the stdlib corpus (31.5 M tokens as uint8) and small TFDS datasets.
* ``DocumentPacker`` ("documents"): nothing is materialised. A window picks a
  document uniformly, an offset uniformly inside it, and continues with the
  following documents (wrapping at the end) until it has ``seq_len + 1``
  tokens. Sampling is uniform over documents rather than tokens, which is the
  price of never reading the whole dataset; statistics are estimated on a
  deterministic sample of ``stats_documents`` documents. Right for lm1b-sized
  TFDS datasets.

Both draw their randomness from per-row keys (see ``rng``), so a window depends
only on (seed, split, step, global row) and any step is one gather away.
"""

from __future__ import annotations

import collections
import functools
import math

import numpy as np

from . import rng
from .tokenizers import num_bytes


def _stream_dtype(vocab_size: int):
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 2**16 else np.int32


def unigram_entropy_from_counts(counts: np.ndarray) -> float:
    """Entropy in nats of the empirical distribution ``counts / counts.sum()``."""
    p = counts[counts > 0].astype(np.float64)
    p /= p.sum()
    return float(-(p * np.log(p)).sum())


class StreamPacker:
    """Windows at uniform offsets of one materialised token stream."""

    def __init__(self, docs, tokenizer, seq_len: int, *, tokens: np.ndarray | None = None, nbytes: int | None = None,
                 unique_tokens: int | None = None):
        self.seq_len = seq_len
        self.vocab_size = tokenizer.vocab_size
        if tokens is None:
            tokens, nbytes = build_stream(docs, tokenizer)
        self.tokens = tokens
        self.num_bytes = nbytes
        if len(tokens) < seq_len + 1:
            raise ValueError(
                f"seq_len={seq_len}: the split has only {len(tokens)} tokens, fewer than seq_len + 1"
            )
        # A cap (DataConfig.unique_tokens): windows only from these starts (`cap_windows`).
        self.pool = None if unique_tokens is None else cap_windows(len(tokens), seq_len, unique_tokens)

    def windows(self, keys: np.ndarray) -> np.ndarray:
        pick = rng.derive(keys, rng.WINDOW_START)
        if self.pool is None:
            starts = rng.uniform_ints(pick, len(self.tokens) - self.seq_len)
        else:
            starts = self.pool[rng.uniform_ints(pick, len(self.pool))]
        idx = starts[:, None] + np.arange(self.seq_len + 1)[None, :]
        return self.tokens[idx].astype(np.int32)

    @functools.cached_property
    def bytes_per_token(self) -> float:
        return self.num_bytes / len(self.tokens)

    def _kept(self) -> np.ndarray:
        if self.pool is None:
            return self.tokens
        return self.tokens[(self.pool[:, None] + np.arange(self.seq_len + 1)[None, :]).ravel()]

    def unigram_entropy(self) -> float:
        return unigram_entropy_from_counts(np.bincount(self._kept(), minlength=self.vocab_size))

    @property
    def unique_tokens(self) -> int:
        """Tokens of the split, counted (every token of the stream, separators included), or of
        the kept windows under a cap: the cap rounded down to whole windows."""
        return int(len(self.tokens)) if self.pool is None else len(self.pool) * (self.seq_len + 1)

    @property
    def stats(self) -> dict:
        return {"num_tokens": self.unique_tokens, "num_bytes": int(self.num_bytes), "stats_exact": True}


def build_stream(docs, tokenizer) -> tuple[np.ndarray, int]:
    """Concatenate ``doc SEP doc SEP ...``; returns (tokens, bytes) where a
    separator counts as one token and one byte (so byte-level is exactly 1.0
    bytes per token)."""
    docs = list(docs)
    nbytes = sum(num_bytes(d) for d in docs) + len(docs)
    if tokenizer.vocab_size == 256 and tokenizer.separator == 0 and all(isinstance(d, bytes) for d in docs):
        # Byte fast path: one join instead of ~2,000 small arrays.
        return np.frombuffer(b"".join(d + b"\0" for d in docs), dtype=np.uint8).copy(), nbytes
    dtype = _stream_dtype(tokenizer.vocab_size)
    sep = np.array([tokenizer.separator], dtype=dtype)
    parts = []
    for toks in tokenizer.encode_many(docs):
        parts.append(toks.astype(dtype, copy=False))
        parts.append(sep)
    return np.concatenate(parts) if parts else np.zeros(0, dtype), nbytes


# Salt of the fixed order in which a cap (`DataConfig.unique_tokens`) takes the stream's windows.
CAP_ORDER = np.uint64(0x6361705F77696E64)


def cap_windows(n_tokens: int, seq_len: int, unique_tokens: int) -> np.ndarray:
    """Starts of the windows a capped split keeps: the stream cut into aligned windows of
    ``seq_len + 1`` tokens, and ``unique_tokens // (seq_len + 1)`` of them taken in a fixed
    pseudo-random order (SplitMix64 of the window index): a random sample of the split,
    deterministic, the same for every seed, nested (a smaller cap is part of a larger one).

    Why windows and not a prefix or a few blocks: the stdlib stream is ordered by file path,
    so a prefix is a few neighbouring files, and a handful of contiguous blocks is a handful of
    topics; either is a narrower distribution than the validation split, which a run would pay
    for at any number of epochs, confounding repeats with coverage. Uncapped runs sample
    windows at uniform offsets of the whole stream; a capped run samples among the kept
    windows, so at D <= U the two see equally varied data and only the repeats differ.
    Muennighoff et al. 2023 cut a shuffled corpus (C4 documents of ~480 tokens), of which
    windows are the analogue here.
    """
    length = seq_len + 1
    slots = n_tokens // length
    keep = unique_tokens // length
    if keep < 1:
        raise ValueError(f"DataConfig.unique_tokens={unique_tokens}: smaller than one window of seq_len + 1 = "
                         f"{length} tokens")
    if keep >= slots:
        raise ValueError(f"DataConfig.unique_tokens={unique_tokens}: the training split has only {n_tokens:,} tokens; "
                         "a cap must be smaller (None: the whole split)")
    order = rng.mix(np.arange(slots, dtype=np.uint64) ^ CAP_ORDER)
    return np.sort(np.argpartition(order, keep - 1)[:keep]).astype(np.int64) * length


class DocumentSubset:
    """``docs`` seen through ``m`` evenly spaced indices (``floor(i n / m)``): the capped
    document source for packing="documents", random-access like the source itself."""

    def __init__(self, docs, m: int):
        self.docs = docs
        self.indices = (np.arange(m, dtype=np.int64) * len(docs)) // m

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.docs[int(self.indices[i])]

    def get_many(self, indices) -> list:
        return read_documents(self.docs, [int(self.indices[i]) for i in indices])


def cap_documents(docs, tokens_per_document: float, unique_tokens: int) -> DocumentSubset:
    """About ``unique_tokens`` tokens as whole documents: ``round(unique_tokens /
    tokens_per_document)`` of them, evenly spaced (`DocumentSubset`). Approximate, as
    `DocumentPacker.unique_tokens` is: the count rests on the mean document length."""
    m = max(1, int(round(unique_tokens / tokens_per_document)))
    if m >= len(docs):
        raise ValueError(f"DataConfig.unique_tokens={unique_tokens}: the training split has only {len(docs):,} "
                         f"documents of ~{tokens_per_document:.0f} tokens; a cap must be smaller (None: the whole split)")
    return DocumentSubset(docs, m)


def read_documents(docs, indices) -> list:
    """``[docs[i] for i in indices]``, in one batched read when the source has
    ``get_many`` (``tfds_source.TfdsTexts``: ArrayRecord reads many records far
    faster per record than one at a time, locally and above all on gs://)."""
    get_many = getattr(docs, "get_many", None)
    return list(get_many(indices)) if get_many is not None else [docs[int(i)] for i in indices]


class DocumentPacker:
    """Windows built from a random document onwards; nothing materialised.

    ``windows`` reads documents in rounds: each row still short of ``seq_len + 1``
    tokens asks for its next k documents (about a window's worth at the mean
    document length read so far), all rows' requests are read in one batched
    call and tokenized together, and rows consume them in order. After the first
    batch one round usually fills every row; the windows are the same as reading
    one document at a time.
    """

    def __init__(self, docs, tokenizer, seq_len: int, *, stats_documents: int = 2000, cache_size: int = 8192):
        self.docs = docs
        self.num_docs = len(docs)
        if self.num_docs == 0:
            raise ValueError("the document source is empty")
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.vocab_size = tokenizer.vocab_size
        self.stats_documents = stats_documents
        self._sep = np.array([tokenizer.separator], dtype=np.int32)
        # Consecutive documents are re-used by neighbouring windows; a small LRU
        # of tokenized documents avoids re-reading and re-tokenizing them.
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._cache_size = cache_size
        self._seen_docs = self._seen_tokens = 0

    def _tokens_of(self, indices: set[int]) -> dict[int, np.ndarray]:
        """Token arrays of ``indices``: cached ones, the rest read and tokenized in one batch."""
        out, missing = {}, []
        for i in indices:
            if i in self._cache:
                self._cache.move_to_end(i)
                out[i] = self._cache[i]
            else:
                missing.append(i)
        if missing:
            missing.sort()  # neighbouring records: sequential reads within a shard
            for i, toks in zip(missing, self.tokenizer.encode_many(read_documents(self.docs, missing))):
                out[i] = self._cache[i] = np.asarray(toks, dtype=np.int32)
                self._seen_tokens += len(toks) + 1  # + its separator
            self._seen_docs += len(missing)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def _lookahead(self, length: int) -> int:
        """Documents to request per row and round: a window's worth at the mean
        document length read so far (one before anything was read), plus one."""
        if not self._seen_docs:
            return 1
        return max(1, min(64, math.ceil(length * self._seen_docs / self._seen_tokens) + 1))

    def windows(self, keys: np.ndarray) -> np.ndarray:
        length, n = self.seq_len + 1, len(keys)
        first = rng.uniform_ints(rng.derive(keys, rng.DOCUMENT), self.num_docs)
        offset_keys = rng.derive(keys, rng.DOCUMENT_OFFSET)
        nxt = [int(d) for d in first]  # each row's next document
        parts: list[list[np.ndarray]] = [[] for _ in range(n)]
        have = [0] * n
        pending = list(range(n))
        while pending:  # every document adds >= 1 token (its SEP): terminates
            k = self._lookahead(length)
            toks_of = self._tokens_of({(nxt[r] + j) % self.num_docs for r in pending for j in range(k)})
            for r in pending:
                for _ in range(k):
                    toks = toks_of[nxt[r]]
                    if not parts[r]:  # the row's first document: start at a random offset inside it
                        toks = toks[int(offset_keys[r] % np.uint64(len(toks))):] if len(toks) else toks
                    parts[r] += [toks, self._sep]
                    have[r] += len(toks) + 1
                    nxt[r] = (nxt[r] + 1) % self.num_docs
                    if have[r] >= length:
                        break
            pending = [r for r in pending if have[r] < length]
        out = np.empty((n, length), dtype=np.int32)
        for r in range(n):
            out[r] = np.concatenate(parts[r])[:length]
        return out

    @functools.cached_property
    def _sample_stats(self) -> tuple[np.ndarray, int, int, int]:
        k = min(self.num_docs, self.stats_documents)
        idx = np.unique(np.linspace(0, self.num_docs - 1, k).round().astype(np.int64))
        docs = read_documents(self.docs, idx)
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        ntok = 0
        for toks in self.tokenizer.encode_many(docs):
            counts += np.bincount(toks, minlength=self.vocab_size)[: self.vocab_size]
            ntok += len(toks) + 1
        counts[self.tokenizer.separator] += len(docs)
        nbytes = sum(num_bytes(d) for d in docs) + len(docs)
        return counts, ntok, nbytes, len(docs)

    @property
    def bytes_per_token(self) -> float:
        _, ntok, nbytes, _ = self._sample_stats
        return nbytes / ntok

    def unigram_entropy(self) -> float:
        return unigram_entropy_from_counts(self._sample_stats[0])

    @property
    def unique_tokens(self) -> int:
        """Tokens of the split: documents x the mean tokens per document (separator included)
        of the `stats_documents` sample; exact when the sample is the whole split."""
        _, ntok, _, ndocs = self._sample_stats
        return int(round(self.num_docs * ntok / ndocs))

    @property
    def stats(self) -> dict:
        _, ntok, nbytes, ndocs = self._sample_stats
        return {
            "num_documents": self.num_docs,
            "stats_documents": ndocs,
            "stats_tokens": int(ntok),
            "stats_bytes": int(nbytes),
            "stats_exact": ndocs == self.num_docs,
        }
