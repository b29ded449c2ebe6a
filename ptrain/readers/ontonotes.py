"""Reader for OntoNotes 5.0 NER in the ``.sd.conllx`` layout of the P-Tuning v2 data pack.

The files (``train.sd.conllx``, ``dev.sd.conllx``, ``test.sd.conllx``) are CoNLL-X dependency trees
(Stanford dependencies) with the NER tag appended as an **11th** tab-separated column; sentences are
separated by blank lines::

    ID  FORM  LEMMA  CPOSTAG  POSTAG  FEATS  HEAD  DEPREL  PHEAD  PDEPREL  NER
    1   Peter _      NNP      NNP     _      2     nsubj   _      _        B-PERSON
    2   lives _      VBZ      VBZ     _      0     root    _      _        O
    3   in    _      IN       IN      _      2     prep    _      _        O
    4   Paris _      NNP      NNP     _      3     pobj    _      _        B-GPE

Only FORM (column 2) and NER (column 11) are used; the tags are BIO (IOB2) over the 18 OntoNotes types.
The ID column is checked to count 1, 2, ... so a missing blank line between sentences is caught.

Learned from the P-Tuning v2 loader ``tasks/ner/datasets/ontonotes.py`` (copy in the public repository
Zefan-Cai/Python_Project: token = ``split('\\t')[1]``, tag = last column) and from the origin of the
``.sd.conllx`` files, allanj/ner_with_dependency ``config/reader.py`` (word = ``vals[1]``,
label = ``vals[10]``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ptrain.readers.errors import DataFormatError, missing_file_error, open_text, resolve_split_file

__all__ = ["N_COLUMNS", "ONTONOTES_TYPES", "SPLIT_FILES", "read_ontonotes"]

PathLike = str | os.PathLike[str]

N_COLUMNS = 11

SPLIT_FILES: dict[str, str] = {
    "train": "train.sd.conllx",
    "dev": "dev.sd.conllx",
    "val": "dev.sd.conllx",
    "validation": "dev.sd.conllx",
    "test": "test.sd.conllx",
}

ONTONOTES_TYPES = (
    "CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP",
    "ORDINAL", "ORG", "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART",
)  # fmt: skip

_COLUMNS = "ID FORM LEMMA CPOSTAG POSTAG FEATS HEAD DEPREL PHEAD PDEPREL NER"


def read_ontonotes(path: PathLike, split: str | None = None) -> list[dict]:
    """Read a ``.sd.conllx`` file (or ``<dir>/<split>.sd.conllx``) into ``{tokens, tags}`` per sentence."""
    path = Path(path)
    if not path.exists():
        raise missing_file_error(path, sorted(set(SPLIT_FILES.values())))
    file = resolve_split_file(path, split, SPLIT_FILES)
    out: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            out.append({"tokens": list(tokens), "tags": list(tags)})
        tokens.clear()
        tags.clear()

    with open_text(file) as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            if line.startswith("-DOCSTART-"):
                continue
            cols = line.split("\t")
            if len(cols) != N_COLUMNS:
                raise DataFormatError(
                    file,
                    f"{len(cols)} tab-separated columns",
                    line=line_no,
                    expected=f"expected {N_COLUMNS}: {_COLUMNS}",
                )
            if cols[0] != str(len(tokens) + 1):
                raise DataFormatError(
                    file,
                    f"token ID {cols[0]!r} where {len(tokens) + 1} was expected",
                    line=line_no,
                    field="ID",
                    expected="IDs count 1, 2, ... within a sentence; sentences end with a blank line",
                )
            tag = cols[-1].strip()
            if not (tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)):
                raise DataFormatError(
                    file,
                    f"NER tag {tag!r} is not BIO",
                    line=line_no,
                    field="NER",
                    expected="column 11 holds O, B-<TYPE> or I-<TYPE>",
                )
            tokens.append(cols[1])
            tags.append(tag)
    flush()
    return out
