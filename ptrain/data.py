"""The LightningDataModule: reads a task's splits once, tokenises with a disk cache, batches by length."""

from __future__ import annotations

import hashlib
import logging
import os
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


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of similar lengths: less padding, so fewer wasted FLOPs, with random order kept.

    Indices are shuffled, cut into windows of `window` batches, sorted by length inside each window,
    then the resulting batches are shuffled again.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, window: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.window = lengths, batch_size, seed, window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning each epoch, so a resumed run draws the same batches as an uninterrupted one."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start:start + span], key=lambda i: self.lengths[i])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    state = f"{type(tokenizer).__name__}|{tokenizer.name_or_path}|{len(tokenizer)}|{tokenizer.padding_side}"
    return hashlib.sha1(state.encode()).hexdigest()[:12]


class TaskDataModule(L.LightningDataModule):
    def __init__(self, task: Task, tokenizer: Any, batch_size: int = 32, eval_batch_size: int = 64,
                 num_workers: int = 0, group_by_length: bool = True, cache: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.task, self.tokenizer = task, tokenizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.group_by_length, self.cache, self.seed = num_workers, group_by_length, cache, seed
        self.features: dict[str, list[dict] | None] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.features:
            return
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
        path = cache_dir() / "tokenized" / f"{key}.pt"
        if self.cache and path.exists():
            return torch.load(path, weights_only=False)
        examples = self.task.examples(split)
        features = None if examples is None else self.task.encode(examples, self.tokenizer)
        if self.cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save(features, tmp)
            tmp.replace(path)
        return features

    def _loader(self, split: str, train: bool) -> DataLoader | None:
        features = self.features.get(split)
        if not features:
            return None
        collate = partial(self.task.collate, pad_id=self.tokenizer.pad_token_id or 0)
        if train and self.group_by_length:
            sampler = LengthGroupedBatches([len(f["input_ids"]) for f in features], self.batch_size, self.seed)
            return DataLoader(features, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)
        size = self.batch_size if train else self.eval_batch_size
        return DataLoader(features, batch_size=size, shuffle=train, collate_fn=collate,
                          num_workers=self.num_workers)

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
