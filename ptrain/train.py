"""One training run from a composed config: build, fit, select on dev, test at the best checkpoint, record."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

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
                      float(cfg.get("head_dropout", 0.1)), pooling)
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
    from ptrain.resume import ExactResume, latest_hpc_checkpoint, requeued_checkpoint

    started = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None and (found := latest_hpc_checkpoint(run_dir) or requeued_checkpoint(run_dir)):
        log.warning("resuming the requeued run from %s", found)
        ckpt_path = str(found)
    if ckpt_path is None:
        _claim(run_dir, bool(cfg.get("overwrite", False)))
    resume = ExactResume(run_dir)
    resume.listen()  # from here on, the cluster's warning signal requeues the job instead of killing it
    try:
        return _run(cfg, run_dir, ckpt_path, resume, callbacks, started)
    finally:
        resume.release()


def _run(cfg: DictConfig, run_dir: Path, ckpt_path: str | None, resume: Any, callbacks: list | None,
         started: float) -> tuple[dict[str, Any], Any, Any]:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from ptrain.data import TaskDataModule
    from ptrain.loggers import make_logger
    from ptrain.module import PromptTuningModule
    from ptrain.results import write_json_atomic

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task, model, tokenizer = build(cfg)
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
                         cell=cell)
    if logger is not None:
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
                        callbacks=[checkpoints, latest, resume, *(callbacks or [])],
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
    for split, run in (("val", trainer.validate), ("test", trainer.test)):
        if split == "test" and not data.has_labelled_test():
            continue
        out = run(module, datamodule=data, ckpt_path=best, verbose=False)
        metrics.update({k: float(v) for k, v in (out[0] if out else {}).items() if k.startswith(f"{split}/")})

    results = {
        "method": cfg.method.name, "task": cfg.task.name, "model": cfg.model.name, "seed": int(cfg.seed),
        **summary, "metrics": metrics, "main_metric": task.main_metric, "best_epoch": best_epoch,
        "best_checkpoint": best, "experiment": cfg.get("experiment"),
        "wall_s": round(time.perf_counter() - started, 3), "config": config,
    }
    if not trainer.is_global_zero:  # every rank scored the same gathered predictions; rank 0 records them
        return results, module, trainer
    write_json_atomic(run_dir / "results.json", results)
    if logger is not None:
        final = {f"best/{k}": v for k, v in metrics.items()}
        final.update({"wall_s": results["wall_s"], **({"best_epoch": best_epoch} if best_epoch is not None else {})})
        logger.log_metrics(final)
        if hasattr(logger, "experiment") and type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()
        else:
            logger.save()  # the Trainer has finalized its logger already: flush these last rows
    print_results(results)
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


def _claim(run_dir: Path, overwrite: bool) -> None:
    """A fresh run may not silently replace a run directory's results and checkpoints (a rerun with the same
    `hydra.run.dir`): refuse, unless `overwrite=true`, which clears the old checkpoints (no stale best-*.ckpt)."""
    import shutil

    old = [p for p in (run_dir / "results.json", *sorted((run_dir / "checkpoints").glob("*.ckpt"))) if p.exists()]
    if not old:
        return
    if not overwrite:
        raise FileExistsError(
            f"{run_dir} already holds a run ({', '.join(str(p.relative_to(run_dir)) for p in old[:3])}): resume it "
            "with ckpt_path=last, choose another hydra.run.dir, or set overwrite=true to start it over")
    log.warning("overwrite=true: replacing the run in %s", run_dir)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


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
    table.add_row("wall time", f"{results['wall_s']:.1f} s")
    Console().print(table)
