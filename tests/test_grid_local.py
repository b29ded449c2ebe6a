"""A real grid through the submitit local launcher, then `ptrain report` and the notebook on its directory."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ptrain.cli import main as ptrain_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("grid") / "sweep"
    command = [
        sys.executable, "train.py", "-m", "hydra/launcher=local", f"hydra.sweep.dir={sweep}",
        "model=tiny_bert", "task.n_train=64", "task.n_dev=32", "task.n_test=32", "trainer.max_epochs=2",
        "data.batch_size=16", "logger=csv", "trainer.enable_progress_bar=false",
        "method=head,ptv2", "seed=1,2",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep


def _results(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]


def test_local_launcher_runs_every_cell(grid) -> None:
    runs = _results(grid)
    assert sorted((r["method"], r["seed"]) for r in runs) == [("head", 1), ("head", 2), ("ptv2", 1), ("ptv2", 2)]
    assert all(r["task"] == "synthetic_ner" and r["model"] == "tiny_bert" for r in runs)
    assert len(list(grid.glob(".submitit/*"))) > 0  # it went through submitit, not the basic launcher


def test_report_cells_match_the_runs(grid) -> None:
    assert ptrain_cli(["report", str(grid)]) == 0
    table = pd.read_csv(grid / "report.csv")
    runs = _results(grid)
    for method in ("head", "ptv2"):
        for split in ("val", "test"):
            values = [100 * r["metrics"][f"{split}/f1"] for r in runs if r["method"] == method]
            row = table[(table.method == method) & (table.split == split) & (table.metric == "f1")]
            assert len(row) == 1, (method, split)
            assert row["n"].item() == 2
            assert row["mean"].item() == pytest.approx(statistics.mean(values), abs=1e-6)
            assert row["std"].item() == pytest.approx(statistics.stdev(values), abs=1e-6)
            share = [r["trainable_share"] for r in runs if r["method"] == method][0]
            assert row["trainable_share"].item() == pytest.approx(share)
    assert (grid / "report.md").read_text().count("synthetic_ner") >= 2
    assert (grid / "efficiency.png").stat().st_size > 1000


def test_notebook_runs_on_the_grid(grid, tmp_path, monkeypatch) -> None:
    pytest.importorskip("nbclient")
    from test_notebook import _outputs, _run, _texts

    notebook = _run(grid, tmp_path, monkeypatch)
    assert not [out for out in _outputs(notebook) if out.get("output_type") == "error"]
    text = _texts(notebook)
    assert "4 runs loaded" in text
    assert "4 training curves" in text  # from the runs' CSV logs
