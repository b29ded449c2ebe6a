"""CoNLL column files (CoNLL-2003 style): one token per line, tag in a chosen column, blank line between sentences."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ptrain.readers.errors import DataFormatError, open_text

_TAG = re.compile(r"^(O|[BIES]-\S+)$")


def read_conll(path: str | Path, tag_column: int = -1, labels: Sequence[str] | None = None) -> list[dict]:
    """Read sentences as `{"tokens", "tags", "line"}` (line = 1-based line of the first token).

    Accepts IOB1, IOB2 and BIOES tags; `-DOCSTART-` lines are skipped. With `labels` given, a tag outside
    them is an error naming the file and line (so a dev set with a label unseen in training fails early).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL file not found: {path}")
    known = set(labels) if labels is not None else None
    sentences: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    width: int | None = None  # columns of the first token line; every token line must have as many
    width_line = 0
    with open_text(path, "utf-8-sig") as handle:  # -sig: a byte-order mark would glue onto -DOCSTART-
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("-DOCSTART-"):
                if tokens:
                    sentences.append({"tokens": tokens, "tags": tags, "line": start})
                    tokens, tags = [], []
                continue
            columns = line.split()
            if len(columns) < 2:
                raise DataFormatError(path, f"malformed line {line[:60]!r}", line=number, field="columns",
                                      expected="at least 2 whitespace-separated columns: token ... tag")
            if width is None:
                width, width_line = len(columns), number
            elif len(columns) != width:  # a lost tag column would make a POS or chunk tag the label, silently
                raise DataFormatError(path, f"line has {len(columns)} columns, line {width_line} has {width}",
                                      line=number, field="columns",
                                      expected="the same columns on every token line (a column lost?)")
            if not -len(columns) <= tag_column < len(columns):
                raise DataFormatError(path, f"line has {len(columns)} columns, no column {tag_column}", line=number,
                                      field="task.tag_column", expected="a tag column that every token line has")
            tag = columns[tag_column]
            if not _TAG.match(tag):
                raise DataFormatError(path, f"malformed tag {tag!r}", line=number, field="tag",
                                      expected="O or B-/I-/E-/S- followed by a type")
            if known is not None and tag not in known:
                raise DataFormatError(path, f"unknown label {tag!r}", line=number, field="tag",
                                      expected=f"one of the training labels: {', '.join(sorted(known))}")
            if not tokens:
                start = number
            tokens.append(columns[0])
            tags.append(tag)
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags, "line": start})
    if not sentences:
        raise DataFormatError(path, "no sentences found", expected="token lines separated by blank lines")
    return sentences


def label_set(sentences: Sequence[dict]) -> list[str]:
    """Labels in a stable order: O first, then by entity type, B before I/E/S."""
    found = {tag for s in sentences for tag in s["tags"]}
    order = {"B": 0, "I": 1, "E": 2, "S": 3}
    rest = sorted(found - {"O"}, key=lambda t: (t[2:], order.get(t[0], 9)))
    return ["O", *rest]
