"""The stages chained: sweep -> results table -> report -> figures. The only module that does.

    rep = summarize("out/sweep", plot_dir="out/sweep/plots")   # fit, print, report.txt, plots
    rep = demo("small")                                         # the demo sweep, then summarize

Everything below this module does one stage: `scaling.sweep` trains and appends rows,
`scaling.results` reads the table, `scaling.report` fits and formats, `scaling.plot` draws
a report. The command line calls these functions and nothing else.
"""

from __future__ import annotations

import json
import math
import sys
import time

from scaling import paths, questions, report, verification
from scaling import results as results_lib
from scaling.report import Report, fit_results, format_report

REPORT_FILE = "report.txt"
REPORT_JSON = "report.json"


def summarize(path, *, budget: float | None = None, n_bootstrap: int = 1000, seed: int = 0,
              metric: str = "val_loss", plot_dir=None, write: bool = True, columns: dict | None = None) -> Report:
    """Read a table, fit, print the report (also saved as report.txt and report.json when
    `write`), and draw the figures into `plot_dir` when given.

    `path`: a sweep directory or its results.jsonl (local or gs://): the report files go beside
    the table. With `columns` (`N`, `D`, `loss` and optionally `C`, `run`: column names, see
    `scaling.tables.to_rows`), any CSV, JSONL or parquet file: the report files are
    <table>.report.txt and <table>.report.json beside it.
    """
    if columns is not None:
        from scaling import tables

        rows = tables.to_rows(tables.read_table(path), **columns)
        p = paths.path(path)
        targets = (p.parent / f"{p.stem}.report.txt", p.parent / f"{p.stem}.report.json")
    else:
        rows = results_lib.read_rows(path)
        if not rows:
            raise ValueError(f"results={str(path)!r}: no rows (a sweep directory or a results.jsonl; for another "
                             "table give its columns: --N, --D, --loss)")
        directory = results_lib.results_path(path).parent
        targets = (directory / REPORT_FILE, directory / REPORT_JSON)
    rep = fit_results(questions.fewest_repeats(questions.single_loops(rows)), budget=budget, n_bootstrap=n_bootstrap,
                      seed=seed, metric=metric)
    answers = questions.answer(rows, rep, metric=metric, n_bootstrap=min(n_bootstrap, 200), seed=seed)
    text = "\n\n".join(t for t in (format_report(rep), questions.format_answers(answers)) if t)
    print(text, flush=True)
    if write:
        try:
            paths.write_atomic(targets[0], text + "\n")
            paths.write_atomic(targets[1], json.dumps(dict(report.to_json(rep), questions=questions.to_json(answers)),
                                                      indent=1))
        except OSError as e:  # a read-only table still gets its report printed
            print(f"scaling: could not write {targets[0]}: {e}", file=sys.stderr)
    if plot_dir is not None:
        from scaling import plot, question_plots

        written = plot.plot_all(rep, plot_dir) + question_plots.plot_all(answers, plot_dir)
        print("\nplots: " + ", ".join(str(p) for p in written), flush=True)
    return rep


def demo(budget: str = "small", out_dir="scaling_demo", *, forecast_budget: float | None = None,
         verify_forecast: bool = False) -> Report | None:
    """`scaling demo`: plan and run the demo sweep on CPU, then fit, forecast and plot; with
    `verify_forecast`, then train the forecast's budget and check the forecast (`verify`).

    Every number printed comes from the runs just trained (rerunning reuses finished runs).
    Returns the report, or None when the sweep was preempted (rerun to continue).
    """
    from scaling.sweep import DEMO_BUDGETS, demo_config
    from scaling.sweep.run import run_sweep

    cfg = demo_config(budget)
    t0 = time.perf_counter()
    out_dir = paths.join(out_dir, budget)
    res = run_sweep(cfg, out_dir)
    if res.preempted:
        return None
    print(f"\ntrained {len(res.trained)} runs ({len(res.skipped)} already done) in {time.perf_counter() - t0:.0f} s; "
          "fitting...\n", flush=True)
    rep = summarize(out_dir, budget=forecast_budget, n_bootstrap=DEMO_BUDGETS[budget][5],
                    plot_dir=paths.join(out_dir, "plots"))
    mins = best_loss_by_budget(rep)
    if mins:
        print("\nbest loss per budget: " + ", ".join(f"C={c:.3g}: {l:.4f}" for c, l in mins), flush=True)
    print(f"demo ({budget}) wall time: {time.perf_counter() - t0:.0f} s", flush=True)
    if verify_forecast:
        t1 = time.perf_counter()
        if verify(out_dir, budget=rep.budget, n_bootstrap=DEMO_BUDGETS[budget][5]) is None:
            return None
        print(f"verification wall time: {time.perf_counter() - t1:.0f} s", flush=True)
    return rep


