"""Benchmark: scaling.fit.chinchilla against the Epoch replication's method, side by side.

Reference method (Besiroglu et al. 2024): scipy L-BFGS-B from each of Hoffmann et al.'s 4,500
grid starts on the summed Huber objective (delta = 1e-3), best objective wins.  Both run on the
reference data: Hoffmann et al. 2022 Fig. 4 as digitised by Epoch AI (5 highest losses dropped,
D = C / 6N). Download `data/svg_extracted_data.csv` from github.com/epoch-research/analyzing-chinchilla
(it carries no licence: keep it outside this repository) and pass its path with --data (default:
$SCALING_REFERENCE_DIR/chinchilla_fig4_epoch.csv, else ../shared/reference/ beside the checkout).

    python bench/fit_vs_scipy.py --data PATH            # full: all 4,500 scipy starts (minutes)
    python bench/fit_vs_scipy.py --data PATH --quick    # scipy on a random subset, time extrapolated per start

Also times a 1,000-replicate bootstrap of the Chinchilla fit.  Timings on a shared machine are
noisy: everything is measured in this one run.  Requires scipy and pandas (bench extras).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("SCALING_REFERENCE_DIR", REPO / ".." / "shared" / "reference"))
CSV = REFERENCE_DIR / "chinchilla_fig4_epoch.csv"


def load(path=CSV):
    import pandas as pd

    if not Path(path).is_file():
        raise SystemExit(f"--data {path}: no such file (see this script's docstring for where to download it)")
    table = pd.read_csv(path)
    table = table[table["loss"] < table["loss"].nlargest(5).min()]
    N = table["Model Size"].to_numpy()
    C = table["Training FLOP"].to_numpy()
    return N, C / (6 * N), table["loss"].to_numpy()


def scipy_grid_fit(N, D, L, starts):
    from scipy.optimize import minimize
    from scipy.special import huber, logsumexp

    log_N, log_D, log_L = np.log(N), np.log(D), np.log(L)

    def objective(theta):
        a, b, e, alpha, beta = theta
        log_hat = logsumexp([a - alpha * log_N, b - beta * log_D, np.full_like(log_N, e)], axis=0)
        return np.sum(huber(1e-3, log_hat - log_L))

    best = None
    for start in starts:
        result = minimize(objective, start, method="L-BFGS-B")
        if best is None or result.fun < best.fun:
            best = result
    return best


FIRST_CALL = """
import time; t0 = time.perf_counter()
import numpy as np, pandas as pd
import scaling.fit as fit
t_import = time.perf_counter() - t0
table = pd.read_csv({csv!r}); table = table[table['loss'] < table['loss'].nlargest(5).min()]
N = table['Model Size'].to_numpy(); D = table['Training FLOP'].to_numpy() / (6 * N)
law = fit.chinchilla(N, D, table['loss'].to_numpy())
print(t_import, time.perf_counter() - t0, law.objective)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(CSV), help="the Chinchilla Fig. 4 points (Epoch AI's CSV)")
    parser.add_argument("--quick", action="store_true", help="scipy on --quick-starts random grid starts only")
    parser.add_argument("--quick-starts", type=int, default=300)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import jax

    import scaling.fit as fit

    N, D, L = load(args.data)
    grid = fit.hoffmann_grid()

    # 1. fit.chinchilla, first call in a fresh process (interpreter start, import, compile included)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", FIRST_CALL.format(csv=str(CSV))], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    first_call_wall = time.perf_counter() - t0
    import_s = float(out[0])

    # 2. fit.chinchilla, later calls (this process: compile once, then time)
    law = fit.chinchilla(N, D, L)
    warm = []
    for _ in range(7):
        t0 = time.perf_counter()
        law = fit.chinchilla(N, D, L)
        warm.append(time.perf_counter() - t0)
    warm_s = statistics.median(warm)

    # 3. bootstrap, 1,000 replicates (first call compiles the batched replicate fit)
    t0 = time.perf_counter()
    boot = fit.bootstrap(fit.chinchilla, N, D, L, n=args.bootstrap, seed=0, at_C=1e24)
    boot_first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    boot = fit.bootstrap(fit.chinchilla, N, D, L, n=args.bootstrap, seed=1, at_C=1e24)
    boot_warm_s = time.perf_counter() - t0

    # 4. scipy L-BFGS-B over the grid
    if args.quick:
        rng = np.random.default_rng(0)
        starts = grid[rng.choice(len(grid), args.quick_starts, replace=False)]
    else:
        starts = grid
    t0 = time.perf_counter()
    best = scipy_grid_fit(N, D, L, starts)
    scipy_measured_s = time.perf_counter() - t0
    scipy_s = scipy_measured_s * len(grid) / len(starts)

    print(f"machine: {os.cpu_count()} CPU cores, jax {jax.__version__} ({jax.default_backend()}), {len(N)} points")
    if args.quick:
        print(f"NOTE --quick: scipy ran {len(starts)} of {len(grid)} starts in {scipy_measured_s:.1f} s; its 4,500-start "
              f"time is EXTRAPOLATED per start ({scipy_measured_s / len(starts) * 1e3:.1f} ms/start), and its best "
              f"objective is over the subset only.")
    print()
    print(f"{'method':<48}{'time [s]':>10}{'objective':>22}")
    print(f"{'scipy L-BFGS-B x ' + str(len(grid)) + ' grid starts' + (' (extrapolated)' if args.quick else ''):<48}"
          f"{scipy_s:>10.2f}{best.fun:>22.15e}")
    print(f"{'fit.chinchilla, fresh process (python+import+jit)':<48}{first_call_wall:>10.2f}{float(out[2]):>22.15e}")
    print(f"{'  of which import scaling.fit':<48}{import_s:>10.2f}")
    print(f"{'fit.chinchilla, later call (median of 7)':<48}{warm_s:>10.3f}{law.objective:>22.15e}")
    print(f"{'bootstrap x' + str(args.bootstrap) + ', first call':<48}{boot_first_s:>10.2f}")
    print(f"{'bootstrap x' + str(args.bootstrap) + ', later call':<48}{boot_warm_s:>10.2f}")
    print()
    print(f"speed-up, first call in a fresh process: {scipy_s / first_call_wall:8.1f}x  (target >= 50x)")
    print(f"speed-up, later calls:                   {scipy_s / warm_s:8.1f}x  (target >= 500x)")
    print(f"objective fit - scipy: {law.objective - best.fun:+.3e} (<= 0 means no worse)")
    print(f"bootstrap x{args.bootstrap}: {boot_first_s:.1f} s first call (target < 60 s), "
          f"{100 * boot.converged_fraction:.1f}% replicates converged")
    print()
    print(law.summary())
    print(boot.summary())


if __name__ == "__main__":
    main()
