"""The LightningModule: optimisation, metrics per split, and checkpoints that hold only what trains."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from ptrain.model import PromptedModel
from ptrain.tasks.base import Task

log = logging.getLogger(__name__)

#: the keys `configure_optimizers` reads (ptrain/conf/train.yaml `optim`)
OPTIM_KEYS = frozenset({"optimizer", "lr", "weight_decay", "schedule", "gamma", "warmup_ratio", "fused", "scheduler",
                        "scheduler_interval"})
#: the optimiser when the config names none (configs before ptrain/conf/optim, programmatic use)
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True}
#: the numeric ones and the values they may take: (key, lowest, highest, whether the lowest is allowed)
OPTIM_RANGES = (("lr", 0.0, float("inf"), False), ("weight_decay", 0.0, float("inf"), True),
                ("gamma", 0.0, 1.0, False), ("warmup_ratio", 0.0, 1.0, True))


def check_optim(optim: Mapping[str, Any]) -> None:
    """Optimiser values torch would refuse with a message that names no key (`Invalid learning rate: -1.0`), or
    accept and train badly with (a decay factor above 1), are errors naming the key and the range."""
    for key, low, high, low_allowed in OPTIM_RANGES:
        value = optim.get(key)
        if value is None and key != "lr":
            continue
        try:
            number = float("nan") if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not (math.isfinite(number) and (number > low or (low_allowed and number == low)) and number <= high):
            if math.isinf(high):
                what = f"{'>=' if low_allowed else '>'} {low:g}"
            else:
                what = f"in {'[' if low_allowed else '('}{low:g}, {high:g}]"
            hint = " (it defaults to method.lr)" if key == "lr" else ""
            raise ValueError(f"optim.{key}={value!r}: expected a number {what}{hint}")


class PromptTuningModule(L.LightningModule):
    """Trains the trainable part of a `PromptedModel` on a task.

    Checkpoints drop the frozen backbone (it is rebuilt from `model.pretrained` or its seeded config), so a
    bert-large prefix run saves megabytes rather than a gigabyte per checkpoint; everything trainable is kept,
    reparameterisation networks and optimizer state included, so `ckpt_path=last` resumes exactly.
    """

    strict_loading = False  # frozen weights are absent from checkpoints by design; see on_load_checkpoint

    def __init__(self, model: PromptedModel, task: Task, optim: Mapping[str, Any]) -> None:
        super().__init__()
        from ptrain.methods import check_keys

        check_keys("optim", optim, OPTIM_KEYS)
        check_optim(optim)
        self.model, self.task, self.optim = model, task, dict(optim)
        self._metric: Any = None
        self._records: list[tuple[int, Any, Any]] = []  # this rank's (batch number, outputs, batch), for _gather
        self._shard: Any = None  # the eval loader's EvalBatches when several processes evaluate
        self.model.train()  # from_pretrained returns eval-mode modules; Lightning keeps the modes it finds

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = batch.get("labels") if self.model.needs_targets else None
        return self.model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), targets=targets)

    def on_train_start(self) -> None:
        # HF's from_pretrained returns eval-mode modules and Lightning keeps modes as found: set them explicitly.
        self.model.train()

    # ---- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Length-grouped batches and a per-token loss: the data module gives the loss a fixed divisor, so a batch of
        # short sentences does not weigh its tokens more (Task.loss; None otherwise: the batch mean).
        tokens_per_batch = getattr(getattr(self.trainer, "datamodule", None), "tokens_per_batch", None)
        if tokens_per_batch:
            loss = self.task.loss(self(batch), batch, tokens_per_batch=tokens_per_batch)
        else:
            loss = self.task.loss(self(batch), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # A task may evaluate otherwise than by logits (generation tasks generate text): `task.evaluate(model,
        # batch)` returns whatever its metric's `update` takes; without the hook the metric gets the logits.
        evaluate = getattr(self.task, "evaluate", None)
        outputs = evaluate(self.model, batch) if evaluate is not None else self(batch).float()
        outputs = self.task.metric_inputs(outputs, batch)
        if self._shard is None:
            self._metric.update(outputs, batch)
        elif (number := self._shard.number(batch_idx)) is not None:  # None: a repeat that pads this rank's share
            self._records.append((number, move_data_to_device(outputs, "cpu"), move_data_to_device(batch, "cpu")))

    def _eval_start(self, loaders: Any) -> None:
        """A fresh metric; with several processes, the loader's `EvalBatches` says which batches are this rank's."""
        self._metric, self._records, self._shard = self.task.metric(), [], None
        if self.trainer.world_size > 1:
            self._shard = getattr(loaders, "batch_sampler", None)
            if not hasattr(self._shard, "number"):
                raise TypeError("a distributed evaluation needs ptrain's EvalBatches batch sampler "
                                "(ptrain.data.TaskDataModule's loaders), so that every example is scored once")

    def _eval_end(self, split: str) -> None:
        if self._shard is not None:
            self._gather(split)
        # With several processes every rank has scored the gathered union, so the values agree exactly; `max` keeps
        # them exact where a mean of W equal float32 values need not be (and the monitor sees them on every rank).
        for name, value in self._metric.compute().items():
            self.log(f"{split}/{name}", value, prog_bar=name == self.task.main_metric, sync_dist=True,
                     reduce_fx="max")

    def _gather(self, split: str) -> None:
        """Every rank's evaluated batches, to every rank, then the metric over all of them in batch order: the
        updates one process makes, so the score is exact whatever the metric (corpus F1, SQuAD's per-question
        windows that two ranks share). Objects go over CPU pickles; outputs are logits or generated text."""
        shards: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(shards, self._records)
        records = sorted((record for shard in shards for record in shard), key=lambda record: record[0])
        for _, outputs, batch in records:
            self._metric.update(outputs, batch)
        rows = [sum(len(self._shard.batch(number)) for number, _, _ in shard) for shard in shards]
        if self.trainer.is_global_zero:
            log.info("%s: %d examples in %d batches over %d ranks (%s)", split, sum(rows), len(records),
                     len(rows), ", ".join(f"rank {rank}: {count}" for rank, count in enumerate(rows)))
        self._records = []

    def on_validation_epoch_start(self) -> None:
        self._eval_start(self.trainer.val_dataloaders)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start(self.trainer.test_dataloaders)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # ---- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:  # e.g. method=head with a task scored by the frozen LM head, which has no weights of its own
            raise ValueError(f"nothing would train: the model has no trainable weights for task {self.task.name} "
                             f"(head kind {self.task.head_kind!r}); use method prompt, ptv1, ptv2 or finetune")
        optimizer = self._optimizer(params)
        if self.optim.get("scheduler"):
            return self._custom_scheduler(optimizer)
        schedule = self.optim.get("schedule", "constant")
        if schedule == "constant":
            return optimizer
        if schedule == "exponential":
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=float(self.optim.get("gamma", 0.95)))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        if schedule == "linear":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = int(total * float(self.optim.get("warmup_ratio", 0.0)))

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                return max(0.0, (total - step) / max(1, total - warmup))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        raise ValueError(f"optim.schedule must be linear, exponential or constant; got {schedule!r}")

    def _optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """`optim.optimizer` (a `_target_` config, `_partial_`) called with the trainable weights, `optim.lr` and
        `optim.weight_decay` (the keys grids sweep), and `fused` where the class takes it: one fused kernel per step
        instead of a loop of small ops cuts a CPU fine-tuning step's optimiser time from ~150 to ~30 ms (MiniLM,
        benchmarks/speed.py); torch fuses AdamW and Adam on CUDA and CPU."""
        import inspect

        from hydra.utils import instantiate

        spec = dict(self.optim.get("optimizer") or DEFAULT_OPTIMIZER)
        factory = instantiate({**spec, "_partial_": True})
        kwargs: dict[str, Any] = {"lr": float(self.optim["lr"]),
                                  "weight_decay": float(self.optim.get("weight_decay", 0.0))}
        devices = {p.device.type for p in params}
        if "fused" in inspect.signature(factory.func).parameters and "fused" not in spec:
            fused = bool(self.optim.get("fused", True)) and len(devices) == 1 and devices <= {"cuda", "cpu"}
            kwargs["fused"] = fused or None
        try:
            return factory(params, **kwargs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"optim.optimizer {spec.get('_target_')}: {error}") from None

    def _custom_scheduler(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """`optim.scheduler` (a `_target_` config, `_partial_`) called with the optimiser; a `T_max` left null is the
        run's number of optimiser steps (cosine decay over the whole run)."""
        from hydra.utils import instantiate

        spec = dict(self.optim["scheduler"])
        interval = self.optim.get("scheduler_interval", "step")
        if interval not in ("step", "epoch"):
            raise ValueError(f"optim.scheduler_interval must be step or epoch; got {interval!r}")
        if "T_max" in spec and spec["T_max"] is None:
            spec["T_max"] = max(1, int(self.trainer.estimated_stepping_batches if interval == "step"
                                       else self.trainer.max_epochs))
        scheduler = instantiate({**spec, "_partial_": True})(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    # ---- checkpoints ----------------------------------------------------------------------------
    def _trainable_keys(self) -> set[str]:
        # FSDP (trainer.strategy=fsdp) puts `_fsdp_wrapped_module.` into the names of the layers it wraps; the keys of
        # its full state dict, which is what checkpoints hold, have none
        keys = {name for name, p in self.named_parameters() if p.requires_grad}
        keys |= {name for name, _ in self.named_buffers() if not name.startswith("model.backbone.")}
        return {name.replace("_fsdp_wrapped_module.", "") for name in keys}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self._trainable_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["ptrain_saved_keys"] = sorted(keep)
        # Dropout masks and shuffling continue from here after a resume, as if never interrupted.
        checkpoint["ptrain_rng"] = _rng_state()
        if self._trainer is not None and self.trainer.world_size > 1:
            # Only rank 0 writes the file, but each rank's stream has moved on by its own batches (their lengths
            # differ, so do their dropout draws): every rank's state goes in. All ranks save together (Lightning's
            # save_checkpoint is called on every rank), so this gather is matched.
            states: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(states, checkpoint["ptrain_rng"])
            checkpoint["ptrain_rng_ranks"] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        missing = self._trainable_keys() - set(checkpoint["state_dict"])
        if missing:
            raise KeyError(f"checkpoint lacks trainable weights {sorted(missing)[:5]}... "
                           "(was it saved with another method or model?)")
        # `_trainer`: `self.trainer` raises when a checkpoint is loaded outside a Trainer (load_from_checkpoint)
        if "ptrain_rng" in checkpoint and self._trainer is not None and self._trainer.state.fn == "fit":
            ranks = checkpoint.get("ptrain_rng_ranks") or []
            world = self.trainer.world_size
            if (len(ranks) or 1) != world:
                log.warning("a checkpoint of %d process(es) resumed on %d: every rank continues rank 0's random "
                            "stream, so this is not the run an uninterrupted one would have been", len(ranks) or 1,
                            world)
            own = len(ranks) == world
            _set_rng_state(ranks[self.global_rank] if own else checkpoint["ptrain_rng"])


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    # plain containers and tensors only, so checkpoints load with torch.load(weights_only=True)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
