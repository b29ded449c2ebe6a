"""Experiment loggers: W&B (offline unless a login is found), CSV, none, or any Lightning logger by `_target_`."""

from __future__ import annotations

import csv
import hashlib
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def stable_run_id(run_dir: str | Path) -> str:
    """The W&B run id of a run: the same for a requeued job, which reruns the same command in the same run
    directory under the same SLURM job id, so with `resume="allow"` it continues its W&B run instead of opening a
    new one. Both go in, so runs of one allocation (a local multirun) and a directory rerun in a new job differ."""
    from ptrain.resume import slurm_job

    key = f"{slurm_job() or ''}|{Path(run_dir).resolve()}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


class _KeptRowsWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv when it starts (a warning says so). A run resumed from
    a checkpoint of global step G keeps the rows that checkpoint covers, those Lightning logged at steps 0..G-1 (its
    `step` counts optimizer steps done before the row), drops later ones (logged after the checkpoint by the run that
    was killed, and logged again by this one), and appends to them."""

    def __init__(self, log_dir: str, resumed_step: int | None) -> None:
        self.resumed_step = resumed_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning 2.6's hook, called in __init__ before anything is logged
        path = Path(self.metrics_file_path)
        if self.resumed_step is None or not path.is_file():
            super()._check_log_dir_exists()
            return
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            keys = list(reader.fieldnames or [])
            rows = [row for row in reader if float(row.get("step") or 0) < self.resumed_step]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = keys  # new keys extend this header, as in one uninterrupted run


class RunCSVLogger(CSVLogger):
    """`run_dir/csv/metrics.csv`, flushed whenever a checkpoint is saved (rows a checkpoint covers are on disk with
    it, even if the run is then killed), and kept up to the checkpoint a run resumes from (`resumed_step`)."""

    def __init__(self, run_dir: str | Path, resumed_step: int | None = None) -> None:
        super().__init__(save_dir=str(run_dir), name="csv", version="")
        self.resumed_step = resumed_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeptRowsWriter(self.log_dir, self.resumed_step)
        return self._experiment

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.save()


def make_logger(cfg: Mapping[str, Any], run_dir: Path, run_name: str, config: dict,
                cell: str | None = None, resumed_step: int | None = None) -> Logger | None:
    """The configured logger; W&B runs are grouped by `logger.group` (the experiment) and, inside a group, by
    job type = the grid cell, so seeds of one (task, method, model) aggregate in the W&B UI. The W&B run id is
    `stable_run_id(run_dir)`, so a requeued job logs on in the run it started. Only rank 0 logs (Lightning's
    loggers are rank-zero), whatever the number of processes. A run resumed from a checkpoint of step
    `resumed_step` keeps the CSV rows that checkpoint covers. A config with a `_target_` is any Lightning logger
    (ptrain/conf/logger/tensorboard.yaml), built as configured and given the run's config as hyperparameters."""
    if cfg.get("_target_"):
        return _target_logger(cfg, config)
    kind = cfg.get("name", "none")
    if kind == "none":
        return None
    if kind == "csv":
        return RunCSVLogger(run_dir, resumed_step=resumed_step)
    if kind == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        mode = cfg.get("mode") or ("online" if wandb_logged_in() else "offline")
        logger = WandbLogger(project=cfg.get("project", "ptrain"), entity=cfg.get("entity"),
                             group=cfg.get("group"), name=cfg.get("run_name") or run_name,
                             job_type=cfg.get("job_type") or cell,
                             tags=list(cfg.get("tags") or []), save_dir=str(run_dir), mode=mode,
                             id=stable_run_id(run_dir), resume="allow")
        logger.log_hyperparams(config)
        return logger
    raise ValueError(f"logger.name must be wandb, csv or none; got {kind!r}")


def _target_logger(cfg: Mapping[str, Any], config: dict) -> Logger:
    from hydra.utils import instantiate

    try:
        logger = instantiate(dict(cfg))
    except Exception as error:  # Hydra wraps the class's own error (a missing package, an unknown key)
        raise ValueError(f"logger ({cfg['_target_']}): {error.__cause__ or error}") from None
    if not isinstance(logger, Logger):
        raise ValueError(f"logger: {cfg['_target_']} is not a Lightning logger (lightning.pytorch.loggers.Logger)")
    logger.log_hyperparams(config)
    return logger
