"""Emergence or measurement (question 2 of `scaling.questions`): exact match of k-token spans
against accuracy^k (Schaeffer et al. 2023), with the chance of the gap given the spans scored."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Sequence

import numpy as np

from scaling.questions.rows import _budget, _main, _table
from scaling.results import finite


def _spans_of(row: dict) -> dict[int, float]:
    """{k: exact match of k-token spans} of a row: its val_exact_match_<k> columns, or
    val_exact_match at the run's exact_match_span (older tables)."""
    out = {int(key.removeprefix("val_exact_match_")): float(v) for key, v in row.items()
           if key.startswith("val_exact_match_") and finite(v)}
    if not out and finite(row.get("val_exact_match")):
        out[int(_config(row).get("train", {}).get("exact_match_span", 8))] = float(row["val_exact_match"])
    return out


def _config(row: dict) -> dict:
    try:
        return json.loads(row.get("config") or "{}")
    except (TypeError, ValueError):
        return {}


def _n_spans(row: dict, k: int) -> float:
    """How many k-token spans the run's evaluation scored (from its config), NaN if unknown."""
    train, model = _config(row).get("train", {}), _config(row).get("model", {})
    try:
        rows = train["eval_batches"] * (train.get("eval_batch_size") or train["global_batch_size"])
        return float(rows * (model["seq_len"] // k))
    except (KeyError, TypeError):
        return math.nan


def _poisson_tail(m: float, mean: float) -> float:
    """P(X >= m) if m > mean, else P(X <= m), X ~ Poisson(mean): how surprising m spans
    right are when mean were expected (the binomial of rare events)."""
    m = int(round(m))
    if mean <= 0:
        return 0.0 if m > 0 else 1.0
    terms = [math.exp(j * math.log(mean) - mean - math.lgamma(j + 1)) for j in range(0, m + 1)]
    cdf = min(1.0, sum(terms))
    return max(0.0, 1.0 - cdf + terms[-1]) if m > mean else cdf


@dataclasses.dataclass
class EmergenceAnswer:
    """points: per run (C, loss, accuracy, exact match per k, spans scored per k); best: the
    lowest-loss run per budget; checks: per k >= 2 the verdict and its numbers."""

    metric: str
    spans: tuple[int, ...]
    points: list[dict]
    best: list[dict]
    checks: list[dict]


def emergence_answer(rows: Sequence[dict], *, metric: str = "val_loss", factor: float = 2.0,
                     p_value: float = 1e-3) -> EmergenceAnswer | None:
    """Exact match of k tokens against accuracy^k, per run. A run departs at k when its exact
    match differs from acc^k by more than `factor` AND by more than chance: the count of
    right spans would have probability < `p_value` if each were right with probability
    acc^k (Poisson tail over the spans its evaluation scored). None without the columns."""
    points = []
    for r in _main(rows, metric):
        em = _spans_of(r)
        if finite(r.get("val_accuracy")) and em:
            points.append({"run_id": r["run_id"], "C": float(r["C"]), "budget": _budget(r), "loss": float(r[metric]),
                           "accuracy": float(r["val_accuracy"]), "exact_match": em,
                           "n_spans": {k: _n_spans(r, k) for k in em}})
    if not points:
        return None
    spans = tuple(sorted({k for p in points for k in p["exact_match"]}))
    best = {}
    for p in points:
        if p["budget"] not in best or p["loss"] < best[p["budget"]]["loss"]:
            best[p["budget"]] = p
    checks = []
    for k in (k for k in spans if k >= 2):
        departs, ratios, informative = [], [], 0
        for p in points:
            if k not in p["exact_match"]:
                continue
            em, expected, n = p["exact_match"][k], p["accuracy"] ** k, p["n_spans"][k]
            ratio = em / expected if expected > 0 else math.inf
            surprising = _poisson_tail(em * n, expected * n) < p_value if math.isfinite(n) else True
            if (ratio > factor or ratio < 1 / factor) and surprising:
                departs.append((p, ratio))
            if em > 0:
                ratios.append(ratio)
            informative += not math.isfinite(n) or max(em, expected) * n >= 1
        worst = max(departs, key=lambda d: abs(math.log(d[1])) if d[1] > 0 else math.inf, default=None)
        verdict = ("departs from accuracy^k" if departs else "tracks accuracy^k" if informative
                   else "too rare to tell (no run scored or expected a whole span right)")
        checks.append({"k": k, "runs": sum(k in p["exact_match"] for p in points), "departing": len(departs),
                       "verdict": verdict,
                       "median_ratio": float(np.median(ratios)) if ratios else math.nan,
                       "worst": None if worst is None else {"run_id": worst[0]["run_id"], "C": worst[0]["C"],
                                                            "exact_match": worst[0]["exact_match"][k],
                                                            "accuracy_k": worst[0]["accuracy"] ** k,
                                                            "ratio": worst[1]}})
    return EmergenceAnswer(metric=metric, spans=spans, points=points, best=[best[c] for c in sorted(best)],
                           checks=checks)


def format_emergence(ans: EmergenceAnswer) -> str:
    ks = [k for k in ans.spans if k >= 2]
    head = ("C", ans.metric, "accuracy", "acc gain/decade") + tuple(f"EM{k} / acc^{k}" for k in ks)
    rows = []
    for i, p in enumerate(ans.best):
        gain = ""
        if i > 0 and p["C"] > ans.best[i - 1]["C"]:
            gain = f"{(p['accuracy'] - ans.best[i - 1]['accuracy']) / math.log10(p['C'] / ans.best[i - 1]['C']):+.3f}"
        rows.append((f"{p['C']:.3g}", f"{p['loss']:.4f}", f"{p['accuracy']:.4f}", gain)
                    + tuple(f"{p['exact_match'][k]:.3g} / {p['accuracy'] ** k:.3g}" if k in p["exact_match"] else ""
                            for k in ks))
    out = [_table("Emergence or measurement: exact match of k tokens (EMk) against accuracy^k (Schaeffer et al. "
                  "2023), best run per budget:", head, rows)]
    for c in ans.checks:
        line = (f"  k={c['k']}: {c['verdict']} ({c['departing']} of {c['runs']} runs depart by > 2x beyond chance; "
                f"median EM/acc^k {c['median_ratio']:.3g})")
        if c["worst"]:
            w = c["worst"]
            line += (f"; largest at C={w['C']:.3g} ({w['run_id']}): EM {w['exact_match']:.3g} vs acc^k "
                     f"{w['accuracy_k']:.3g}, {w['ratio']:.3g}x")
        out.append(line)
    out.append("  tracks: a steep exact-match curve is accuracy^k of a smoothly improving accuracy (a metric effect);\n"
               "  departs: the k tokens are right or wrong together (an all-or-nothing ability, or tokens of very\n"
               "  different difficulty); a real transition shows in accuracy itself too (its gain per decade of\n"
               "  compute jumps between budgets).")
    return "\n".join(out)
