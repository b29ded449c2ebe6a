"""What a run prints (issue 18): each line once, no load report for weights left out on purpose, progress lines
when stdout is a file, the run directory at the start and beside the results; callbacks and optimisers swapped
from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _train_utils import compose_run

from ptrain.train import run

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["task=synthetic_ner", "task.n_train=64", "task.n_dev=16", "task.n_test=16", "data.batch_size=16",
         "logger=none", "method.length=4"]


def _train_py(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python train.py` with stdout and stderr to a pipe, i.e. not a terminal, as under SLURM."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**env, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """Two epochs on the real MiniLM checkpoint (whose pooler ptrain leaves out), stdout a pipe, a progress line
    per batch."""
    cwd = tmp_path_factory.mktemp("console")
    run_dir = cwd / "run"
    done = _train_py(cwd, "model=minilm", *SMALL, "trainer.max_epochs=2", "progress_every_s=0",
                     f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, run_dir


def test_no_console_line_is_printed_twice(minilm_run) -> None:
    done, run_dir = minilm_run
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    repeated = sorted({line for line in lines if lines.count(line) > 1})
    assert not repeated, repeated
    log = (run_dir / "train.log").read_text()
    assert log.count("GPU available") == 1  # Lightning's notices: in train.log, once
    assert "GPU available" not in done.stdout + done.stderr


def test_no_load_report_for_the_pooler_left_out_on_purpose(minilm_run) -> None:
    done, run_dir = minilm_run
    for text in (done.stdout + done.stderr, (run_dir / "train.log").read_text()):
        assert "LOAD REPORT" not in text and "UNEXPECTED" not in text


def test_redirected_output_logs_progress_and_names_the_run_directory(minilm_run) -> None:
    done, run_dir = minilm_run
    out = done.stdout
    lines = out.splitlines()
    progress = [i for i, line in enumerate(lines) if "[ptrain.progress]" in line and "batch " in line]
    assert len(progress) == 2 * 4  # 64 sentences / batch 16, two epochs
    assert "epoch 1: batch 4/4 (step 8), loss " in lines[progress[-1]]
    testing = next(i for i, line in enumerate(lines) if line.startswith("Testing"))
    assert progress[-1] < testing  # logged while training, not after
    assert sum("[ptrain.progress]" in line and "val/f1" in line for line in lines) == 2  # a line per epoch
    assert f"run directory: {run_dir}" in lines[0]
    assert lines[-1] == f"results and checkpoints: {run_dir}"
    assert "batch 4/4 (step 8)" in (run_dir / "train.log").read_text()


def test_early_stopping_from_the_command_line_stops_on_the_tasks_main_metric(tmp_path) -> None:
    """min_delta 2 (more than any F1 can rise): no epoch after the first counts as better, so with patience 1 the
    run stops after its second of five epochs."""
    results, _, trainer = run(compose_run(tmp_path / "r", "+callbacks=early_stopping", "trainer.max_epochs=5",
                                          "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=2",
                                          "method.length=4"))
    stopper = next(c for c in trainer.callbacks if type(c).__name__ == "EarlyStopping")
    assert stopper.monitor == "val/f1"  # (its counters are the best checkpoint's: the test run restored them)
    assert trainer.current_epoch == 2 and results["best_epoch"] in (0, 1)  # two epochs ran, three were left


def test_a_callback_that_does_not_build_is_an_error_naming_it(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"callbacks.early_stopping \(ptrain.callbacks.EarlyStopping\): .*patienc"):
        run(compose_run(tmp_path / "r", "+callbacks=early_stopping", "+callbacks.early_stopping.patienc=1"))


@pytest.mark.parametrize(("override", "optimizer", "expected"),
                         [("optim=sgd", torch.optim.SGD, {"momentum": 0.9}),
                          ("optim=adafactor", torch.optim.Adafactor, {}),
                          ("optim.optimizer._target_=torch.optim.RAdam", torch.optim.RAdam, {})])
def test_the_optimizer_is_swapped_from_the_command_line(tmp_path, override, optimizer, expected) -> None:
    _, module, trainer = run(compose_run(tmp_path / "r", override, "optim.schedule=constant", "method.lr=0.02",
                                         "optim.weight_decay=0.01", "trainer.max_epochs=1", "method.length=4"))
    used = trainer.optimizers[0]
    assert type(used) is optimizer
    group = used.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.01
    assert all(group[key] == value for key, value in expected.items())
    trained = {id(p) for p in module.parameters() if p.requires_grad}
    assert {id(p) for g in used.param_groups for p in g["params"]} == trained


def test_a_cosine_schedule_from_its_config_decays_to_eta_min_over_the_run(tmp_path) -> None:
    """T_max null = the run's optimiser steps (96 sentences / 16 = 6 per epoch, 2 epochs): at the end the learning
    rate is eta_min, and half-way it is half the initial one (cosine)."""
    seen: list[float] = []

    class Record(__import__("lightning").Callback):
        def on_train_batch_start(self, trainer, *args) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    _, _, trainer = run(compose_run(tmp_path / "r", "+optim/scheduler=cosine", "method.lr=0.01", "method.length=4"),
                        callbacks=[Record()])
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert type(scheduler).__name__ == "CosineAnnealingLR" and scheduler.T_max == 12
    assert len(seen) == 12 and seen[0] == pytest.approx(0.01) and seen[6] == pytest.approx(0.005)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert json.loads((tmp_path / "r" / "results.json").read_text())["config"]["optim"]["scheduler"]["T_max"] is None


def test_the_csv_log_has_a_row_per_trained_epoch_and_the_best_scores_at_the_last_step(tmp_path) -> None:
    """96 sentences / 16 = 6 steps per epoch, 2 epochs: validation rows at steps 5 and 11 only (the scoring of the
    selected checkpoint after training is no third epoch), and best/* at step 12, where training ended."""
    import csv

    run(compose_run(tmp_path / "r", "logger=csv", "method.length=4"))
    rows = list(csv.DictReader((tmp_path / "r" / "csv" / "metrics.csv").open()))
    validations = [(row["epoch"], row["step"]) for row in rows if row.get("val/f1")]
    assert validations == [("0", "5"), ("1", "11")]
    assert not any(row.get("test/f1") for row in rows)
    (best,) = [row for row in rows if row.get("best/val/f1")]
    assert best["step"] == "12" and best["best/test/f1"] != ""


def test_any_lightning_logger_by_its_target(tmp_path) -> None:
    """A logger config with a `_target_` (here Lightning's plain CSVLogger, in its own folder) is built as
    configured and gets the run's config and the per-epoch validation rows."""
    import csv

    out = tmp_path / "plain"
    run(compose_run(tmp_path / "r", "logger=none", "+logger._target_=lightning.pytorch.loggers.CSVLogger",
                    f"+logger.save_dir={out}", "logger.name=mine", "method.length=4"))
    rows = list(csv.DictReader((out / "mine" / "version_0" / "metrics.csv").open()))
    assert [row["epoch"] for row in rows if row.get("val/f1")] == ["0", "1"]
    assert "seed: 42" in (out / "mine" / "version_0" / "hparams.yaml").read_text()


def test_a_logger_target_that_does_not_build_is_an_error_naming_it(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"logger \(lightning.pytorch.loggers.TensorBoardLogger\): .*tensorboard"):
        run(compose_run(tmp_path / "r", "logger=tensorboard", "method.length=4"))
