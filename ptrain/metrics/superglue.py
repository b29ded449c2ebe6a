"""SuperGLUE metrics that are not plain accuracy: MultiRC (F1a, EM) and ReCoRD (EM, F1).

Scores are fractions in [0, 1] (like accuracy elsewhere in ptrain), not percentages. Definitions follow
the SuperGLUE paper and its reference scorer: MultiRC F1a is binary F1 over all answer options and EM is
the share of questions whose options are all right; ReCoRD takes the max over gold answers with the
SQuAD v1.1 normalisation (reused from :mod:`ptrain.metrics.squad`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from ptrain.metrics.squad import exact_match, f1

__all__ = ["multirc_scores", "record_scores"]


def _as_binary(value: Any, what: str) -> int:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true"):
            return 1
        if low in ("0", "false"):
            return 0
    elif int(value) in (0, 1) and int(value) == value:
        return int(value)
    raise ValueError(f"{what} must be 0/1 (or True/False), got {value!r}")


def multirc_scores(
    question_ids: Sequence[Hashable], labels: Sequence[Any], preds: Sequence[Any]
) -> dict[str, float]:
    """MultiRC ``{"f1a", "em"}`` from flat per-answer-option lists.

    ``question_ids`` groups options into questions (the ``question_id`` of the reader). F1a is F1 of the
    positive class over every option (0 when there is no true and no predicted positive); EM averages,
    over questions, whether every option of the question is predicted right.
    """
    if not (len(question_ids) == len(labels) == len(preds)):
        raise ValueError(
            f"length mismatch: {len(question_ids)} ids, {len(labels)} labels, {len(preds)} preds"
        )
    if not labels:
        raise ValueError("no answer options to score")
    tp = fp = fn = 0
    all_right: dict[Hashable, bool] = defaultdict(lambda: True)
    for qid, gold, pred in zip(question_ids, labels, preds):
        g, p = _as_binary(gold, "label"), _as_binary(pred, "prediction")
        tp += g and p
        fp += (not g) and p
        fn += g and (not p)
        all_right[qid] = all_right[qid] and g == p
    f1a = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    em = sum(all_right.values()) / len(all_right)
    return {"f1a": f1a, "em": em}


def record_scores(
    predictions: Mapping[Hashable, str], answers: Mapping[Hashable, Sequence[str]]
) -> dict[str, float]:
    """ReCoRD ``{"em", "f1"}``: max over gold answers per query, averaged over every query in ``answers``.

    A query without a prediction scores 0, as in the official scorer.
    """
    if not answers:
        raise ValueError("no queries to score")
    em_total = f1_total = 0.0
    for idx, golds in answers.items():
        if not golds:
            raise ValueError(f"query {idx!r} has no gold answers (test data cannot be scored)")
        if idx not in predictions:
            continue
        em_total += exact_match(predictions[idx], golds, version="1.1")  # the official ReCoRD script's rules
        f1_total += f1(predictions[idx], golds, version="1.1")
    return {"em": em_total / len(answers), "f1": f1_total / len(answers)}
