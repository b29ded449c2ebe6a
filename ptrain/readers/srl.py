"""Reader for CoNLL-2005 / CoNLL-2012 semantic role labelling in the P-Tuning v2 data-pack layout.

The P-Tuning v2 data pack (``data/CoNLL05``, ``data/CoNLL12``) uses the layout of He et al. (2017),
luheng/deep_srl, and stores **one predicate per line**::

    <predicate index> <token> <token> ... ||| <tag> <tag> ...

- the predicate index is 0-based into the tokens;
- tokens and tags are whitespace-separated, one BIO tag per token (``B-V`` marks the predicate);
- a sentence with k predicates appears on k lines; blank lines are ignored.

Example (CoNLL-2005 labels are ``A0``, ``AM-TMP``...; CoNLL-2012 uses ``ARG0``, ``ARGM-TMP``...)::

    1 John ate the apple yesterday ||| B-A0 B-V B-A1 I-A1 B-AM-TMP

reads as ``{"tokens": ["John", "ate", "the", "apple", "yesterday"], "predicate_index": 1,
"tags": ["B-A0", "B-V", "B-A1", "I-A1", "B-AM-TMP"]}``.

File names (``split`` argument of :func:`read_srl_split`):

- conll05: ``conll05.train.txt``, ``conll05.devel.txt``, ``conll05.test.wsj.txt``, ``conll05.test.brown.txt``
- conll12: ``conll2012.train.txt``, ``conll2012.devel.txt``, ``conll2012.test.txt``

Learned from the P-Tuning v2 task scripts ``tasks/srl/datasets/conll2005.py`` / ``conll2012.py`` (copy in
the public repository Zefan-Cai/Python_Project), ``tasks/srl/dataset.py`` of THUDM/P-tuning-v2, which
indexes ``tokens[int(index)]`` to append the predicate word after ``[SEP]``, and luheng/deep_srl
``python/neural_srl/shared/reader.py`` ("{predicate_id} [word0, word1 ...] ||| [label0, label1 ...]").
Unlike deep_srl, a line without tags is an error here: every split of the data pack is labelled.
"""

from __future__ import annotations

import os
from pathlib import Path

from ptrain.readers.errors import DataFormatError, LocatedRows, missing_file_error, open_text

__all__ = ["SRL_SPLIT_FILES", "read_srl", "read_srl_split"]

PathLike = str | os.PathLike[str]

SRL_SPLIT_FILES: dict[str, dict[str, str]] = {
    "conll05": {
        "train": "conll05.train.txt",
        "dev": "conll05.devel.txt",
        "test_wsj": "conll05.test.wsj.txt",
        "test_brown": "conll05.test.brown.txt",
    },
    "conll12": {
        "train": "conll2012.train.txt",
        "dev": "conll2012.devel.txt",
        "test": "conll2012.test.txt",
    },
}

_EXPECTED = "expected '<predicate index> <tokens...> ||| <BIO tags...>'"


def _check_tag(tag: str) -> bool:
    return tag == "O" or (len(tag) > 2 and tag[:2] in ("B-", "I-"))


def read_srl(path: PathLike) -> list[dict]:
    """Read one SRL file into ``{tokens, predicate_index, tags}`` examples, one per predicate line."""
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path, ["<name>.txt in the '<index> tokens ||| tags' layout"])
    out = LocatedRows()  # with each row's line (blank lines are skipped)
    with open_text(path) as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            if line.count("|||") != 1:
                raise DataFormatError(
                    path, "line needs exactly one '|||' separator", line=line_no, expected=_EXPECTED
                )
            left, right = line.split("|||")
            words, tags = left.split(), right.split()
            if not words:
                raise DataFormatError(
                    path, "no predicate index before '|||'", line=line_no, expected=_EXPECTED
                )
            index_text, tokens = words[0], words[1:]
            if not index_text.isdigit():
                raise DataFormatError(
                    path,
                    f"predicate index {index_text!r} is not a non-negative integer",
                    line=line_no,
                    field="predicate_index",
                    expected=_EXPECTED,
                )
            index = int(index_text)
            if not tokens:
                raise DataFormatError(path, "no tokens", line=line_no, field="tokens", expected=_EXPECTED)
            if len(tags) != len(tokens):
                raise DataFormatError(
                    path,
                    f"{len(tokens)} tokens but {len(tags)} tags",
                    line=line_no,
                    field="tags",
                    expected="one tag per token",
                )
            if index >= len(tokens):
                raise DataFormatError(
                    path,
                    f"predicate index {index} is outside the {len(tokens)} tokens",
                    line=line_no,
                    field="predicate_index",
                    expected="0-based index into the tokens",
                )
            for tag in tags:
                if not _check_tag(tag):
                    raise DataFormatError(
                        path,
                        f"tag {tag!r} is not BIO",
                        line=line_no,
                        field="tags",
                        expected="tags are O, B-<role> or I-<role>",
                    )
            out.add([{"tokens": tokens, "predicate_index": index, "tags": tags}], line_no)
    return out


def read_srl_split(directory: PathLike, dataset: str, split: str) -> list[dict]:
    """Read ``split`` of ``dataset`` ("conll05" or "conll12") from a data-pack folder."""
    if dataset not in SRL_SPLIT_FILES:
        raise ValueError(f"unknown SRL dataset {dataset!r}: expected one of {sorted(SRL_SPLIT_FILES)}")
    files = SRL_SPLIT_FILES[dataset]
    if split not in files:
        raise ValueError(f"unknown {dataset} split {split!r}: expected one of {sorted(files)}")
    directory = Path(directory)
    file = directory / files[split]
    if not file.is_file():
        raise missing_file_error(directory if not directory.is_dir() else file, list(files.values()))
    return read_srl(file)
