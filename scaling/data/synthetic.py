"""A synthetic language whose entropy rate is known exactly.

Why: on real text nobody knows the irreducible loss, which is the hardest
parameter of a scaling-law fit (the E in L = E + A/N^a + B/D^b). On this
language it is known to float64 precision, so fits can be checked against it.

The language is a first-order Markov chain over V tokens. Row i of the
transition matrix is a Zipf distribution p_k = k^-s / sum_j j^-s over ranks
k = 1..V, laid over a random permutation of the vocabulary drawn for that row
(``successors[i, k-1]`` is the token of rank k after token i). The chain is
seeded by ``synthetic_chain_seed`` only, so the language stays fixed while the
data seed varies.

Entropy rate: H = sum_i pi_i H(P_i) nats/token, pi the stationary distribution
(power iteration in float64 to a 1e-14 L1 change). Because every row is the
same Zipf distribution permuted, H(P_i) is the same for all i and H equals the
entropy of Zipf(s, V) whatever pi is; the general formula is computed anyway
and the two agree to rounding. Each sequence starts from pi, so the chain is
stationary from its first token and EVERY predicted position (targets 1..T)
has conditional entropy exactly H given its past: a model's expected loss
cannot go below ``entropy_rate``. The unigram entropy H(pi) (the loss of a
model that ignores context) is larger: the gap is what context buys.

Sampling is inverse-CDF with counter-based uniforms: row r of step s uses the
uniform stream keyed by (data seed, split, s, r), so any batch is generated
directly (random access) and identically on any number of processes.
The first token is ``searchsorted(cumsum(pi), u_0)``, then
``x_t = successors[x_{t-1}, searchsorted(zipf_cdf, u_t)]``, vectorised over the
rows of a batch (a loop over positions, each a numpy gather).

A task with a sharp transition (``DataConfig.synthetic_task="repeat"``, `mix_repeat_task`):
a fraction of the rows is a passage of the language repeated to the end of the row,
``x_t = x_{t mod m}``. Once a model has an attention head that copies the token m back
(a fixed period) or the token after the previous occurrence of the current one (an induction
head; needed when m varies per row), every repeated token is predictable; before, it is as
hard as the language. Copying heads form in a phase change (Olsson et al. 2022, "In-context
Learning and Induction Heads"), so the repeated tokens go from ~the language's accuracy to
~1 within a narrow range of training. Measured (d_model 64, 2 layers, rotary, V=256, half the
rows repeating with period 8, batches of 16 x 64 tokens): accuracy 0.20 at step 400, 0.38 at
500; exact match of 16 tokens 0 -> 0.04 -> 0.15 at 600 (accuracy^16 ~ 1e-6). With periods
drawn in [8, 16] the same model had learnt no copying after 1500 steps. Within a task row
the copied tokens are right or wrong together, so exact match of long spans departs from
accuracy^k (Schaeffer et al. 2023); in the language itself the argmax-correct events are
independent from token to token (each step's rank is iid), so there it tracks accuracy^k.
Which rows carry the task, and their periods, come from the row key (purposes TASK and
TASK_PERIOD), so non-task rows are exactly the rows of the plain language.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from . import rng


def zipf_probs(vocab_size: int, exponent: float) -> np.ndarray:
    p = np.arange(1, vocab_size + 1, dtype=np.float64) ** -float(exponent)
    return p / p.sum()


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _cdf(p: np.ndarray) -> np.ndarray:
    c = np.cumsum(p)
    c[-1] = 1.0  # uniforms are < 1: the last bin always closes the table
    return c


@dataclass(frozen=True, eq=False)
class ZipfMarkovChain:
    vocab_size: int
    zipf_exponent: float
    chain_seed: int
    rank_probs: np.ndarray  # (V,) Zipf over ranks
    successors: np.ndarray  # (V, V) token of each rank after each token
    stationary: np.ndarray  # (V,) pi, pi P = pi
    entropy_rate: float  # sum_i pi_i H(P_i), nats/token

    @classmethod
    def build(cls, vocab_size: int, zipf_exponent: float, chain_seed: int) -> "ZipfMarkovChain":
        g = np.random.default_rng([int(chain_seed), 0x5A1F])
        dtype = np.uint16 if vocab_size <= 2**16 else np.int32
        successors = g.permuted(np.tile(np.arange(vocab_size, dtype=dtype), (vocab_size, 1)), axis=1)
        probs = zipf_probs(vocab_size, zipf_exponent)
        pi = _stationary(successors, probs)
        row_entropy = np.full(vocab_size, entropy(probs))  # same multiset of probabilities in every row
        return cls(vocab_size, float(zipf_exponent), int(chain_seed), probs, successors, pi, float(pi @ row_entropy))

    def transition_matrix(self) -> np.ndarray:
        """Dense (V, V) float64 P[i, j] = P(x_t = j | x_{t-1} = i)."""
        P = np.zeros((self.vocab_size, self.vocab_size))
        np.put_along_axis(P, self.successors.astype(np.int64), self.rank_probs[None, :], axis=1)
        return P

    @functools.cached_property
    def _rank_of(self) -> np.ndarray:
        """(V, V): rank (0-based) of token j after token i; inverse of successors."""
        V = self.vocab_size
        r = np.empty((V, V), dtype=self.successors.dtype)
        np.put_along_axis(r, self.successors.astype(np.int64), np.arange(V, dtype=r.dtype)[None, :], axis=1)
        return r

    def log_prob(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """log P(nxt | prev), elementwise."""
        return np.log(self.rank_probs[self._rank_of[prev, nxt]])

    @functools.cached_property
    def _rank_cdf(self) -> np.ndarray:
        return _cdf(self.rank_probs)

    @functools.cached_property
    def _stationary_cdf(self) -> np.ndarray:
        return _cdf(self.stationary)

    def sample(self, keys: np.ndarray, length: int) -> np.ndarray:
        """(len(keys), length) int32 sequences, one per key, stationary start."""
        u = rng.uniforms(rng.derive(keys, rng.TOKENS), length)
        V = self.vocab_size
        x = np.empty(u.shape, dtype=np.int32)
        x[:, 0] = np.minimum(np.searchsorted(self._stationary_cdf, u[:, 0], side="right"), V - 1)
        ranks = np.minimum(np.searchsorted(self._rank_cdf, u[:, 1:], side="right"), V - 1)
        succ = self.successors
        for t in range(1, length):
            x[:, t] = succ[x[:, t - 1], ranks[:, t - 1]]
        return x

    @property
    def unigram_entropy(self) -> float:
        """H(pi): the marginal of every position, as the chain is stationary."""
        return entropy(self.stationary)

    @functools.cached_property
    def sha256(self) -> str:
        h = hashlib.sha256(self.successors.astype("<u4").tobytes())
        h.update(self.rank_probs.astype("<f8").tobytes())
        return h.hexdigest()


def _stationary(successors: np.ndarray, probs: np.ndarray, tol: float = 1e-14, max_iter: int = 100_000) -> np.ndarray:
    """pi with pi P = pi, by power iteration from uniform in float64.

    Random Zipf rows make the chain irreducible and aperiodic (every row gives
    positive probability to every token when s is finite), so this converges;
    the second eigenvalue is small and it usually takes a few dozen steps."""
    V = len(probs)
    P = np.zeros((V, V))
    np.put_along_axis(P, successors.astype(np.int64), probs[None, :], axis=1)
    pi = np.full(V, 1.0 / V)
    for _ in range(max_iter):
        new = pi @ P
        new /= new.sum()
        if np.abs(new - pi).sum() < tol:
            return new
        pi = new
    raise RuntimeError(f"stationary distribution did not converge in {max_iter} iterations")


def mix_repeat_task(x: np.ndarray, keys: np.ndarray, fraction: float, period: int,
                    min_period: int | None = None) -> np.ndarray:
    """Rows of ``x`` (one per key) chosen with probability ``fraction`` become their first m
    tokens repeated, ``x_t = x_{t mod m}``: m = ``period``, or uniform in [min_period, period]
    per row when ``min_period`` is given (both capped at half the row, so every task row
    repeats its passage at least once). Returns a new array."""
    n, length = x.shape
    is_task = repeat_task_rows(keys, fraction)
    hi = max(1, min(int(period), length // 2))
    lo = hi if min_period is None else max(1, min(int(min_period), hi))
    m = lo + rng.uniform_ints(rng.derive(keys, rng.TASK_PERIOD), hi - lo + 1)
    idx = np.arange(length)[None, :] % m[:, None]
    return np.where(is_task[:, None], np.take_along_axis(x, idx, axis=1), x)


def repeat_task_rows(keys: np.ndarray, fraction: float) -> np.ndarray:
    """Which of these row keys carry the repeat task (bool per key): the draw `mix_repeat_task` makes."""
    return rng.uniforms(rng.derive(keys, rng.TASK), 1)[:, 0] < fraction


@functools.lru_cache(maxsize=8)
def get_chain(vocab_size: int, zipf_exponent: float, chain_seed: int) -> ZipfMarkovChain:
    """Built once per process per (V, s, chain seed)."""
    return ZipfMarkovChain.build(vocab_size, zipf_exponent, chain_seed)
