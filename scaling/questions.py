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
import warnings
from typing import Sequence

import numpy as np

from scaling.results import finite, usable

# ---------------------------------------------------------------------------------------
# Rows


def _loops(row: dict) -> int:
    return int(row.get("loops") or 1)


def single_loops(rows: Sequence[dict]) -> list[dict]:
    """The rows a law in (N, D) may be fitted on: with several loop counts in one table, only
    the runs with the fewest loops (a loop adds compute, not parameters: mixing them would
    make N mean different things); otherwise every row."""
    counts = {_loops(r) for r in rows}
    return list(rows) if len(counts) <= 1 else [r for r in rows if _loops(r) == min(counts)]


def _unique(row: dict) -> float:
    """The run's unique training tokens (math.inf: unlimited, as the synthetic language)."""
    return float(row["unique_tokens"]) if finite(row.get("unique_tokens")) else math.inf


def fewest_repeats(rows: Sequence[dict]) -> list[dict]:
    """The rows the unique-data laws may be fitted on: with several caps of unique tokens in
    one table (`SweepConfig.unique_tokens`), only the runs with the most unique tokens (the
    whole split: repeated tokens are worth less than fresh ones, so a law fitted on them is
    not the unique-data law); otherwise every row."""
    caps = {_unique(r) for r in rows}
    return list(rows) if len(caps) <= 1 else [r for r in rows if _unique(r) == max(caps)]


def _main(rows: Sequence[dict], metric: str) -> list[dict]:
    return [r for r in usable(rows, metric) if r.get("branch") is None]


def _budget(row: dict) -> float:
    return float(row["budget"]) if finite(row.get("budget")) else float(row["C"])


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join([title] + ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows])


# ---------------------------------------------------------------------------------------
# 1. Loops


@dataclasses.dataclass
class LoopsAnswer:
    """rows: the finished main rows; loops: the loop counts run; matched: per (budget,
    shape) the measured loss at each loop count; comparisons: `scaling.fit.compare_forms`,
    best held-out first; law / boot: the power form and its bootstrap (exchange rate
    `extra_loop`); fpt: (N, loops) -> FLOPs per token of the runs (C / D)."""

    rows: list[dict]
    loops: tuple[int, ...]
    matched: list[dict]
    metric: str = "val_loss"
    comparisons: list = dataclasses.field(default_factory=list)
    law: object = None
    boot: object = None
    level: float = 0.95
    notes: list[str] = dataclasses.field(default_factory=list)
    fpt: dict = dataclasses.field(default_factory=dict)
    g_measured: list = dataclasses.field(default_factory=list)


def loops_answer(rows: Sequence[dict], *, metric: str = "val_loss", n_bootstrap: int = 200, seed: int = 0,
                 level: float = 0.95, forms: Sequence[str] = ("none", "compute", "power", "log")) -> LoopsAnswer | None:
    """What a loop is worth, from a sweep with several loop counts (None without one):
    `forms` (of `scaling.fit.looped.FORMS`) ranked by forecasting the largest budget from
    the others, and the power form's exchange rate bootstrapped over runs."""
    from scaling import fit

    main = _main(rows, metric)
    loops = tuple(sorted({_loops(r) for r in main}))
    if len(loops) < 2:
        return None
    shape = lambda r: (r.get("d_model"), r.get("n_layers"))
    cells: dict[tuple, dict] = {}
    for r in main:
        cell = cells.setdefault((_budget(r), shape(r)), {"budget": _budget(r), "shape": shape(r), "N": r["N"],
                                                         "loss": {}})
        cell["loss"].setdefault(_loops(r), []).append(float(r[metric]))
    matched = [dict(c, loss={k: float(np.mean(v)) for k, v in c["loss"].items()}) for c in cells.values()
               if len(c["loss"]) >= 2]
    ans = LoopsAnswer(rows=main, loops=loops, matched=sorted(matched, key=lambda c: (c["budget"], c["N"])),
                      metric=metric, level=level,
                      fpt={(float(r["N"]), _loops(r)): float(r["C"]) / float(r["D"]) for r in main})
    N, D, L = (np.array([float(r[k]) for r in main]) for k in ("N", "D", metric))
    k = np.array([_loops(r) for r in main], dtype=float)
    budgets = np.array([_budget(r) for r in main])
    groups = np.array([r["run_id"] for r in main])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ans.comparisons = fit.compare_forms(N, D, k, L, compute=budgets, holdout=float(budgets.max()),
                                                forms=tuple(forms))
        except ValueError as e:
            ans.notes.append(f"forms not compared: {e}")
        try:
            ans.boot = fit.looped_bootstrap(N, D, k, L, form="power", n=n_bootstrap, seed=seed, groups=groups)
            ans.law = ans.boot.law
        except ValueError as e:
            ans.notes.append(f"looped law not fitted: {e}")
    ans.notes.extend(sorted({str(w.message) for w in caught if issubclass(w.category, fit.ScalingFitWarning)}))
    if ans.law is not None:
        law = ans.law
        slack = L - law.E - law.B * D ** -law.beta
        with np.errstate(invalid="ignore", divide="ignore"):
            n_eff = np.where(slack > 0, (law.A / np.where(slack > 0, slack, 1.0)) ** (1 / law.alpha), np.nan)
        ans.g_measured = [(int(kk), float(g)) for kk, g in zip(k, n_eff / N)]
    return ans


