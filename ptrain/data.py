"""The LightningDataModule: reads a task's splits once, tokenises with a disk cache, batches by length."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from ptrain.paths import cache_dir
from ptrain.results import write_text_atomic
from ptrain.tasks.base import Task

log = logging.getLogger(__name__)
#: examples per call of the task's encode while tokenising a split (a progress line can come between two)
ENCODE_CHUNK = 2000
#: seconds between two progress lines of a long tokenisation
PROGRESS_EVERY_S = 10.0

#: a cache temporary this old is an orphan whoever wrote it (a write takes seconds; a killed one never renames)
STALE_TMP_S = 3600


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


def labelled_positions(features: list[dict]) -> int:
    """Labelled token positions (label != -100) over features whose `labels` are one list per feature."""
    return sum(sum(1 for label in f["labels"] if label != -100) for f in features)


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
                 num_workers: int = 0, group_by_length: bool = False, cache: bool = True, seed: int = 0) -> None:
        super().__init__()
        for key, value, least in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1),
                                  ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"data.{key}={value!r}: expected a whole number >= {least}")
        self.task, self.tokenizer = task, tokenizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.group_by_length, self.cache, self.seed = num_workers, group_by_length, cache, seed
        self.features: dict[str, list[dict] | None] = {}
        self.train_sampler: LengthGroupedBatches | None = None
        self.resume_at: tuple[int, int] = (-1, 0)  # (epoch, batches done), set when resuming mid-epoch
        #: with length-grouped batches and a per-token loss: the training split's mean labelled positions per batch,
        #: the loss's fixed divisor (Task.loss), so grouping changes the padding and not the objective
        self.tokens_per_batch: float | None = None

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
            if self.features[split]:
                continue
            local = self.task.data_dir is not None
            if self.features[split] is None or (local and self.task.split_file(self._source(split)) is None):
                raise FileNotFoundError(self._no_split(split))
            raise ValueError(self._empty_split(split))

    def _source(self, split: str) -> str:
        """The split whose file a split's examples come from: with `train_from_validation` and no training file, the
        training examples are cut from the validation file."""
        task = self.task
        carved = task.train_from_validation is not None and task.data_dir is not None
        return "validation" if carved and split == "train" and task.split_file("train") is None else split

    def _no_split(self, split: str) -> str:
        task, source = self.task, self._source(split)
        if source != split:  # neither file: name both
            return (f"task {task.name} has no {split} split: {task.missing_file('train')}; nor the validation file "
                    f"{task.files.get('validation')} (task.files.validation) to cut "
                    f"task.train_from_validation={task.train_from_validation} of it for training")
        message = f"task {task.name} has no {split} split: {task.missing_file(split)}"
        if split == "train" and task.data_dir is not None:
            message += "; or set task.train_from_validation to carve one out of the validation split"
        return message

    def _empty_split(self, split: str) -> str:
        task, source = self.task, self._source(split)
        path = task.split_file(source)
        where = f"{path} holds no examples" if path is not None else f"the hub's {source} split is empty"
        if source != split:
            rows = len(task.examples(source) or [])
            where += f" after task.train_from_validation={task.train_from_validation} (it kept {rows} for {source})"
        return f"task {task.name}: the {split} split is empty ({where})"

    def _features(self, split: str) -> list[dict] | None:
        key = f"{self.task.name}-{self.task.fingerprint()}-{_tokenizer_fingerprint(self.tokenizer)}-{split}"
        # JSON, not pickle: the cache may be shared (PTRAIN_CACHE on a cluster file system), and a planted pickle
        # would run code in every job that reads it; features are plain lists, numbers and strings
        path = cache_dir() / "tokenized" / f"{key}.json"
        if self.cache and path.exists():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(cached, dict):  # (a list: written before the unscored counts were kept; redo it)
                    self._warn_unscored(split, *cached.get("unscored", (0, 0)))
                    return cached["features"]
            except (ValueError, OSError, KeyError, TypeError) as error:  # truncated or corrupt: tokenise again
                log.warning("tokenisation cache %s is unreadable (%s: %s); rebuilding it", path,
                            type(error).__name__, error)
        examples = self.task.examples(split)
        if not examples:  # no split (None), or an empty one that `_read_splits` names; tokenizers fail on []
            return examples
        features, unscored = self._encode(examples, split)
        self._warn_unscored(split, *unscored)
        if self.cache:
            _write_cache(path, json.dumps({"features": features, "unscored": unscored}, separators=(",", ":")))
        return features

    def _encode(self, examples: list[dict], split: str) -> tuple[list[dict], tuple[int, int]]:
        """The task's features for `examples`, encoded in chunks of ENCODE_CHUNK examples with a progress line
        every PROGRESS_EVERY_S seconds (tokenising SQuAD or CoNLL-12 takes minutes); the labelled words and spans
        the encoding could not score, summed over the chunks."""
        from ptrain.tasks.word_labels import encoding_split

        features: list[dict] = []
        started = last = time.monotonic()
        with encoding_split(split) as counts:
            for start in range(0, len(examples), ENCODE_CHUNK):
                features += self.task.encode(examples[start:start + ENCODE_CHUNK], self.tokenizer)
                done = min(start + ENCODE_CHUNK, len(examples))
                if done < len(examples) and time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    rate = done / (last - started)
                    log.info("tokenising %s %s: %d/%d examples, %.0f/s, about %.0f s left", self.task.name, split,
                             done, len(examples), rate, (len(examples) - done) / rate)
        log.info("tokenised %s %s: %d features from %d examples in %.1f s", self.task.name, split, len(features),
                 len(examples), time.monotonic() - started)
        return features, (counts[1], counts[2])

    def _warn_unscored(self, split: str, words: int, spans: int) -> None:
        from ptrain.tasks.word_labels import warn_unscored

        warn_unscored(logging.getLogger(type(self.task).__module__), self.task.name, self.task.max_length, words,
                      spans, split=split)

    def _loader(self, split: str, train: bool) -> DataLoader | None:
        features = self.features.get(split)
        if not features:
            return None
        collate = partial(self.task.collate, pad_id=self.tokenizer.pad_token_id or 0)
        if train:
            self.train_sampler = LengthGroupedBatches([feature_length(f) for f in features], self.batch_size,
                                                      self.seed, group=self.group_by_length)
            if self.group_by_length and self.task.token_loss:
                self.tokens_per_batch = labelled_positions(features) / -(-len(features) // self.batch_size)
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


def _write_cache(path: Path, text: str) -> None:
    """Write a cache file through a temporary and a rename, first removing the temporaries of writers that died
    (killed mid-write, they never rename: nothing else ever removes them). The host is in the temporary's name
    because PTRAIN_CACHE may be shared by machines: a pid is only known dead on its own host; elsewhere a temporary
    goes when it is older than any write (STALE_TMP_S)."""
    host = socket.gethostname()
    path.parent.mkdir(parents=True, exist_ok=True)
    for tmp in path.parent.glob(".*.tmp"):
        stem = tmp.name.removesuffix(".tmp")  # .<cache file>.<host>.<pid> (hosts may have dots)
        pid = stem.rsplit(".", 1)[-1]
        here = pid.isdigit() and stem.removesuffix(f".{pid}").endswith(f".{host}")
        try:
            dead = here and not _alive(int(pid))
            if dead or time.time() - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink()
                log.info("removed %s, a stale temporary of the tokenisation cache", tmp)
        except FileNotFoundError:  # another process removed or renamed it meanwhile
            pass
    write_text_atomic(path, text)  # its temporary is .<file>.<host>.<pid>.tmp, the name parsed above


def _alive(pid: int) -> bool:
    """Whether a process of this host has this id (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _labelled(labels: Any) -> bool:
    return any(x != -100 for x in labels) if isinstance(labels, list) else labels != -100
