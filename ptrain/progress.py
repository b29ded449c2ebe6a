"""Progress as log lines: what a run redirected to a file (every SLURM job) shows while it trains.

A progress bar writes to a terminal; in a file it leaves only its final state, so a long epoch is silent until it
ends. `ProgressLog` logs a line (epoch, step of the epoch, global step, loss, steps per second, time left in the
epoch) every `every_s` seconds, to train.log always and to the console when stdout is not a terminal
(ptrain.logs.ConsoleFilter)."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L

from ptrain.logs import PROGRESS_LOGGER

log = logging.getLogger(PROGRESS_LOGGER)


def duration(seconds: float) -> str:
    """3725 -> '1h02m05s', 65 -> '1m05s', 4.2 -> '4s'."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressLog(L.Callback):
    """A progress line every `every_s` seconds of training, and one at each epoch's end with the dev scores."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = float(every_s)
        self._epoch_start = self._last = 0.0
        self._start_step = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._last = time.monotonic()
        self._start_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s or not trainer.is_global_zero:
            return
        self._last = now
        done = batch_idx + 1
        total = trainer.num_training_batches
        rate = done / max(now - self._epoch_start, 1e-9)
        left = f", {duration((total - done) / rate)} left in the epoch" if isinstance(total, int) else ""
        loss = trainer.callback_metrics.get("train/loss")
        loss_text = f" loss {float(loss):.4f}," if loss is not None else ""
        log.info("epoch %d: batch %d/%s (step %d),%s %.2f batches/s%s", trainer.current_epoch, done,
                 total if isinstance(total, int) else "?", trainer.global_step, loss_text, rate, left)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the epoch's scores are logged (they are not yet at `on_validation_epoch_end`)."""
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if scores:
            log.info("epoch %d: %s (%s since the epoch began)", trainer.current_epoch,
                     ", ".join(f"{k} {v:.4f}" for k, v in sorted(scores.items())),
                     duration(time.monotonic() - self._epoch_start))
