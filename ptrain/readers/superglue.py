"""Readers for the official SuperGLUE jsonl files.

Each task folder holds ``train.jsonl``, ``val.jsonl`` and ``test.jsonl`` with one JSON object per line
(the layout of the SuperGLUE release). Test files carry no labels; their examples get ``label=None``
(``answers=[]`` for ReCoRD). Labels are normalised so that every consumer sees one label set:

========  =====================================================  ==================
task      fields kept                                            label
========  =====================================================  ==================
BoolQ     question, passage, idx                                 "True" / "False"
CB        premise, hypothesis, idx                               entailment / contradiction / neutral
RTE       premise, hypothesis, idx                               entailment / not_entailment
COPA      premise, choice1, choice2, question, idx               int 0 / 1
WiC       word, sentence1, sentence2, start1, end1, start2,      "True" / "False"
          end2, idx
WSC       text, span1_text, span1_index, span2_text,             "True" / "False"
          span2_index, idx
MultiRC   one example per answer option: passage, question,      int 0 / 1
          answer, question_id, answer_idx, passage_idx,
          question_idx, idx
ReCoRD    one example per query: passage, query, entities,       (answers: list[str])
          answers, idx, passage_idx
========  =====================================================  ==================

Every reader takes either a jsonl file or a task folder plus ``split``. Whether labels must be present is
inferred from the file name (``test*.jsonl`` is unlabelled) unless ``labeled=`` says otherwise, so that a
labelled split with a missing label fails instead of silently turning into test data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ptrain.readers.errors import DataFormatError, LocatedRows, open_text, resolve_split_file

__all__ = [
    "SPLIT_FILES",
    "SUPERGLUE_TASKS",
    "iter_jsonl",
    "read_boolq",
    "read_cb",
    "read_copa",
    "read_multirc",
    "read_record",
    "read_rte",
    "read_superglue",
    "read_wic",
    "read_wsc",
]

PathLike = str | os.PathLike[str]

SPLIT_FILES: dict[str, str] = {
    "train": "train.jsonl",
    "val": "val.jsonl",
    "validation": "val.jsonl",
    "dev": "val.jsonl",
    "test": "test.jsonl",
}

CB_LABELS = ("entailment", "contradiction", "neutral")
RTE_LABELS = ("entailment", "not_entailment")


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line, failing with the line on bad JSON."""
    with open_text(path) as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, f"invalid JSON: {e.msg} at column {e.colno}", line=line_no) from e
            if not isinstance(record, dict):
                raise DataFormatError(
                    path, f"expected a JSON object, got {type(record).__name__}", line=line_no
                )
            yield line_no, record


class _Record:
    """Field access on one jsonl record that turns every problem into a located DataFormatError."""

    def __init__(self, path: Path, line: int, data: dict[str, Any], task: str, needs: str) -> None:
        self.path, self.line, self.data, self.task, self.needs = path, line, data, task, needs

    def error(self, problem: str, field: str, expected: str | None = None) -> DataFormatError:
        return DataFormatError(
            self.path, problem, line=self.line, field=field, expected=expected or self.needs
        )

    def get(self, key: str, kind: type | tuple[type, ...], data: dict[str, Any] | None = None) -> Any:
        src = self.data if data is None else data
        if key not in src:
            raise self.error(f"missing field {key!r}", key)
        value = src[key]
        # bool is an int subclass: never accept it where a number is wanted.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            want = "/".join(t.__name__ for t in _as_tuple(kind))
            raise self.error(f"field {key!r} should be {want}, got {type(value).__name__} {value!r}", key)
        return value

    def text(self, key: str, data: dict[str, Any] | None = None) -> str:
        return self.get(key, str, data)

    def integer(self, key: str, data: dict[str, Any] | None = None) -> int:
        return self.get(key, int, data)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _is_labeled(file: Path, labeled: bool | None) -> bool:
    return (not file.name.startswith("test")) if labeled is None else labeled


def _bool_label(rec: _Record, key: str = "label", data: dict[str, Any] | None = None) -> str:
    """Map the official bool label (also "true"/"false" strings from converted copies) to "True"/"False"."""
    value = rec.get(key, (bool, str), data)
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise rec.error(f"field {key!r} has unknown value {value!r}", key, "expected true or false")
        return "True" if value.lower() == "true" else "False"
    return str(value)


def _choice_label(rec: _Record, allowed: tuple[str, ...]) -> str:
    value = rec.text("label")
    if value not in allowed:
        raise rec.error(f"field 'label' has unknown value {value!r}", "label", f"expected one of {allowed}")
    return value


def _binary_int(rec: _Record, key: str = "label", data: dict[str, Any] | None = None) -> int:
    value = rec.get(key, int, data)
    if value not in (0, 1):
        raise rec.error(f"field {key!r} has value {value!r}", key, "expected 0 or 1")
    return int(value)


