"""Reader for GLUE TSV files (SST-2, MRPC, and any other GLUE task with a header row).

GLUE files are not valid CSV: MRPC sentences contain bare ``"`` characters, so splitting on tabs by hand
is the only safe parse (``csv`` would glue rows together at an odd quote). MRPC train/dev also start
with a UTF-8 byte-order mark, which would otherwise end up in the first header name (``\\ufeffQuality``).

Layouts handled by the presets in :data:`GLUE_TASKS`::

    SST-2 train/dev: sentence<TAB>label            test: index<TAB>sentence
    MRPC  train/dev: Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String
          test:      index<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String

Labels are kept as the strings in the file ("0"/"1"); test rows get ``label=None``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ptrain.readers.errors import DataFormatError, LocatedRows, open_text, resolve_split_file

__all__ = ["GLUE_TASKS", "GlueLayout", "SPLIT_FILES", "read_glue", "read_glue_tsv"]

PathLike = str | os.PathLike[str]

SPLIT_FILES: dict[str, str] = {
    "train": "train.tsv",
    "dev": "dev.tsv",
    "val": "dev.tsv",
    "validation": "dev.tsv",
    "test": "test.tsv",
}


@dataclass(frozen=True)
class GlueLayout:
    """Which header columns of a GLUE task hold the texts and the label, and what to call them."""

    text_fields: list[str]
    label_field: str
    rename: dict[str, str] = field(default_factory=dict)


GLUE_TASKS: dict[str, GlueLayout] = {
    "sst2": GlueLayout(["sentence"], "label"),
    "mrpc": GlueLayout(
        ["#1 String", "#2 String"], "Quality", {"#1 String": "sentence1", "#2 String": "sentence2"}
    ),
}


def read_glue_tsv(
    path: PathLike,
    text_fields: list[str],
    label_field: str | None,
    *,
    index_field: str | None = None,
    rename: dict[str, str] | None = None,
    strip: bool = True,
) -> list[dict]:
    """Read one GLUE TSV file into ``{<text fields>, label, idx}`` examples.

    The label string is stored as ``label`` and, when the column has another name (MRPC's ``Quality``),
    under that name as well. ``label_field=None`` reads an unlabelled (test) file. ``idx`` comes from
    ``index_field`` when that column exists, else it is the 0-based row number. ``rename`` maps header
    names to output keys (MRPC's ``#1 String`` → ``sentence1``). ``strip`` drops the trailing spaces
    SST-2 leaves before the tab.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            2, f"GLUE file not found: {path} (expected a .tsv file with a header row)", str(path)
        )
    rename = rename or {}
    wanted = [*text_fields, *([label_field] if label_field else [])]
    with open_text(path, "utf-8-sig", newline="") as f:
        lines = f.read().split("\n")
    if not lines or not lines[0].strip():
        raise DataFormatError(
            path, "empty file or empty header row", line=1, expected=f"header with {wanted}"
        )
    header = [name.strip() for name in lines[0].rstrip("\r").split("\t")]
    for name in wanted:
        if name not in header:
            raise DataFormatError(
                path, f"missing header column {name!r}", line=1, field=name, expected=f"header is {header}"
            )
    col = {name: i for i, name in enumerate(header)}
    use_index = index_field is not None and index_field in col
    out = LocatedRows()  # with each row's line (the header and blank lines are not rows)
    for line_no, raw in enumerate(lines[1:], start=2):
        row = raw.rstrip("\r")
        if not row.strip():
            continue
        cells = row.split("\t")
        if len(cells) != len(header):
            raise DataFormatError(
                path,
                f"row has {len(cells)} tab-separated columns",
                line=line_no,
                expected=f"expected {len(header)} like the header {header}",
            )
        ex: dict = {}
        for name in text_fields:
            value = cells[col[name]]
            ex[rename.get(name, name)] = value.strip() if strip else value
        ex["label"] = cells[col[label_field]].strip() if label_field else None
        if label_field and label_field != "label":
            ex[label_field] = ex["label"]  # callers configured with the header name find it there too
        if use_index:
            value = cells[col[index_field]].strip()
            if not value.lstrip("-").isdigit():
                raise DataFormatError(
                    path,
                    f"column {index_field!r} is {value!r}",
                    line=line_no,
                    field=index_field,
                    expected="expected an integer index",
                )
            ex["idx"] = int(value)
        else:
            ex["idx"] = len(out)
        out.add([ex], line_no)
    return out


def read_glue(
    task: str, path: PathLike, split: str | None = None, *, labeled: bool | None = None
) -> list[dict]:
    """Read a GLUE task with its preset layout; ``test*.tsv`` files are read without labels."""
    key = task.lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}: expected one of {sorted(GLUE_TASKS)}")
    layout = GLUE_TASKS[key]
    file = resolve_split_file(path, split, SPLIT_FILES)
    has_labels = (not file.name.startswith("test")) if labeled is None else labeled
    return read_glue_tsv(
        file,
        layout.text_fields,
        layout.label_field if has_labels else None,
        index_field="index",
        rename=layout.rename,
    )
