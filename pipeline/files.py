"""Writing files: atomically (a temporary name in the same folder, then ``os.replace``, so no
reader ever sees a partial file), with the mode ``open()`` would give, and JSON documents in the
one layout every stage writes (two-space indent, sorted keys, a final newline)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: the mode of every file written here: what ``open()`` would give under the process umask
#: (0644 with the usual 022), read once at import
FILE_MODE = _file_mode()


def atomic_write_bytes(path: Path, blob: bytes | memoryview) -> None:
    """Write ``blob`` (any bytes-like object) to ``path`` so that no reader ever sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600: others on a shared server could not read the data
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_bytes(doc) -> bytes:
    """``doc`` as the JSON every stage writes: two-space indent, sorted keys, a final newline."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def write_json(path: Path, doc) -> None:
    """Write ``doc`` atomically as :func:`json_bytes`."""
    atomic_write_bytes(Path(path), json_bytes(doc))
