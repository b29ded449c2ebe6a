"""The LightningDataModule: reads a task's splits once, tokenises with a disk cache, batches by length."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator
from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from ptrain.paths import cache_dir
from ptrain.tasks.base import Task

log = logging.getLogger(__name__)


class _EpochRelay:
    """Lightning calls `set_epoch` on `loader.sampler` and `loader.batch_sampler.sampler`, never on the batch
    sampler itself; this stands in as the batch sampler's `.sampler` and forwards the call."""

    def __init__(self, owner: LengthGroupedBatches) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.epoch = epoch


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches, of similar lengths when `group` is on: less padding, fewer wasted FLOPs.

    Indices are shuffled, cut into windows of `window` batches, sorted by length inside each window, then the
    batches are shuffled again. The order depends only on (seed, epoch), the same on every rank; under
    torch.distributed each rank takes every world-size-th batch (so `trainer.use_distributed_sampler` is off).
    `resume_at = (epoch, n)` drops the first n batches of that epoch, so a run resumed mid-epoch sees exactly
    the batches an uninterrupted run would (keyed by epoch: Lightning may call iter() before training starts).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, window: int = 50,
                 group: bool = True) -> None:
        self.lengths, self.batch_size, self.seed, self.window, self.group = lengths, batch_size, seed, window, group
        self.epoch = 0
        self.resume_at: tuple[int, int] = (-1, 0)
        self.sampler = _EpochRelay(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * (self.window if self.group else 1)
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start:start + span]
            if self.group:
                chunk = sorted(chunk, key=lambda i: self.lengths[i])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._rank_world()
        batches = self._all_batches()
        batches = batches[: len(batches) - len(batches) % world] if world > 1 else batches
        mine = batches[rank::world]
        epoch, done = self.resume_at
        return iter(mine[done:] if epoch == self.epoch else mine)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) // self._rank_world()[1]


