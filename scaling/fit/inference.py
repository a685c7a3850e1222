"""The inference-aware optimum: the cheapest model to train AND serve at a given loss.

Sardana et al. 2024 ("Beyond Chinchilla-Optimal: Accounting for Inference in Language Model
Scaling Laws", ICML; arXiv 2401.00448, sec. 2) ask, for a fitted Chinchilla law L(N, D), a
target loss l and an inference demand of T tokens over the model's life::

    N*, D* = argmin_{N, D : L(N, D) = l}  6 N D  +  2 N T

(training 6N FLOPs per token, inference a forward pass, 2N per token; Kaplan et al. 2020
sec. 2.1).  With T = 0 this is the Chinchilla optimum; the more tokens served, the smaller
and longer-trained the optimal model.  Here l is the loss that the training-compute-optimal
model reaches at budget C (so ``compute_optimal(C, inference_tokens=T)`` answers "the model
I would train with C, but for serving T tokens"), and with a family's own cost per token
``fpt(N)`` training costs ``fpt(N) D`` and inference ``fpt(N) / 3`` per token (a forward
pass is a third of a training step: ``scaling.flops``, backward = 2 x forward).

On the constraint surface D(N) = (B / (l - E - A N^-alpha))^(1/beta), defined for
N > (A / (l - E))^(1/alpha); the total cost fpt(N) (D(N) + T/3) is minimised over log N on a
dense grid refined by golden section (the paper uses Newton's method on the same problem).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._common import call_vectorised, format_table, minimise_log_scalar

__all__ = ["InferenceOptimum", "inference_optimal"]


@dataclass(frozen=True)
class InferenceOptimum:
    """The inference-aware optimum at budget ``C`` for ``inference_tokens`` served, beside
    the training-only (Chinchilla) optimum that reaches the same ``loss``."""

    C: float
    inference_tokens: float
    loss: float
    N: float
    D: float
    N_chinchilla: float
    D_chinchilla: float
    training_flops: float
    inference_flops: float
    chinchilla_total_flops: float

    @property
    def total_flops(self) -> float:
        return self.training_flops + self.inference_flops

    @property
    def saving(self) -> float:
        """Fraction of the Chinchilla model's training + inference FLOPs saved."""
        return 1.0 - self.total_flops / self.chinchilla_total_flops

    def summary(self) -> str:
        return format_table(f"Inference-aware optimum (Sardana et al. 2024) at C = {self.C:.4g}, "
                            f"{self.inference_tokens:.4g} tokens served", [
            ("loss (of the Chinchilla optimum at C)", f"{self.loss:.6g}"),
            ("N, D", f"{self.N:.4g}, {self.D:.4g}  (D/N {self.D / self.N:.1f})"),
            ("Chinchilla N, D", f"{self.N_chinchilla:.4g}, {self.D_chinchilla:.4g}  "
                                f"(D/N {self.D_chinchilla / self.N_chinchilla:.1f})"),
            ("training + inference FLOPs", f"{self.training_flops:.4g} + {self.inference_flops:.4g} = "
                                           f"{self.total_flops:.4g}"),
            ("saved against Chinchilla", f"{100 * self.saving:.2f}% of {self.chinchilla_total_flops:.4g}"),
        ])


def _cost_per_token(flops_per_token: Callable | None):
    if flops_per_token is None:
        return lambda N: 6.0 * np.asarray(N, dtype=np.float64)
    return lambda N: call_vectorised(flops_per_token, np.asarray(N, dtype=np.float64))


def inference_optimal(law, C: float, inference_tokens: float, *,
                      flops_per_token: Callable | None = None) -> InferenceOptimum:
    """The (N, D) of least training + inference FLOPs that reaches the loss of ``law``'s
    compute-optimal model at training budget ``C``, when the model will process
    ``inference_tokens`` tokens in inference (prompts and generations alike).

    ``law``: anything with E, A, B, alpha, beta and ``compute_optimal`` (a
    :class:`scaling.fit.ChinchillaLaw`). ``flops_per_token``: N -> training FLOPs per token
    (default 6N); inference costs a third of it per token.
    """
    C, T = float(C), float(inference_tokens)
    if not (math.isfinite(C) and C > 0):
        raise ValueError(f"C: must be a positive finite FLOP budget, got {C!r}")
    if not (math.isfinite(T) and T >= 0):
        raise ValueError(f"inference_tokens: must be a non-negative finite token count, got {inference_tokens!r}")
    fpt = _cost_per_token(flops_per_token)
    N_c, D_c = (float(x) for x in law.compute_optimal(C, flops_per_token=flops_per_token))
    E, A, B, alpha, beta = law.E, law.A, law.B, law.alpha, law.beta
    if not (math.isfinite(N_c) and alpha > 0 and beta > 0):
        nan = math.nan
        return InferenceOptimum(C, T, nan, nan, nan, N_c, D_c, nan, nan, nan)
    loss = E + A * N_c ** -alpha + B * D_c ** -beta

    def tokens_at(N):
        slack = loss - E - A * np.asarray(N, dtype=np.float64) ** -alpha
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(slack > 0, (B / np.where(slack > 0, slack, 1.0)) ** (1.0 / beta), np.inf)

    def total(N):
        return fpt(N) * (tokens_at(N) + T / 3.0)

    N = minimise_log_scalar(total, N_c) if T > 0 else N_c
    D = float(tokens_at(N)) if T > 0 else D_c
    per_token = float(fpt(np.array([N]))[0])
    chinchilla_total = float(fpt(np.array([N_c]))[0]) * (D_c + T / 3.0)
    return InferenceOptimum(C=C, inference_tokens=T, loss=float(loss), N=float(N), D=D, N_chinchilla=N_c,
                            D_chinchilla=D_c, training_flops=per_token * D, inference_flops=per_token * T / 3.0,
                            chinchilla_total_flops=chinchilla_total)
