"""MultiRC and ReCoRD scores against hand-computed values."""

from __future__ import annotations

import pytest

from ptrain.metrics.superglue import multirc_scores, record_scores


def test_multirc_f1a_and_em() -> None:
    qids = ["q1", "q1", "q1", "q2", "q2"]
    labels = [1, 0, 1, 0, 1]
    preds = [1, 0, 0, 0, 1]
    out = multirc_scores(qids, labels, preds)
    # TP = options 0 and 4 = 2, FP = 0, FN = option 2 = 1 -> F1a = 2*2 / (2*2 + 0 + 1) = 0.8
    assert out["f1a"] == pytest.approx(0.8)
    # q1 has a wrong option (2), q2 is all right -> EM = 1/2
    assert out["em"] == pytest.approx(0.5)


def test_multirc_false_positives_and_label_forms() -> None:
    # TP 1, FP 2, FN 0 -> F1a = 2 / (2 + 2) = 0.5; each question has a wrong option -> EM 0
    out = multirc_scores(["a", "a", "b"], [True, "0", 0], ["1", 1, 1])
    assert out == {"f1a": pytest.approx(0.5), "em": 0.0}
    assert multirc_scores(["a"], [0], [0]) == {
        "f1a": 0.0,
        "em": 1.0,
    }  # no positives at all: F1a 0 by convention


def test_multirc_input_checks() -> None:
    with pytest.raises(ValueError, match="length mismatch"):
        multirc_scores(["a"], [1, 0], [1, 0])
    with pytest.raises(ValueError, match="label must be 0/1"):
        multirc_scores(["a"], [2], [1])


def test_record_max_over_golds_and_missing_predictions() -> None:
    preds = {0: "Sarah", 1: "the John Smith", 2: "New Rome"}
    answers = {0: ["Sarah"], 1: ["John Smith", "Smith"], 2: ["Rome"], 3: ["Oslo"]}
    out = record_scores(preds, answers)
    # EM: 1 + 1 ("the" is dropped) + 0 + 0 (no prediction) = 2/4
    assert out["em"] == pytest.approx(0.5)
    # F1: 1 + 1 + ("new rome" vs "rome": P = 1/2, R = 1 -> 2/3) + 0 = (8/3)/4
    assert out["f1"] == pytest.approx((2 + 2 / 3) / 4)
    with pytest.raises(ValueError, match="no gold answers"):
        record_scores({0: "x"}, {0: []})
