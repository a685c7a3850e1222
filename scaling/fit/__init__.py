"""Scaling-law fitting: from a table of runs to a law, a forecast and an honest uncertainty.

Takes plain arrays (lists, numpy, jax, pandas Series); needs nothing from training.  Fits run
in float64 without touching the caller's JAX settings; compiled functions are cached.

* :func:`power_law`, :func:`chinchilla` (Hoffmann et al. 2022 approach 3), :func:`kaplan`
  (Kaplan et al. 2020 eq. 1.5) - parametric laws (:mod:`.laws`).
* :func:`isoflop` (approach 2), :func:`envelope` (approach 1) - compute-optimal allocation
  (:mod:`.approaches`).
* :func:`bootstrap` - resampled intervals for every parameter and derived quantity.
* :func:`backtest` - fit without the largest-compute runs, predict them.
* :func:`forecast` - the entry point for forecasting: several law forms (:data:`FORMS`) fitted in
  one compiled batch, chosen by a rolling-origin backtest, with prediction intervals calibrated
  on how backtest errors grow with extrapolation distance (:mod:`.forecast`).
* :func:`frontier` - compute-optimal (N, D, L) of many laws at once under a family's cost per
  token (:func:`interpolated_flops_per_token`); :func:`isoflop_bootstrap` - approach 2's
  residual bootstrap that keeps each budget's design (:mod:`.frontier`).
* :func:`looped` - laws for looped models, L = E + A/(N g(loops))^alpha + B/D^beta, and what
  a loop is worth (:mod:`.looped`); :func:`inference_optimal` - the model that reaches a
  loss with the least training plus inference compute (Sardana et al. 2024, :mod:`.inference`).
* :func:`data_constrained` - repeated data, L = E + A/N'^alpha + B/D'^beta with effective data
  D' decaying over repeats (Muennighoff et al. 2023), its bootstrap and the compute-optimal
  allocation under a cap of unique tokens (:mod:`.data_constrained`).
"""

from ._validate import ExtrapolationWarning, IdentifiabilityWarning, ScalingFitWarning
from .approaches import ComputeOptimalFit, envelope, isoflop
from .backtest import BacktestResult, backtest
from .bootstrap import BootstrapResult, bootstrap
from .data_constrained import (
                               DataConstrainedLaw,
                               DataConstrainedOptimum,
                               compare_data_forms,
                               data_constrained,
                               data_constrained_bootstrap,
)
from .forecast import Candidate, EnsembleLaw, Forecast, Optimum, Prediction, forecast
from .forms import FORMS, FarseerLaw, FrontierLaw
from .frontier import frontier, interpolated_flops_per_token, isoflop_bootstrap
from .inference import InferenceOptimum, inference_optimal
from .laws import ChinchillaLaw, KaplanLaw, PowerLaw, chinchilla, hoffmann_grid, kaplan, power_law
from .looped import LoopedLaw, compare_forms, looped, looped_bootstrap

__all__ = [
    "power_law", "chinchilla", "kaplan", "isoflop", "envelope", "bootstrap", "backtest",
    "PowerLaw", "ChinchillaLaw", "KaplanLaw", "ComputeOptimalFit", "BootstrapResult", "BacktestResult",
    "frontier", "interpolated_flops_per_token", "isoflop_bootstrap",
    "hoffmann_grid", "ScalingFitWarning", "IdentifiabilityWarning", "ExtrapolationWarning",
    "forecast", "Forecast", "Candidate", "Prediction", "Optimum", "EnsembleLaw", "FORMS", "FarseerLaw", "FrontierLaw",
    "looped", "looped_bootstrap", "compare_forms", "LoopedLaw", "inference_optimal", "InferenceOptimum",
    "data_constrained", "data_constrained_bootstrap", "compare_data_forms", "DataConstrainedLaw",
    "DataConstrainedOptimum",
]
