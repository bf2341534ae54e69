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


def run_shards(fn, tasks: list, src, *, workers: int, scheduler: str | None, description: str):
    """Yield ``(task.index, fn(task))`` for every task (any order).

    Tasks are dataclasses with ``index``, ``keys``, ``paths``, ``payloads`` and ``params.max_file_bytes``.
    From a folder, workers read their files themselves (paths, not data). From an archive, the
    archive is streamed once in this process and a few complete shards at a time go to the workers
    with their bytes, so memory holds only those shards.
    """
    import dataclasses

    from pipeline.runner import run_tasks

    if not tasks:
        return
    units = lambda t: len(t.keys)  # noqa: E731
    if all(p is not None for t in tasks for p in t.paths):
        for i, res in run_tasks(fn, tasks, workers=workers, scheduler=scheduler, description=description,
                                total_units=sum(len(t.keys) for t in tasks), units=units):
            yield tasks[i].index, res
        return
    by_key = {key: (t.index, j) for t in tasks for j, key in enumerate(t.keys)}
    by_index = {t.index: t for t in tasks}
    pending: dict[int, list] = {t.index: [None] * len(t.keys) for t in tasks}
    group: list = []
    batch = max(2, 2 * (workers or os.cpu_count() or 1))

    def flush():
        for i, res in run_tasks(fn, group, workers=workers, scheduler=scheduler, description=description,
                                total_units=sum(len(t.keys) for t in group), units=units):
            yield group[i].index, res
        group.clear()

    max_bytes = tasks[0].params.max_file_bytes
    for item, raw, reason in src.iter_payloads(set(by_key), max_bytes=max_bytes):
        k, j = by_key[item.key]
        pending[k][j] = (raw, reason)
        if all(p is not None for p in pending[k]):
            group.append(dataclasses.replace(by_index[k], payloads=tuple(pending.pop(k))))
            if len(group) >= batch:
                yield from flush()
    for k, payloads in pending.items():  # members that never came (cannot happen for a sound archive)
        filled = tuple(p if p is not None else (None, "member missing from the archive stream") for p in payloads)
        group.append(dataclasses.replace(by_index[k], payloads=filled))
    if group:
        yield from flush()


def inputs_digest(keys, msd_ids) -> str:
    """A short digest of a shard's inputs (their keys and MSD ids), kept in its resume marker."""
    import hashlib

    h = hashlib.sha256()
    for key, msd in zip(keys, msd_ids):
        h.update(f"{key}\0{msd}\n".encode())
    return h.hexdigest()[:16]
