"""Benchmark: are fit.forecast's intervals honest, and how fast is it? (synthetic laws, no data needed)

Coverage: noisy runs drawn from known laws, forecast far beyond them, and count how often the
``level`` interval holds a new run's loss at the target (the truth plus one draw of the same
noise).  Two designs, as users have them:

* ladder (point mode): 4 model sizes over 1.6 decades x 8 tokens-per-parameter ratios (5-640),
  as Gadre et al. 2024; targets 3.5x and 17x the largest size, at 20 and 320 tokens per
  parameter;
* IsoFLOP sweep (budget mode, ``C=``): 6 budgets over 2.5 decades, 5 sizes each over 16x
  around the optimum; target: the compute-optimal loss at 10x and 30x the largest budget;
* small sweeps, as the demo's: 5 budgets over 1.1 decades x 5 sizes over 9x ("small") and 3
  budgets over 1 decade x 4 sizes ("tiny": one rolling-origin fold); target: the optimum at
  10x and 30x the largest budget.

Truths: Hoffmann et al. 2022's printed law, Epoch's refit (Besiroglu et al. 2024), a tied law,
a Farseer-style drifting data exponent, and one law OUTSIDE the candidate forms (the model-size
exponent drifts with N).  Noise: log-normal, 0.3%, 1% and 2% per run (the demo's runs differ
by 1-2% between seeds).

Speed: ``fit.forecast`` on 250 runs, first call in a fresh process (compilation included), both
modes, wall and CPU seconds.

    python bench/forecast_coverage.py [--seeds 6] [--level 0.9] [--skip-speed] [--designs ladder,sweep]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scaling import fit  # noqa: E402
from scaling.fit.forms import optimal_allocation  # noqa: E402


class DriftingSizeExponent:
    """Not a candidate form: ``L = E + A/N^alpha(N) + B/D^beta``, alpha(N) = alpha + g ln(N/1e8)."""

    params = {}

    def __init__(self, E=1.8, A=400.0, B=900.0, alpha=0.33, beta=0.3, g=0.008):
        self.E, self.A, self.B, self.alpha, self.beta, self.g = E, A, B, alpha, beta, g

    def predict(self, N, D):
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.E + self.A * N ** -(self.alpha + self.g * np.log(N / 1e8)) + self.B * D ** -self.beta


TRUTHS = {
    "Hoffmann 2022": fit.ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    "Epoch 2024": fit.ChinchillaLaw(E=1.817, A=482.0, B=2085.0, alpha=0.348, beta=0.366),
    "tied": fit.ChinchillaLaw(E=1.8, A=300.0, B=900.0, alpha=0.31, beta=0.31),
    "Farseer-like": fit.FarseerLaw(E=1.8, A=400.0, B=900.0, alpha=0.33, gamma=-0.01, N0=1e8),
    "outside the forms": DriftingSizeExponent(),
}


def ladder_case(law, rng, noise, level):
    N = np.repeat([1e7, 4e7, 1.5e8, 4e8], 8)
    D = N * np.tile([5, 10, 20, 40, 80, 160, 320, 640], 4)
    L = np.asarray(law.predict(N, D)) * np.exp(noise * rng.standard_normal(len(N)))
    Nt = np.array([1.4e9, 1.4e9, 7e9, 7e9])
    Dt = Nt * np.array([20, 320, 20, 320])
    truth = np.asarray(law.predict(Nt, Dt)) * np.exp(noise * rng.standard_normal(len(Nt)))
    f = fit.forecast(N, D, L, level=level)
    p = f.predict(Nt, Dt)
    plain = next(c for c in f.candidates if c.name == "chinchilla").law.predict(Nt, Dt)
    return f, p.loss, p.interval, truth, np.asarray(plain)


def sweep_case(law, rng, noise, level, n_budgets=6, n_sizes=5, decades=2.5, spread=4.0):
    budgets = 1e17 * 10.0 ** np.linspace(0.0, decades, n_budgets)
    N_opt = optimal_allocation(law, budgets)[0]
    C = np.repeat(budgets, n_sizes)
    N = np.repeat(N_opt, n_sizes) * np.tile(spread ** np.linspace(-1, 1, n_sizes), n_budgets) * \
        np.exp(0.1 * rng.standard_normal(len(C)))
    D = C / (6 * N)
    L = np.asarray(law.predict(N, D)) * np.exp(noise * rng.standard_normal(len(N)))
    targets = budgets[-1] * np.array([10.0, 30.0])
    N_true, _, L_true = optimal_allocation(law, targets)
    truth = L_true * np.exp(noise * rng.standard_normal(2))
    f = fit.forecast(N, D, L, C=C, level=level)
    o = f.optimal(targets)
    plain = optimal_allocation(next(c for c in f.candidates if c.name == "chinchilla").law, targets)[2]
    forms = {c.name: np.asarray(optimal_allocation(c.law, targets)[2]) for c in f.candidates}
    N_hits = (o.N_interval[0] <= N_true) & (N_true <= o.N_interval[1])
    return f, o.loss, o.loss_interval, truth, plain, forms, N_hits, o.N / N_true, np.log10(o.N_interval[1] / o.N_interval[0])


DESIGNS = {
    "ladder": ladder_case,
    "sweep": sweep_case,
    "small sweep": lambda law, rng, noise, level: sweep_case(law, rng, noise, level, 5, 5, 1.1, 3.0),
    "tiny sweep": lambda law, rng, noise, level: sweep_case(law, rng, noise, level, 3, 4, 1.0, 3.0),
}
NOISES = (0.003, 0.01, 0.02)


def coverage(seeds: int, level: float, designs=tuple(DESIGNS)) -> None:
    rng = np.random.default_rng(0)
    for design in designs:
        rows, forms_err, N_rows = [], {}, []
        for name, law in TRUTHS.items():
            for noise in NOISES:
                for _ in range(seeds):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", fit.ScalingFitWarning)
                        out = DESIGNS[design](law, rng, noise, level)
                    f, loss, (low, high), truth, plain = out[:5]
                    for k in range(len(truth)):
                        rows.append((name, noise, f.chosen.name, loss[k] / truth[k] - 1, plain[k] / truth[k] - 1,
                                     low[k] <= truth[k] <= high[k], (high[k] - low[k]) / loss[k]))
                    if design != "ladder":
                        for form, values in out[5].items():
                            forms_err.setdefault(form, []).extend(np.abs(values / truth - 1))
                        N_rows.extend(zip(out[6], out[7], out[8]))
        print(f"\n{design}: {len(rows)} forecasts ({seeds} seeds x {len(NOISES)} noise levels x truths), "
              f"{100 * level:g}% intervals (width: mean, median; NaN forecasts count as misses)")
        print(f"  {'truth':<18} {'noise':>6} {'chosen err':>11} {'approach 3':>11} {'coverage':>9} {'width':>14}")
        mean = lambda a: np.nanmean(np.abs(a))
        for name in TRUTHS:
            for noise in NOISES:
                sel = [r for r in rows if r[0] == name and r[1] == noise]
                if sel:
                    err, plain, cov, width = (np.array([r[i] for r in sel]) for i in (3, 4, 5, 6))
                    print(f"  {name:<18} {100 * noise:>5.1f}% {100 * mean(err):>10.2f}% "
                          f"{100 * mean(plain):>10.2f}% {np.mean(cov):>9.2f} {100 * np.nanmean(width):>6.1f}% "
                          f"{100 * np.nanmedian(width):>5.1f}%")
        for noise in NOISES:
            sel = [r for r in rows if r[1] == noise]
            err, plain, cov, width = (np.array([r[i] for r in sel]) for i in (3, 4, 5, 6))
            print(f"  {'all truths':<18} {100 * noise:>5.1f}% {100 * mean(err):>10.2f}% {100 * mean(plain):>10.2f}% "
                  f"{np.mean(cov):>9.2f} {100 * np.nanmean(width):>6.1f}% {100 * np.nanmedian(width):>5.1f}%")
        err, plain, cov, width = (np.array([r[i] for r in rows]) for i in (3, 4, 5, 6))
        print(f"  {'all':<18} {'':>6} {100 * mean(err):>10.2f}% {100 * mean(plain):>10.2f}% "
              f"{np.mean(cov):>9.2f} {100 * np.nanmean(width):>6.1f}% {100 * np.nanmedian(width):>5.1f}%")
        chosen = {}
        for r in rows:
            chosen[r[2]] = chosen.get(r[2], 0) + 1
        print("  chosen: " + ", ".join(f"{k} {v}" for k, v in sorted(chosen.items(), key=lambda kv: -kv[1])))
        if N_rows:
            hits, ratio, width = np.array(N_rows).T
            print(f"  N_opt: {100 * level:g}% intervals hold the true N_opt {np.mean(hits):.2f} of the time, median "
                  f"width {np.nanmedian(width):.2f} decades; median |log10 N_opt error| "
                  f"{np.nanmedian(np.abs(np.log10(ratio))):.3f} decades")
        if forms_err:
            print("  every form's mean |error| at the targets: " +
                  ", ".join(f"{k} {100 * np.nanmean(v):.2f}%" for k, v in forms_err.items()))


SPEED = """
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
from scaling import fit
t1, c1 = time.perf_counter(), time.process_time()
rng = np.random.default_rng(0)
law = fit.ChinchillaLaw(E=1.817, A=482.0, B=2085.0, alpha=0.348, beta=0.366)
if sys.argv[1] == "sweep":
    C = np.repeat(1e17 * 10 ** (0.25 * np.arange(10)), 25)
    N = np.asarray(law.compute_optimal(C)[0]) * 10 ** rng.uniform(-1, 1, 250)
    D, kw = C / (6 * N), dict(C=C)
