"""Small helpers shared by the fitters: float64-on-CPU scope, grids, 1-D minimisation, formatting."""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import jax
import numpy as np


@contextlib.contextmanager
def float64():
    """A scope in which JAX computes in float64 ON THE CPU, leaving the caller's settings alone.

    * float64 without touching the global ``jax_enable_x64`` flag (``jax.enable_x64`` is a
      context manager in jax >= 0.8; older versions have it in ``jax.experimental``);
    * on the host CPU even where the default device is a TPU or GPU (:func:`on_cpu`): TPUs
      emulate float64 slowly or not at all, and a fit of a few hundred points gains nothing
      from an accelerator but a transfer and a second compilation.
    """
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # pragma: no cover - older jax
        from jax.experimental import enable_x64 as enable
    with enable(True), on_cpu():
        yield


def on_cpu():
    """``jax.default_device`` set to the first CPU device for the scope (arrays created and
    computations run inside it stay on the host)."""
    return jax.default_device(jax.devices("cpu")[0])


def minimise_log_scalar(function: Callable[[np.ndarray], np.ndarray], center: float,
                        half_width_decades: float = 6.0, grid_points: int = 1201,
                        refine_steps: int = 80) -> float:
    """Minimise a vectorised ``function(x)`` of ``x > 0`` over ``log x``: dense grid within
    ``center * 10**(+-half_width_decades)``, then golden-section refinement around the best cell."""
    log_center = math.log(center)
    span = half_width_decades * math.log(10.0)
    grid = np.linspace(log_center - span, log_center + span, grid_points)
    values = np.asarray(function(np.exp(grid)), dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.inf)
    best = int(np.argmin(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid_points - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    f = lambda u: float(np.asarray(function(np.exp(np.array([u]))))[0])
    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(refine_steps):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - ratio * (hi - lo)
            f1 = f(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + ratio * (hi - lo)
            f2 = f(x2)
    return math.exp(0.5 * (lo + hi))


def call_vectorised(function: Callable, values: np.ndarray) -> np.ndarray:
    """``function(values)`` if it accepts arrays, else element by element."""
    try:
        out = np.asarray(function(values), dtype=np.float64)
        if out.shape == values.shape:
            return out
    except Exception:  # noqa: BLE001 - a scalar-only callable
        pass
    return np.array([float(function(float(v))) for v in values.ravel()]).reshape(values.shape)


def format_table(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows) if rows else 0
    return "\n".join([title] + [f"  {name.ljust(width)}  {value}" for name, value in rows])


def scalar_or_array(values):
    """Return a Python float for 0-d input, else a numpy array."""
    array = np.asarray(values, dtype=np.float64)
    return float(array) if array.ndim == 0 else array

