"""Errors raised by the data readers.

A malformed data file should fail loudly and point at the exact place to fix, so every message names
the file, the 1-based line (when the format has lines), the field, and what was expected.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

__all__ = ["DataFormatError", "LocatedRows", "missing_file_error", "open_text", "resolve_split_file"]


class DataFormatError(ValueError):
    """A data file does not have the layout its reader expects.

    Subclasses ``ValueError`` so callers that already catch bad-value errors keep working; the structured
    attributes let tests and tools inspect where the problem is without parsing the message.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        problem: str,
        *,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        self.expected = expected
        where = self.path if line is None else f"{self.path}, line {line}"
        message = f"{where}: {problem}"
        if expected:
            message += f" ({expected})"
        super().__init__(message)


class LocatedRows(list):
    """A reader's rows (a plain list to every caller) and, in `lines`, the 1-based file line each row came from.

    Tasks check rows after reading (a label outside the configured set); a row's index is not its line when blank
    lines are skipped, a header comes first or one line holds several rows (MultiRC's answer options), so the check
    names `lines[i]`."""

    def __init__(self, rows: list | None = None, lines: list[int] | None = None) -> None:
        super().__init__(rows or [])
        self.lines: list[int] = list(lines or [])

    def add(self, rows: list, line: int) -> None:
        """Append the rows read from one line."""
        self.extend(rows)
        self.lines.extend([line] * len(rows))


def open_text(path: str | os.PathLike[str], encoding: str = "utf-8", newline: str | None = None) -> io.StringIO:
    """A data file's text as a file-like object; bytes that are not `encoding` are an error naming the file and
    line (a Latin-1 file otherwise fails deep inside a reader with a bare UnicodeDecodeError)."""
    data = Path(path).read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataFormatError(path, f"byte 0x{data[error.start]:02x} is not {encoding.removesuffix('-sig').upper()}",
                              line=line, field="encoding",
                              expected="UTF-8 text; convert it, e.g. iconv -f latin1 -t utf-8") from None
    return io.StringIO(text, newline=newline)


def missing_file_error(
    path: str | os.PathLike[str], expected: list[str] | tuple[str, ...]
) -> FileNotFoundError:
    """Build a FileNotFoundError that says which files the reader looks for, so a wrong folder is obvious."""
    return FileNotFoundError(2, f"not found: {path} (expected files: {', '.join(expected)})", str(path))


def resolve_split_file(path: str | os.PathLike[str], split: str | None, split_files: dict[str, str]) -> Path:
    """Turn ``(file)`` or ``(directory, split)`` into one existing file path.

    Readers accept either form so that tasks can pass a data folder plus a split name while tests and
    notebooks can point at a single file.
    """
    path = Path(path)
    expected = sorted(set(split_files.values()))
    if path.is_dir():
        if split is None:
            raise ValueError(f"{path} is a directory: pass split= one of {sorted(split_files)}")
        if split not in split_files:
            raise ValueError(f"unknown split {split!r} for {path}: expected one of {sorted(split_files)}")
        file = path / split_files[split]
        if not file.is_file():
            raise missing_file_error(file, expected)
        return file
    if path.is_file():
        return path
    raise missing_file_error(path, expected)
