"""`ptrain predict ARTIFACT... --input FILE`: predictions on new data, written as JSON lines.

Inputs: JSON lines (an object of the task's raw fields per line, or `{"task": ..., "input": ...}` to pick the task
when several artifacts are given), CoNLL column files (a token per line, first column, blank lines between
sentences: for NER tasks), or plain lines (one text per line, for single-field tasks). Every artifact is loaded on
one frozen backbone (a `PromptBank`), and a file mixing tasks runs in mixed batches.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "conll", "lines")


def read_inputs(path: Path, fmt: str, default_task: str | None) -> list[tuple[str | None, Any]]:
    """(task or None, raw input) per record; errors name the file and line."""
    from ptrain.readers.errors import DataFormatError

    records: list[tuple[str | None, Any]] = []
    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(path, f"not valid JSON ({error.msg})", line=number) from None
            if isinstance(value, dict) and "input" in value:
                records.append((value.get("task", default_task), value["input"]))
            elif isinstance(value, dict) and "task" in value:
                records.append((value["task"], {k: v for k, v in value.items() if k != "task"}))
            else:
                records.append((default_task, value))
    elif fmt == "conll":
        records.extend((default_task, {"tokens": tokens}) for tokens in _conll_sentences(text))
    else:
        records.extend((default_task, line) for line in text.splitlines() if line.strip())
    return records


def _conll_sentences(text: str) -> Iterator[list[str]]:
    tokens: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                yield tokens
            tokens = []
            continue
        tokens.append(line.split()[0])
    if tokens:
        yield tokens


def guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".conll", ".bio", ".iob", ".tsv"):
        return "conll"
    return "lines"


def main(argv: list[str]) -> int:
    from ptrain.artifact import ArtifactError
    from ptrain.bank import InputError, PromptBank
    from ptrain.readers.errors import DataFormatError

    parser = argparse.ArgumentParser(prog="ptrain predict", description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", help="artifact directories (ptrain export); several share a backbone")
    parser.add_argument("--input", required=True, type=Path, help="JSON lines, CoNLL columns or plain lines")
    parser.add_argument("--output", type=Path, help="JSON lines out (default: standard output)")
    parser.add_argument("--format", choices=FORMATS, help="input format (default: from the file name)")
    parser.add_argument("--task", help="task of records that name none (default: the only artifact's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="load artifacts trained on another backbone (deliberate transfer)")
    args = parser.parse_args(argv)
    try:
        bank = PromptBank.load(args.artifacts, allow_mismatch=args.allow_mismatch)
        default = args.task or (next(iter(bank.tasks)) if len(bank.tasks) == 1 else None)
        if not args.input.is_file():
            raise FileNotFoundError(f"--input {args.input}: not found")
        records = read_inputs(args.input, args.format or guess_format(args.input), default)
        requests = []
        for number, (task, raw) in enumerate(records, start=1):
            if task is None:
                raise InputError(f"{args.input}, record {number}: no task; give --task or a \"task\" field "
                                 f"(the bank holds {sorted(bank.tasks)})", field="task")
            requests.append((task, raw))
        results = bank.predict(requests, batch_size=args.batch_size, progress=args.output is not None)
    except (ArtifactError, InputError, DataFormatError, FileNotFoundError) as error:
        print(f"ptrain predict: {error}", file=sys.stderr)
        return 2
    lines = [json.dumps({"task": task, "input": raw, **result}, ensure_ascii=False)
             for (task, raw), result in zip(requests, results)]
    if args.output is None:
        print("\n".join(lines))
    else:
        from ptrain.results import write_text_atomic

        write_text_atomic(args.output, "\n".join(lines) + "\n")
        print(f"ptrain predict: {len(lines)} predictions -> {args.output}", file=sys.stderr)
    return 0


__all__ = ["main", "read_inputs"]
