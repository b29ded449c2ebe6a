"""Markdown tables and the regenerated sections of benchmarks/README.md (shared by speed.py and accuracy.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A GitHub markdown table; `align` is one letter per column (l|r), default: first left, others right."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markers(key: str) -> tuple[str, str]:
    return f"<!-- {key}:begin -->", f"<!-- {key}:end -->"


def replace_section(path: Path, key: str, body: str, heading: str | None = None) -> None:
    """Rewrite what lies between `<!-- key:begin -->` and `<!-- key:end -->`; append the section if absent.

    The README's tables are generated, never typed: scripts own these sections and leave the prose alone.
    """
    begin, end = markers(key)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        title = f"\n### {heading}\n\n" if heading else "\n"
        text = text.rstrip() + "\n" + title + block + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
