"""How well does the demo's recipe forecast 10x its largest budget? Measured, per recipe variant.

    python bench/demo_forecast.py --out bench_out/demo_forecast --variant base
    python bench/demo_forecast.py --out bench_out/demo_forecast --variant seeds3 --set seeds=3
    python bench/demo_forecast.py --out bench_out/demo_forecast --report     # the table of every variant

For one variant (the demo's `small` sweep with `--set` overrides): run the sweep, train the
"truth" at 10x its largest budget with the same recipe (`--truth-widths`, one run each per
seed of the recipe), then fit every forecast form on the sweep's table and compare each
form's loss at 10x with the best truth loss (seeds averaged per width). Everything resumes
(rerunning trains nothing twice), so forms can be added and re-scored for free. One JSON line
per variant goes to OUT/summary.jsonl; `--report` prints them as the table in bench/README.md.

Forms scored: approach 3 (Chinchilla L(N, D), total N), approach 3 on non-embedding N, the
compute frontier L*(C) = E + A C^-gamma on the per-budget IsoFLOP parabola minima and on the
best run per budget, and `scaling.fit.forecast` (the form its own backtest chooses) when
the library has it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from scaling import experiment, fit, paths, results  # noqa: E402
from scaling.sweep import demo_config  # noqa: E402


def _mean_by(rows, keys, metric="val_loss"):
    """Rows averaged over seeds: {key tuple: mean metric}."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(float(r[metric]))
    return {k: float(np.mean(v)) for k, v in groups.items()}


def truth(sweep, out_dir, widths, budget):
    """Train each width at `budget` (every seed of the recipe); (best mean loss, its N, table)."""
    from scaling import family
    from scaling.sweep.plan import _base_model_fields, plan_run
    from scaling.sweep.run import run_sweep

    shapes = family.grid(widths, sweep.depths[:1], head_dim=sweep.head_dim, **_base_model_fields(sweep.model))
    runs = [plan_run(sweep, budget, cfg, s) for cfg in shapes for s in range(sweep.seeds)]
    run_sweep(sweep, out_dir, runs=runs)
    rows = [r for r in results.usable(results.read_rows(out_dir)) if r.get("branch") is None]
    by_n = _mean_by(rows, ("N",))
    n_best = min(by_n, key=by_n.get)
    return by_n[n_best], n_best[0], sorted((n[0], l) for n, l in by_n.items())


