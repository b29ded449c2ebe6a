"""Shared by the task tests: a tiny end-to-end run of one task with one method on tiny_bert."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from _train_utils import compose_run

from ptrain.train import run

METHODS = ("finetune", "head", "prompt", "ptv1", "ptv2")
SMALL = {"finetune": [], "head": [], "prompt": ["method.length=4"], "ptv1": ["method.length=4"],
         "ptv2": ["method.length=4"]}


def train_briefly(tmp_path: Path, task: str, data_dir: Path, method: str, *overrides: str) -> dict[str, Any]:
    """One epoch, batch 8, max_length 64: returns results.json's dict after checking the main metric is there."""
    results, _, _ = run(compose_run(
        tmp_path / f"run-{task}-{method}", f"task={task}", f"task.data_dir={data_dir}", f"method={method}",
        *SMALL[method], "trainer.max_epochs=1", "task.max_length=64", "data.batch_size=8", *overrides))
    main = f"val/{results['main_metric']}"
    assert main in results["metrics"], f"{task}/{method}: no {main} in {sorted(results['metrics'])}"
    for name, value in results["metrics"].items():
        if not name.endswith("_thresh"):
            assert 0.0 <= value <= 1.0, (name, value)
    return results


class LogCapture(logging.Handler):
    """Collects a logger's records without pytest's caplog (which `-p no:logging` turns off)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.logger = logging.getLogger(name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.messages)

    def __enter__(self) -> LogCapture:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
