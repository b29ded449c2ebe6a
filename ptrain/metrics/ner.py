"""Entity-level micro precision/recall/F1 with seqeval's (conlleval) semantics.

seqeval's default mode reads IOB1, IOB2 and BIOES alike (an I- after O starts an entity, as conlleval does),
so scores match the official CoNLL evaluation whatever scheme the data uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    return {
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
    }


class EntityF1:
    """Accumulates tag sequences from label-aligned predictions (positions with label -100 are skipped)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.reset()

    def reset(self) -> None:
        self.gold: list[list[str]] = []
        self.pred: list[list[str]] = []

    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        for p_row, g_row in zip(predictions.tolist(), labels.tolist()):
            keep = [(p, g) for p, g in zip(p_row, g_row) if g != -100]
            self.pred.append([self.labels[p] for p, _ in keep])
            self.gold.append([self.labels[g] for _, g in keep])

    def compute(self) -> dict[str, float]:
        return entity_scores(self.gold, self.pred)