class EvalBatches(Sampler[list[int]]):
    """Evaluation batches in dataset order, dealt out to ranks: batch g holds examples [g*B, (g+1)*B), the batch one
    process would evaluate, and rank r of W evaluates batches r, r+W, r+2W, ... (no shuffling).

    Every rank runs the same number of batches, because a forward pass may be a collective (FSDP gathers its sharded
    weights in it; DDP may broadcast buffers): a rank short of one repeats the last batch, and `number` tells the
    module to drop it. The module gathers each rank's (batch number, outputs, batch) and updates the task metric in
    batch order, on the same batches one process would see, so dev and test scores do not depend on the world size.
    """

    def __init__(self, size: int, batch_size: int) -> None:
        self.size, self.batch_size = size, batch_size
        self.total = -(-size // batch_size)  # batches over all ranks

    def batch(self, number: int) -> list[int]:
        return list(range(number * self.batch_size, min((number + 1) * self.batch_size, self.size)))

    def number(self, position: int) -> int | None:
        """The global number of this rank's `position`-th batch, or None for a repeat that pads its share."""
        rank, world = LengthGroupedBatches._rank_world()
        number = position * world + rank
        return number if number < self.total else None

    def __iter__(self) -> Iterator[list[int]]:
        for position in range(len(self)):
            number = self.number(position)
            yield self.batch(self.total - 1 if number is None else number)

    def __len__(self) -> int:
        return -(-self.total // LengthGroupedBatches._rank_world()[1])


def feature_length(feature: dict) -> int:
    """Tokens of a feature; for a feature of several rows (choices, siamese segments) its longest row, which is what its
    rows are padded to in a batch."""
    ids = feature["input_ids"]
    if ids and isinstance(ids[0], list):
        return max(len(row) for row in ids)
    return len(ids)


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    """What decides the ids: the tokenizer's class, sides, settings (do_lower_case, add_prefix_space...) and, for
    fast tokenizers, its whole vocabulary and pipeline (a local tokenizer folder edited in place changes it)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    settings = {key: value for key, value in getattr(tokenizer, "init_kwargs", {}).items()
                if isinstance(value, str | int | float | bool | type(None))}
    state = json.dumps([type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer), tokenizer.padding_side,
                        getattr(tokenizer, "truncation_side", None), settings], sort_keys=True, default=str)
    digest = hashlib.sha1(state.encode())
    if backend is not None:  # less the truncation and padding state, which each call to the tokenizer resets
        pipeline = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        digest.update(json.dumps(pipeline, sort_keys=True).encode())
    return digest.hexdigest()[:12]


class TaskDataModule(L.LightningDataModule):
    def __init__(self, task: Task, tokenizer: Any, batch_size: int = 32, eval_batch_size: int = 64,
                 num_workers: int = 0, group_by_length: bool = True, cache: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.task, self.tokenizer = task, tokenizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.group_by_length, self.cache, self.seed = num_workers, group_by_length, cache, seed
        self.features: dict[str, list[dict] | None] = {}
        self.train_sampler: LengthGroupedBatches | None = None
        self.resume_at: tuple[int, int] = (-1, 0)  # (epoch, batches done), set when resuming mid-epoch

    def setup(self, stage: str | None = None) -> None:
        if self.features:
            return
        trainer = self.trainer  # None outside a Trainer (notebooks, tests)
        if trainer is not None and trainer.world_size > 1 and self.cache:
            # One process per node tokenises and writes the cache (per node: PTRAIN_CACHE need not be shared); the
            # others wait for it, then read it, instead of all tokenising at once. With data.cache=false each rank
            # tokenises for itself (the same features: encoding is deterministic).
            if trainer.local_rank == 0:
                self._read_splits()
            trainer.strategy.barrier("ptrain-tokenise")
            if trainer.local_rank != 0:
                self._read_splits()
        else:
            self._read_splits()

    def _read_splits(self) -> None:
        for split in ("train", "validation", "test"):
            self.features[split] = self._features(split)
        for split in ("train", "validation"):
            if not self.features[split]:
                raise FileNotFoundError(
                    f"task {self.task.name} has no {split} split"
                    + (f" in {self.task.data_dir}" if self.task.data_dir else "")
                    + (" (set task.train_from_validation to carve one out of the validation split)"
                       if split == "train" else "")
                )

    def _features(self, split: str) -> list[dict] | None:
        key = f"{self.task.name}-{self.task.fingerprint()}-{_tokenizer_fingerprint(self.tokenizer)}-{split}"
        # JSON, not pickle: the cache may be shared (PTRAIN_CACHE on a cluster file system), and a planted pickle
        # would run code in every job that reads it; features are plain lists, numbers and strings
        path = cache_dir() / "tokenized" / f"{key}.json"
        if self.cache and path.exists():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, OSError) as error:  # truncated or corrupt (a node died mid-write): tokenise again
                log.warning("tokenisation cache %s is unreadable (%s: %s); rebuilding it", path,
                            type(error).__name__, error)
        examples = self.task.examples(split)
        features = None if examples is None else self.task.encode(examples, self.tokenizer)
        if features is not None:
            log.info("tokenised %s %s: %d features", self.task.name, split, len(features))
        if self.cache:
            from ptrain.results import write_text_atomic

            write_text_atomic(path, json.dumps(features, separators=(",", ":")))
        return features

    def _loader(self, split: str, train: bool) -> DataLoader | None:
        features = self.features.get(split)
        if not features:
            return None
        collate = partial(self.task.collate, pad_id=self.tokenizer.pad_token_id or 0)
        if train:
            self.train_sampler = LengthGroupedBatches([feature_length(f) for f in features], self.batch_size,
                                                      self.seed, group=self.group_by_length)
            if self.resume_at[0] >= 0:  # restoring: Lightning iterates before it calls set_epoch
                self.train_sampler.resume_at = self.resume_at
                self.train_sampler.epoch = self.resume_at[0]
            return DataLoader(features, batch_sampler=self.train_sampler, collate_fn=collate,
                              num_workers=self.num_workers, generator=self._generator())
        return DataLoader(features, batch_sampler=EvalBatches(len(features), self.eval_batch_size),
                          collate_fn=collate, num_workers=self.num_workers, generator=self._generator())

    def _generator(self) -> torch.Generator:
        """Each loader draws its workers' base seed from its own generator, not the global RNG: otherwise every
        iterator creation shifts the dropout stream, and a resumed run would no longer match an uninterrupted one."""
        return torch.Generator().manual_seed(self.seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader | None:
        return self._loader("test", train=False)

    def has_labelled_test(self) -> bool:
        features = self.features.get("test") or []
        return any(_labelled(f["labels"]) for f in features)


def _labelled(labels: Any) -> bool:
    return any(x != -100 for x in labels) if isinstance(labels, list) else labels != -100
