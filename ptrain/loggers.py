"""Experiment loggers: W&B (offline unless a login is found), CSV, or none."""

from __future__ import annotations

import hashlib
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger


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


def make_logger(cfg: Mapping[str, Any], run_dir: Path, run_name: str, config: dict,
                cell: str | None = None) -> Logger | None:
    """The configured logger; W&B runs are grouped by `logger.group` (the experiment) and, inside a group, by
    job type = the grid cell, so seeds of one (task, method, model) aggregate in the W&B UI. The W&B run id is
    `stable_run_id(run_dir)`, so a requeued job logs on in the run it started. Only rank 0 logs (Lightning's
    loggers are rank-zero), whatever the number of processes."""
    kind = cfg.get("name", "none")
    if kind == "none":
        return None
    if kind == "csv":
        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
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
