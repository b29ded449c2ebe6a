"""Exact resumption, also mid-epoch: cluster preemption (SLURM's warning signal) and restarts.

On SLURM, a job near its time limit (or being preempted) gets SIGUSR1 some seconds before SIGTERM/SIGKILL
(`--signal=USR1@90`). Lightning's own handler saves a checkpoint wherever the signal lands, possibly between
backward and the optimizer step. This callback only records the signal; at the next step boundary it saves
`run_dir/hpc_ckpt_<n>.ckpt` (weights, optimizer, scheduler, loop progress, RNG states), asks SLURM to requeue
the job, and exits. The requeued job runs the same command; `ptrain.train.run` finds the checkpoint and resumes,
and this callback makes the batch sampler skip the batches of the interrupted epoch that were already trained.
`ptrain.train.run` listens for the whole run: a signal before training requeues at once (nothing to save), one
after the last training step requeues when fitting ends, and the requeued job resumes from `last.ckpt`
(`requeued_checkpoint`).

Outside SLURM nobody requeues: the run stops with exit status `RESUMABLE_EXIT` (75, EX_TEMPFAIL: "try again") and
prints the command that resumes it (`... hydra.run.dir=DIR ckpt_path=last`); it has a checkpoint and no results.json.
Checkpoints also record the wall time spent so far (`wall_s` of a resumed run is the total) and the fingerprint of
the model, task and method that made them (`ptrain.train.run_fingerprint`), which a resumed run must match.

With several processes (DDP, FSDP) the ranks agree at every step boundary whether any of them has the signal, so
all save the same step together (saving is a collective), each rank's random state goes into the checkpoint
(`PromptTuningModule.on_save_checkpoint`), and rank 0 alone calls `scontrol requeue`.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

HPC_PREFIX = "hpc_ckpt_"
#: the exit status of a run stopped by the signal outside SLURM: checkpointed (or not yet started), no results,
#: resumable with the command it prints (sysexits.h EX_TEMPFAIL: a temporary failure, to be retried)
RESUMABLE_EXIT = 75


def slurm_job() -> str | None:
    """The SLURM job this process belongs to, as `scontrol requeue` names it (an array task: ARRAYJOB_TASK); a
    requeued job keeps it."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID") or None


def requeued_checkpoint(run_dir: str | Path) -> Path | None:
    """For a job SLURM requeued (SLURM_RESTART_COUNT > 0) that left no `hpc_ckpt` but an unfinished run: its
    `checkpoints/last.ckpt` (the signal came outside the training steps, after an epoch had been saved)."""
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
    return last if requeued and last.exists() and not (run_dir / "results.json").exists() else None


