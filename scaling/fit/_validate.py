"""Input validation shared by every fitter.

Every public fitter accepts lists, numpy arrays, jax arrays or pandas Series and
turns them into 1-D float64 numpy arrays here, so that a bad table of runs fails
loudly with a ``ValueError`` that names the offending argument, before any
optimisation starts.  The caller's arrays are never modified (a float32 jax
array stays float32: we copy into numpy).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "ScalingFitWarning",
    "IdentifiabilityWarning",
    "ExtrapolationWarning",
    "as_positive_1d",
    "check_same_length",
    "check_enough_points",
    "check_spans_decade",
    "warn",
]


class ScalingFitWarning(UserWarning):
    """Base class of the warnings ``scaling.fit`` emits about what the data support."""


class IdentifiabilityWarning(ScalingFitWarning):
    """Two exponents (usually alpha and beta) cannot be told apart by the data."""


class ExtrapolationWarning(ScalingFitWarning):
    """A per-budget minimum sits at the edge of the sampled sizes, or a curve is flat /
    opens downward, so the fitted optimum is an extrapolation."""


def warn(message: str, category: type[Warning] = ScalingFitWarning, stacklevel: int = 3) -> None:
    warnings.warn(message, category, stacklevel=stacklevel)


def _to_numpy(values, name: str) -> np.ndarray:
    if hasattr(values, "to_numpy"):  # pandas Series / Index
        values = values.to_numpy()
    try:
        array = np.array(values, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: cannot be read as an array of numbers ({error})") from None
    return array


def as_positive_1d(values, name: str, *, positive: bool = True) -> np.ndarray:
    """``values`` as a fresh 1-D float64 numpy array; ``ValueError`` naming ``name`` when
    it is not 1-D, holds NaN/inf, or (``positive=True``) holds values <= 0."""
    array = _to_numpy(values, name)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of runs, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: is empty")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: contains {int(bad.sum())} non-finite values "
            f"({array[first]} at index {first})"
        )
    if positive:
        bad = array <= 0
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}: contains {int(bad.sum())} non-positive values "
                f"({array[first]:g} at index {first}); scaling laws are fitted in log space"
            )
    return array


def check_same_length(**arrays: np.ndarray) -> int:
    """The common length of ``arrays``; ``ValueError`` naming them when they differ."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"{', '.join(lengths)}: mismatched lengths ({described})")
    return next(iter(lengths.values()))


def check_enough_points(n_points: int, n_parameters: int, name: str) -> None:
    """At least ``n_parameters + 1`` runs, so that the fit leaves a residual degree of freedom."""
    if n_points < n_parameters + 1:
        raise ValueError(
            f"{name}: {n_points} points cannot support a fit of {n_parameters} parameters "
            f"(need at least {n_parameters + 1})"
        )


def check_spans_decade(array: np.ndarray, name: str) -> None:
    """A power law in ``array`` needs its values to span at least a factor of 10."""
    ratio = float(array.max() / array.min())
    if ratio < 10.0:
        raise ValueError(
            f"{name}: values span only a factor of {ratio:.3g} "
            f"({array.min():.3g} to {array.max():.3g}); a power law needs at least a decade"
        )
