"""Multiple choice (COPA): one forward pass per choice, the choices' scores compared by a softmax.

A feature holds C tokenised (context, choice) pairs; `collate` flattens a batch of B examples to B*C rows, so
the model (and any prompt or prefix, which is built per row) sees an ordinary [B*C, T] batch. The `choice`
head gives one score per row, [B*C, 1]; `loss` and the metric reshape it to [B, C] and compare the choices.
As in the official P-tuning v2 code, the context is the premise followed by "because" (question = cause) or
"so" (effect), paired with each choice as the second segment.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ptrain.metrics.classification import ClassificationScores
from ptrain.readers.errors import DataFormatError
from ptrain.tasks.base import Task

JOINERS = {"cause": "because", "effect": "so"}


class MultipleChoiceTask(Task):
    """`choice_fields`: the example fields holding the choices, in label order (label = index of the right one).

    `format` is `superglue` (official jsonl, read by `ptrain.readers.superglue`) or `hub`
    (`datasets.load_dataset(**task.hub)`; chosen automatically when `task.data_dir` is null).
    """

    head_kind = "choice"
    main_metric = "accuracy"

    def __init__(self, name: str, choice_fields: list[str], data_dir: str | None = None, max_length: int = 128,
                 hub: dict | None = None, files: dict[str, str] | None = None, format: str = "superglue",
                 label_field: str = "label", pooling: str | None = None,
                 train_from_validation: float | None = None, max_train_examples: int | None = None) -> None:
        super().__init__(name, data_dir, max_length, hub, files, train_from_validation, max_train_examples)
        self.choice_fields = list(choice_fields)
        self.format = format
        self.label_field = label_field
        self.pooling = pooling

    @property
    def labels(self) -> list[str]:
        """One label per choice position ("0", "1", ...): the metric reads num_labels as the number of choices."""
        return [str(i) for i in range(len(self.choice_fields))]

    def extra_fingerprint(self) -> dict:
        state = {"choice_fields": self.choice_fields, "format": self.format, "encoding": 1}
        if self.label_field != "label":  # only then, so existing cache keys stay valid
            state["label_field"] = self.label_field
        return state

    def read(self, split: str) -> list[dict] | None:
        if self.data_dir is None:
            rows = self.load_hub(split)
            if rows is None:
                return None
            for row in rows:  # hub test splits mark missing labels as -1
                if row.get(self.label_field, -1) < 0:
                    row[self.label_field] = None
            return rows
        path = self.split_file(split)
        if path is None:
            return None
        if self.format != "superglue":
            raise ValueError(f"task.format must be superglue (local jsonl) or hub; got {self.format!r}")
        from ptrain.readers.superglue import read_superglue

        rows = read_superglue(self.name, path)
        for row, line in zip(rows, rows.lines):  # the file's line, not the row's index (blank lines)
            label = row.get(self.label_field)
            if label is not None and not 0 <= int(label) < len(self.choice_fields):
                raise DataFormatError(path, f"label {label!r} is not a choice index", line=line,
                                      field=self.label_field, expected=f"0..{len(self.choice_fields) - 1}")
        return rows

    def context(self, example: dict) -> str:
        """The first segment shared by every choice. COPA: premise + "because"/"so"; override for other tasks."""
        joiner = JOINERS.get(example.get("question", ""), "")
        return f"{example['premise']} {joiner}".strip()

    def encode(self, examples: list[dict], tokenizer: Any) -> list[dict]:
        contexts = [self.context(e) for e in examples]
        per_choice = [tokenizer(contexts, [str(e[field]) for e in examples], truncation=True,
                                max_length=self.max_length) for field in self.choice_fields]
        features = []
        for row, example in enumerate(examples):
            feature: dict[str, Any] = {key: [encoded[key][row] for encoded in per_choice] for key in per_choice[0]}
            label = example.get(self.label_field)
            feature["labels"] = -100 if label is None else int(label)
            features.append(feature)
        return features

    def collate(self, features: list[dict], pad_id: int) -> dict[str, Any]:
        """B examples of C choices -> [B*C, T] rows (example-major), labels [B]."""
        return self.collate_rows(features, pad_id)

    def choice_scores(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """[B*C, 1] row scores -> [B, C]."""
        return logits.reshape(batch["labels"].shape[0], -1)

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return F.cross_entropy(self.choice_scores(logits, batch), batch["labels"], ignore_index=-100)

    def metric(self) -> Any:
        return _ChoiceMetric(self)


class _ChoiceMetric:
    def __init__(self, task: MultipleChoiceTask) -> None:
        self.task = task
        self.scores = ClassificationScores(task.num_labels)
        self.seen = False

    def update(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        scores, labels = self.task.choice_scores(logits, batch), batch["labels"]
        keep = labels != -100
        if keep.any():
            self.seen = True
            self.scores.update(scores.argmax(-1)[keep], labels[keep])

    def compute(self) -> dict[str, float]:
        return self.scores.compute() if self.seen else {}
