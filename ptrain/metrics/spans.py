"""Span-level precision / recall / F1 for BIO-tagged semantic role labelling.

SRL is scored on arguments, not tokens: a predicted argument counts only when its role and both
boundaries match a gold argument exactly. Spans are read from BIO tags the way ``conlleval`` does it: an
``I-X`` that does not continue an ``X`` span (after ``O``, at the start, or after another role) opens a
new span instead of being dropped, so ill-formed model output is still scored.

The predicate span ``V`` and its continuation ``C-V`` (a particle of a phrasal verb) are excluded by default:
the CoNLL-2005 scorer (``srl-eval.pl``) merges every ``C-X`` into its ``X`` and leaves ``V`` out, scoring
arguments only. Unlike ``srl-eval.pl``, continuation (``C-A1``) and reference (``R-A0``) roles are scored
as roles of their own rather than merged with their base argument; P-Tuning v2 (which uses seqeval over
all tags, ``V`` included) also scores them separately, so numbers are comparable to it with
``ignore_labels=()``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["bio_spans", "srl_span_f1"]


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(label, start, end)`` spans (``end`` inclusive) of one BIO tag sequence, conlleval-style."""
    spans: list[tuple[str, int, int]] = []
    label: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        if tag == "O":
            prefix, role = "O", None
        elif len(tag) > 2 and tag[:2] in ("B-", "I-"):
            prefix, role = tag[0], tag[2:]
        else:
            raise ValueError(f"tag {tag!r} at position {i} is not O, B-<role> or I-<role>")
        if prefix == "I" and role == label:
            continue
        if label is not None:
            spans.append((label, start, i - 1))
        label, start = role, i
    if label is not None:
        spans.append((label, start, len(tags) - 1))
    return spans


def srl_span_f1(
    gold_seqs: Iterable[Sequence[str]],
    pred_seqs: Iterable[Sequence[str]],
    ignore_labels: Sequence[str] = ("V", "C-V"),
) -> dict[str, float]:
    """Micro-averaged span ``precision``, ``recall``, ``f1`` (fractions) plus the ``n_gold``, ``n_pred``,
    ``n_correct`` counts, over all sequences; spans whose role is in ``ignore_labels`` are left out."""
    ignored = set(ignore_labels)
    n_gold = n_pred = n_correct = 0
    n_seqs = 0
    for n_seqs, (gold, pred) in enumerate(zip(gold_seqs, pred_seqs, strict=True), start=1):
        if len(gold) != len(pred):
            raise ValueError(f"sequence {n_seqs - 1}: {len(gold)} gold tags but {len(pred)} predicted")
        g = Counter(s for s in bio_spans(gold) if s[0] not in ignored)
        p = Counter(s for s in bio_spans(pred) if s[0] not in ignored)
        n_gold += sum(g.values())
        n_pred += sum(p.values())
        n_correct += sum((g & p).values())
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_gold": float(n_gold),
        "n_pred": float(n_pred),
        "n_correct": float(n_correct),
    }
