"""Pieces every sharded stage shares: reading an input file within limits, and one build per
output folder at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pipeline.errors import StageError


def read_input_file(path: str | None, max_bytes: int) -> tuple[bytes | None, str | None]:
    """The bytes of one input file, or None and the reason (too large, unreadable)."""
    if path is None:
        return None, "no path"
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            return None, f"too large: {size} bytes > max_file_bytes={max_bytes}"
        with open(path, "rb") as fh:
            return fh.read(), None
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"


class OutputLock:
    """One build per output folder at a time: an advisory lock on ``out/.lock``; a second build
    into the same folder is refused with one line (``StageError``)."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / ".lock"

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise StageError(f"{self.path.parent}: another build is writing to this folder (locked)") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
