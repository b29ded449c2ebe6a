"""Token classification (NER) on CoNLL column files or a hub data set; labels on first sub-words."""

from __future__ import annotations

import logging
from typing import Any

from seqeval.metrics.sequence_labeling import get_entities

from ptrain.metrics.ner import EntityF1
from ptrain.readers.conll import label_set, read_conll
from ptrain.readers.errors import DataFormatError
from ptrain.readers.ontonotes import read_ontonotes
from ptrain.tasks.base import Task
from ptrain.tasks.word_labels import first_subword_labels, warn_unscored

log = logging.getLogger(__name__)

DEFAULT_FILES = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}


class NERTask(Task):
    """Entity-level micro-F1 (seqeval semantics). `labels=null` reads the label set from the training file."""

    head_kind = "token"
    main_metric = "f1"
    token_loss = True

    def __init__(self, name: str = "ner", data_dir: str | None = None, max_length: int = 128,
                 hub: dict | None = None, files: dict[str, str] | None = None,
                 labels: list[str] | None = None, tag_column: int = -1, format: str = "conll",
                 max_train_examples: int | None = None) -> None:
        super().__init__(name, data_dir, max_length, hub, files or DEFAULT_FILES,
                         max_train_examples=max_train_examples)
        if format not in ("conll", "ontonotes"):
            raise ValueError(f"task.format must be conll (column files) or ontonotes (.sd.conllx); got {format!r}")
        self.tag_column = tag_column
        self.format = format
        self._labels = list(labels) if labels else None
        self.truncated_words = 0

    @property
    def labels(self) -> list[str]:
        if self._labels is None:
            train = self.read("train", check_labels=False)
            if not train:
                where = self.missing_file("train") if self.split_file("train") is None else "it holds no sentences"
                raise ValueError(f"task {self.name}: no training file to read labels from ({where}); set "
                                 "task.files.train to the training file's name, or list the labels in task.labels")
            self._labels = label_set(train)
        return self._labels

    def read(self, split: str, check_labels: bool = True) -> list[dict] | None:
        if self.data_dir is None:
            return self._read_hub(split)
        path = self.split_file(split)
        if path is None:
            return None
        if self.format == "conll":
            return read_conll(path, self.tag_column, self.labels if check_labels else None)
        rows = read_ontonotes(path)  # 11-column CoNLL-X, tag last; the reader checks layout and BIO tags
        known = set(self.labels) if check_labels else None
        for number, row in enumerate(rows, start=1):
            unknown = sorted(set(row["tags"]) - known) if known is not None else []
            if unknown:
                raise DataFormatError(path, f"sentence {number} has unknown label {unknown[0]!r}", field="NER",
                                      expected=f"one of the training labels: {', '.join(sorted(known))}")
        return rows

    def extra_fingerprint(self) -> dict:
        state = {"format": self.format} if self.format != "conll" else {}
        if self.tag_column != -1:  # only then, so existing cache keys stay valid
            state["tag_column"] = self.tag_column
        return state

    def _read_hub(self, split: str) -> list[dict] | None:
        """Hub rows -> `{"tokens", "tags"}`. Tag ids are named by the hub's ClassLabel when the copy carries one,
        else by `task.labels` in order: a parquet file written without the `datasets` schema (pandas, another
        tool) keeps only the ids, and conll2003's id order is the order `conll03.yaml` lists."""
        rows = self.load_hub(split)
        if rows is None:
            return None
        tokens_field = self.hub.get("tokens_field", "tokens")
        tags_field = self.hub.get("tags_field", "ner_tags")
        feature = self._hub_features.get(tags_field)
        names = getattr(getattr(feature, "feature", None), "names", None) or self._labels
        if names is None:
            raise ValueError(f"task {self.name}: {self._hub_call} gives {tags_field} as ids without names; "
                             "list the label names in id order in task.labels")
        out = []
        for number, row in enumerate(rows, start=1):
            ids = row[tags_field]
            bad = [t for t in ids if not isinstance(t, str) and not 0 <= t < len(names)]
            if bad:
                raise ValueError(f"task {self.name}: {self._hub_call} row {number} has {tags_field} id {bad[0]}, "
                                 f"outside the {len(names)} label names {list(names)}")
            tags = [t if isinstance(t, str) else names[t] for t in ids]  # some copies store the names themselves
            out.append({"tokens": list(row[tokens_field]), "tags": tags})
        unknown = sorted({tag for row in out for tag in row["tags"]} - set(self._labels or names))
        if unknown:
            raise ValueError(f"task {self.name}: {self._hub_call} has tag(s) {unknown} that task.labels does not "
                             f"list ({', '.join(self._labels or [])})")
        return out

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        encoded = tokenizer([e["tokens"] for e in examples], is_split_into_words=True, truncation=True,
                            max_length=self.max_length)
        features, dropped, cut = [], 0, 0
        for row, example in enumerate(examples):
            labels, missing, spans = first_subword_labels(encoded.word_ids(row), example["tags"], index,
                                                          get_entities)
            dropped, cut = dropped + missing, cut + spans
            feature = {key: encoded[key][row] for key in encoded}
            feature["labels"] = labels
            features.append(feature)
        warn_unscored(log, self.name, self.max_length, dropped, cut)
        self.truncated_words += dropped
        return features

    def metric(self) -> EntityF1:
        return _TokenMetric(self.labels)


class _TokenMetric(EntityF1):
    def update(self, logits, batch) -> None:  # type: ignore[override]
        super().update(logits.argmax(-1), batch["labels"])
