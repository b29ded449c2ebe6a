"""notebooks/analysis.ipynb runs top to bottom on a synthetic sweep and shows the summary table and plots.

The notebook is executed in a real Jupyter kernel (nbclient), as a user would run it, with
PTRAIN_RESULTS pointing at the sweep written by the same fixture the report tests use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from _results_fixture import make_sweep

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"


def _run(results: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Execute the notebook with PTRAIN_RESULTS set; the kernel inherits this process's environment."""
    monkeypatch.setenv("PTRAIN_RESULTS", str(results))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError (with the cell and traceback) if any cell fails
    return notebook


def _outputs(notebook: Any) -> list[dict[str, Any]]:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _texts(notebook: Any) -> str:
    chunks: list[str] = []
    for out in _outputs(notebook):
        if out.get("output_type") == "stream":
            chunks.append(out.get("text", ""))
        for key in ("text/markdown", "text/plain", "text/html"):
            value = out.get("data", {}).get(key)
            if value:
                chunks.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(chunks)


def test_notebook_runs_and_shows_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = make_sweep(tmp_path / "sweep", with_curves=True)
    notebook = _run(sweep, tmp_path, monkeypatch)

    errors = [out for out in _outputs(notebook) if out.get("output_type") == "error"]
    assert not errors
    text = _texts(notebook)
    assert "4 runs loaded" in text
    # the summary table with the hand-computed cells of the fixture (ptv2 val 78/80, prompt val 60/64)
    assert "| mean ± std |" in text
    assert "79.00 ± 1.41" in text and "62.00 ± 2.83" in text
    images = [out for out in _outputs(notebook) if "image/png" in out.get("data", {})]
    assert len(images) >= 2  # the efficiency frontier and the training curves
    assert "4 training curves" in text


def test_notebook_without_csv_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = make_sweep(tmp_path / "sweep", with_curves=False)
    notebook = _run(sweep, tmp_path, monkeypatch)
    text = _texts(notebook)
    assert "79.00 ± 1.41" in text
    assert "No CSV training logs found" in text
