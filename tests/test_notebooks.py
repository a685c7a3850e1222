"""Both notebooks executed headless on CPU, as a reader would run them top to bottom.

SCALING_NOTEBOOK_TINY=1 makes them use the tiny demo sweep. The quickstart trains it; the
fit notebook then reads the quickstart's results table (SCALING_RESULTS), as a reader who ran
the quickstart first would, and a table of independent runs without an IsoFLOP grid.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["quickstart.ipynb", "fit_your_results.ipynb"]


def _execute(name: str, cwd: Path, monkeypatch, **env) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    monkeypatch.setenv("SCALING_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)  # joins each cell's source lines
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        assert "colab-badge.svg" in nb.cells[0].source, path.name
        assert any('"google.colab" in sys.modules' in c.source for c in nb.cells), path.name


def test_colab_runtime_metadata():
    """Colab opens the quickstart on a TPU v5e-1 and the fit notebook on a CPU."""
    quick = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4).metadata
    assert quick["accelerator"] == "TPU" and quick["colab"]["gpuType"] == "V5E1"
    fit = nbformat.read(NOTEBOOKS / "fit_your_results.ipynb", as_version=4).metadata
    assert "accelerator" not in fit and "gpuType" not in fit.get("colab", {})


@pytest.mark.parametrize("name", NAMES)
def test_one_repository_variable_and_no_guessed_url(name, monkeypatch):
    """The first code cell holds the only repository URL, empty; the install cell stops with
    a message naming it while it is empty (on Colab), and otherwise installs from it with
    jax 0.10.x and flax 0.12.x; the badge the first cell prints points at that repository."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    text = (NOTEBOOKS / name).read_text()
    assert "your-org" not in text and "github.com/" not in text.replace("https://github.com/OWNER/REPO", "")
    repo_cell, install_cell = _code(nb)[:2]
    assert 'SCALING_REPO = ""\n' in repo_cell and "SCALING_REPO" in install_cell

    import glob
    import shutil
    import subprocess

    import IPython.display

    shown, pip = [], []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(IPython.display, "display", shown.append)
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: pip.append(argv))
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no GPU here
    monkeypatch.setattr(glob, "glob", lambda pattern: [])  # no TPU either

    scope: dict = {}
    exec(repo_cell, scope)
    assert shown == []
    with pytest.raises(ValueError, match="SCALING_REPO is empty"):
        exec(install_cell, scope)
    assert pip == []

    fork = "https://github.com/someone/scaling-fork"
    scope = {}
    exec(repo_cell.replace('SCALING_REPO = ""', f'SCALING_REPO = "{fork}"'), scope)
    exec(install_cell, scope)
    assert len(pip) == 1 and pip[0][-3:] == ["jax==0.10.*", "flax==0.12.*", f"scaling-jax[plot] @ git+{fork}"]
    (badge,) = shown
    assert f"colab.research.google.com/github/someone/scaling-fork/blob/main/notebooks/{name}" in badge.data


@pytest.mark.slow
def test_quickstart_then_fit_your_results(tmp_path, monkeypatch):
    nb = _execute("quickstart.ipynb", tmp_path, monkeypatch)
    text = _text(nb)
    assert "running the 'tiny' demo sweep" in text
    assert "What this law does not tell you" in text  # the printed report
    assert "the fitted law puts the optimum at N =" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 4
    results_file = tmp_path / "scaling_quickstart" / "tiny" / "results.jsonl"
    assert results_file.exists()

    nb = _execute("fit_your_results.ipynb", tmp_path, monkeypatch, SCALING_RESULTS=str(results_file))
    text = _text(nb)
    assert f"points from {results_file}" in text
    for name in ("1 envelope", "2 isoflop", "3 parametric"):
        assert f"approach {name}: supported" in text
    assert "alpha" in text and "beta" in text


@pytest.mark.slow
def test_fit_your_results_on_a_table_without_isoflop_grid(tmp_path, monkeypatch):
    """Independent runs, each at its own (N, D): no two share a budget, so approach 2 has no
    profile to fit. The notebook fits approaches 1 and 3, says why not 2, and runs to the end."""
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 30
    N = np.exp(rng.uniform(np.log(1e6), np.log(3e8), n))
    D = np.exp(rng.uniform(np.log(2e8), np.log(2e10), n))
    loss = (1.8 + 480 / N**0.34 + 410 / D**0.28) * np.exp(rng.normal(0, 0.005, n))
    table = tmp_path / "my_runs.csv"
    pd.DataFrame({"N": N, "D": D, "loss": loss}).to_csv(table, index=False)

    nb = _execute("fit_your_results.ipynb", tmp_path, monkeypatch, SCALING_RESULTS=str(table))
    text = _text(nb)
    assert f"30 points from {table}" in text
    assert "30 runs at 30 distinct budgets (1 to 1 runs per budget)" in text
    assert "approach 1 envelope: supported" in text and "approach 3 parametric: supported" in text
    assert "approach 2 isoflop: NOT supported by this table. It needs an IsoFLOP grid" in text
    (comparison,) = [o["data"]["text/plain"] for c in nb.cells for o in c.get("outputs", [])
                     if "a (N_opt ~ C^a)" in o.get("data", {}).get("text/plain", "")]
    assert "1 envelope" in comparison and "3 parametric" in comparison and "2 isoflop" not in comparison
    assert "alpha" in text and "95%" in text  # the bootstrap of approach 3
