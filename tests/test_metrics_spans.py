"""SRL span F1: BIO span extraction (conlleval-style) and micro P/R/F1 against hand counts and seqeval."""

from __future__ import annotations

import random

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score

from ptrain.metrics.spans import bio_spans, srl_span_f1


def test_bio_spans_well_formed_and_ill_formed() -> None:
    assert bio_spans(["B-A0", "I-A0", "B-V", "O", "B-A1"]) == [("A0", 0, 1), ("V", 2, 2), ("A1", 4, 4)]
    # I- after O / at the start opens a span; I-X after Y closes Y and opens X; B-X after X splits
    assert bio_spans(["I-A0", "O", "I-A1", "I-A1", "I-A2", "B-A2", "I-A2"]) == [
        ("A0", 0, 0),
        ("A1", 2, 3),
        ("A2", 4, 4),
        ("A2", 5, 6),
    ]
    assert bio_spans(["B-C-A1", "I-C-A1"]) == [("C-A1", 0, 1)]
    with pytest.raises(ValueError, match="tag 'V' at position 1"):
        bio_spans(["O", "V"])


GOLD = [["B-A0", "I-A0", "B-V", "B-A1", "I-A1", "O", "B-AM-TMP"]]
PRED = [["B-A0", "I-A0", "B-V", "B-A1", "O", "O", "I-AM-TMP"]]


def test_srl_span_f1_excludes_the_predicate_by_default() -> None:
    out = srl_span_f1(GOLD, PRED)
    # gold args A0(0,1) A1(3,4) TMP(6,6); pred A0(0,1) A1(3,3) TMP(6,6) (from the bare I-): 2 right of 3 / 3
    assert (out["n_gold"], out["n_pred"], out["n_correct"]) == (3, 3, 2)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    # counting V too: 3 right of 4 / 4
    assert srl_span_f1(GOLD, PRED, ignore_labels=())["f1"] == pytest.approx(3 / 4)


def test_srl_span_f1_micro_over_sequences_and_edge_cases() -> None:
    gold = [["B-A0", "B-V"], ["B-A1", "I-A1", "B-V"]]
    pred = [["B-A0", "B-V"], ["O", "O", "B-V"]]
    # gold 2 args, pred 1 arg, 1 right: P = 1, R = 1/2, F1 = 2*1*.5/1.5 = 2/3
    out = srl_span_f1(gold, pred)
    assert (out["precision"], out["recall"]) == (1.0, 0.5) and out["f1"] == pytest.approx(2 / 3)
    assert srl_span_f1([["B-V"]], [["B-V"]])["f1"] == 0.0  # nothing to score
    with pytest.raises(ValueError, match="sequence 0: 2 gold tags but 1 predicted"):
        srl_span_f1([["O", "O"]], [["O"]])


def test_srl_span_f1_matches_seqeval_when_nothing_is_ignored() -> None:
    rng = random.Random(0)
    tags = ["O", "O", "B-A0", "I-A0", "B-A1", "I-A1", "B-V", "I-AM-TMP", "B-AM-TMP"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    pred = [[t if rng.random() < 0.6 else rng.choice(tags) for t in seq] for seq in gold]
    out = srl_span_f1(gold, pred, ignore_labels=())
    assert out["precision"] == pytest.approx(precision_score(gold, pred))
    assert out["recall"] == pytest.approx(recall_score(gold, pred))
    assert out["f1"] == pytest.approx(f1_score(gold, pred))