def best_loss_by_budget(rep: Report) -> list[tuple[float, float]]:
    """(budget, lowest loss of its sizes), by budget; repeated seeds of a size averaged first."""
    by_size: dict[tuple[float, float], list[float]] = {}
    for r in rep.main_rows:
        by_size.setdefault((r["budget"], r["N"]), []).append(r[rep.metric])
    best: dict[float, float] = {}
    for (budget, _), losses in by_size.items():
        best[budget] = min(best.get(budget, math.inf), sum(losses) / len(losses))
    return sorted(best.items())


def verify(sweep_dir, *, budget: float | None = None, n_bootstrap: int = 1000, metric: str = "val_loss") -> dict | None:
    """`scaling verify`: train, with the sweep's own recipe, the forecast's compute-optimal
    model and its neighbours (one size step each side) at `budget` (default: the budget of
    the sweep's report.json forecast, else 10x the largest budget run), then compare the
    forecast with what they measured (`scaling.verification`): printed, and stored in
    report.json under "verification". The runs live in SWEEP_DIR/verify/C<budget>/ and resume
    like any sweep. On a TPU VM, verify at a few times the largest budget before a big run.
    Returns the verification, or None when preempted (rerun to continue).
    """
    from scaling.sweep.plan import neighbours, plan_run
    from scaling.sweep.run import read_sweep, run_sweep

    sweep = read_sweep(sweep_dir)
    stored = _read_json(paths.join(sweep_dir, REPORT_JSON))
    if budget is None and stored and stored.get("forecast"):
        budget = stored["forecast"]["budget"]
    rows = results_lib.read_rows(sweep_dir)
    if not rows:
        raise ValueError(f"sweep_dir={str(sweep_dir)!r}: no results to forecast from")
    rep = fit_results(questions.fewest_repeats(questions.single_loops(rows)), budget=budget, n_bootstrap=n_bootstrap,
                      metric=metric)
    forecast = report.forecast_summary(rep)
    if forecast is None:
        raise ValueError(f"sweep_dir={str(sweep_dir)!r}: no law could be fitted ({'; '.join(rep.notes)})")
    runs = [plan_run(sweep, forecast["budget"], cfg) for cfg in neighbours(sweep, forecast["N_opt"])]
    short = [r.run_id for r in runs if r.steps < sweep.min_steps]
    if short:
        raise ValueError(f"budget={forecast['budget']:.3g}: runs {short} would have fewer than min_steps="
                         f"{sweep.min_steps} steps; verify at a larger budget")
    print(f"verify: forecast at C = {forecast['budget']:.3g}: loss {forecast['loss']:.4f}, N_opt "
          f"{forecast['N_opt']:.4g}; training {len(runs)} sizes around it", flush=True)
    out = paths.join(sweep_dir, "verify", f"C{forecast['budget']:.3g}")
    res = run_sweep(sweep, out, runs=runs)
    if res.preempted:
        return None
    v = verification.verification(forecast, results_lib.read_rows(out), metric)
    v["forecast"] = forecast
    print("\n" + verification.format_verification(v), flush=True)
    doc = stored or report.to_json(rep)
    doc["verification"] = v
    paths.write_atomic(paths.join(sweep_dir, REPORT_JSON), json.dumps(doc, indent=1))
    return v


def _read_json(path) -> dict | None:
    p = paths.path(path)
    return json.loads(p.read_text()) if p.exists() else None
