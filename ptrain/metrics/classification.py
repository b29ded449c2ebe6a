"""Accuracy and F1 for classification, on torchmetrics."""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score


class ClassificationScores:
    """`accuracy` always; `f1` as `macro` (CB), `binary` (positive class = label index 1, MRPC) or none."""

    def __init__(self, num_labels: int, f1: str | None = None) -> None:
        if f1 not in (None, "macro", "binary"):
            raise ValueError(f"task.f1 must be null, 'macro' or 'binary'; got {f1!r}")
        self.accuracy = MulticlassAccuracy(num_classes=num_labels, average="micro")
        self.f1_kind = f1
        self.f1 = None
        if f1 == "macro":
            self.f1 = MulticlassF1Score(num_classes=num_labels, average="macro")
        elif f1 == "binary":
            self.f1 = MulticlassF1Score(num_classes=num_labels, average="none")

    def reset(self) -> None:
        self.accuracy.reset()
        if self.f1 is not None:
            self.f1.reset()

    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        predictions, labels = predictions.detach().cpu(), labels.detach().cpu()
        self.accuracy.update(predictions, labels)
        if self.f1 is not None:
            self.f1.update(predictions, labels)

    def compute(self) -> dict[str, float]:
        out = {"accuracy": float(self.accuracy.compute())}
        if self.f1 is not None:
            value = self.f1.compute()
            out["f1"] = float(value[1] if self.f1_kind == "binary" else value)
        return out
