"""Four questions asked of every scaling study, answered from a sweep's own rows.

    ans = answer(rows, rep)          # rep: scaling.report.fit_results(...) of the same sweep
    print(format_answers(ans))

1. Compute without parameters (`loops_answer`): a looped model re-runs its blocks, paying
   each loop's compute with no new parameters. What is a loop worth? The measured losses of
   one shape at one budget and several loop counts (compute-matched: more loops, fewer
   tokens), the looped law L(N, D, k) with N_eff = N g(k) in the forms of
   `scaling.fit.looped`, ranked by a held-out backtest, and the exchange rate of the first
   extra loop in parameters, with a bootstrap interval.
2. Emergence or measurement (`emergence_answer`): exact match of k-token spans against
   accuracy^k (Schaeffer et al. 2023). If every token of a span were an independent trial at
   the mean accuracy p, exact match would be p^k: steep in compute because p^k is, with
   nothing sudden in the model. A sweep whose exact match departs from p^k (beyond what its
   evaluation's finite number of spans explains) has spans that are right or wrong together:
   all-or-nothing abilities, or tokens of very different difficulty.
3. Finite data (`data_answer`): what a repeated token is worth. The same (budget, shape)
   trained on the whole split and on caps of its unique tokens (equal N and D, more epochs),
   the data-constrained law of Muennighoff et al. 2023 (`scaling.fit.data_constrained`: the
   decay constant R_D* with a bootstrap interval, forms ranked by a held-out backtest), what
   the repeats of a 4-epoch run are worth, and the compute-optimal allocation under a cap.
4. Inference-aware optimum (`inference_answer`): at the report's forecast budget, the model
   of least training + inference FLOPs reaching the forecast loss when it will serve T
   tokens (Sardana et al. 2024; `scaling.fit.inference_optimal`).

Takes rows and a Report; never trains or plots (figures: `scaling.question_plots`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Sequence

from scaling.questions.data import CAP_EPOCHS, DataAnswer, data_answer, format_data
from scaling.questions.emergence import EmergenceAnswer, emergence_answer, format_emergence
from scaling.questions.inference import INFERENCE_MULTIPLES, InferenceAnswer, format_inference, inference_answer
from scaling.questions.loops import LoopsAnswer, format_loops, loops_answer
from scaling.questions.rows import fewest_repeats, single_loops

__all__ = [
    "Answers", "answer", "format_answers", "to_json", "single_loops", "fewest_repeats",
    "LoopsAnswer", "loops_answer", "format_loops", "EmergenceAnswer", "emergence_answer", "format_emergence",
    "DataAnswer", "data_answer", "format_data", "CAP_EPOCHS",
    "InferenceAnswer", "inference_answer", "format_inference", "INFERENCE_MULTIPLES",
]


@dataclasses.dataclass
class Answers:
    loops: LoopsAnswer | None = None
    emergence: EmergenceAnswer | None = None
    inference: InferenceAnswer | None = None
    data: DataAnswer | None = None


def answer(rows: Sequence[dict], rep=None, *, metric: str = "val_loss", n_bootstrap: int = 200,
           seed: int = 0) -> Answers:
    """Every question the rows (and the report `rep`, for the inference-aware optimum) can answer."""
    return Answers(loops=loops_answer(rows, metric=metric, n_bootstrap=n_bootstrap, seed=seed),
                   emergence=emergence_answer(rows, metric=metric),
                   inference=inference_answer(rep) if rep is not None else None,
                   data=data_answer(rows, rep, metric=metric, n_bootstrap=n_bootstrap, seed=seed))


def format_answers(ans: Answers) -> str:
    parts = [f(a) for f, a in ((format_loops, ans.loops), (format_emergence, ans.emergence),
                               (format_data, ans.data), (format_inference, ans.inference)) if a is not None]
    return "\n\n".join(parts)


def to_json(ans: Answers) -> dict:
    """The answers as plain JSON (report.json's "questions")."""
    out: dict = {}
    if ans.loops is not None and ans.loops.law is not None:
        boot, law = ans.loops.boot, ans.loops.law
        out["loops"] = {"loops": list(ans.loops.loops), "gamma": law.gamma,
                        "gamma_interval": list(boot.interval("gamma", ans.loops.level)),
                        "extra_loop": float(law.exchange_rate(1)),
                        "extra_loop_interval": list(boot.interval("extra_loop", ans.loops.level)),
                        "forms": [{"form": c.form, "held_out_mean_abs_error": c.backtest.mean_abs_relative_error
                                   if c.backtest else None} for c in ans.loops.comparisons]}
    if ans.emergence is not None:
        out["emergence"] = {"spans": list(ans.emergence.spans), "checks": ans.emergence.checks}
    if ans.inference is not None:
        out["inference"] = [{"tokens_served": o.inference_tokens, "N": o.N, "D": o.D, "saving": o.saving}
                            for o in ans.inference.optima]
    if ans.data is not None and ans.data.law is not None:
        d, law, boot = ans.data, ans.data.law, ans.data.boot
        out["data"] = {"form": law.form, "params": law.params,
                       "R_D_star_interval": list(boot.interval("R_D_star", d.level)),
                       "R_N_star_interval": list(boot.interval("R_N_star", d.level)) if law.form == "full" else None,
                       "repeated_worth_4_epochs": float(law.repeated_worth(4)),
                       "repeated_worth_4_epochs_interval": list(boot.interval("repeated_worth", d.level)),
                       "epoch_4_worth": float(law.epoch_worth(4)),
                       "epoch_4_worth_interval": list(boot.interval("epoch_worth", d.level)),
                       "half_life": law.half_life, "level": d.level,
                       "forms": [{"form": c.form, "held_out_mean_abs_error": c.backtest.mean_abs_relative_error
                                  if c.backtest else None} for c in d.comparisons],
                       "optima": [{"C": o.C, "U": o.U if math.isfinite(o.U) else None, "N": o.N, "D": o.D,
                                   "epochs": o.epochs if math.isfinite(o.U) else None, "loss": o.loss,
                                   "loss_chinchilla_allocation": o.loss_chinchilla_at_cap} for o in d.optima]}
    return json.loads(json.dumps(out, default=float))
