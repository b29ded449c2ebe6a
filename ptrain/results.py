"""results.json: one per run, written atomically, read back by the report and notebooks."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: a reader never sees half a file, and an
    existing file is replaced whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # host and pid in the name: concurrent writers never share a temporary, and a dead writer's is recognisable
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """`write_text_atomic` of the payload as indented JSON."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def read_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
