"""Benchmark: scaling.fit.forecast on the two public forecasting tasks, every form side by side.

1. Gadre et al. 2024 ("Language models scale reliably with over-training and on downstream
   tasks"): fit the four small open_lm families (d=96, 512, 576, 1024: 10.6M-412M parameters,
   every tokens-per-parameter multiplier) trained on each of C4, RedPajama and RefinedWeb, and
   forecast ``loss_c4_val`` of open_lm_1b (1.44B) and open_lm_7b (6.9B): 9 targets.
2. OLMo model ladder (Bhagia et al. 2024): fit the final C4 validation loss of the 190M, 370M,
   760M and 1B (1.28B) ladder runs at 1, 2, 5 and 10 x Chinchilla tokens (16 runs), forecast the
   C4 loss of OLMo-2 7B (end of ``peteish7_eval_anneal``) and 13B (end of ``peteish13_eval_final``).

Per target it prints plain approach 3 (the ``chinchilla`` form's full-data fit: Hoffmann et al.
2022's law and summed Huber objective), every candidate form, the chosen forecast with its
interval, and the published loss; then mean errors and interval coverage.

Data (read, never copied into this repository):

* ``--gadre CSV``: ``overtrain_downstreams_colpret.csv``, the 104 runs of Gadre et al. as one
  table, from IBM's ColPret collection (https://github.com/IBM/ColPret, MIT licence); the runs
  themselves are mlfoundations/scaling (https://github.com/mlfoundations/scaling, commit a003c49).
* ``--olmo DIR``: ``ladder-runs/`` of allenai/OLMo-ladder (https://github.com/allenai/OLMo-ladder,
  commit 67a3f44, Apache-2.0): one W&B export per run.

Defaults: under ``$SCALING_REFERENCE_DIR`` (or ``../shared/reference`` beside the repository),
``gadre2024/overtrain_downstreams_colpret.csv`` and ``olmo_ladder/ladder-runs``.

    python bench/forecast_public.py [--level 0.9] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scaling import fit  # noqa: E402

REFERENCE_DIR = Path(os.environ.get("SCALING_REFERENCE_DIR", REPO / ".." / "shared" / "reference"))
GADRE_CSV = REFERENCE_DIR / "gadre2024" / "overtrain_downstreams_colpret.csv"
OLMO_DIR = REFERENCE_DIR / "olmo_ladder" / "ladder-runs"
GADRE_SETS = {"c4_original": "C4", "rpj": "RedPajama", "rw_original": "RefinedWeb"}
# Parameter counts of the OLMo ladder (allenai/OLMo-ladder, src/scaling/utils.py).
OLMO_PARAMS = {"190M": 190_354_176, "370M": 371_262_464, "760M": 758_220_288, "1B": 1_279_395_840,
               "7B": 6_887_575_552, "13B": 13_202_396_160}
OLMO_LOSS = "eval/c4_en-validation/CrossEntropyLoss"


def gadre_task(path: Path, dataset: str):
    """(N, D, L) of the four small families and [(name, N, D, L)] of the open_lm targets."""
    rows = [r for r in csv.DictReader(open(path)) if r["dataset_name"] == dataset]
    fitted = [r for r in rows if not r["model_name"].startswith("open_lm")]
    targets = [(f"{r['model_name']} M={float(r['tok_mult']):g}", float(r["N"]), float(r["D"]), float(r["loss_c4_val"]))
               for r in rows if r["model_name"].startswith("open_lm")]
    column = lambda key: np.array([float(r[key]) for r in fitted])
    return (column("N"), column("D"), column("loss_c4_val")), sorted(targets)


def _olmo_points(path: Path) -> list[tuple[float, float]]:
    """(tokens, C4 loss) of every row of a W&B export that has the C4 loss."""
    out = []
    for r in csv.DictReader(open(path)):
        if not r.get(OLMO_LOSS):
            continue
        tokens = r.get("throughput/total_tokens") or float(r["_step"]) * float(r["batch_size_in_tokens"])
        out.append((float(tokens), float(r[OLMO_LOSS])))
    return out


def olmo_task(directory: Path):
    N, D, L = [], [], []
    for size in ("190M", "370M", "760M", "1B"):
        for multiple in ("1xC", "2xC", "5xC", "10xC"):
            tokens, loss = _olmo_points(directory / f"{size}-{multiple}.csv")[-1]
            N.append(OLMO_PARAMS[size])
            D.append(tokens)
            L.append(loss)
    targets = []
    for name, file in (("OLMo-2 7B", "peteish7_eval_anneal.csv"), ("OLMo-2 13B", "peteish13_eval_final.csv")):
        tokens, loss = _olmo_points(directory / file)[-1]
        targets.append((name, OLMO_PARAMS[name.split()[-1]], tokens, loss))
    return (np.array(N), np.array(D), np.array(L)), targets


def evaluate(task: str, data, targets, level: float) -> list[dict]:
    """Forecast every target of one task; one record per target."""
    N, D, L = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        f = fit.forecast(N, D, L, level=level)
        seconds = time.perf_counter() - start
    for w in caught:
        if issubclass(w.category, fit.ScalingFitWarning):
            print(f"  warning: {w.message}")
    print(f"\n{task}: {len(N)} runs, chose {f.chosen.name} ({seconds:.2f} s)")
    print("\n".join("  " + line for line in str(f.candidates).splitlines()))
    records = []
    for name, n, d, actual in targets:
        p = f.predict(n, d)
        forms = {c.name: float(np.asarray(c.law.predict(n, d))) for c in f.candidates
                 if not isinstance(c.law, fit.FrontierLaw)}
        low, high = p.interval
        record = dict(task=task, target=name, N=n, D=d, actual=actual, chosen=p.form, forecast=float(p.loss),
                      low=float(low), high=float(high), distance=float(p.distance), forms=forms,
                      approach3=forms.get("chinchilla", float("nan")))
        records.append(record)
        rel = lambda v: f"{100 * (v / actual - 1):+6.2f}%"
        others = "  ".join(f"{k} {rel(v)}" for k, v in forms.items())
        print(f"  {name:<22} published {actual:.4f} | approach 3 {rel(record['approach3'])} | {others}")
        print(f"  {'':<22} forecast ({p.form}) {p.loss:.4f} {rel(p.loss)}, {100 * level:g}% interval "
              f"[{low:.4f}, {high:.4f}] {'holds' if low <= actual <= high else 'MISSES'} the published loss "
              f"(distance {p.distance:.2f} decades)")
    return records


def summarise(records: list[dict], level: float) -> None:
    mean = lambda rs, key: 100 * np.mean([abs(r[key] / r["actual"] - 1) for r in rs])
    print("\nSummary (mean |relative error| over targets)")
    groups = {"Gadre et al. 2024 (9 targets)": [r for r in records if r["task"].startswith("Gadre")],
              "OLMo-2 7B and 13B": [r for r in records if r["task"].startswith("OLMo")]}
    for title, rs in groups.items():
        if not rs:
            continue
        forms = sorted({k for r in rs for k in r["forms"]})
        per_form = "  ".join(f"{k} {100 * np.mean([abs(r['forms'][k] / r['actual'] - 1) for r in rs]):.2f}%"
                             for k in forms)
        covered = sum(r["low"] <= r["actual"] <= r["high"] for r in rs)
        width = 100 * np.mean([(r["high"] - r["low"]) / r["forecast"] for r in rs])
        print(f"  {title}: approach 3 {mean(rs, 'approach3'):.2f}%, chosen forecast {mean(rs, 'forecast'):.2f}% | "
              f"{per_form}")
        print(f"    {100 * level:g}% intervals hold {covered}/{len(rs)} published losses (mean width {width:.2f}%)")
    covered = sum(r["low"] <= r["actual"] <= r["high"] for r in records)
    print(f"  all {len(records)} targets: {100 * level:g}% intervals hold {covered}/{len(records)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gadre", type=Path, default=GADRE_CSV, help="overtrain_downstreams_colpret.csv")
    parser.add_argument("--olmo", type=Path, default=OLMO_DIR, help="OLMo-ladder ladder-runs/ directory")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--json", type=Path, help="write every record here")
    args = parser.parse_args(argv)
    records = []
    if args.gadre.exists():
        for dataset, title in GADRE_SETS.items():
            data, targets = gadre_task(args.gadre, dataset)
            records += evaluate(f"Gadre et al. 2024, trained on {title}", data, targets, args.level)
    else:
        print(f"Gadre et al. data absent ({args.gadre}): skipped")
    if args.olmo.exists():
        data, targets = olmo_task(args.olmo)
        records += evaluate("OLMo ladder -> OLMo-2", data, targets, args.level)
    else:
        print(f"OLMo ladder data absent ({args.olmo}): skipped")
    if records:
        summarise(records, args.level)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return records


if __name__ == "__main__":
    main()