def format_loops(ans: LoopsAnswer) -> str:
    pct = f"{100 * ans.level:g}%"
    out = [f"What a loop is worth ({len(ans.rows)} runs, loop counts {', '.join(map(str, ans.loops))}):"]
    head = ("C", "shape", "N") + tuple(f"loss x{k}" for k in ans.loops) + tuple(
        f"x{k} - x{ans.loops[0]}" for k in ans.loops[1:])
    rows = []
    for c in ans.matched:
        base = c["loss"].get(ans.loops[0])
        rows.append((f"{c['budget']:.3g}", f"d{c['shape'][0]}-L{c['shape'][1]}", f"{c['N']:.3g}")
                    + tuple(f"{c['loss'][k]:.4f}" if k in c["loss"] else "" for k in ans.loops)
                    + tuple(f"{c['loss'][k] - base:+.4f}" if k in c["loss"] and base is not None else ""
                            for k in ans.loops[1:]))
    out.append(_table("  measured at equal compute (more loops = fewer tokens):", head, rows))
    if ans.comparisons:
        rows = []
        for cmp in ans.comparisons:
            law, bt = cmp.law, cmp.backtest
            rate = f"{100 * float(law.exchange_rate(1)):+.1f}%" if law is not None else ""
            rows.append((cmp.form, str(cmp.n_params), f"{law.objective:.4g}" if law else "",
                         f"{100 * bt.mean_abs_relative_error:.2f}%" if bt else cmp.error[:60], rate))
        out.append(_table("  L = E + A/(N g(k))^alpha + B/D^beta, forms ranked by forecasting the largest budget:",
                          ("g(k)", "params", "in-sample", "held-out |err|", "1 -> 2 loops worth"), rows))
    if ans.law is not None:
        law, boot = ans.law, ans.boot
        lo, hi = boot.interval("extra_loop", ans.level)
        glo, ghi = boot.interval("gamma", ans.level)
        out.append(f"  exchange rate (g = k^gamma): gamma = {law.gamma:.3f} [{glo:.3f}, {ghi:.3f}]; one extra loop "
                   f"(1 -> 2) ~ {100 * float(law.exchange_rate(1)):+.1f}% more parameters [{100 * lo:+.1f}%, "
                   f"{100 * hi:+.1f}%] ({pct} bootstrap over runs, {boot.n - boot.n_failed} replicates)")
        for k in ans.loops[1:]:
            key = f"extra_loop_{k}"
            if key in boot.samples:
                lo, hi = boot.interval(key, ans.level)
                out.append(f"    {k} -> {k + 1} loops ~ {100 * boot.estimates[key]:+.1f}% [{100 * lo:+.1f}%, "
                           f"{100 * hi:+.1f}%]")
    out += [f"  note: {n}" for n in ans.notes]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# 2. Emergence


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


# ---------------------------------------------------------------------------------------
# 3. Finite data

#: Caps at which the allocation is shown: U = D_chinchilla / k, the data for k Chinchilla epochs.
CAP_EPOCHS = (1.0, 4.0, 16.0, 64.0)


