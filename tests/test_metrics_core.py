"""NER and classification metrics against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from ptrain.metrics.classification import ClassificationScores
from ptrain.metrics.ner import EntityF1, entity_scores


def test_entity_f1_iob2_by_hand() -> None:
    # gold entities: PER[0:2], LOC[3]; predicted: PER[0:2], ORG[3] -> 1 of 2 right both ways: P = R = F1 = 0.5
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx(0.5)
    assert scores["accuracy"] == pytest.approx(3 / 4)


def test_entity_f1_iob1_reads_like_conlleval() -> None:
    # IOB1: I- after O starts an entity; B- only splits touching entities of one type.
    # gold: PER[0:2], LOC[3], LOC[4] (B-LOC splits) -> 3 entities
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]]
    # pred: PER[0], LOC[3:5] -> 2 entities, none exactly right -> P = 0/2, R = 0/3
    pred = [["I-PER", "O", "O", "I-LOC", "I-LOC"]]
    assert entity_scores(gold, pred)["f1"] == 0.0
    # pred 2: PER[0:2], LOC[3] -> 2 right of 2 predicted, of 3 gold: P=1, R=2/3, F1=0.8
    pred2 = [["I-PER", "I-PER", "O", "I-LOC", "O"]]
    scores = entity_scores(gold, pred2)
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))


def test_entity_f1_bioes() -> None:
    gold = [["S-PER", "O", "B-ORG", "E-ORG"]]
    pred = [["S-PER", "O", "B-ORG", "I-ORG"]]  # ORG never closed with E- but still one ORG[2:4] chunk
    assert entity_scores(gold, pred)["f1"] == pytest.approx(1.0)


def test_entity_metric_skips_ignored_positions() -> None:
    labels = ["O", "B-PER", "I-PER"]
    metric = EntityF1(labels)
    # second sub-word of each word carries -100 and must not count
    metric.update(torch.tensor([[1, 2, 2, 0]]), torch.tensor([[1, -100, 2, 0]]))
    assert metric.gold == [["B-PER", "I-PER", "O"]] and metric.pred == [["B-PER", "I-PER", "O"]]
    assert metric.compute()["f1"] == 1.0


def test_accuracy_and_macro_f1_by_hand() -> None:
    scores = ClassificationScores(3, f1="macro")
    scores.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]))
    # per class F1: c0 = 1; c1: P=1/2, R=1 -> 2/3; c2: P=1, R=1/2 -> 2/3; macro = (1 + 2/3 + 2/3) / 3
    out = scores.compute()
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_binary_f1_is_positive_class() -> None:
    scores = ClassificationScores(2, f1="binary")
    scores.update(torch.tensor([1, 1, 0, 1]), torch.tensor([1, 0, 0, 1]))
    # TP=2, FP=1, FN=0 -> F1 = 2*2 / (2*2 + 1 + 0) = 0.8
    assert scores.compute()["f1"] == pytest.approx(0.8)
