"""One training run from a composed config: build, fit, select on dev, test at the best checkpoint, record."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def build(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """(task, PromptedModel, tokenizer) from a config; no Lightning involved, usable from notebooks."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from ptrain import dropout
    from ptrain.backbones import load_backbone
    from ptrain.heads import LM_HEAD_KINDS, build_head
    from ptrain.methods import build_prompt, trains_backbone
    from ptrain.model import PromptedModel

    try:
        task = instantiate(cfg.task, _convert_="all")
    except InstantiationException as error:  # surface the task's own error (file, line, key), not Hydra's wrapper
        raise (error.__cause__ or error) from None
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg["shift_positions"] = cfg.method.get("shift_positions", True)
    model_cfg["lm_head"] = task.head_kind in LM_HEAD_KINDS  # tasks that score or generate tokens
    backbone, tokenizer = load_backbone(model_cfg)
    method = OmegaConf.to_container(cfg.method, resolve=True)
    prompt = build_prompt(method, backbone, tokenizer)
    pooling = task.pooling or backbone.default_pooling
    head = build_head(task.head_kind, backbone.geometry.hidden_size, task.num_labels,
                      float(cfg.get("head_dropout", 0.1)), pooling, init=str(cfg.get("head_init", "normal")),
                      init_std=float(getattr(backbone.model.config, "initializer_range", 0.02)))
    model = PromptedModel(backbone, head, prompt, train_backbone=trains_backbone(method),
                          backbone_dropout=bool(method.get("backbone_dropout", True)))
    if method.get("init_from"):
        from ptrain.transfer import init_from_artifact

        init_from_artifact(model, task, tokenizer, method, method["init_from"])
    if (model_cfg.get("dropout_impl") or "fast") == "fast":
        dropout.install(model)  # the head's and the prompt's dropout too (the backbone's is done by load_backbone)
    model.check_position_budget(task.max_length)
    return task, model, tokenizer


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run and return the results dict (also written to `run_dir/results.json`)."""
    return run(cfg)[0]


def run(cfg: DictConfig, callbacks: list | None = None) -> tuple[dict[str, Any], Any, Any]:
    """(results, LightningModule, Trainer): the module is returned so tests can inspect trained weights.

    `callbacks` are added to the Trainer's (for programmatic use; configs cover everything else)."""
    from ptrain.resume import ExactResume

    started = time.perf_counter()
    check_config(cfg)
    run_dir = Path(cfg.run_dir)
    ckpt_path = resume_path(cfg.get("ckpt_path"), run_dir)
    claim_run_dir(run_dir, bool(cfg.get("overwrite", False)), fresh=ckpt_path is None)
    run_dir.mkdir(parents=True, exist_ok=True)  # rank 0 made it claiming it; other ranks may see another file system
    resume = ExactResume(run_dir, started=started)
    resume.listen()  # from here on, the cluster's warning signal requeues the job instead of killing it
    try:
        return _run(cfg, run_dir, ckpt_path, resume, callbacks)
    finally:
        resume.release()
        release_run_dir(run_dir)


