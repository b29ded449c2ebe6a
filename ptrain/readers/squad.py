"""Reader for SQuAD v1.1 / v2.0 json files.

Layout (both versions)::

    {"version": "v2.0", "data": [{"title": ..., "paragraphs": [{"context": "...",
        "qas": [{"id": "...", "question": "...", "answers": [{"text": "...", "answer_start": 12}],
                 "is_impossible": false}]}]}]}

Each question becomes ``{id, title, context, question, answers: {text: [...], answer_start: [...]},
is_impossible}`` (the column layout of the Hugging Face ``squad`` datasets, so span-labelling code can be
shared). v1.1 has no ``is_impossible``; it reads as False. Unanswerable v2.0 questions have empty answer
lists (their ``plausible_answers`` are ignored).

Every answer is checked against its context, ``context[answer_start:answer_start + len(text)] == text``,
because a wrong offset silently trains the model on the wrong span. With ``strict=True`` (default) the
first bad answer raises :class:`DataFormatError`. With ``strict=False`` bad answers are dropped, an
answerable question left with no good answer is dropped too, and one ``UserWarning`` lists how many and
the first few question ids.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from ptrain.readers.errors import DataFormatError, open_text, resolve_split_file

__all__ = ["SPLIT_FILES", "read_squad"]

PathLike = str | os.PathLike[str]

SPLIT_FILES: dict[str, str] = {
    "train": "train.json",
    "dev": "dev.json",
    "val": "dev.json",
    "validation": "dev.json",
}

_NEEDS = "SQuAD needs data[].paragraphs[].{context, qas[].{id, question, answers[{text, answer_start}]}}"


def _need(obj: Any, key: str, kind: type, path: Path, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataFormatError(path, f"{where}: missing field {key!r}", field=key, expected=_NEEDS)
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise DataFormatError(
            path,
            f"{where}: field {key!r} should be {kind.__name__}, got {type(value).__name__}",
            field=key,
            expected=_NEEDS,
        )
    return value


def read_squad(path: PathLike, split: str | None = None, *, strict: bool = True) -> list[dict]:
    """Read a SQuAD v1.1/v2.0 file (or ``<dir>/{train,dev}.json`` and ``split``): one example per question."""
    file = resolve_split_file(path, split, SPLIT_FILES)
    try:
        with open_text(file) as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(file, f"invalid JSON: {e.msg}", line=e.lineno) from e
    articles = _need(doc, "data", list, file, "top level")
    out: list[dict] = []
    seen: set[str] = set()
    bad_answers: list[str] = []  # question ids, once per answer dropped
    dropped: list[str] = []  # question ids dropped for having no answer left
    for a_i, article in enumerate(articles):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p_i, para in enumerate(_need(article, "paragraphs", list, file, f"data[{a_i}]")):
            where = f"data[{a_i}].paragraphs[{p_i}]"
            context = _need(para, "context", str, file, where)
            for q_i, qa in enumerate(_need(para, "qas", list, file, where)):
                qid = _need(qa, "id", str, file, f"{where}.qas[{q_i}]")
                qwhere = f"question id {qid!r}"
                if qid in seen:
                    raise DataFormatError(
                        file, f"{qwhere}: duplicate id", field="id", expected="ids must be unique"
                    )
                seen.add(qid)
                question = _need(qa, "question", str, file, qwhere)
                impossible = _need(qa, "is_impossible", bool, file, qwhere) if "is_impossible" in qa else False
                texts: list[str] = []
                starts: list[int] = []
                for ans_i, ans in enumerate(_need(qa, "answers", list, file, qwhere)):
                    text = _need(ans, "text", str, file, f"{qwhere}, answer {ans_i}")
                    start = _need(ans, "answer_start", int, file, f"{qwhere}, answer {ans_i}")
                    # a negative start would slice from the end of the context and could still match
                    if start < 0 or context[start : start + len(text)] != text:
                        found = context[start : start + len(text)] if start >= 0 else "before the context"
                        msg = (
                            f"{qwhere}, answer {ans_i}: context[{start}:{start + len(text)}] is {found!r}, "
                            f"not the answer text {text!r}"
                        )
                        if strict:
                            raise DataFormatError(
                                file,
                                msg,
                                field="answer_start",
                                expected="answer_start must index the answer text in the context",
                            )
                        bad_answers.append(qid)
                        continue
                    texts.append(text)
                    starts.append(start)
                if impossible:
                    texts, starts = [], []
                elif not texts:
                    if strict:
                        raise DataFormatError(
                            file,
                            f"{qwhere}: answerable question without answers",
                            field="answers",
                            expected="set is_impossible: true for unanswerable questions",
                        )
                    dropped.append(qid)
                    continue
                out.append(
                    {
                        "id": qid,
                        "title": title,
                        "context": context,
                        "question": question,
                        "answers": {"text": texts, "answer_start": starts},
                        "is_impossible": impossible,
                    }
                )
    if bad_answers or dropped:
        ids = list(dict.fromkeys(bad_answers + dropped))
        warnings.warn(
            f"{file}: dropped {len(bad_answers)} answers whose answer_start does not index their text and "
            f"{len(dropped)} questions left without answers "
            f"(question ids {ids[:5]}{' ...' if len(ids) > 5 else ''})",
            UserWarning,
            stacklevel=2,
        )
    return out
