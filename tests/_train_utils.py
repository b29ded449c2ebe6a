"""Compose the real ptrain/conf/ tree the way `python train.py ...` does, for in-process runs."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import ptrain  # noqa: F401  (registers the resolvers ptrain/conf/train.yaml uses)

CONF = Path(__file__).resolve().parents[1] / "ptrain" / "conf"

FAST = [
    "model=tiny_bert", "task=synthetic_ner", "task.n_train=96", "task.n_dev=32", "task.n_test=32",
    "trainer.max_epochs=2", "logger=none", "data.batch_size=16", "trainer.enable_progress_bar=false",
]


def compose_run(run_dir: Path, *overrides: str, fast: bool = True) -> DictConfig:
    base = list(FAST if fast else [])
    if any(o.startswith("task=") and o != "task=synthetic_ner" for o in overrides):
        base = [o for o in base if not o.startswith("task.")]  # the size knobs belong to synthetic_ner
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*base, f"run_dir={run_dir}", *overrides])