def check_config(cfg: DictConfig) -> None:
    """Top-level values that would otherwise fail deep inside with a message naming no key (`seed=abc`: "invalid
    literal for int()"), or run and record something wrong (`trainer.max_epochs=0`: the untrained model's scores in
    results.json)."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed!r}: expected a whole number from 0 to 2**32-1 (e.g. seed=3)")
    trainer = cfg.get("trainer") or {}
    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps")
    for key, value in (("max_epochs", epochs), ("max_steps", steps)):
        if value == 0:
            raise ValueError(f"trainer.{key}=0: nothing would train, and results.json would hold the untrained "
                             f"model's scores; set trainer.{key} >= 1 (-1: no limit)")
    if epochs == -1 and steps in (-1, None):
        raise ValueError("trainer.max_epochs=-1 with trainer.max_steps=-1: the run would never end; limit one of them")


def resume_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """The checkpoint a run resumes from, or None for a fresh run. `last` is the run directory's latest checkpoint
    (`ptrain.resume.last_checkpoint`); without `ckpt_path` a requeued job resumes where it stopped. A `last` with
    nothing to resume is an error naming the directory (Lightning would warn and silently start from scratch)."""
    from ptrain.resume import last_checkpoint, latest_hpc_checkpoint, requeued_checkpoint

    if ckpt_path is None:
        if found := latest_hpc_checkpoint(run_dir) or requeued_checkpoint(run_dir):
            log.warning("resuming the requeued run from %s", found)
            return str(found)
        return None
    if str(ckpt_path) == "last":
        found = last_checkpoint(run_dir)
        if found is None:
            holds = "does not exist" if not run_dir.is_dir() else "has no checkpoints/last.ckpt, no hpc_ckpt_<n>.ckpt"
            raise FileNotFoundError(f"ckpt_path=last: the run directory {run_dir} {holds}: nothing to resume; point "
                                    "hydra.run.dir at the run to resume, or drop ckpt_path to start a new run")
        return str(found)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file (expected last, or a .ckpt's path)")
    return str(ckpt_path)


#: model keys that change how the backbone runs, not what its weights are: a run may resume with other values
RUNTIME_MODEL_KEYS = frozenset({"attn_implementation", "dtype", "gradient_checkpointing", "dropout_impl"})


def run_fingerprint(cfg: DictConfig, task: Any) -> dict[str, str]:
    """What made a checkpoint: the model (name, weights source, config, seed), the task (name and the fingerprint of
    its data and settings, the tokenisation cache's key) and the method (name and the keys that shape its weights,
    `ptrain.methods.SHAPE_KEYS`), each as its name and a digest. Checkpoints carry it (`ptrain_fingerprint`); a run
    resumed with another one is refused, since same-shaped weights (tiny_bert's prefix on tiny_roberta) would
    otherwise load without complaint."""
    import hashlib
    import json

    from ptrain.methods import SHAPE_KEYS

    def digest(state: Any) -> str:
        return hashlib.sha1(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:12]

    model = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k not in RUNTIME_MODEL_KEYS}
    method = {k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items() if k in SHAPE_KEYS}
    return {"model": str(cfg.model.name), "model_digest": digest(model),
            "task": str(cfg.task.name), "task_digest": task.fingerprint(),
            "method": str(cfg.method.name), "method_digest": digest(method)}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded with `weights_only=True` (a checkpoint may come from someone else; a pickle
    must not run) and memory-mapped (a fine-tuning checkpoint holds the whole backbone). A truncated or corrupt file
    is an error naming it; torch's own message names no path (`OSError: [Errno 22] Invalid argument`)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as error:
        first = str(error).splitlines()[0].split(". ")[0] if str(error) else ""  # torch's first sentence
        raise ValueError(f"{path}: not a readable ptrain checkpoint, truncated or corrupt ({type(error).__name__}: "
                         f"{first}); resume from another one (ckpt_path=PATH) or start over (overwrite=true)") from None


def check_fingerprint(path: str, saved: dict[str, Any], current: dict[str, str]) -> None:
    """Refuse a checkpoint made by another model, task or method, naming what it was made by and what this run has."""
    theirs = saved.get("ptrain_fingerprint")
    if theirs is None:  # saved before checkpoints carried one
        log.warning("%s records no model, task or method: resuming it unchecked", path)
        return
    differ = [f"{part} {theirs.get(part)} ({theirs.get(f'{part}_digest')}) there, {current[part]} "
              f"({current[f'{part}_digest']}) here" for part in ("model", "task", "method")
              if (theirs.get(part), theirs.get(f"{part}_digest")) != (current[part], current[f"{part}_digest"])]
    if differ:
        raise ValueError(f"{path} was saved by another run: {'; '.join(differ)}. Resume it with the model, task and "
                         "method it was trained with (its run directory's .hydra/config.yaml), or start a new run")


def _run(cfg: DictConfig, run_dir: Path, ckpt_path: str | None, resume: Any,
         callbacks: list | None) -> tuple[dict[str, Any], Any, Any]:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from ptrain.callbacks import build_callbacks
    from ptrain.data import TaskDataModule
    from ptrain.loggers import make_logger
    from ptrain.logs import tidy_library_logs
    from ptrain.module import PromptTuningModule
    from ptrain.progress import ProgressLog
    from ptrain.results import write_json_atomic

    tidy_library_logs()
    log.info("run directory: %s", run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task, model, tokenizer = build(cfg)
    resume.fingerprint = run_fingerprint(cfg, task)
    resumed_step = None
    if ckpt_path is not None:  # before any Trainer or logger: a bad checkpoint stops the run with nothing written
        saved = read_checkpoint(ckpt_path)
        check_fingerprint(ckpt_path, saved, resume.fingerprint)
        resumed_step = int(saved.get("global_step", 0))
        del saved
    summary = model.parameter_summary()
    data = TaskDataModule(task, tokenizer, seed=cfg.seed, **cfg.data)
    module = PromptTuningModule(model, task, OmegaConf.to_container(cfg.optim, resolve=True))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_cfg.get("strategy") == "fsdp":  # before the logger: an FSDP run that cannot start opens no W&B run
        trainer_cfg["strategy"] = fsdp_strategy(model, task)

    config = OmegaConf.to_container(cfg, resolve=True)
    cell = f"{cfg.task.name}-{cfg.method.name}-{cfg.model.name}"
    # main_metric beside the config: a report read back from W&B picks each run's headline metric by it
    logger = make_logger(cfg.logger, run_dir, f"{cell}-s{cfg.seed}", {**config, "main_metric": task.main_metric},
                         cell=cell, resumed_step=resumed_step)
    if logger is not None and not resumed_step:  # a resumed run's log holds them (but not one of step 0's)
        logger.log_metrics({k: float(v) for k, v in summary.items()}, step=0)
    monitor = f"val/{task.main_metric}"
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch}", monitor=monitor,
                                  mode="max", save_top_k=1, auto_insert_metric_name=False)
    # Lightning 2.6 writes save_last's file only in steps where the best one improved; `ckpt_path=last` must
    # mean the latest epoch, so a second callback without a monitor rewrites last.ckpt at every epoch's end.
    latest = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                             enable_version_counter=False)
    plugins = []
    if SLURMEnvironment.detect():  # ExactResume handles the requeue signal instead of Lightning's handler
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = L.Trainer(**trainer_cfg, logger=logger or False,
                        callbacks=[checkpoints, latest, resume, ProgressLog(float(cfg.get("progress_every_s", 30))),
                                   *build_callbacks(OmegaConf.to_container(cfg.get("callbacks", {}), resolve=True)),
                                   *(callbacks or [])],
                        default_root_dir=str(run_dir), plugins=plugins)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    if trainer.is_global_zero:  # every rank has loaded its checkpoint by now
        for stale in run_dir.glob("hpc_ckpt_*.ckpt"):  # the finished run's last.ckpt supersedes them
            stale.unlink(missing_ok=True)

    best = checkpoints.best_model_path or None
    metrics: dict[str, float] = {}
    best_epoch = None
    if best:
        best_epoch = checkpoint_epoch(best)
        selection = f"best {monitor}"
    else:  # e.g. trainer.max_steps ended training before the first epoch's validation: nothing to select from
        selection = (f"none: no validation ran during training (trainer.max_steps={trainer_cfg.get('max_steps')}, "
                     f"trainer.max_epochs={trainer_cfg.get('max_epochs')}), so the scores are of the last weights")
        log.warning("no model selection on %s: %s", monitor, selection.removeprefix("none: "))
    # The selected checkpoint's scores reach the experiment logger as best/* below, at the last step; logged by
    # validate/test themselves they would be a phantom epoch past the last one in csv/metrics.csv and W&B.
    trainer.loggers = []
    for split, run in (("val", trainer.validate), ("test", trainer.test)):
        if split == "test" and not data.has_labelled_test():
            continue
        out = run(module, datamodule=data, ckpt_path=best, verbose=False)
        metrics.update({k: float(v) for k, v in (out[0] if out else {}).items() if k.startswith(f"{split}/")})
    trainer.loggers = [logger] if logger is not None else []

    results = {
        "method": cfg.method.name, "task": cfg.task.name, "model": cfg.model.name, "seed": int(cfg.seed),
        **summary, "metrics": metrics, "main_metric": task.main_metric, "best_epoch": best_epoch,
        "best_checkpoint": best, "selection": selection, "experiment": cfg.get("experiment"),
        "wall_s": round(resume.elapsed(), 3), "config": config,
    }
    if not trainer.is_global_zero:  # every rank scored the same gathered predictions; rank 0 records them
        return results, module, trainer
    write_json_atomic(run_dir / "results.json", results)
    if logger is not None:
        final = {f"best/{k}": v for k, v in metrics.items()}
        final.update({"wall_s": results["wall_s"], **({"best_epoch": best_epoch} if best_epoch is not None else {})})
        logger.log_metrics(final, step=trainer.global_step)  # the run's last step, not step 0
        if hasattr(logger, "experiment") and type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()
        else:
            logger.save()  # the Trainer has finalized its logger already: flush these last rows
    print_results(results)
    print(f"results and checkpoints: {run_dir}")
    return results, module, trainer


def fsdp_strategy(model: Any, task: Any) -> Any:
    """`trainer.strategy=fsdp` for a prompted model: every transformer layer of the frozen backbone (the classes HF
    marks `_no_split_modules`) is its own FSDP unit, sharded across the ranks and gathered only for its forward pass,
    so each GPU holds 1/N of the backbone; the prompt module and the head sit in the root unit and train.
    `use_orig_params` lets one unit mix frozen and trainable weights and keeps parameter names, which checkpoints
    (trainable weights only) rely on. CUDA only: Lightning 2.6 refuses FSDP on CPU, and so does torch's FSDP, which it
    wraps ("FSDP needs a non-CPU accelerator device"), so this path is not exercised by the CPU test suite."""
    import torch
    from lightning.pytorch.strategies import FSDPStrategy

    if not torch.cuda.is_available():
        raise ValueError("trainer.strategy=fsdp shards the backbone across CUDA GPUs, and no CUDA device is visible: "
                         "Lightning 2.6's FSDP (torch FSDP) does not run on CPU. On CPU, use trainer=ddp")
    if getattr(task, "evaluate", None) is not None:  # generation: ranks may stop decoding after different steps
        raise ValueError(f"trainer.strategy=fsdp cannot evaluate {task.name}: generation runs a forward pass per "
                         "token, a collective under FSDP, and ranks may stop after different numbers; use ddp")
    names = set(getattr(model.backbone.model, "_no_split_modules", None) or ())
    layers = {type(module) for module in model.backbone.modules() if type(module).__name__ in names}
    if not layers:
        raise ValueError(f"trainer.strategy=fsdp: {type(model.backbone.model).__name__} names no layer classes "
                         "(_no_split_modules) to shard; use trainer.strategy=ddp")
    return FSDPStrategy(auto_wrap_policy=layers, use_orig_params=True)


def checkpoint_epoch(path: str | Path) -> int:
    """The epoch a checkpoint was saved in. Loaded with `weights_only=True`: the path comes from callback state
    restored from a checkpoint, which a user could be handed, and a pickle must not run."""
    import pickle

    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (pickle.UnpicklingError, RuntimeError, OSError, KeyError, EOFError) as error:
        raise ValueError(f"{path}: not a readable ptrain checkpoint with an 'epoch' ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None


#: the marker of a run in progress in a directory, created atomically (O_EXCL): {"pid", "host", "job"} of its process
#: (job: the SLURM job, which a requeued job shares with the one it continues, on whatever node)
CLAIM = ".ptrain-claim"


def secondary_rank() -> bool:
    """Whether this process is a rank other than 0 of a multi-process run (Lightning's DDP reruns the command with
    LOCAL_RANK set; torchrun sets RANK, srun SLURM_PROCID): rank 0 claims the shared run directory for all."""
    return any(os.environ.get(key, "0") not in ("", "0") for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


class RunDirTaken(FileExistsError):
    """A fresh run's directory holds a run, or another run claimed it: `reason` says which, `advice` what to do."""

    def __init__(self, run_dir: Path, reason: str, advice: str) -> None:
        self.run_dir, self.reason = run_dir, reason
        super().__init__(f"{run_dir} {reason}: {advice}")


def _read_claim(run_dir: Path) -> tuple[int, str, str | None] | None:
    """(pid, host, SLURM job) of a run directory's claim, or None when there is none or it cannot be read (written
    by hand; claims are linked into place whole, see `_write_claim`)."""
    import json

    try:
        claim = json.loads((run_dir / CLAIM).read_text(encoding="utf-8"))
        return int(claim["pid"]), str(claim["host"]), claim.get("job")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _claim_owner(run_dir: Path) -> tuple[str | None, bool]:
    """(who else holds the directory's claim, in words; whether that is a live process of this host). None when it is
    unclaimed, claimed by this process, by an earlier run of this SLURM job (requeued, perhaps onto another node,
    after a kill that left the claim behind), or by a process of this host that is gone (a crash, a kill -9); a claim
    from another host cannot be checked, so it counts as held."""
    import socket

    from ptrain.resume import slurm_job

    claim = _read_claim(run_dir)
    if claim is None or claim == _my_claim() or (claim[2] is not None and claim[2] == slurm_job()):
        return None, False
    pid, host, _ = claim
    if host != socket.gethostname():
        return f"claimed by a run on host {host} (pid {pid})", False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return None, False
    except PermissionError:  # another user's process
        pass
    return f"in use by a running process (pid {pid})", True


def claim_run_dir(run_dir: Path, overwrite: bool = False, fresh: bool = True) -> None:
    """Make `run_dir` this run's while it runs (`release_run_dir` ends it), or refuse with RunDirTaken, writing
    nothing when refusing.

    Refused: a directory that another live process claimed, i.e. a run in progress there (`overwrite=true` takes over
    a claim from another host, which cannot be checked, never one of a live process here); and, for a `fresh` run (not
    a resumed one), a directory that holds a run (results.json, checkpoints), unless `overwrite=true`, which clears the
    old checkpoints (no stale best-*.ckpt). The claim is a file linked into place whole (`_write_claim`), so of two
    runs started into one directory at once exactly one gets it (results.json alone lets both through). Ranks
    other than 0 only check for a finished run: rank 0's claim is theirs."""
    import shutil

    owner, live = (None, False) if secondary_rank() else _claim_owner(run_dir)  # rank 0's claim is the run's
    if owner and (live or not overwrite):
        raise RunDirTaken(run_dir, f"is {owner}", "choose another hydra.run.dir"
                          + ("" if live else ", or set overwrite=true if that run is gone"))
    old = [p for p in (run_dir / "results.json", *sorted((run_dir / "checkpoints").glob("*.ckpt"))) if p.exists()]
    old = old if fresh else []
    if old and not overwrite:
        raise RunDirTaken(run_dir, f"already holds a run ({', '.join(str(p.relative_to(run_dir)) for p in old[:3])})",
                          "resume it with ckpt_path=last, choose another hydra.run.dir, or set overwrite=true to start "
                          "it over")
    if secondary_rank():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_claim(run_dir, overwrite)
    if old:
        log.warning("overwrite=true: replacing the run in %s", run_dir)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _write_claim(run_dir: Path, overwrite: bool) -> None:
    """Create the claim file with its content in one step, or raise RunDirTaken if another live run holds it.

    The claim is written to a file of its own first and then hard-linked to its name: link(2) fails when the name
    exists, so the claim appears whole or not at all. (Created empty with O_EXCL and written after, a second run
    reading it in between saw an unreadable claim, took it for a dead one, and both ran in one directory.) A stale
    claim, whose process is gone, is replaced with rename(2), then read back: of two runs replacing one stale claim
    at the same moment the one whose claim is not there refuses."""
    import json

    mine = _my_claim()
    staged = run_dir / f"{CLAIM}.{mine[1]}.{mine[0]}"
    staged.write_text(json.dumps(dict(zip(("pid", "host", "job"), mine))), encoding="utf-8")
    try:
        try:
            os.link(staged, run_dir / CLAIM)
            return
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: rename is atomic but does not refuse an existing name
            if not (run_dir / CLAIM).exists():
                os.replace(staged, run_dir / CLAIM)
                return
        owner, live = _claim_owner(run_dir)  # another run claimed it since we looked, or its owner is gone
        if owner and (live or not overwrite):
            raise RunDirTaken(run_dir, f"is {owner}", "choose another hydra.run.dir")
        os.replace(staged, run_dir / CLAIM)  # ours already, or its owner is gone
        if _read_claim(run_dir) != mine:
            owner, _ = _claim_owner(run_dir)
            raise RunDirTaken(run_dir, f"is {owner or 'claimed by another run'}", "choose another hydra.run.dir")
    finally:
        staged.unlink(missing_ok=True)


def release_run_dir(run_dir: Path) -> None:
    """End this process's claim on a run directory (the run finished, failed or stopped): its results and
    checkpoints protect a finished run from here on, and a stopped one can be resumed."""
    if _read_claim(run_dir) == _my_claim():
        (run_dir / CLAIM).unlink(missing_ok=True)


def _my_claim() -> tuple[int, str, str | None]:
    import socket

    from ptrain.resume import slurm_job

    return os.getpid(), socket.gethostname(), slurm_job()


class ClaimRunDir(Callback):
    """Hydra callback (ptrain/conf/train.yaml `hydra.callbacks`): checks and claims the run directory of
    `ptrain train` before Hydra writes `.hydra/` and `train.log` into it, so a refused run leaves a finished run's
    directory as it was. A time-stamped directory (`${now:...}` in `hydra.run.dir`, as by default) that another run
    took in the same second is not refused: this run takes the first free sibling (`<dir>-1`, `-2`, ...) and says
    so. Multiruns and in-process `ptrain.train.run` calls are checked by `run` itself (after Hydra's writes, for a
    multirun job)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra turns a callback's exceptions into warnings and goes on, so a refusal leaves as SystemExit (status 1,
        the message on stderr), which it does not catch."""
        if secondary_rank():  # Lightning's DDP reruns the command, with rank 0's directory
            return
        try:
            self._claim(config)
        except (ValueError, OSError) as error:  # RunDirTaken, FileNotFoundError; config values
            raise SystemExit(f"{type(error).__name__}: {error}") from None

    def _claim(self, config: DictConfig) -> None:
        check_config(config)
        run_dir = Path(config.hydra.run.dir)
        if resume_path(config.get("ckpt_path"), run_dir) is not None:
            claim_run_dir(run_dir, bool(config.get("overwrite", False)), fresh=False)
            return
        if "${now:" not in str(OmegaConf.to_container(config.hydra.run, resolve=False).get("dir", "")):
            claim_run_dir(run_dir, bool(config.get("overwrite", False)))
            return
        reason = ""
        for number in range(1000):
            candidate = run_dir if number == 0 else run_dir.with_name(f"{run_dir.name}-{number}")
            try:
                claim_run_dir(candidate)
            except RunDirTaken as taken:
                reason = reason or taken.reason  # why the time-stamped directory itself was taken
                continue
            if number:
                log.warning("%s %s; this run writes to %s instead", run_dir, reason, candidate)
                with open_dict(config):
                    config.hydra.run.dir = str(candidate)
            return
        raise RunDirTaken(run_dir, "and its 999 siblings are taken", "choose another hydra.run.dir")


def print_results(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{results['task']} · {results['method']} · {results['model']} · seed {results['seed']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(results["metrics"].items()):
        table.add_row(name, f"{value:.4f}")
    table.add_row("trainable params", f"{results['trainable_params']:,}")
    table.add_row("share of total", f"{100 * results['trainable_share']:.3f}% of {results['total_params']:,}")
    table.add_row("prompt bytes", f"{results['prompt_bytes']:,}")
    table.add_row("best epoch", str(results["best_epoch"]))
    if results.get("best_checkpoint") is None:
        table.add_row("selection", "none: the last weights")
    table.add_row("wall time", f"{results['wall_s']:.1f} s")
    Console().print(table)



#: the packaged configs (ptrain/conf); `hydra.searchpath` or `--config-dir` adds a directory of one's own
CONFIG_PATH = "pkg://ptrain.conf"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """`python train.py [overrides]` in a clone and `ptrain train [overrides]` anywhere ptrain is installed (see
    `main_with_args`). Returns the dev score of the main metric, for Hydra sweepers that optimise it."""
    try:
        results = train(cfg)
    except BaseException:
        remove_if_nothing_ran(Path(cfg.run_dir))
        raise
    return results["metrics"].get(f"val/{results['main_metric']}")


#: what a run directory holds before anything trained: Hydra's config and log, ptrain's claim
BEFORE_TRAINING = frozenset({".hydra", "train.log", CLAIM})


def remove_if_nothing_ran(run_dir: Path) -> None:
    """A run that failed before it trained (a bad value, a missing file) leaves no time-stamped folder holding only
    Hydra's copy of its config and a log: the error is on the console (in a SLURM job, its error file). A folder
    with anything else in it (checkpoints, results, a logger's files) is kept."""
    import shutil

    try:
        names = {path.name for path in run_dir.iterdir()}
    except OSError:
        return
    if not names <= BEFORE_TRAINING:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):  # Hydra's file handler holds train.log open: close it, not the console's
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.resolve():
            root.removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    here = Path.cwd().resolve()
    for parent in run_dir.resolve().parents:  # outputs/<task>/<method>/<model>/ that only this run made
        if parent == here or here not in parent.parents:
            break
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break


def main_with_args(argv: list[str]) -> None:
    """`ptrain train ARGS`: Hydra's main on ARGS rather than on sys.argv[1:], which stays `train ARGS`, because
    Lightning's DDP starts each further rank by rerunning sys.argv (hydra's `_run_hydra` is what `hydra.main` calls
    once it has parsed sys.argv; hydra-core is pinned to 1.3)."""
    from hydra._internal.utils import _run_hydra, get_args_parser

    parser = get_args_parser()
    _run_hydra(args=parser.parse_args(argv), args_parser=parser, task_function=main.__wrapped__,
               config_path=CONFIG_PATH, config_name="train")
