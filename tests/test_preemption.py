"""A run interrupted by the cluster's signal resumes to exactly the result of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from _train_utils import compose_run
from lightning.pytorch.callbacks import Callback

from ptrain.train import run

COMMON = ["method=ptv2", "method.length=4", "method.reparam=mlp", "method.reparam_hidden=16", "method.dropout=0.2",
          "trainer.max_epochs=3", "data.batch_size=16"]  # 96 training sentences: 6 batches per epoch


class SignalAtStep(Callback):
    """Sends SIGUSR1 to this process, as SLURM does before a time limit, after a given optimizer step."""

    def __init__(self, step: int) -> None:
        self.step, self.sent = step, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A `scontrol` on PATH that records its arguments, and the job id SLURM would set."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "scontrol.log"
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    return log


def test_signal_mid_epoch_checkpoints_requeues_and_resumes_exactly(tmp_path, fake_slurm) -> None:
    straight, _, _ = run(compose_run(tmp_path / "a", *COMMON))

    interrupted = tmp_path / "b"
    with pytest.raises(SystemExit) as stop:
        run(compose_run(interrupted, *COMMON), callbacks=[SignalAtStep(8)])  # mid-way through epoch 1
    assert stop.value.code == 0
    assert (interrupted / "hpc_ckpt_1.ckpt").exists()
    assert fake_slurm.read_text().split() == ["requeue", "4242"]
    assert not (interrupted / "results.json").exists()  # no half-finished results
    saved = torch.load(interrupted / "hpc_ckpt_1.ckpt", weights_only=True)
    assert saved["global_step"] == 8 and saved["epoch"] == 1

    resumed, _, _ = run(compose_run(interrupted, *COMMON))  # the requeued job: same command
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["best_epoch"] == straight["best_epoch"]
    # the final weights (last.ckpt after epoch 3), not the best-epoch ones the test split reloads
    last_a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    last_b = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert last_a.keys() == last_b.keys()
    for name, value in last_a.items():
        assert torch.equal(value, last_b[name]), name
    assert json.loads((interrupted / "results.json").read_text())["metrics"] == straight["metrics"]
    assert not list(interrupted.glob("hpc_ckpt_*.ckpt"))  # superseded by the finished run's last.ckpt


def _final_weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


class SignalAtBatch(SignalAtStep):
    """Sends SIGUSR1 after a given batch of a given epoch (with accumulation, possibly mid-way through a step)."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__(-1)
        self.at = (epoch, batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.mark.parametrize(("signal_at", "extra"), [
    # after the last batch of epoch 0: saved before epoch 1's first batch, which must keep epoch 1's order
    (lambda: SignalAtStep(6), []),
    # after batch 2 of epoch 1, mid-way through a 2-batch gradient accumulation: saved when the group is done
    (lambda: SignalAtBatch(1, 2), ["trainer.accumulate_grad_batches=2"]),
])
def test_signal_at_an_epoch_or_accumulation_boundary_resumes_exactly(tmp_path, fake_slurm, signal_at,
                                                                      extra) -> None:
    common = [*COMMON, *extra]
    straight, _, _ = run(compose_run(tmp_path / "a", *common))
    with pytest.raises(SystemExit):
        run(compose_run(tmp_path / "b", *common), callbacks=[signal_at()])
    resumed, _, _ = run(compose_run(tmp_path / "b", *common))
    assert resumed["metrics"] == straight["metrics"]
    a, b = _final_weights(tmp_path / "a"), _final_weights(tmp_path / "b")
    assert all(torch.equal(value, b[name]) for name, value in a.items())


class SignalInLastValidation(Callback):
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == trainer.max_epochs - 1 and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGUSR1)


def test_a_signal_outside_the_training_steps_requeues_and_the_requeued_job_finishes_exactly(
        tmp_path, fake_slurm, monkeypatch) -> None:
    import ptrain.train

    straight, _, _ = run(compose_run(tmp_path / "a", *COMMON))

    # while the model loads: nothing to save, the job is requeued at once and starts over
    build = ptrain.train.build
    monkeypatch.setattr(ptrain.train, "build", lambda cfg: (os.kill(os.getpid(), signal.SIGUSR1), build(cfg))[1])
    with pytest.raises(SystemExit):
        run(compose_run(tmp_path / "b", *COMMON))
    monkeypatch.setattr(ptrain.train, "build", build)
    assert fake_slurm.read_text().split() == ["requeue", "4242"] and not (tmp_path / "b" / "checkpoints").exists()

    # in the last validation: fitting is done and saved in last.ckpt; the requeued job resumes from it
    with pytest.raises(SystemExit):
        run(compose_run(tmp_path / "b", *COMMON), callbacks=[SignalInLastValidation()])
    assert not list((tmp_path / "b").glob("hpc_ckpt_*")) and not (tmp_path / "b" / "results.json").exists()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    resumed, _, _ = run(compose_run(tmp_path / "b", *COMMON))
    assert resumed["metrics"] == straight["metrics"] and resumed["best_epoch"] == straight["best_epoch"]
    a, b = _final_weights(tmp_path / "a"), _final_weights(tmp_path / "b")
    assert all(torch.equal(value, b[name]) for name, value in a.items())
