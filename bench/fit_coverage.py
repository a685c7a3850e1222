"""Coverage study: how often do bootstrap 95% intervals of scaling.fit contain the truth?

Synthetic noisy Chinchilla laws (Hoffmann et al. 2022 printed values as the truth, runs at
random (N, D) over three decades each, multiplicative log-normal noise), each fitted by
fit.chinchilla and bootstrapped; we count how often the true E, alpha, beta, a fall inside the
percentile intervals.  Reported either way: percentile bootstrap intervals of a robust
(Huber) fit are not guaranteed to have nominal coverage.

    python bench/fit_coverage.py [--datasets 20] [--replicates 200] [--points 60] [--noise 0.01]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scaling.fit as fit  # noqa: E402

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--noise", type=float, default=0.01)
    args = parser.parse_args()
    law = fit.ChinchillaLaw(**TRUE)
    truth = dict(TRUE, a=law.a)
    names = ["E", "alpha", "beta", "a"]
    hits = {name: 0 for name in names}
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for dataset in range(args.datasets):
        N = 10 ** rng.uniform(7, 10, args.points)
        D = 10 ** rng.uniform(9, 12, args.points)
        L = law.predict(N, D) * np.exp(args.noise * rng.standard_normal(args.points))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fit.ScalingFitWarning)
            result = fit.bootstrap(fit.chinchilla, N, D, L, n=args.replicates, seed=dataset)
        for name in names:
            low, high = result.interval(name, 0.95)
            hits[name] += low <= truth[name] <= high
    elapsed = time.perf_counter() - t0
    print(f"{args.datasets} datasets x {args.replicates} replicates, {args.points} points, "
          f"noise {args.noise:g} (log-normal sigma), {elapsed:.1f} s")
    print(f"{'parameter':<10}{'coverage of 95% interval':>26}")
    for name in names:
        print(f"{name:<10}{hits[name] / args.datasets:>26.2f}")


if __name__ == "__main__":
    main()
