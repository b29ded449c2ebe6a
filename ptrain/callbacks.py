"""ptrain's own Lightning callbacks, for `+callbacks=...` configs (ptrain/conf/callbacks)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping

#: `monitor: main` means the task's main dev metric, which a config cannot name (it depends on the task)
MAIN = "main"


class EarlyStopping(LightningEarlyStopping):
    """Lightning's EarlyStopping; `monitor="main"` watches the task's main dev metric (`val/f1` for NER,
    `val/accuracy` for RTE, ...), so one callback config serves every task."""

    def __init__(self, monitor: str = MAIN, **kwargs: Any) -> None:
        super().__init__(monitor=monitor, **kwargs)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.monitor == MAIN:
            self.monitor = f"val/{pl_module.task.main_metric}"
        super().setup(trainer, pl_module, stage)


def build_callbacks(specs: Any) -> list[L.Callback]:
    """The `callbacks` config (name -> `_target_` config; a null entry is switched off) as callback objects. An
    entry that does not build is an error naming it."""
    from hydra.utils import instantiate

    built = []
    for name, spec in (specs or {}).items():
        if spec is None:
            continue
        if not isinstance(spec, dict) or "_target_" not in spec:
            raise ValueError(f"callbacks.{name}: expected a config with a _target_ (a Lightning callback class); "
                             f"got {spec!r}")
        try:
            callback = instantiate(spec)
        except Exception as error:  # Hydra wraps the class's own error (an unknown key, a missing class)
            raise ValueError(f"callbacks.{name} ({spec['_target_']}): {error.__cause__ or error}") from None
        if not isinstance(callback, L.Callback):
            raise ValueError(f"callbacks.{name}: {spec['_target_']} is not a Lightning callback")
        built.append(callback)
    return built
