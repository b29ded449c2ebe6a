"""`python tests/_ddp_driver.py OVERRIDES`: `python train.py OVERRIDES` with one test hook. With
PTRAIN_TEST_SIGNAL=RANK:STEP, that rank sends itself SIGUSR1 (what SLURM sends before a time limit) once
optimizer step STEP is done, and no other rank is signalled. Lightning's DDP starts the other ranks by rerunning
this script, so each of them reads the same variable."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import hydra
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "ptrain" / "conf"


class SignalOneRank(Callback):
    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step, self.sent = rank, step, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> None:
    from ptrain.train import run

    spec = os.environ.get("PTRAIN_TEST_SIGNAL")
    run(cfg, callbacks=[SignalOneRank(*map(int, spec.split(":")))] if spec else [])


if __name__ == "__main__":
    main()
