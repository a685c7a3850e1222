"""fit.frontier: the compute-optimal (N, D, L) of many laws at once agrees with each law's own
compute_optimal under the family's cost per token."""

from __future__ import annotations

import pytest

from scaling import fit, report


@pytest.fixture(scope="module")
def rep(synthetic_rows):
    return report.fit_results(synthetic_rows(), budget=1e15, n_bootstrap=40)


def test_frontier_matches_law_compute_optimal(rep):
    n, d, l = fit.frontier(rep.chinchilla.params, [1e14], rep.fpt)
    n_ref, d_ref = rep.chinchilla.compute_optimal(1e14, flops_per_token=rep.fpt)
    assert n[0, 0] == pytest.approx(n_ref, rel=0.02)
    assert d[0, 0] == pytest.approx(d_ref, rel=0.02)