def _read(
    path: PathLike,
    split: str | None,
    task: str,
    needs: str,
    build: Callable[[_Record, bool], list[dict[str, Any]]],
    labeled: bool | None,
) -> list[dict[str, Any]]:
    file = resolve_split_file(path, split, SPLIT_FILES)
    has_labels = _is_labeled(file, labeled)
    out = LocatedRows()  # with the line of every row (blank lines skipped; MultiRC gives several rows a line)
    for line_no, data in iter_jsonl(file):
        out.add(build(_Record(file, line_no, data, task, needs), has_labels), line_no)
    return out


def read_boolq(path: PathLike, split: str | None = None, *, labeled: bool | None = None) -> list[dict]:
    """BoolQ: yes/no question about a Wikipedia passage (label "True"/"False")."""

    def build(r: _Record, has_labels: bool) -> list[dict]:
        return [
            {
                "question": r.text("question"),
                "passage": r.text("passage"),
                "label": _bool_label(r) if has_labels else None,
                "idx": r.integer("idx"),
            }
        ]

    return _read(path, split, "BoolQ", "BoolQ records need question, passage, idx, label", build, labeled)


def _premise_hypothesis(
    task: str, allowed: tuple[str, ...]
) -> Callable[[_Record, bool], list[dict[str, Any]]]:
    def build(r: _Record, has_labels: bool) -> list[dict]:
        return [
            {
                "premise": r.text("premise"),
                "hypothesis": r.text("hypothesis"),
                "label": _choice_label(r, allowed) if has_labels else None,
                "idx": r.integer("idx"),
            }
        ]

    return build


def read_cb(path: PathLike, split: str | None = None, *, labeled: bool | None = None) -> list[dict]:
    """CommitmentBank: three-way entailment (entailment / contradiction / neutral)."""
    needs = "CB records need premise, hypothesis, idx, label"
    return _read(path, split, "CB", needs, _premise_hypothesis("CB", CB_LABELS), labeled)


def read_rte(path: PathLike, split: str | None = None, *, labeled: bool | None = None) -> list[dict]:
    """RTE: two-way entailment (entailment / not_entailment)."""
    needs = "RTE records need premise, hypothesis, idx, label"
    return _read(path, split, "RTE", needs, _premise_hypothesis("RTE", RTE_LABELS), labeled)


def read_copa(path: PathLike, split: str | None = None, *, labeled: bool | None = None) -> list[dict]:
    """COPA: pick the more plausible cause/effect; label is the 0-based index of the right choice."""

    def build(r: _Record, has_labels: bool) -> list[dict]:
        question = r.text("question")
        if question not in ("cause", "effect"):
            raise r.error(f"field 'question' has value {question!r}", "question", "expected cause or effect")
        return [
            {
                "premise": r.text("premise"),
                "choice1": r.text("choice1"),
                "choice2": r.text("choice2"),
                "question": question,
                "label": _binary_int(r) if has_labels else None,
                "idx": r.integer("idx"),
            }
        ]

    needs = "COPA records need premise, choice1, choice2, question, idx, label"
    return _read(path, split, "COPA", needs, build, labeled)


def read_wic(path: PathLike, split: str | None = None, *, labeled: bool | None = None) -> list[dict]:
    """WiC: is ``word`` used in the same sense in both sentences? Character offsets are kept and checked."""

    def build(r: _Record, has_labels: bool) -> list[dict]:
        ex: dict[str, Any] = {"word": r.text("word")}
        for k in ("1", "2"):
            sentence = r.text("sentence" + k)
            start, end = r.integer("start" + k), r.integer("end" + k)
            if not 0 <= start < end <= len(sentence):
                raise r.error(
                    f"span start{k}={start}, end{k}={end} is outside sentence{k} (length {len(sentence)})",
                    "start" + k,
                    f"expected 0 <= start{k} < end{k} <= len(sentence{k})",
                )
            ex.update({"sentence" + k: sentence, "start" + k: start, "end" + k: end})
        ex["label"] = _bool_label(r) if has_labels else None
        ex["idx"] = r.integer("idx")
        return [ex]

    needs = "WiC records need word, sentence1, sentence2, start1, end1, start2, end2, idx, label"
    return _read(path, split, "WiC", needs, build, labeled)


def read_wsc(path: PathLike, split: str | None = None, *, labeled: bool | None = None) -> list[dict]:
    """WSC: does the pronoun (span2) refer to span1? Span indices count whitespace-separated words."""

    def build(r: _Record, has_labels: bool) -> list[dict]:
        text = r.text("text")
        target = r.get("target", dict)
        n_words = len(text.split())
        ex: dict[str, Any] = {"text": text}
        for k in ("1", "2"):
            span_text = r.text(f"span{k}_text", target)
            index = r.integer(f"span{k}_index", target)
            if not 0 <= index < n_words:
                raise r.error(
                    f"target.span{k}_index={index} is outside the text ({n_words} words)",
                    f"span{k}_index",
                    "expected a 0-based word index into text.split()",
                )
            ex.update({f"span{k}_text": span_text, f"span{k}_index": index})
        ex["label"] = _bool_label(r) if has_labels else None
        ex["idx"] = r.integer("idx")
        return [ex]

    needs = "WSC records need text, target{span1_text, span1_index, span2_text, span2_index}, idx, label"
    return _read(path, split, "WSC", needs, build, labeled)


