"""SQuAD v1.1 / v2.0 scoring, re-implemented from the official evaluation scripts' definitions.

Reported numbers must be comparable with papers, so the normalisation (lower-case, drop punctuation,
drop the articles a/an/the, collapse whitespace), the max over gold answers and the v2.0 no-answer rules
follow the official ``evaluate-v1.1.py`` / ``evaluate-v2.0.py``. Scores are percentages, as there.

Conventions shared by both versions here:

- an empty gold list means "unanswerable" and is scored against the gold ``""``;
- a prediction of ``""`` means "no answer";
- a reference id without a prediction scores 0 (the v1.1 rule: "unanswered questions receive score 0").

Where the two scripts differ, each version keeps its own rule (``version="1.1"``, the default of
:func:`exact_match` and :func:`f1`, which ReCoRD's official script shares; ``"2.0"`` for :func:`squad_v2`):
v2.0 drops gold answers that normalise to nothing ("The", ".") and gives F1 1 between two empty token lists;
v1.1 keeps every gold and gives F1 0 whenever no token is shared.

:func:`postprocess_spans` turns start/end logits of the (document-stride) features of one example into
the best answer text, the way the Hugging Face question-answering examples do.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "best_null_threshold",
    "exact_match",
    "f1",
    "normalize_answer",
    "postprocess_spans",
    "squad_v1",
    "squad_v2",
]

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, remove punctuation, articles and extra whitespace (official SQuAD normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


VERSIONS = ("1.1", "2.0")


def _golds(golds: Sequence[str] | str, version: str) -> list[str]:
    """The gold list; v2.0 drops golds that normalise to nothing. None left (unanswerable) means ``[""]``."""
    if version not in VERSIONS:
        raise ValueError(f"SQuAD version must be one of {', '.join(VERSIONS)}; got {version!r}")
    if isinstance(golds, str):
        golds = [golds]
    kept = [g for g in golds if normalize_answer(g)] if version == "2.0" else list(golds)
    return kept or [""]


def _exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1(prediction: str, gold: str, version: str) -> float:
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if version == "2.0" and (not pred_toks or not gold_toks):
        return float(pred_toks == gold_toks)
    common = Counter(pred_toks) & Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_toks)
    recall = same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str] | str, version: str = "1.1") -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    return max(_exact(prediction, g) for g in _golds(golds, version))


def f1(prediction: str, golds: Sequence[str] | str, version: str = "1.1") -> float:
    """Bag-of-tokens F1 (in [0, 1]) against the best-matching gold answer."""
    return max(_f1(prediction, g, version) for g in _golds(golds, version))


def _raw_scores(
    predictions: Mapping[Any, str], references: Mapping[Any, Sequence[str]], version: str
) -> tuple[dict[Any, float], dict[Any, float]]:
    exact: dict[Any, float] = {}
    f1s: dict[Any, float] = {}
    for qid, golds in references.items():
        if qid not in predictions:
            exact[qid] = f1s[qid] = 0.0
            continue
        exact[qid] = exact_match(predictions[qid], golds, version)
        f1s[qid] = f1(predictions[qid], golds, version)
    return exact, f1s


def squad_v1(predictions: Mapping[Any, str], references: Mapping[Any, Sequence[str]]) -> dict[str, float]:
    """SQuAD v1.1 ``{"exact_match", "f1"}`` in percent over all reference ids."""
    if not references:
        raise ValueError("no references to score")
    exact, f1s = _raw_scores(predictions, references, "1.1")
    n = len(references)
    return {"exact_match": 100.0 * sum(exact.values()) / n, "f1": 100.0 * sum(f1s.values()) / n}


def squad_v2(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    na_probs: Mapping[Any, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """SQuAD v2.0 scores in percent: ``exact, f1, total`` and the ``HasAns_*`` / ``NoAns_*`` breakdown.

    As in the official script, a breakdown is only reported when its subset is non-empty. With
    ``na_probs`` (any "no-answer" score, e.g. null-minus-best-span logit difference) a question counts as
    answered "no answer" when ``na_probs[id] > na_prob_thresh``, and the ``best_exact``/``best_f1`` search
    of :func:`best_null_threshold` is added.
    """
    if not references:
        raise ValueError("no references to score")
    exact, f1s = _raw_scores(predictions, references, "2.0")
    has_ans = {qid: bool(golds) for qid, golds in references.items()}
    if na_probs is not None:
        for qid in references:
            if na_probs.get(qid, 0.0) > na_prob_thresh:
                exact[qid] = f1s[qid] = float(not has_ans[qid])

    def block(ids: list[Any]) -> tuple[float, float, int]:
        n = len(ids)
        return 100.0 * sum(exact[i] for i in ids) / n, 100.0 * sum(f1s[i] for i in ids) / n, n

    out: dict[str, float] = {}
    out["exact"], out["f1"], out["total"] = block(list(references))
    for name, flag in (("HasAns", True), ("NoAns", False)):
        ids = [qid for qid, h in has_ans.items() if h is flag]
        if ids:
            out[f"{name}_exact"], out[f"{name}_f1"], out[f"{name}_total"] = block(ids)
    if na_probs is not None:
        out.update(best_null_threshold(predictions, references, na_probs))
    return out


def best_null_threshold(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    null_score_diffs: Mapping[Any, float],
) -> dict[str, float]:
    """Best no-answer threshold for EM and for F1, as ``find_best_thresh`` in the official v2.0 script.

    ``predictions`` should be the best non-null answer of every question and ``null_score_diffs[id]`` how
    much more the model prefers "no answer" (null score minus best span score). Sweeping the threshold
    from below every score upward answers questions in order of increasing diff; the returned threshold
    ``t`` means: predict "no answer" when ``diff > t``. Returns ``best_exact``, ``best_exact_thresh``,
    ``best_f1``, ``best_f1_thresh`` (scores in percent over all questions).
    """
    missing = [qid for qid in references if qid not in predictions or qid not in null_score_diffs]
    if missing:
        raise ValueError(
            f"{len(missing)} questions lack a prediction or a null score diff, e.g. {missing[:3]}"
        )
    exact, f1s = _raw_scores(predictions, references, "2.0")
    has_ans = {qid: bool(golds) for qid, golds in references.items()}
    order = sorted(references, key=lambda qid: null_score_diffs[qid])
    out: dict[str, float] = {}
    for name, scores in (("exact", exact), ("f1", f1s)):
        # Threshold below every diff: everything is "no answer", right exactly for the unanswerable ones.
        current = best = float(sum(not h for h in has_ans.values()))
        best_thresh = 0.0
        for qid in order:
            if has_ans[qid]:
                current += scores[qid]
            elif predictions[qid]:
                current -= 1.0
            if current > best:
                best, best_thresh = current, float(null_score_diffs[qid])
        out[f"best_{name}"] = 100.0 * best / len(references)
        out[f"best_{name}_thresh"] = best_thresh
    return out


def postprocess_spans(
    start_logits: Sequence[Sequence[float]] | np.ndarray,
    end_logits: Sequence[Sequence[float]] | np.ndarray,
    offsets: Sequence[Sequence[tuple[int, int] | None]],
    context: str,
    n_best: int = 20,
    max_answer_length: int = 30,
    null_index: int | None = 0,
) -> dict[str, Any]:
    """Pick the best answer span of one example from the logits of all its features.

    ``start_logits[f]``, ``end_logits[f]`` and ``offsets[f]`` describe feature ``f`` (one document-stride
    window); ``offsets[f][i]`` is the ``(start_char, end_char)`` of token ``i`` in ``context``, or ``None``
    for tokens outside the context (question, special tokens, padding); zero-width offsets count as
    outside too. For each feature the ``n_best`` highest start and end positions are paired; pairs
    outside the context, with ``end < start`` or longer than ``max_answer_length`` tokens are skipped; the
    score is ``start_logit + end_logit``.

    ``null_index`` is the token whose start+end logit is the "no answer" score (the CLS token, 0); the
    example's null score is the minimum over features, as in the Hugging Face v2 post-processing. Pass
    ``None`` for v1.1. Returns ``text`` ("" if no valid span), ``score`` (-inf then), ``start_char``,
    ``end_char``, ``null_score`` (or None), ``null_score_diff`` (null minus best, for
    :func:`best_null_threshold`) and the ``n_best`` list of ``{text, score, start_char, end_char}``.
    """
    if not (len(start_logits) == len(end_logits) == len(offsets)):
        raise ValueError(
            f"need one start/end logit row and one offset list per feature, got "
            f"{len(start_logits)}, {len(end_logits)}, {len(offsets)}"
        )
    candidates: list[dict[str, Any]] = []
    null_score: float | None = None
    for starts, ends, offs in zip(start_logits, end_logits, offsets):
        starts = np.asarray(starts, dtype=np.float64)
        ends = np.asarray(ends, dtype=np.float64)
        if null_index is not None:
            feature_null = float(starts[null_index] + ends[null_index])
            null_score = feature_null if null_score is None else min(null_score, feature_null)
        top_starts = np.argsort(starts)[::-1][:n_best]
        top_ends = np.argsort(ends)[::-1][:n_best]
        for s in top_starts:
            s = int(s)
            if s >= len(offs) or not _inside(offs[s]):
                continue
            for e in top_ends:
                e = int(e)
                if e >= len(offs) or not _inside(offs[e]) or e < s or e - s + 1 > max_answer_length:
                    continue
                start_char, end_char = int(offs[s][0]), int(offs[e][1])
                candidates.append(
                    {
                        "text": context[start_char:end_char],
                        "score": float(starts[s] + ends[e]),
                        "start_char": start_char,
                        "end_char": end_char,
                    }
                )
    candidates.sort(key=lambda c: c["score"], reverse=True)
    candidates = candidates[:n_best]
    best = (
        candidates[0]
        if candidates
        else {"text": "", "score": float("-inf"), "start_char": -1, "end_char": -1}
    )
    diff = None if null_score is None else null_score - best["score"]
    return {**best, "null_score": null_score, "null_score_diff": diff, "n_best": candidates}


def _inside(offset: Any) -> bool:
    return offset is not None and len(offset) == 2 and offset[1] > offset[0]
