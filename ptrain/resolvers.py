"""OmegaConf resolvers the packaged configs use (registered when ptrain.train is imported, before Hydra resolves
its run and sweep directories)."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

#: a file name's limit is 255 bytes on common file systems; a job folder name stays well below it
MAX_NAME = 160


def job_dirname(number: int | str, overrides: str) -> str:
    """A multirun job's folder: its number and the overrides that made it (`3_method.length=20,seed=2`). A "/" (a
    group path such as optim/scheduler) becomes "-", not a nested folder; a long name keeps its start and a digest
    of the whole, so two jobs never share a folder and none exceeds the file system's limit."""
    name = f"{number}_{overrides}".replace("/", "-") if overrides else str(number)
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name.encode()[:MAX_NAME - 11].decode(errors="ignore") + "-" + digest
    return name


def first_set(*values: object) -> object:
    """The first value that is not null (`oc.select` falls back only when a key is missing, not when it is null)."""
    return next((value for value in values if value is not None), None)


def register() -> None:
    OmegaConf.register_new_resolver("ptrain.job_dirname", job_dirname, replace=True)
    OmegaConf.register_new_resolver("ptrain.first_set", first_set, replace=True)
