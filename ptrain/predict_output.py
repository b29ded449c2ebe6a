"""What a user gets back for one input: label and score, entity spans, a choice, or text (JSON-ready dicts)."""

from __future__ import annotations

import math
from typing import Any

import torch


def decode(entry: Any, feature: dict, logits: torch.Tensor, raw: Any, tokenizer: Any) -> dict:
    """One prediction from a head's logits for one input of `entry`'s task (a `BankTask`)."""
    kind = entry.head_kind
    if kind in ("sequence", "pair"):
        return _label(entry.labels, logits)
    if kind == "lm":
        words = torch.as_tensor(feature["label_token_ids"], device=logits.device)
        return _label(entry.labels, logits[words])
    if kind == "choice":
        probs = logits.float().softmax(-1)
        return {"choice": int(probs.argmax()), "score": float(probs.max()), "scores": [float(p) for p in probs]}
    if kind == "token" and feature.get("qa"):
        return _answer(entry, feature, logits)
    if kind == "token":
        return _entities(entry, feature, logits)
    raise ValueError(f"no prediction format for head kind {kind!r}")


def _label(labels: list[str], logits: torch.Tensor) -> dict:
    probs = logits.float().softmax(-1)
    best = int(probs.argmax())
    return {"label": labels[best], "score": float(probs[best]),
            "scores": {label: float(p) for label, p in zip(labels, probs)}}


def _answer(entry: Any, feature: dict, windows: list[torch.Tensor]) -> dict:
    """The best span over the context's windows, as the SQuAD metric picks it (`postprocess_spans`); "" when
    SQuAD 2.0's no-answer score wins."""
    from ptrain.metrics.squad import postprocess_spans

    task = entry.task
    best = postprocess_spans([w[:, 0].float().numpy() for w in windows], [w[:, 1].float().numpy() for w in windows],
                             feature["offsets"], feature["context"], n_best=task.n_best,
                             max_answer_length=task.max_answer_length, null_index=0 if task.v2 else None)
    answer = best["text"]
    if task.v2 and best["null_score_diff"] is not None and best["null_score_diff"] > task.null_threshold:
        answer = ""
    score = float(best["score"])
    return {"answer": answer, "start": best["start_char"], "end": best["end_char"],
            "score": score if math.isfinite(score) else None}


def _entities(entry: Any, feature: dict, logits: torch.Tensor) -> dict:
    """Word tags from each word's first sub-word (how the task was trained and scored), then BIO spans.

    Words cut off by `max_length` get no tag (`null`); spans are word offsets, `end` exclusive.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    tokens = list(feature["_tokens"])
    first = [i for i, label in enumerate(feature["labels"]) if label != -100]
    predicted = logits.argmax(-1).tolist()
    tags: list[str | None] = [None] * len(tokens)
    for word, position in enumerate(first[:len(tokens)]):
        tags[word] = entry.labels[predicted[position]]
    probs = logits.float().softmax(-1).max(-1).values.tolist()
    entities = []
    for label, start, end in get_entities([t or "O" for t in tags]):
        score = min(probs[first[w]] for w in range(start, end + 1))
        entities.append({"type": label, "start": start, "end": end + 1, "text": " ".join(tokens[start:end + 1]),
                         "score": score})
    return {"tags": tags, "entities": entities, "tokens": tokens}


__all__ = ["decode"]
