"""SuperGLUE tasks that need more than "tokenise two fields": WiC, WSC, MultiRC and ReCoRD.

- WiC and WSC are sentence(-pair) classification whose inputs mark *where* the word or spans are, so the
  same word elsewhere in the sentence is not confused with the target: the target characters (WiC) or words
  (WSC) are wrapped in `*` (and WSC's candidate in `#`). The official P-tuning v2 BERT template for WiC
  ("word: sentence") and its WSC template 1 (pronoun wrapped in `*`, candidate as the second segment)
  are kept and extended by these markers.
- MultiRC is binary classification of (paragraph, question + answer) pairs, as in the official code, scored
  with F1a over all answer options and exact match per question (the options of a question are grouped by
  the `question_id` the features carry).
- ReCoRD ranks the entity candidates of a query: one forward pass per (passage, query with the candidate
  filled in) with a one-score `choice` head trained as binary (candidate is a gold answer or not, like the
  official two-way classifier), and at evaluation the best-scoring candidate of each query is scored against
  the gold answers (max-over-answers EM/F1, SQuAD normalisation).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.nn import functional as F

from ptrain.metrics.superglue import multirc_scores, record_scores
from ptrain.tasks.base import Task
from ptrain.tasks.classification import ClassificationTask

log = logging.getLogger(__name__)


def mark_chars(text: str, start: int, end: int, marker: str = "*") -> str:
    """`text` with characters [start, end) wrapped in `marker`, spaced so tokenizers split it off."""
    return f"{text[:start]}{marker} {text[start:end]} {marker}{text[end:]}"


def mark_words(words: list[str], spans: list[tuple[int, int, str]]) -> str:
    """Words joined by spaces, with each (first word, word count, marker) span wrapped in its marker.

    Spans that share a word nest: the longer one opens first and closes last (WSC's pronoun "their" inside its
    candidate "their mothers" gives `# * their * mothers #`, not `* # their * mothers #`).
    """
    opens: dict[int, list[tuple[int, int, str]]] = {}
    closes: dict[int, list[tuple[int, int, str]]] = {}
    for order, (first, count, marker) in enumerate(spans):
        last = min(first + max(count, 1), len(words)) - 1
        opens.setdefault(first, []).append((-(last - first), order, marker))
        closes.setdefault(last, []).append((last - first, -order, marker))
    return " ".join(" ".join([*(m for *_, m in sorted(opens.get(i, []))), word,
                              *(m for *_, m in sorted(closes.get(i, [])))])
                    for i, word in enumerate(words))


def _plain(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def locate_span(words: list[str], index: int, text: str) -> int | None:
    """Where the span `text` starts among `words`: `index` when it is there (a word may carry punctuation or a
    possessive: "Emma's" for "Emma"), else the exact match nearest to `index`, else None."""
    n = max(len(text.split()), 1)
    if _plain(" ".join(words[index:index + n])).startswith(_plain(text)):
        return index
    hits = [i for i in range(len(words) - n + 1) if _plain(" ".join(words[i:i + n])) == _plain(text)]
    return min(hits, key=lambda i: abs(i - index)) if hits else None


class WiCTask(ClassificationTask):
    """WiC: `text_fields` are the derived `marked_sentence1/2` ("word: sentence with * target *")."""

    def read(self, split: str) -> list[dict] | None:
        rows = super().read(split)
        for row in rows or []:
            for k in ("1", "2"):
                marked = mark_chars(row["sentence" + k], int(row["start" + k]), int(row["end" + k]))
                row["marked_sentence" + k] = f"{row['word']}: {marked}"
        return rows

    def extra_fingerprint(self) -> dict:
        return {**super().extra_fingerprint(), "marking": 1}


class WSCTask(ClassificationTask):
    """WSC: `marked_text` wraps the candidate (span1) in `#` and the pronoun (span2) in `*` at their word
    indices; `text_fields` pair it with the candidate text.

    The official files have a span index that misses its text (val idx 42: "it" is word 31, not 30): such a
    span is moved to the nearest word sequence that matches its text, and one warning names the rows; a span
    whose text is nowhere in the sentence (test idx 80-82, "Kamenev and Zinoviev") keeps its index.
    """

    def read(self, split: str) -> list[dict] | None:
        rows = super().read(split)
        moved, missing = [], []
        for row in rows or []:
            if "target" in row and "span1_index" not in row:  # raw jsonl layout from the hub or elsewhere
                row.update(row.pop("target"))
            words = row["text"].split()
            spans = []
            for key, marker in (("span1", "#"), ("span2", "*")):
                index, text = int(row[f"{key}_index"]), str(row[f"{key}_text"])
                found = locate_span(words, index, text)
                if found is None:
                    missing.append(f"{row.get('idx')}:{key}")
                elif found != index:
                    moved.append(f"{row.get('idx')}:{key} {index}->{found}")
                    index = row[f"{key}_index"] = found
                spans.append((index, len(text.split()), marker))
            row["marked_text"] = mark_words(words, spans)
        if moved or missing:
            log.warning("task %s (%s): span indices that miss their text: moved to the nearest match %s; "
                        "text not in the sentence, index kept %s", self.name, self.split_file(split) or split,
                        moved or "none", missing or "none")
        return rows

    def extra_fingerprint(self) -> dict:
        return {**super().extra_fingerprint(), "marking": 2}


class MultiRCTask(ClassificationTask):
    """MultiRC: one binary example per answer option; metrics `f1a` (main) and `em` need the question ids."""

    meta_keys = ("question_id",)
    split_group = "question_id"  # a question's options are scored together (EM): never split across train/dev

    def __init__(self, *args: Any, main_metric: str = "f1a", **kwargs: Any) -> None:
        super().__init__(*args, main_metric=main_metric, **kwargs)

    def read(self, split: str) -> list[dict] | None:
        rows = super().read(split)
        for row in rows or []:
            if "paragraph" in row:  # hub layout: paragraph, idx{paragraph, question, answer}
                row["passage"] = row["paragraph"]
                row["question_id"] = f"{row['idx']['paragraph']}-{row['idx']['question']}"
            row["question_answer"] = f"{row['question']} {row['answer']}"
        return rows

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        features = super().encode(examples, tokenizer)
        for feature, example in zip(features, examples):
            feature["question_id"] = str(example["question_id"])
        return features

    def metric(self) -> Any:
        return _MultiRCMetric()


class _MultiRCMetric:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.labels: list[int] = []
        self.preds: list[int] = []

    def update(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        for qid, label, pred in zip(batch["question_id"], batch["labels"].tolist(), logits.argmax(-1).tolist()):
            if label != -100:
                self.ids.append(qid)
                self.labels.append(label)
                self.preds.append(pred)

    def compute(self) -> dict[str, float]:
        if not self.labels:
            return {}
        scores = multirc_scores(self.ids, self.labels, self.preds)
        scores["accuracy"] = sum(p == g for p, g in zip(self.preds, self.labels)) / len(self.labels)
        return scores


class ReCoRDTask(Task):
    """ReCoRD as candidate ranking: features are (passage, filled query) pairs, grouped by `query_id`."""

    head_kind = "choice"
    main_metric = "f1"
    meta_keys = ("query_id", "entity", "answers")

    def __init__(self, name: str = "record", data_dir: str | None = None, max_length: int = 256,
                 hub: dict | None = None, files: dict[str, str] | None = None, pooling: str | None = None,
                 train_from_validation: float | None = None, max_train_examples: int | None = None) -> None:
        super().__init__(name, data_dir, max_length, hub, files, train_from_validation, max_train_examples)
        self.pooling = pooling

    @property
    def labels(self) -> list[str]:
        return ["0", "1"]  # candidate is not / is a gold answer

    def extra_fingerprint(self) -> dict:
        return {"encoding": 1}

    def read(self, split: str) -> list[dict] | None:
        if self.data_dir is None:
            rows = self.load_hub(split)
            for row in rows or []:  # hub layout: idx{passage, query}, entities and answers as strings
                row["query_id"] = f"{row['idx']['passage']}-{row['idx']['query']}"
                row["entities"] = sorted(set(row["entities"]))
            return rows
        path = self.split_file(split)
        if path is None:
            return None
        from ptrain.readers.superglue import read_record

        rows = read_record(path)
        for row in rows:
            row["query_id"] = f"{row['passage_idx']}-{row['idx']}"
        return rows

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        passages, queries, meta = [], [], []
        for example in examples:
            passage = example["passage"].replace("@highlight\n", "- ")  # as the official preprocessing
            answers = list(example.get("answers") or [])
            for entity in example["entities"]:
                passages.append(passage)
                queries.append(example["query"].replace("@placeholder", entity))
                label = -100 if not answers else int(entity in answers)
                meta.append((str(example["query_id"]), entity, answers, label))
        encoded = tokenizer(passages, queries, truncation=True, max_length=self.max_length)
        features = []
        for row, (query_id, entity, answers, label) in enumerate(meta):
            feature: dict[str, Any] = {key: encoded[key][row] for key in encoded}
            feature.update(labels=label, query_id=query_id, entity=entity, answers=answers)
            features.append(feature)
        return features

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        labels = batch["labels"]
        keep = labels != -100
        return F.binary_cross_entropy_with_logits(logits[:, 0][keep], labels[keep].to(logits.dtype))

    def metric(self) -> Any:
        return _ReCoRDMetric()


class _ReCoRDMetric:
    def __init__(self) -> None:
        self.best: dict[str, tuple[float, str]] = {}
        self.answers: dict[str, list[str]] = {}

    def update(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        scores = logits[:, 0].tolist()
        for score, qid, entity, answers in zip(scores, batch["query_id"], batch["entity"], batch["answers"]):
            if not answers:
                continue  # unlabelled (test) queries cannot be scored
            self.answers[qid] = answers
            if qid not in self.best or score > self.best[qid][0]:
                self.best[qid] = (score, entity)

    def compute(self) -> dict[str, float]:
        if not self.answers:
            return {}
        predictions = {qid: entity for qid, (_, entity) in self.best.items()}
        return record_scores(predictions, self.answers)

