"""Semantic role labelling (CoNLL-2005, CoNLL-2012): one instance per predicate, span-level micro-F1.

How the predicate is marked: the sentence is the first segment and the predicate word is appended as a
second segment (`[CLS] w1 .. wn [SEP] predicate [SEP]` for BERT, `<s> .. </s></s> predicate </s>` for
RoBERTa), labels on the first sub-word of each sentence word only. This is the official P-tuning v2 choice
(`tasks/srl/dataset.py` appends `[SEP]` and `tokens[index]` to the words), done through the tokenizer's pair
encoding so it works for every backbone family (RoBERTa and DeBERTa-v3 have no usable token types, so
token_type_ids cannot carry the mark portably). Its blind spot: when the predicate word occurs twice in the
sentence, both instances get the same input. `predicate_marker` (e.g. "*") also wraps the predicate in the
sentence with that marker word (unlabelled), which tells the occurrences apart; null keeps the official input.

Splits: `files` gives train/validation/test (CoNLL-2005: dev and WSJ test); `extra_test` adds more test sets
(CoNLL-2005 Brown), scored separately as `<metric>_<name>` next to the headline test metrics.
"""

from __future__ import annotations

import logging
from typing import Any

from ptrain.metrics.spans import bio_spans, srl_span_f1
from ptrain.readers.conll import label_set
from ptrain.readers.errors import DataFormatError
from ptrain.tasks.base import Task
from ptrain.tasks.word_labels import first_subword_labels, warn_unscored

log = logging.getLogger(__name__)


class SRLTask(Task):
    """`ignore_labels`: roles left out of the span F1 (default `[V, C-V]`, the predicate and its continuation, as
    the CoNLL scorer, which merges C-V into V and excludes V);
    `labels=null` reads the tag set from the data files (train first)."""

    head_kind = "token"
    main_metric = "f1"
    token_loss = True
    meta_keys = ("subset",)

    def __init__(self, name: str = "conll05", data_dir: str | None = None, max_length: int = 128,
                 files: dict[str, str] | None = None, extra_test: dict[str, str] | None = None,
                 labels: list[str] | None = None, ignore_labels: list[str] | None = None,
                 hub: dict | None = None, predicate_marker: str | None = None,
                 max_train_examples: int | None = None) -> None:
        super().__init__(name, data_dir, max_length, hub, files, max_train_examples=max_train_examples)
        if self.data_dir is None:
            raise ValueError(f"task {name}: SRL reads the P-tuning v2 data pack; set task.data_dir")
        self.extra_test = dict(extra_test or {})
        self._labels = list(labels) if labels else None
        self.ignore_labels = list(ignore_labels) if ignore_labels is not None else ["V", "C-V"]
        self.predicate_marker = predicate_marker
        self.truncated_words = 0

    @property
    def labels(self) -> list[str]:
        if self._labels is None:
            train = self.read("train", check_labels=False)
            if not train:
                where = self.missing_file("train") if self.split_file("train") is None else "it holds no sentences"
                raise ValueError(f"task {self.name}: no training file to read labels from ({where}); set "
                                 "task.files.train to the training file's name, or list the labels in task.labels")
            # Every split of the data pack is labelled: a rare role seen only in dev/test still gets a label
            # (it cannot be predicted right, but it is scored as a miss rather than crash the run).
            rows = train + [row for split in ("validation", "test") for row in self.read(split, False) or []]
            self._labels = label_set(rows)
        return self._labels

    def extra_fingerprint(self) -> dict:
        extra = {}
        for subset, name in self.extra_test.items():
            path = self.data_dir / name
            stat = path.stat() if path.exists() else None
            extra[subset] = [str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]
        return {"extra_test": extra, "ignore_labels": self.ignore_labels, "marker": self.predicate_marker,
                "encoding": 1}

    def read(self, split: str, check_labels: bool = True) -> list[dict] | None:
        path = self.split_file(split)
        if path is None:
            return None
        rows = self._read_file(path, "", check_labels)
        if split == "test":
            for subset, name in self.extra_test.items():
                if (self.data_dir / name).exists():
                    rows += self._read_file(self.data_dir / name, subset, check_labels)
        return rows

    def _read_file(self, path, subset: str, check_labels: bool) -> list[dict]:
        from ptrain.readers.srl import read_srl

        rows = read_srl(path)
        known = set(self.labels) if check_labels else None
        for row, line in zip(rows, rows.lines):  # the file's line, not the row's index (blank lines)
            row["subset"] = subset
            if known is not None:
                unknown = sorted(set(row["tags"]) - known)
                if unknown:
                    raise DataFormatError(path, f"unknown tag {unknown[0]!r}", line=line, field="tags",
                                          expected="a tag seen in the training file (set task.labels to add it)")
        return rows

    def words(self, example: dict) -> tuple[list[str], list[int | None]]:
        """The first segment's words and, per word, the index of the example token it is (None: a marker)."""
        tokens, at = example["tokens"], example["predicate_index"]
        if not self.predicate_marker:
            return list(tokens), list(range(len(tokens)))
        marker = self.predicate_marker
        words = [*tokens[:at], marker, tokens[at], marker, *tokens[at + 1:]]
        origin = [*range(at), None, at, None, *range(at + 1, len(tokens))]
        return words, origin

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        segments = [self.words(e) for e in examples]
        encoded = tokenizer([words for words, _ in segments],
                            [[e["tokens"][e["predicate_index"]]] for e in examples],
                            is_split_into_words=True, truncation="only_first", max_length=self.max_length)
        features, dropped, cut = [], 0, 0
        for row, example in enumerate(examples):
            sequence, origin = encoded.sequence_ids(row), segments[row][1]
            tokens = [origin[word] if word is not None and sequence[position] == 0 else None
                      for position, word in enumerate(encoded.word_ids(row))]
            labels, missing, spans = first_subword_labels(tokens, example["tags"], index, bio_spans)
            dropped, cut = dropped + missing, cut + spans
            feature = {key: encoded[key][row] for key in encoded}
            feature.update(labels=labels, subset=example.get("subset", ""))
            features.append(feature)
        warn_unscored(log, self.name, self.max_length, dropped, cut)
        self.truncated_words += dropped
        return features

    def metric(self) -> Any:
        return _SpanMetric(self.labels, self.ignore_labels)


class _SpanMetric:
    """Span F1 per subset: the main subset ("") gives `precision/recall/f1`, others `f1_<subset>` etc."""

    def __init__(self, labels: list[str], ignore_labels: list[str]) -> None:
        self.labels, self.ignore = labels, ignore_labels
        self.gold: dict[str, list[list[str]]] = {}
        self.pred: dict[str, list[list[str]]] = {}

    def update(self, logits, batch) -> None:
        for subset, p_row, g_row in zip(batch["subset"], logits.argmax(-1).tolist(), batch["labels"].tolist()):
            keep = [(p, g) for p, g in zip(p_row, g_row) if g != -100]
            self.pred.setdefault(subset, []).append([self.labels[p] for p, _ in keep])
            self.gold.setdefault(subset, []).append([self.labels[g] for _, g in keep])

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for subset in self.gold:
            scores = srl_span_f1(self.gold[subset], self.pred[subset], ignore_labels=self.ignore)
            suffix = f"_{subset}" if subset else ""
            out.update({f"{name}{suffix}": scores[name] for name in ("precision", "recall", "f1")})
        return out