@dataclasses.dataclass
class DataAnswer:
    """rows: the finished main rows (one loop count); matched: per (budget, shape) the loss at
    each cap (same N and D, more epochs); comparisons: `scaling.fit.compare_data_forms`, best
    held-out first; law / boot: the chosen form and its bootstrap; optima: the compute-optimal
    allocation at budget C under caps U = D_chinchilla / k (`CAP_EPOCHS`) and unlimited."""

    rows: list[dict]
    matched: list[dict]
    metric: str = "val_loss"
    comparisons: list = dataclasses.field(default_factory=list)
    law: object = None
    boot: object = None
    level: float = 0.95
    notes: list[str] = dataclasses.field(default_factory=list)
    C: float | None = None
    optima: list = dataclasses.field(default_factory=list)
    fpt: object = None


def data_answer(rows: Sequence[dict], rep=None, *, metric: str = "val_loss", n_bootstrap: int = 200, seed: int = 0,
                level: float = 0.95, forms: Sequence[str] = ("data", "full")) -> DataAnswer | None:
    """What a repeated token is worth, from a table with runs at several epochs (at least two
    beyond 1.5 epochs and two caps of unique tokens; None otherwise): `forms` of the
    data-constrained law ranked by forecasting the largest budget from the others, the best
    bootstrapped over runs, and the allocation at the report's forecast budget (`rep`; else
    10x the largest budget) under caps, with the family's cost per token."""
    from scaling import fit

    main = [r for r in _main(single_loops(rows), metric) if r.get("unique_tokens") is not None]
    epochs = [float(r["D"]) / _unique(r) for r in main]
    if len({_unique(r) for r in main}) < 2 or sum(e > 1.5 for e in epochs) < 2:
        return None
    shape = lambda r: (r.get("d_model"), r.get("n_layers"))
    cells: dict[tuple, dict] = {}
    for r in main:
        cell = cells.setdefault((_budget(r), shape(r)), {"budget": _budget(r), "shape": shape(r), "N": float(r["N"]),
                                                         "D": float(r["D"]), "loss": {}})
        cell["loss"].setdefault(_unique(r), []).append(float(r[metric]))
    matched = [dict(c, loss={u: float(np.mean(v)) for u, v in sorted(c["loss"].items(), reverse=True)})
               for c in cells.values() if len(c["loss"]) >= 2]
    ans = DataAnswer(rows=main, matched=sorted(matched, key=lambda c: (c["budget"], c["N"])), metric=metric,
                     level=level)
    N, D, L = (np.array([float(r[k]) for r in main]) for k in ("N", "D", metric))
    U = np.minimum([_unique(r) for r in main], D)  # unlimited data: what the run saw, once
    budgets = np.array([_budget(r) for r in main])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ans.comparisons = fit.compare_data_forms(N, D, U, L, compute=budgets, holdout=float(budgets.max()),
                                                     forms=tuple(forms))
        except ValueError as e:
            ans.notes.append(f"forms not compared: {e}")
        fitted = [c for c in ans.comparisons if c.law is not None]
        form = fitted[0].form if fitted and fitted[0].backtest is not None else forms[0]
        try:
            ans.boot = fit.data_constrained_bootstrap(N, D, U, L, form=form, n=n_bootstrap, seed=seed,
                                                      groups=np.array([r["run_id"] for r in main]))
            ans.law = ans.boot.law
        except ValueError as e:
            ans.notes.append(f"data-constrained law not fitted: {e}")
    ans.notes.extend(sorted({str(w.message) for w in caught if issubclass(w.category, fit.ScalingFitWarning)}))
    if ans.law is not None:
        ans.fpt = rep.fpt if rep is not None and rep.fpt is not None else \
            fit.interpolated_flops_per_token(N, np.array([float(r["C"]) for r in main]), D)
        ans.C = rep.forecast.get("C") if rep is not None and rep.forecast.get("C") else 10.0 * float(budgets.max())
        D_c = float(ans.law.unique_law.compute_optimal(ans.C, flops_per_token=ans.fpt)[1])
        ans.optima = [ans.law.compute_optimal(ans.C, u, flops_per_token=ans.fpt)
                      for u in (math.inf,) + tuple(D_c / k for k in CAP_EPOCHS)]
    return ans


