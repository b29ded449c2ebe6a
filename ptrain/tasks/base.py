"""A task: where its data comes from, how it is tokenised, its head and its metrics. Nothing about prompts."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

SPLITS = ("train", "validation", "test")
#: `task.hub` keys passed to `datasets.load_dataset` as keywords when set (path and name go by position)
HUB_OPTIONS = ("revision", "data_dir", "data_files")
#: what `load_dataset` raises for a missing repo, config, file, script or network; re-raised naming the call
HUB_ERRORS = (ConnectionError, FileNotFoundError, RuntimeError, ValueError)


class Task:
    """Subclasses implement `read`, `encode`, `head_kind`, `labels` and `metric`.

    Features are plain dicts of lists; `collate` pads them. Labels are aligned with real tokens, so the
    logits a task sees never include virtual positions.
    """

    head_kind: str = "sequence"
    main_metric: str = "accuracy"
    #: default pooling for sequence heads (`null` lets the backbone family decide)
    pooling: str | None = None
    #: feature keys that `collate` passes through as plain Python lists (ids, offsets, gold strings): the
    #: metadata an example-level metric needs, kept in the features so it survives the tokenisation cache
    meta_keys: tuple[str, ...] = ()
    #: rows sharing this field stay on one side of a `train_from_validation` split (None: rows split alone)
    split_group: str | None = None
    #: the loss is over labelled token positions (`labels` a list per feature: NER, SRL, generation targets), so
    #: batches hold different numbers of them; `loss(..., tokens_per_batch=n)` then weighs every token alike
    token_loss: bool = False

    def __init__(self, name: str, data_dir: str | None = None, max_length: int = 128,
                 hub: dict | None = None, files: dict[str, str] | None = None,
                 train_from_validation: float | None = None, max_train_examples: int | None = None) -> None:
        self.name = name
        if train_from_validation is not None and not (isinstance(train_from_validation, int | float)
                                                      and 0 < train_from_validation < 1):
            raise ValueError(f"task.train_from_validation={train_from_validation!r}: expected the share of the "
                             "validation split to train on, between 0 and 1 (null: the training file)")
        if max_train_examples is not None and (isinstance(max_train_examples, bool)
                                               or not isinstance(max_train_examples, int) or max_train_examples < 1):
            raise ValueError(f"task.max_train_examples={max_train_examples!r}: expected a number of training "
                             "examples >= 1 (null: all of them)")
        self.train_from_validation = train_from_validation
        self.max_train_examples = max_train_examples
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.max_length = int(max_length)
        self.hub = dict(hub) if hub else None
        self.files = dict(files or {})
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise FileNotFoundError(
                f"task.data_dir={str(data_dir)!r} does not exist (task {name} expects "
                f"{', '.join(self.files.values()) or 'its data files'} there)"
            )
        if self.data_dir is None and self.hub is None:
            raise ValueError(f"task {name}: set task.data_dir (local files) or task.hub (datasets hub name)")

    # ---- data ------------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def split_file(self, split: str) -> Path | None:
        """Local file of a split, or None when the task has no such split file (e.g. BoolQ train here)."""
        if self.data_dir is None or split not in self.files:
            return None
        path = self.data_dir / self.files[split]
        return path if path.exists() else None

    def missing_file(self, split: str) -> str:
        """Why a local split cannot be read, naming the folder, the file name expected, the key that sets it and what
        the folder holds instead: a task pointed at another task's folder, or files named otherwise
        (`wnut17train.conll`), is then one edit away from running."""
        if self.data_dir is None:
            return f"the hub data set {(self.hub or {}).get('path')} has no {split} split"
        found = sorted(path.name for path in self.data_dir.iterdir() if not path.name.startswith("."))
        held = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "") if found else "nothing"
        expected = (f"{self.files[split]} (task.files.{split})" if split in self.files
                    else f"a file for it (no task.files.{split} is set)")
        return f"no {split} file in {self.data_dir}: expected {expected}; the folder holds {held}"

    def read(self, split: str) -> list[dict] | None:
        raise NotImplementedError

    def examples(self, split: str) -> list[dict] | None:
        """`read`, except that with `train_from_validation=f` and no training file, a seeded share f of the
        validation split becomes the training set and the rest stays validation (e.g. BoolQ with its val only);
        and with `max_train_examples=n` the training set is a seeded sample of n examples (file order kept),
        for quick runs on large sets such as SST-2."""
        rows = self._examples(split)
        if split == "train" and rows and self.max_train_examples is not None and len(rows) > self.max_train_examples:
            chosen = random.Random(0).sample(range(len(rows)), self.max_train_examples)
            rows = [rows[i] for i in sorted(chosen)]
        return rows

    def _examples(self, split: str) -> list[dict] | None:
        if self.train_from_validation is None or self.read("train") is not None:
            return self.read(split)
        if split == "test":
            return self.read("test")
        validation = self.read("validation") or []
        # whole groups go to one side (MultiRC: a question's answer options), so no question is in both
        groups: dict[Any, list[int]] = {}
        for i, row in enumerate(validation):
            groups.setdefault(row[self.split_group] if self.split_group else i, []).append(i)
        order = list(groups)
        random.Random(0).shuffle(order)
        cut = int(len(order) * float(self.train_from_validation))
        chosen = order[:cut] if split == "train" else order[cut:]
        return [validation[i] for i in sorted(i for key in chosen for i in groups[key])]

    def load_hub(self, split: str) -> list[dict] | None:
        """Rows of a hub split: `datasets.load_dataset(task.hub.path, task.hub.name, split=..., revision=...,
        data_dir=..., data_files=...)`, passing only the keys that are set (a local directory laid out like a hub
        repository takes the same call). None when the data set has no such split. Needs network or the HF cache.

        `datasets` 4 and later refuse loading scripts, and some official repos (conll2003, e2e_nlg) are still
        scripts on `main`: their configs point at the hub's parquet export instead (`revision:
        refs/convert/parquet`, `data_dir: <config>`). Errors name the call, so the key to change is in sight."""
        import datasets

        hub = self.hub or {}
        split_name = (hub.get("splits") or {}).get(split, split)
        options = {key: hub[key] for key in HUB_OPTIONS if hub.get(key) is not None}
        call = ", ".join([repr(hub.get("path")), repr(hub.get("name")), f"split={split_name!r}",
                          *(f"{key}={value!r}" for key, value in options.items())])
        try:
            data = datasets.load_dataset(hub["path"], hub.get("name"), split=split_name, **options)
        except HUB_ERRORS as error:
            if isinstance(error, ValueError) and str(error).startswith(f'Unknown split "{split_name}"'):
                return None
            hint = (": point task.hub at a parquet copy (for a script repo, task.hub.revision=refs/convert/parquet "
                    "task.hub.data_dir=<config>) or set task.data_dir to local files"
                    if "scripts are no longer supported" in str(error) else "")
            kind = next(k for k in HUB_ERRORS if isinstance(error, k))  # the builtin base: its message is ours
            raise kind(f"task {self.name}: datasets.load_dataset({call}) failed: {error}{hint}") from error
        self._hub_features = data.features
        self._hub_call = f"datasets.load_dataset({call})"
        return [dict(row) for row in data]

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Identifies the tokenised data: class, settings and the bytes of the local files."""
        files = {}
        for split in SPLITS:
            path = self.split_file(split)
            if path is not None:  # the contents, not size and mtime (a copy made with `cp -p` keeps both)
                files[split] = [str(path.resolve()), _file_digest(path)]
        state = {"class": type(self).__qualname__, "name": self.name, "max_length": self.max_length,
                 "hub": self.hub, "files": files, "labels": self.labels,
                 "train_from_validation": self.train_from_validation, **self.extra_fingerprint()}
        if self.max_train_examples is not None:  # absent when unset, so existing cache keys stay valid
            state["max_train_examples"] = self.max_train_examples
        if self.split_group is not None and self.train_from_validation is not None:
            state["split_group"] = self.split_group
        return hashlib.sha1(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def extra_fingerprint(self) -> dict:
        return {}

    # ---- batches, loss, metrics ------------------------------------------------------------------
    def collate(self, features: list[dict], pad_id: int) -> dict[str, Any]:
        """Each list-valued key is padded to its own longest value: token-aligned keys to the longest input,
        a generation target to the longest target, a fixed-size list (the verbalizer's label words) not at all."""
        batch: dict[str, Any] = {}
        pads = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "labels": -100}
        for key in features[0]:
            values = [f[key] for f in features]
            if key in self.meta_keys:
                batch[key] = values
                continue
            if isinstance(values[0], list):
                length = max(len(v) for v in values)
                values = [v + [pads.get(key, 0)] * (length - len(v)) for v in values]
            batch[key] = torch.tensor(values)
        return batch

    def collate_rows(self, features: list[dict], pad_id: int) -> dict[str, Any]:
        """Features that hold several token rows each (choices, siamese segments) -> one [B*R, T] batch,
        example-major; `labels` and meta keys stay one per example."""
        keep = {"labels", *self.meta_keys}
        rows = [{key: value[r] for key, value in f.items() if key not in keep}
                for f in features for r in range(len(f["input_ids"]))]
        batch = Task.collate(self, rows, pad_id)
        batch["labels"] = torch.tensor([f["labels"] for f in features])
        for key in self.meta_keys:
            if key in features[0]:
                batch[key] = [f[key] for f in features]
        return batch

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor],
             tokens_per_batch: float | None = None) -> torch.Tensor:
        """Cross-entropy over the labelled positions (-100 is ignored): their mean in this batch, or, given
        `tokens_per_batch` (the training split's mean labelled positions per batch), their sum divided by it.

        The batch mean gives each token 1/(the batch's count): with length-grouped batches a batch of one-word
        headlines then weighs as much as a batch of 30-word sentences, and the short sentences' tokens get several
        times their share of the objective (benchmarks/README.md, issue 15). A fixed divisor keeps every token's
        weight the same whatever batch it lands in; over shuffled batches it stays close to the batch mean.
        """
        flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1)
        if tokens_per_batch is None:
            return F.cross_entropy(flat_logits, flat_labels, ignore_index=-100)
        return F.cross_entropy(flat_logits, flat_labels, ignore_index=-100, reduction="sum") / tokens_per_batch

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def metric_inputs(self, outputs: Any, batch: dict[str, Any]) -> Any:
        """What of an evaluation batch's outputs the metric's `update` takes: all of them unless a task scores a small
        part of large outputs (vocabulary logits). A distributed evaluation gathers these from every rank."""
        return outputs

    def metric(self) -> Any:
        raise NotImplementedError


def _file_digest(path: Path) -> str:
    """SHA-1 of a data file, read in 1 MiB blocks (about 2 ms per MiB; SQuAD's train file takes ~0.1 s)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
