"""Both notebooks executed headless on CPU, as a reader would run them top to bottom.

SCALING_NOTEBOOK_TINY=1 makes them use the tiny demo sweep. The quickstart trains it; the
fit notebook then reads the quickstart's results table (SCALING_RESULTS), as a reader who ran
the quickstart first would.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


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


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)  # joins each cell's source lines
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        assert "colab-badge.svg" in nb.cells[0].source, path.name
        assert any('"google.colab" in sys.modules' in c.source for c in nb.cells), path.name


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
        assert name in text
    assert "alpha" in text and "beta" in text