def format_data(ans: DataAnswer) -> str:
    caps = sorted({u for c in ans.matched for u in c["loss"]}, reverse=True)
    cap_name = lambda u: "all" if not math.isfinite(u) else f"{u:.3g}"  # noqa: E731
    head = ("C", "shape", "N", "D") + tuple(f"U={cap_name(u)}" for u in caps)
    rows = []
    for c in ans.matched:
        base = c["loss"].get(caps[0])
        rows.append((f"{c['budget']:.3g}", f"d{c['shape'][0]}-L{c['shape'][1]}", f"{c['N']:.3g}", f"{c['D']:.3g}")
                    + tuple(f"{c['loss'][u]:.4f} ({c['D'] / u:.3g} ep)"
                            + (f" {c['loss'][u] - base:+.4f}" if base is not None and u != caps[0] else "")
                            if u in c["loss"] else "" for u in caps))
    n_caps = len(caps)
    out = [f"Repeated data ({len(ans.rows)} runs, {n_caps} caps of unique tokens U; Muennighoff et al. 2023):",
           _table("  measured at equal N and D (a smaller U = more epochs; ep = epochs, then the change from the "
                  "largest U):", head, rows)]
    if ans.comparisons:
        rows = []
        for cmp in ans.comparisons:
            law, bt = cmp.law, cmp.backtest
            rows.append((cmp.form, f"{law.R_D_star:.3g}" if law else "",
                         f"{law.R_N_star:.3g}" if law is not None and law.form == "full" else "-",
                         f"{law.objective:.4g}" if law else "",
                         f"{100 * bt.mean_abs_relative_error:.2f}%" if bt else cmp.error[:60]))
        out.append(_table("  L = E + A/N'^alpha + B/D'^beta, D' = U (1 + R_D* (1 - exp(-R_D/R_D*))), forms ranked by "
                          "forecasting the largest budget:", ("form", "R_D*", "R_N*", "in-sample", "held-out |err|"),
                          rows))
    if ans.law is not None:
        law, boot, pct = ans.law, ans.boot, f"{100 * ans.level:g}%"
        lo, hi = boot.interval("R_D_star", ans.level)
        wlo, whi = boot.interval("repeated_worth", ans.level)
        elo, ehi = boot.interval("epoch_worth", ans.level)
        out.append(f"  decay constant ({law.form} form): R_D* = {law.R_D_star:.3g} [{lo:.3g}, {hi:.3g}] repeats "
                   f"(Muennighoff et al.: 15.4 on C4); a repeated token is worth half a fresh one after "
                   f"{law.half_life:.3g} repeats")
        if law.form == "full":
            nlo, nhi = boot.interval("R_N_star", ans.level)
            out.append(f"  excess parameters: R_N* = {law.R_N_star:.3g} [{nlo:.3g}, {nhi:.3g}] (Muennighoff et al.: 5.3)")
        out.append(f"  at 4 epochs the 3 repeated epochs are worth {100 * float(law.repeated_worth(4)):.1f}% "
                   f"[{100 * wlo:.1f}%, {100 * whi:.1f}%] of fresh data per token; the 4th epoch alone "
                   f"{100 * float(law.epoch_worth(4)):.1f}% [{100 * elo:.1f}%, {100 * ehi:.1f}%] ({pct} bootstrap "
                   f"over runs, {boot.n - boot.n_failed} replicates)")
    if ans.optima:
        free = ans.optima[0]
        rows = [(("unlimited" if not math.isfinite(o.U) else f"{o.U:.3g} (D_chin/{free.D_chinchilla / o.U:.3g})"),
                 f"{o.N:.4g}", f"{o.D:.4g}", f"{o.epochs:.3g}" if math.isfinite(o.U) else "-", f"{o.loss:.4f}",
                 f"{o.loss_chinchilla_at_cap:.4f}") for o in ans.optima]
        out.append(_table(f"  compute-optimal allocation at C = {ans.C:.3g} under a cap of U unique tokens (the "
                          f"unique-data optimum: N {free.N_chinchilla:.4g}, D {free.D_chinchilla:.4g}):",
                          ("U", "N", "D", "epochs", "loss", "Chinchilla's N, D on U"), rows))
        if ans.law.form == "data":
            full = next((c for c in ans.comparisons if c.form == "full" and c.backtest is not None), None)
            out.append("  (the D'-only form prices repeated tokens, not excess parameters: under a tight cap it grows N;\n"
                       f"  Muennighoff et al.'s full form ({'ranked lower by the backtest' if full else 'not fitted'} "
                       "here) shrinks N and trains more epochs)")
    out += [f"  note: {n}" for n in ans.notes]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# 4. Inference-aware optimum

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


# ---------------------------------------------------------------------------------------
# All of them


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
