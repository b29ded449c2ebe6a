"""Where ptrain keeps generated data and tokenised caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$PTRAIN_CACHE`, else `~/.cache/ptrain`: shared by all runs of a sweep so tokenisation happens once."""
    path = Path(os.environ.get("PTRAIN_CACHE", Path.home() / ".cache" / "ptrain")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