def forms(rows, budget):
    """{form: (forecast loss at `budget`, forecast N_opt or None)} for every form that fits."""
    from scaling import report

    out = {}
    main = [r for r in results.usable(rows) if r.get("branch") is None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = report.fit_results(rows, budget=budget, n_bootstrap=20)
        if rep.chinchilla is not None:
            out["approach 3"] = (rep.forecast["L_opt_approach3"], rep.forecast["N_opt_approach3"])
        rep_ne = report.fit_results(rows, budget=budget, n_bootstrap=2, n_key="N_non_embedding")
        if rep_ne.chinchilla is not None:
            out["approach 3, non-embedding N"] = (rep_ne.forecast["L_opt_approach3"], None)
        if rep.isoflop is not None:
            law = fit.power_law(rep.isoflop.budgets, rep.isoflop.L_min_per_budget)
            n_opt = rep.forecast.get("N_opt_isoflop")
            out["frontier, parabola minima"] = (float(law.predict(budget)), n_opt)
        best = _mean_by(main, ("budget", "N"))
        per_budget = {}
        for (c, n), loss in best.items():
            per_budget[c] = min(per_budget.get(c, math.inf), loss)
        cs = sorted(per_budget)
        if len(cs) >= 4:
            law = fit.power_law(cs, [per_budget[c] for c in cs])
            out["frontier, best run per budget"] = (float(law.predict(budget)), None)
        # The frontier in non-embedding compute, 6 N_non_embedding D (Kaplan et al. 2020's C):
        # each budget's best run at its own C_ne; the forecast's C_ne is that of approach 2's
        # optimum at the budget (its N's non-embedding share, interpolated over the runs).
        if len(cs) >= 4 and rep.isoflop is not None and main and "C_6n_non_embedding" in main[0]:
            best_rows = {}
            for r in main:
                key = r["budget"]
                if key not in best_rows or r["val_loss"] < best_rows[key]["val_loss"]:
                    best_rows[key] = r
            xs = [best_rows[c]["C_6n_non_embedding"] for c in cs]
            law = fit.power_law(xs, [best_rows[c]["val_loss"] for c in cs])
            n_opt, d_opt = rep.isoflop.compute_optimal(budget)
            shares = sorted({(r["N"], r["N_non_embedding"] / r["N"]) for r in main})
            share = np.interp(np.log(n_opt), np.log([n for n, _ in shares]), [s for _, s in shares])
            out["frontier in non-embedding C, best run"] = (float(law.predict(6 * share * n_opt * d_opt)), None)
        if rep.law_forecast is not None:  # what the report prints: the form the backtest chose
            f = rep.forecast
            out["fit.forecast"] = (f["L_opt"], f["N_opt"])
            out["fit.forecast form"] = (f["form"], None)
            out["fit.forecast interval"] = (f["L_opt_interval"], None)
    return out


def run_variant(args) -> dict:
    sweep = experiment.override(demo_config("small"), args.set)
    base = paths.join(args.out, args.variant)
    from scaling.sweep.run import run_sweep

    t0 = time.perf_counter()
    res = run_sweep(sweep, paths.join(base, "sweep"))
    sweep_s = sum(r.get("run_wall_s") or 0 for r in results.read_rows(paths.join(base, "sweep"))
                  if r.get("branch") is None)
    budget = args.factor * max(sweep.budgets)
    best, n_best, table = truth(sweep, paths.join(base, "truth"), args.truth_widths, budget)
    rows = results.read_rows(paths.join(base, "sweep"))
    scored = {}
    for name, (loss, n) in forms(rows, budget).items():
        if name.endswith("interval"):
            scored[name] = {"interval": list(loss), "inside": bool(loss[0] <= best <= loss[1])}
        elif name.endswith("form"):
            scored[name] = {"form": loss}
        else:
            scored[name] = {"loss": loss, "error": loss / best - 1, "N_opt": n, "N_ratio": n / n_best if n else None}
    doc = {"variant": args.variant, "set": args.set, "budgets": list(sweep.budgets), "seeds": sweep.seeds,
           "runs": len([r for r in rows if r.get("branch") is None]), "sweep_train_s": sweep_s,
           "wall_s_this_call": time.perf_counter() - t0, "trained_now": len(res.trained), "budget": budget,
           "truth_best": best, "truth_N": n_best, "truth": table, "forms": scored}
    with open(os.path.join(args.out, "summary.jsonl"), "a") as f:
        f.write(json.dumps(doc) + "\n")
    return doc


def report_table(out_dir) -> str:
    latest = {}
    for line in open(os.path.join(out_dir, "summary.jsonl")):
        doc = json.loads(line)
        latest[doc["variant"]] = doc
    names = sorted({f for d in latest.values() for f in d["forms"]})
    lines = ["| variant | overrides | runs | sweep train s | truth best (N) | "
             + " | ".join(names) + " |", "|---" * (5 + len(names)) + "|"]
    for d in latest.values():
        def cell(n):
            s = d["forms"].get(n)
            if s is None:
                return "-"
            if "inside" in s:
                return f"[{s['interval'][0]:.3f}, {s['interval'][1]:.3f}] {'in' if s['inside'] else 'OUT'}"
            return s["form"] if "form" in s else f"{100 * s['error']:+.1f}%"
        cells = [cell(n) for n in names]
        lines.append(f"| {d['variant']} | {' '.join(d['set']) or '-'} | {d['runs']} | {d['sweep_train_s']:.0f} | "
                     f"{d['truth_best']:.4f} ({d['truth_N']:.3g}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out/demo_forecast")
    p.add_argument("--variant", default="base")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="SweepConfig override")
    p.add_argument("--factor", type=float, default=10.0, help="truth budget / the sweep's largest budget")
    p.add_argument("--truth-widths", type=lambda s: [int(v) for v in s.split(",")], default=[40, 48, 56, 64, 80])
    p.add_argument("--report", action="store_true", help="print the table of every variant and exit")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.report:
        print(report_table(args.out))
        return
    doc = run_variant(args)
    print(json.dumps({k: doc[k] for k in ("variant", "runs", "sweep_train_s", "truth_best", "truth_N")}))
    for name, s in doc["forms"].items():
        if "interval" in s:
            print(f"  {name:<34} [{s['interval'][0]:.4f}, {s['interval'][1]:.4f}]: truth {'inside' if s['inside'] else 'OUTSIDE'}")
            continue
        if "form" in s:
            print(f"  {name:<34} {s['form']}")
            continue
        ratio = f", N_opt {s['N_ratio']:.2f}x" if s["N_ratio"] else ""
        print(f"  {name:<34} {s['loss']:.4f}  {100 * s['error']:+.2f}%{ratio}")


if __name__ == "__main__":
    main()
