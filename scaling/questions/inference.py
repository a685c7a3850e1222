"""The inference-aware optimum (question 4 of `scaling.questions`) at the report's forecast
budget (Sardana et al. 2024; `scaling.fit.inference_optimal`)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from scaling.questions.rows import _table

INFERENCE_MULTIPLES = (0.0, 1.0, 10.0, 100.0)


@dataclasses.dataclass
class InferenceAnswer:
    """optima: `scaling.fit.InferenceOptimum` at the forecast budget for T = multiple x the
    compute-optimal D; curve: T / D_opt, N / N_chin, D / D_chin and the saving on a grid."""

    C: float
    D_opt: float
    optima: list
    curve: dict


def inference_answer(rep, multiples: Sequence[float] = INFERENCE_MULTIPLES) -> InferenceAnswer | None:
    """The inference-aware optimum at the report's forecast budget (approach 3's law, the
    family's cost per token), serving T = multiple x D_opt tokens. None without a law."""
    from scaling import fit

    law, C = rep.chinchilla, rep.forecast.get("C")
    if law is None or C is None:
        return None
    D_opt = float(law.compute_optimal(C, flops_per_token=rep.fpt)[1])
    optima = [fit.inference_optimal(law, C, m * D_opt, flops_per_token=rep.fpt) for m in multiples]
    grid = np.geomspace(1e-2, 1e3, 31)
    curve = [fit.inference_optimal(law, C, m * D_opt, flops_per_token=rep.fpt) for m in grid]
    return InferenceAnswer(C=C, D_opt=D_opt, optima=optima, curve={
        "served_over_D_opt": grid, "N_ratio": np.array([o.N / o.N_chinchilla for o in curve]),
        "D_ratio": np.array([o.D / o.D_chinchilla for o in curve]), "saving": np.array([o.saving for o in curve])})


def format_inference(ans: InferenceAnswer) -> str:
    rows = [(f"{o.inference_tokens:.3g} ({o.inference_tokens / ans.D_opt:g}x D_opt)", f"{o.N:.4g}", f"{o.D:.4g}",
             f"{o.D / o.N:.1f}", f"{o.total_flops:.3g}", f"{100 * o.saving:.1f}%") for o in ans.optima]
    return _table(f"Inference-aware optimum at C = {ans.C:.3g} (Sardana et al. 2024): the model reaching the forecast "
                  "loss at least training + inference FLOPs when it serves T tokens:",
                  ("tokens served T", "N", "D", "D/N", "train + serve FLOPs", "saved vs Chinchilla"), rows)
