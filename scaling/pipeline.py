"""The stages chained: sweep -> results table -> report -> figures. The only module that does.

    rep = summarize("out/sweep", plot_dir="out/sweep/plots")   # fit, print, report.txt, plots
    rep = demo("small")                                         # the demo sweep, then summarize

Everything below this module does one stage: `scaling.sweep` trains and appends rows,
`scaling.results` reads the table, `scaling.report` fits and formats, `scaling.plot` draws
a report. The command line calls these functions and nothing else.
"""

from __future__ import annotations

import math
import sys
import time

from scaling import paths
from scaling import results as results_lib
from scaling.report import Report, fit_results, format_report

REPORT_FILE = "report.txt"


def summarize(path, *, budget: float | None = None, n_bootstrap: int = 1000, seed: int = 0,
              metric: str = "val_loss", plot_dir=None, write: bool = True) -> Report:
    """Read a sweep's table (a directory or a results.jsonl, local or gs://), fit, print the
    report (also saved as report.txt beside the table when `write`), and draw the figures
    into `plot_dir` when given."""
    rows = results_lib.read_rows(path)
    if not rows:
        raise ValueError(f"results={str(path)!r}: no rows (is it a sweep directory or a results.jsonl?)")
    rep = fit_results(rows, budget=budget, n_bootstrap=n_bootstrap, seed=seed, metric=metric)
    text = format_report(rep)
    print(text, flush=True)
    if write:
        target = results_lib.results_path(path).parent / REPORT_FILE
        try:
            paths.write_atomic(target, text + "\n")
        except OSError as e:  # a read-only table still gets its report printed
            print(f"scaling: could not write {target}: {e}", file=sys.stderr)
    if plot_dir is not None:
        from scaling import plot

        written = plot.plot_all(rep, plot_dir)
        print("\nplots: " + ", ".join(str(p) for p in written), flush=True)
    return rep


def demo(budget: str = "small", out_dir="scaling_demo", *, forecast_budget: float | None = None) -> Report | None:
    """`scaling demo`: plan and run the demo sweep on CPU, then fit, forecast and plot.

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
    return rep


def best_loss_by_budget(rep: Report) -> list[tuple[float, float]]:
    """(budget, lowest loss of its runs), by budget."""
    best: dict[float, float] = {}
    for r in rep.main_rows:
        best[r["budget"]] = min(best.get(r["budget"], math.inf), r[rep.metric])
    return sorted(best.items())
