"""Counter-based randomness: every random number is a pure function of
(seed, split, step, global row, purpose, position).

Why not ``np.random.Generator`` streams: a stream has to be replayed to reach
step 10_000, and a per-process stream would make the global batch depend on the
number of processes. Hashing the coordinates instead gives random access (any
step costs the same) and shard invariance (a row is the same whichever process
computes it) for free, and it is vectorised over rows and positions in numpy.

The hash is SplitMix64 (Steele, Lea & Flood 2014; Java's SplittableRandom): the
output for counter ``k`` of a key is ``mix(key + k * GOLDEN)``. It passes
BigCrush, which is far more than window offsets and Markov-chain sampling need.
All arithmetic is on uint64 *arrays*, which wrap silently modulo 2**64.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(k) for k in (30, 27, 31, 11))

SPLIT_CODES = {"train": 0, "validation": 1}

# Purposes: independent hash streams drawn from one row key.
WINDOW_START = 1
DOCUMENT = 2
DOCUMENT_OFFSET = 3
TOKENS = 4
TASK = 5
TASK_PERIOD = 6


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection on uint64 with full avalanche."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _u64(v) -> np.ndarray:
    return np.asarray(v, dtype=np.uint64)


def row_keys(seed: int, split: str, step: int, rows: np.ndarray) -> np.ndarray:
    """One 64-bit key per global row index at (seed, split, step)."""
    h = mix(_u64([seed]) + GOLDEN)
    for part in (SPLIT_CODES[split], step):
        h = mix(h ^ mix(_u64([part]) + GOLDEN))
    return mix(h ^ mix(_u64(rows) + GOLDEN))


def derive(keys: np.ndarray, purpose: int) -> np.ndarray:
    """An independent key per row for one purpose (window start, document...)."""
    return mix(_u64(keys) ^ mix(_u64([purpose]) * GOLDEN + GOLDEN))


def uniform_ints(keys: np.ndarray, high) -> np.ndarray:
    """``keys`` mapped to [0, high) (per-row ``high`` allowed). Modulo bias is
    at most high / 2**64: nil for any corpus that fits in memory."""
    return (_u64(keys) % _u64(high)).astype(np.int64)


def uniforms(keys: np.ndarray, n: int) -> np.ndarray:
    """(len(keys), n) float64 uniforms in [0, 1), 53 random bits each:
    counters 1..n of the SplitMix64 stream seeded by each key."""
    counters = (np.arange(1, n + 1, dtype=np.uint64) * GOLDEN)[None, :]
    bits = mix(_u64(keys)[:, None] + counters)
    return (bits >> _S11).astype(np.float64) * (1.0 / 2**53)