else:
    N, D, kw = 10 ** rng.uniform(7, 10, 250), 10 ** rng.uniform(9, 12, 250), {}
L = law.predict(N, D) * np.exp(0.01 * rng.standard_normal(250))
f = fit.forecast(N, D, L, **kw); f.optimal(1e22)
t2, c2 = time.perf_counter(), time.process_time()
f = fit.forecast(N, D, L * 1.001, **kw); f.optimal(1e22)
t3, c3 = time.perf_counter(), time.process_time()
print(f"{t1 - t0:.2f} {c1 - c0:.2f} {t2 - t1:.2f} {c2 - c1:.2f} {t3 - t2:.2f} {c3 - c2:.2f} {f.chosen.name} {len(f.folds)}")
"""


def speed(repeats: int = 3) -> None:
    print("\nfit.forecast on 250 runs, fresh process each (seconds; median of", repeats, "processes)")
    for mode in ("ladder", "sweep"):
        runs = []
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", SPEED, mode], capture_output=True, text=True, cwd=REPO,
                                 env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=600)
            runs.append(out.stdout.split())
        cols = np.array([[float(v) for v in r[:6]] for r in runs])
        med = np.median(cols, axis=0)
        print(f"  {mode:<7} import {med[0]:.2f} wall / {med[1]:.2f} cpu | first call {med[2]:.2f} wall / "
              f"{med[3]:.2f} cpu | later call {med[4]:.2f} wall / {med[5]:.2f} cpu | chose {runs[-1][6]}, "
              f"{runs[-1][7]} folds")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--designs", default=",".join(DESIGNS), help=f"comma-separated, of: {', '.join(DESIGNS)}")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    coverage(args.seeds, args.level, tuple(args.designs.split(",")))
    print(f"(coverage study: {time.perf_counter() - start:.0f} s)")
    if not args.skip_speed:
        speed()


if __name__ == "__main__":
    main()