def latest_hpc_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest `hpc_ckpt_<n>.ckpt` in a run directory (what a requeued job resumes from)."""
    found = []
    for path in Path(run_dir).glob(f"{HPC_PREFIX}*.ckpt"):
        match = re.fullmatch(rf"{HPC_PREFIX}(\d+)\.ckpt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """What `ckpt_path=last` resumes: the newer of `checkpoints/last.ckpt` (written at every epoch's end) and the
    newest `hpc_ckpt_<n>.ckpt` (written when the signal stopped the run, possibly mid-epoch), or None."""
    candidates = [path for path in (Path(run_dir) / "checkpoints" / "last.ckpt", latest_hpc_checkpoint(run_dir))
                  if path is not None and path.is_file()]
    return max(candidates, key=lambda path: (path.stat().st_mtime_ns, path.name.startswith(HPC_PREFIX)),
               default=None)


def resume_command(run_dir: str | Path) -> str:
    """The command that resumes a stopped run: the one that started it (Hydra's overrides), in its directory,
    from its latest checkpoint."""
    overrides: list[str] = []
    script = "train.py"
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            overrides = list(HydraConfig.get().overrides.task)
            script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else script
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("ckpt_path", "run_dir", "overwrite")]
    return shlex.join(["python", script, *keep, f"hydra.run.dir={Path(run_dir).resolve()}", "ckpt_path=last"])


class ExactResume(Callback):
    def __init__(self, run_dir: str | Path, signum: int = signal.SIGUSR1,
                 requeue_command: str | None = "scontrol requeue {job_id}", started: float | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.signum = signum
        self.requeue_command = requeue_command
        self.requested = False
        self._previous: Any = None
        self.started = time.perf_counter() if started is None else started  # this process's start
        self.elapsed_before = 0.0  # wall seconds the resumed checkpoint had taken, restored from it
        self.fingerprint: dict | None = None  # set by ptrain.train.run once the model is built

    def elapsed(self) -> float:
        """Wall seconds of the whole run: this process's and those before it up to the checkpoint it resumed."""
        return self.elapsed_before + time.perf_counter() - self.started

    # ---- the signal ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        log.warning("received signal %d: checkpointing at the next step boundary, then requeueing", signum)
        self.requested = True

    def listen(self) -> None:
        """Catch the signal from now on (idempotent); `ptrain.train.run` calls it before loading the model."""
        if self._previous is None:
            self._previous = signal.signal(self.signum, self._on_signal)

    def release(self) -> None:
        """Give the signal back to its previous handler."""
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def _agreed(self, trainer: L.Trainer) -> bool:
        """Whether any rank has the signal. SLURM may signal one task, or each at a slightly different moment; a
        checkpoint is a collective, so every rank must decide alike, at the same step (one small all-reduce)."""
        return trainer.strategy.reduce_boolean_decision(self.requested, all=False)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.listen()
        if self._agreed(trainer):  # it came while the model and data were loading: nothing to save yet
            self._requeue_and_exit(trainer, "before training started")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._agreed(trainer):  # after the last training step (e.g. in the last validation): last.ckpt has it all
            self._requeue_and_exit(trainer, "after the last training step; the requeued job resumes from last.ckpt")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.release()

    def _requeue_and_exit(self, trainer: L.Trainer, when: str) -> None:
        if not slurm_job() or not self.requeue_command:
            self._stop_resumable(trainer, when)
        log.warning("signal %d arrived %s: requeueing", self.signum, when)
        if trainer.is_global_zero:  # one job, one requeue, however many ranks
            self._requeue()
        raise SystemExit(0)

    def _stop_resumable(self, trainer: L.Trainer, when: str) -> None:
        """Outside SLURM nobody requeues the job: stop with RESUMABLE_EXIT (not 0: there are no results) and say how
        to resume, on stderr and in the log (Hydra's train.log in the run directory)."""
        saved = last_checkpoint(self.run_dir)
        if saved is None:
            message = (f"stopped by signal {self.signum} {when}, before anything was saved: {self.run_dir} holds no "
                       "results; start the run again")
        else:
            message = (f"stopped by signal {self.signum} {when}: {self.run_dir} holds no results yet; resume from "
                       f"{saved.name} with\n  {resume_command(self.run_dir)}")
        if trainer.is_global_zero:
            log.warning("%s", message)
            print(message, file=sys.stderr, flush=True)
        raise SystemExit(RESUMABLE_EXIT)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # only between optimizer steps: gradients accumulated over part of a group are not in a checkpoint
        if batch_idx % max(1, trainer.accumulate_grad_batches) != 0 or not self._agreed(trainer):
            return
        existing = latest_hpc_checkpoint(self.run_dir)
        number = 1 + (int(existing.stem.removeprefix(HPC_PREFIX)) if existing else 0)
        # rank 0's name: another rank could look after rank 0 has written the file
        path = self.run_dir / trainer.strategy.broadcast(f"{HPC_PREFIX}{number}.ckpt", src=0)
        trainer.save_checkpoint(path)  # every rank takes part; rank 0 writes a temporary file and renames it
        log.warning("rank %d: checkpoint %s at global step %d", trainer.global_rank, path, trainer.global_step)
        self._requeue_and_exit(trainer, f"in training; saved {path.name}")  # the scheduler ends the job anyway

    def _requeue(self) -> None:
        job_id = slurm_job()
        command = shlex.split(self.requeue_command.format(job_id=job_id))
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            log.error("%s failed with exit code %d; resubmit the job to resume", command, result.returncode)

    # ---- what a checkpoint records beside the weights --------------------------------------------
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["ptrain_elapsed_s"] = self.elapsed()
        if self.fingerprint is not None:
            checkpoint["ptrain_fingerprint"] = dict(self.fingerprint)

    # ---- mid-epoch restarts ----------------------------------------------------------------------
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == "fit":  # not when validate/test load the best checkpoint: the clock runs on
            self.elapsed_before = float(checkpoint.get("ptrain_elapsed_s", 0.0))
        # Lightning resumes mid-epoch at the next batch index but iterates a fresh loader from its start (and
        # creates that iterator before any training hook runs), so the sampler is told here, at restore time,
        # which batches of the interrupted epoch were already trained.
        loop = checkpoint.get("loops", {}).get("fit_loop", {})
        progress = loop.get("epoch_loop.batch_progress", {})
        done = int(progress.get("current", {}).get("completed", 0))
        epoch = int(checkpoint.get("epoch", 0))
        datamodule = trainer.datamodule
        if datamodule is None or trainer.state.fn != "fit" or not loop:
            return
        if progress.get("is_last_batch", False):
            epoch, done = epoch + 1, 0  # saved after a finished epoch: the next one starts from its first batch
        # done == 0 without is_last_batch: saved before the first batch of `epoch` (a signal that landed in the
        # previous epoch's last step or its validation), so that epoch starts from its first batch
        datamodule.resume_at = (epoch, done)
        if getattr(datamodule, "train_sampler", None) is not None:
            datamodule.train_sampler.resume_at = datamodule.resume_at
            datamodule.train_sampler.epoch = epoch
        if done:
            log.info("resuming in epoch %d after its first %d batches", epoch, done)
