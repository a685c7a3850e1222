"""Figures of a report: every PNG written."""

from __future__ import annotations

import pytest

from scaling import plot, report


@pytest.fixture(scope="module")
def rep(synthetic_rows):
    return report.fit_results(synthetic_rows(), budget=1e15, n_bootstrap=40)


def test_all_figures_written(rep, tmp_path):
    paths = plot.plot_all(rep, tmp_path)
    assert [p.rsplit("/", 1)[1] for p in paths] == list(plot.PLOTS)
    for p in paths:
        with open(p, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n"
        assert len(open(p, "rb").read()) > 10_000
