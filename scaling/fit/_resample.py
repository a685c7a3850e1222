"""Bootstrap of the chosen law for ``N_interval``, in the SAME compiled batch shape as the fit.

Each replicate resamples runs (by run id when given: a run and its cooldown branches move
together) or, for the frontier forms, budgets, as per-point counts (weights-as-counts keep
every shape fixed, as :mod:`.bootstrap` does), starts at the full-data optimum, and is polished
by the family's Newton (:mod:`._family`).  The number of replicates fills the lanes of the
fit's compiled batch, so the bootstrap costs no second compilation.
"""

from __future__ import annotations

import numpy as np

from . import _family
from .approaches import _power_laws
from .bootstrap import resample_counts
from .forms import FORMS, EnsembleLaw, Form, to_law

__all__ = ["bootstrap_chosen", "BOOTSTRAP_ITERS"]

#: Newton steps per bootstrap replicate: each starts at the full-data optimum and needs few;
#: a degenerate resample (e.g. budgets drawn twice) may drift and is taken as it stands.
BOOTSTRAP_ITERS = 30


def bootstrap_chosen(comp, chosen, thetas) -> list:
    """Replicate laws of ``chosen`` (an EnsembleLaw of replicates for an ensemble); ``comp``: the
    comparison (its points, sections, budgets, run ids and lane count)."""
    names = chosen.law.names if isinstance(chosen.law, EnsembleLaw) else (chosen.name,)
    members = [FORMS[n] for n in names]
    lanes = max(32, -(-comp.lanes // 32) * 32)
    R = comp.n_bootstrap or max(lanes // len(members), 1)
    theta, flags, free, weights, allocations = [], [], [], [], {}
    for form in members:
        W = np.zeros((R, len(comp.x)))
        if form.models_N_D:
            W[:, comp.sections["runs"]] = resample_counts(len(comp.N), R, comp.seed, comp.runs)
        else:
            section = comp.sections[form.fitted_to]
            W[:, section] = counts = resample_counts(section.stop - section.start, R, comp.seed)
            allocations[form.name] = _allocations(comp.budgets, form, counts)
        theta.append(np.repeat(thetas[form.name][:1], R, axis=0))
        flags += [form.flags] * R
        free += [form.free] * R
        weights.append(W)
    out, value, _ = _family.newton(np.concatenate(theta), np.array(flags, float), np.array(free, float),
                                   np.concatenate(weights), comp.x, comp.y, np.log(comp.values),
                                   x0=comp.x0, delta=comp.delta, lane_iters=np.full(len(flags), BOOTSTRAP_ITERS))
    replicates = []
    for r in range(R):
        laws = []
        for m, form in enumerate(members):
            allocation = allocations[form.name][r] if form.name in allocations else None
            usable = np.isfinite(value[m * R + r]) and (form.models_N_D or allocation is not None)
            laws.append(to_law(form, out[m * R + r], comp.x0, allocation) if usable else None)
        if all(law is not None for law in laws):
            replicates.append(laws[0] if len(laws) == 1 else EnsembleLaw(tuple(laws), names, chosen.law.weights))
    return replicates


def _allocations(budgets, form: Form, counts):
    """Approach 2's power laws on each resample of the budgets (OLS over the resampled optima)."""
    b = budgets
    if form.fitted_to == "minima":
        # the frontier's points: approach 2's interior minima (budgets_of leaves out the extrapolated ones)
        keep = np.isin(np.array(b.allocation_minima.budgets), b.minima_C)
        C = np.array(b.allocation_minima.budgets)[keep]
        N = np.array(b.allocation_minima.N_opt_per_budget)[keep]
        D = np.array(b.allocation_minima.D_opt_per_budget)[keep]
    else:
        C, N, D = b.C, b.best_N, b.best_D
    out = []
    for row in counts:
        index = np.repeat(np.arange(len(C)), row)
        enough = len(np.unique(C[index])) >= 2
        out.append(_power_laws("bootstrap", C[index], N[index], D[index], np.ones(len(index))) if enough else None)
    return out
