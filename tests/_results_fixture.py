"""Synthetic sweep directories shaped like ptrain's output, shared by the report and notebook tests.

The writer follows the results.json contract of ``ptrain.train`` (keys, fractions for scores, the
resolved config under ``config``) so the report is tested against the format the trainer emits,
without training anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Known metrics of the synthetic grid: (method, seed) -> (val/accuracy, test/accuracy).
GRID: dict[tuple[str, int], tuple[float, float]] = {
    ("prompt", 1): (0.60, 0.58),
    ("prompt", 2): (0.64, 0.60),
    ("ptv2", 1): (0.78, 0.75),
    ("ptv2", 2): (0.80, 0.79),
}

#: Parameter counts of the synthetic grid, per method.
PARAMS = {"prompt": 20_480, "ptv2": 983_040}
TOTAL_PARAMS = 335_000_000


def write_results(
    run_dir: Path,
    *,
    method: str,
    seed: int,
    metrics: dict[str, float],
    task: str = "rte",
    model: str = "bert-large",
    experiment: str | None = "superglue/bert_large_rte",
    length: int | None = 20,
    layers: list[int] | None = None,
    reparam: str = "none",
    trainable_params: int = 1000,
    total_params: int = TOTAL_PARAMS,
    main_metric: str = "accuracy",
) -> Path:
    """Write one results.json exactly as the trainer would, and return its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "method": method,
        "task": task,
        "model": model,
        "seed": seed,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "trainable_share": trainable_params / total_params,
        "prompt_bytes": trainable_params * 4,
        "metrics": metrics,
        "main_metric": main_metric,
        "best_epoch": 3,
        "wall_s": 12.5,
        "config": {
            "method": {"name": method, "length": length, "layers": layers, "reparam": reparam, "lr": 0.01},
            "model": {"name": model},
            "task": {"name": task},
            "seed": seed,
            "experiment": experiment,
        },
    }
    path = run_dir / "results.json"
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return path


def write_metrics_csv(run_dir: Path, val_scores: list[float]) -> Path:
    """A Lightning CSVLogger metrics.csv (ptrain writes <run_dir>/csv/metrics.csv) for training curves."""
    csv_dir = run_dir / "csv"
    csv_dir.mkdir(parents=True, exist_ok=True)
    lines = ["epoch,step,train/loss,val/accuracy"]
    for epoch, score in enumerate(val_scores):
        lines.append(f"{epoch},{(epoch + 1) * 10},{1.0 / (epoch + 1):.4f},")
        lines.append(f"{epoch},{(epoch + 1) * 10},,{score}")
    path = csv_dir / "metrics.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_sweep(root: Path, *, with_curves: bool = False) -> Path:
    """2 methods x 2 seeds in a Hydra-multirun-like layout (numbered job dirs), with known metrics."""
    for job, ((method, seed), (val, test)) in enumerate(sorted(GRID.items())):
        run_dir = root / str(job)
        write_results(
            run_dir,
            method=method,
            seed=seed,
            metrics={"val/accuracy": val, "test/accuracy": test, "val/loss": 0.5},
            trainable_params=PARAMS[method],
        )
        if with_curves:
            write_metrics_csv(run_dir, [val - 0.1, val - 0.05, val])
    return root