def read_multirc(path: PathLike, split: str | None = None, *, labeled: bool | None = None) -> list[dict]:
    """MultiRC, flattened to one binary example per answer option.

    ``question_id`` ("<passage idx>-<question idx>") groups the options of one question, which the
    exact-match metric needs (:func:`ptrain.metrics.superglue.multirc_scores`).
    """

    def build(r: _Record, has_labels: bool) -> list[dict]:
        passage_idx = r.integer("idx")
        passage = r.get("passage", dict)
        text = r.text("text", passage)
        questions = r.get("questions", list, passage)
        out: list[dict] = []
        for q in questions:
            if not isinstance(q, dict):
                raise r.error("passage.questions should hold objects", "questions")
            question, question_idx = r.text("question", q), r.integer("idx", q)
            for a in r.get("answers", list, q):
                if not isinstance(a, dict):
                    raise r.error("question.answers should hold objects", "answers")
                answer_idx = r.integer("idx", a)
                out.append(
                    {
                        "passage": text,
                        "question": question,
                        "answer": r.text("text", a),
                        "label": _binary_int(r, "label", a) if has_labels else None,
                        "question_id": f"{passage_idx}-{question_idx}",
                        "answer_idx": answer_idx,
                        "passage_idx": passage_idx,
                        "question_idx": question_idx,
                        "idx": answer_idx,
                    }
                )
        return out

    needs = "MultiRC records need idx, passage{text, questions[{question, idx, answers[{text, idx, label}]}]}"
    return _read(path, split, "MultiRC", needs, build, labeled)


def read_record(path: PathLike, split: str | None = None, *, labeled: bool | None = None) -> list[dict]:
    """ReCoRD: one cloze example per query.

    ``entities`` are the distinct candidate strings cut from ``passage.entities`` (inclusive ``end``, as in
    the release), sorted so the candidate order does not depend on annotation order. ``answers`` are the
    distinct gold strings (empty for test). The passage text is kept raw (``@highlight`` markers included)
    so character offsets stay valid.
    """

    def build(r: _Record, has_labels: bool) -> list[dict]:
        passage = r.get("passage", dict)
        text = r.text("text", passage)
        entities: set[str] = set()
        for span in r.get("entities", list, passage):
            if not isinstance(span, dict):
                raise r.error("passage.entities should hold {start, end} objects", "entities")
            start, end = r.integer("start", span), r.integer("end", span)
            if not 0 <= start <= end < len(text):
                raise r.error(
                    f"entity span start={start}, end={end} is outside the passage (length {len(text)})",
                    "entities",
                    "expected 0 <= start <= end < len(passage.text); end is inclusive",
                )
            entities.add(text[start : end + 1])
        out: list[dict] = []
        for qa in r.get("qas", list, r.data):
            if not isinstance(qa, dict):
                raise r.error("qas should hold objects", "qas")
            query = r.text("query", qa)
            if "@placeholder" not in query:
                raise r.error(
                    "query has no '@placeholder'", "query", "ReCoRD queries mark the gap with @placeholder"
                )
            answers: list[str] = []
            if has_labels:
                for a in r.get("answers", list, qa):
                    if not isinstance(a, dict):
                        raise r.error("qas.answers should hold objects", "answers")
                    answer = r.text("text", a)
                    if answer not in answers:
                        answers.append(answer)
            out.append(
                {
                    "passage": text,
                    "query": query,
                    "entities": sorted(entities),
                    "answers": answers,
                    "idx": r.integer("idx", qa),
                    "passage_idx": r.data.get("idx"),
                }
            )
        return out

    needs = "ReCoRD records need passage{text, entities[{start, end}]}, "
    needs += "qas[{query, answers[{start, end, text}], idx}]"
    return _read(path, split, "ReCoRD", needs, build, labeled)


SUPERGLUE_TASKS: dict[str, Callable[..., list[dict]]] = {
    "boolq": read_boolq,
    "cb": read_cb,
    "rte": read_rte,
    "copa": read_copa,
    "wic": read_wic,
    "wsc": read_wsc,
    "multirc": read_multirc,
    "record": read_record,
}


def read_superglue(
    task: str, path: PathLike, split: str | None = None, *, labeled: bool | None = None
) -> list[dict]:
    """Dispatch to the reader of ``task``: boolq, cb, rte, copa, wic, wsc, multirc or record (any case)."""
    key = task.lower().replace("-", "").replace("_", "")
    if key not in SUPERGLUE_TASKS:
        raise ValueError(f"unknown SuperGLUE task {task!r}: expected one of {sorted(SUPERGLUE_TASKS)}")
    return SUPERGLUE_TASKS[key](path, split, labeled=labeled)
