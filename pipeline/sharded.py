"""The engine of the sharded stages (build_lpd, build_vocab, render_audio, ingest_audio): tasks,
resume markers, the stale sweep, duplicates, the streamed manifest and the summary counts.

A stage supplies its per-file work and its output writer; the engine does the rest:

1. :func:`make_tasks` cuts the inputs, in their fixed order, into :class:`Task` s of
   ``shard_size`` files (paths, not data; ``job`` carries the stage's own values);
2. :func:`run_pending` runs the tasks whose marker (:class:`Markers`) does not match, on the
   local or dask runner (an archive is streamed once, a few complete shards at a time); in the
   worker, :class:`FileRows` reads each file, starts its manifest row (unreadable files and
   repeats inside the shard are filled in here) and :func:`attempt` turns a bad file into its
   row; the worker ends by writing its outputs and then its marker with the rows;
3. :func:`remove_stale` sweeps outputs and markers of an earlier, larger or different run;
4. :func:`find_duplicates` reads the markers one task at a time and finds later copies of the
   same bytes (by the MD5 of the file, the song id), in input order;
5. :func:`final_rows` yields each task's rows with the duplicates marked, one task at a time, and
   :func:`write_manifest` streams them into ``manifest.parquet`` while a :class:`Tally` counts
   them for ``summary.json`` (:func:`write_summary`).

Only one task's rows are in memory at a time after the workers: the rows live in the markers.
Nothing written depends on timing, host or worker count.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pipeline.errors import MidiError, StageError
from pipeline.stagekit import call_with_time_limit, read_input_file

STATE_DIR = ".state"
#: the fields a duplicate keeps from its own row (every other field becomes null)
BASE_FIELDS = ("source", "id", "msd_id", "size_bytes")
STATUSES = ("ok", "recovered", "skipped", "error")


# ---------------------------------------------------------------------------------------------
# tasks


@dataclass(frozen=True)
class Task:
    """One shard: ``shard_size`` consecutive input files (the last task may hold fewer).

    ``paths``: for a folder source, the files the worker reads itself; ``payloads``: for an
    archive, ``(bytes | None, reason | None)`` per file, filled in by :func:`run_pending`.
    ``job``: the stage's values for its worker (params, settings...), small and picklable.
    """

    index: int
    out: str
    keys: tuple[str, ...]
    msd_ids: tuple[str | None, ...]
    paths: tuple[str | None, ...]
    max_file_bytes: int
    job: Any = None
    payloads: tuple = ()

    def read(self, i: int) -> tuple[bytes | None, str | None]:
        """The bytes of file ``i``, or None and the reason (too large, unreadable)."""
        if self.payloads:
            return self.payloads[i]
        return read_input_file(self.paths[i], self.max_file_bytes)

    def inputs_digest(self) -> str:
        return inputs_digest(self.keys, self.msd_ids)


def inputs_digest(keys, msd_ids) -> str:
    """A short digest of a shard's inputs (their keys and MSD ids), kept in its resume marker."""
    h = hashlib.sha256()
    for key, msd in zip(keys, msd_ids):
        h.update(f"{key}\0{msd}\n".encode())
    return h.hexdigest()[:16]


def make_tasks(items, src, out: Path, *, shard_size: int, max_file_bytes: int, job: Any = None) -> list[Task]:
    """One task per ``shard_size`` items of ``src.items()``, in order."""
    tasks = []
    for k in range(0, len(items), shard_size):
        chunk = items[k : k + shard_size]
        paths = tuple(str(p) if (p := src.path_of(it)) is not None else None for it in chunk)
        tasks.append(Task(index=k // shard_size, out=str(out), keys=tuple(it.key for it in chunk),
                          msd_ids=tuple(it.msd_id for it in chunk), paths=paths, max_file_bytes=max_file_bytes,
                          job=job))
    return tasks


# ---------------------------------------------------------------------------------------------
# resume markers


class Markers:
    """The resume markers of one kind of task: ``out/.state/<prefix>-<index:05d>.json``.

    A marker is ``{"params": <digest>, "inputs": <inputs digest>, **payload}`` (plus ``checks``,
    further values that must match), written after the task's outputs. A rerun takes a task as
    done when its marker has the same digests and checks and its outputs exist.

    ``params``: the digest of what a task's result depends on besides its inputs (the params),
    one string, or a function of the task when it differs between tasks.
    """

    def __init__(self, out: Path, prefix: str, *, params: str | Callable[[Task], str],
                 checks: dict[str, str] | None = None) -> None:
        self.out = Path(out)
        self.prefix = prefix
        self._params = params
        self.checks = dict(checks or {})

    def path(self, index: int) -> Path:
        return self.out / STATE_DIR / f"{self.prefix}-{index:05d}.json"

    def _expected(self, task: Task) -> dict[str, str]:
        params = self._params(task) if callable(self._params) else self._params
        return {"params": params, **self.checks, "inputs": task.inputs_digest()}

    def write(self, task: Task, payload: dict) -> None:
        from pipeline.files import atomic_write_bytes

        marker = {**self._expected(task), **payload}
        atomic_write_bytes(self.path(task.index), json.dumps(marker, sort_keys=True).encode())

    def read(self, task: Task, outputs: Callable[[dict], Iterable[Path]] | None = None) -> dict | None:
        """The task's marker when it matches and ``outputs(marker)`` all exist; else None."""
        try:
            data = json.loads(self.path(task.index).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in self._expected(task).items()):
            return None
        if outputs is not None and not all(Path(p).exists() for p in outputs(data)):
            return None
        return data

    def finished(self, index: int) -> dict:
        """The marker of a task that this run finished (read back after the workers)."""
        path = self.path(index)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):  # written by this run a moment ago: gone or damaged since
            raise StageError(f"{path}: the marker of a finished shard is missing or damaged; "
                             "run the stage again") from None

    def sweep(self, n_tasks: int) -> None:
        """Remove the markers of tasks ``>= n_tasks`` (of an earlier run over more inputs)."""
        remove_stale(self.out / STATE_DIR, f"{self.prefix}-*.json", lambda p: task_number(p) < n_tasks)


def task_number(path: Path) -> int:
    """The task index in a file name ``<anything>-<index>.<suffix>`` (``lpd5-00003.npz``)."""
    return int(path.name.split(".")[0].rpartition("-")[2])


def remove_stale(folder: Path, pattern: str, keep: Callable[[Path], bool]) -> None:
    """Delete the files ``folder.glob(pattern)`` that ``keep`` rejects: shards and markers that an
    earlier run over more inputs, or with other params, left behind."""
    folder = Path(folder)
    if folder.exists():
        for p in folder.glob(pattern):
            if not keep(p):
                p.unlink()


# ---------------------------------------------------------------------------------------------
# running


def run_pending(fn, tasks: list[Task], markers: Markers, src, *, workers: int, scheduler: str | None,
                description: str, outputs: Callable[[Task, dict], Iterable[Path]] | None = None
                ) -> Iterator[tuple[int, dict]]:
    """Yield ``(task.index, marker or result)`` for every task: first those whose marker matches
    (``outputs(task, marker)`` existing), then ``fn(task)`` of the others as they finish."""
    todo = []
    for task in tasks:
        check = None if outputs is None else (lambda data, t=task: outputs(t, data))
        done = markers.read(task, check)
        if done is None:
            todo.append(task)
        else:
            yield task.index, done
    yield from run_shards(fn, todo, src, workers=workers, scheduler=scheduler, description=description)


def run_shards(fn, tasks: list[Task], src, *, workers: int, scheduler: str | None, description: str):
    """Yield ``(task.index, fn(task))`` for every task (any order).

    From a folder, workers read their files themselves (paths, not data). From an archive, the
    archive is streamed once in this process and a few complete shards at a time go to the workers
    with their bytes, so memory holds only those shards.
    """
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

    max_bytes = tasks[0].max_file_bytes
    for item, raw, reason in src.iter_payloads(set(by_key), max_bytes=max_bytes):
        k, j = by_key[item.key]
        pending[k][j] = (raw, reason)
        if all(p is not None for p in pending[k]):
            group.append(replace(by_index[k], payloads=tuple(pending.pop(k))))
            if len(group) >= batch:
                yield from flush()
    for k, payloads in pending.items():  # members that never came (cannot happen for a sound archive)
        filled = tuple(p if p is not None else (None, "member missing from the archive stream") for p in payloads)
        group.append(replace(by_index[k], payloads=filled))
    if group:
        yield from flush()


# ---------------------------------------------------------------------------------------------
# in the worker: one row per input file


class FileRows:
    """Iterate over a task's files that need the stage's work, as ``(i, raw, row)``.

    Every file gets its manifest row in ``rows`` (``source``, ``id`` = MD5 of its bytes,
    ``msd_id``, ``size_bytes``, ``status``, ``code``, ``message``, ``shard``, then ``extra``); an
    unreadable file (``error``, the reason's code) and a repeat of an earlier file of the same task
    (``skipped: skip.duplicate``) are filled in here and not yielded. The stage fills in the rows
    it is given. ``keep_bytes=False`` yields ``raw=None`` (a stage that reads the path itself).
    """

    def __init__(self, task: Task, *, extra: dict | None = None, keep_bytes: bool = True) -> None:
        self.task = task
        self.extra = extra or {}
        self.keep_bytes = keep_bytes
        self.rows: list[dict] = []

    def __iter__(self) -> Iterator[tuple[int, bytes | None, dict]]:
        from pipeline.progress import per_file
        from pipeline.sources import reason_code

        task = self.task
        seen: dict[str, str] = {}
        for i, key in per_file(enumerate(task.keys)):  # each file moves the progress bar when done
            raw, reason = task.read(i)
            song_id = hashlib.md5(raw).hexdigest() if raw is not None else None
            row = {"source": key, "id": song_id, "msd_id": task.msd_ids[i],
                   "size_bytes": len(raw) if raw is not None else 0, "status": None, "code": None,
                   "message": None, "shard": None, **{k: (list(v) if isinstance(v, list) else v)
                                                      for k, v in self.extra.items()}}
            self.rows.append(row)
            if raw is None:
                row.update(status="error", code=reason_code(reason), message=reason)
                continue
            if song_id in seen:
                row.update(status="skipped", code="skip.duplicate", message=f"same bytes as {seen[song_id]}")
                continue
            seen[song_id] = key
            if not self.keep_bytes:
                raw = None
            yield i, raw, row
            del raw


def attempt(row: dict, fn, *args, key: str, reraise: tuple[type[BaseException], ...] = (),
            time_limit: bool = True, **kwargs):
    """``fn(*args, **kwargs)``, under the per-file time limit (``time_limit=False``: ``fn`` puts
    its own part under it); None when it failed, the row then says why: a ``MidiError``
    (``skip.*`` codes: ``skipped``, others ``error``; ``input.timeout``), or any other exception
    (a bug, but one file must not sink a Lakh-size run: ``error: internal.bug``). Exceptions in
    ``reraise`` (the machine's, not the file's) stop the task."""
    try:
        if not time_limit:
            return fn(*args, **kwargs)
        return call_with_time_limit(fn, *args, key=key, **kwargs)
    except MidiError as exc:
        row.update(status="skipped" if exc.code.startswith("skip.") else "error", code=exc.code, message=exc.detail)
    except reraise:
        raise
    except Exception as exc:
        row.update(status="error", code="internal.bug", message=f"{type(exc).__name__}: {exc}")
    return None


# ---------------------------------------------------------------------------------------------
# after the workers: duplicates, the manifest, the summary


@dataclass
class Duplicates:
    """Later copies of the same bytes, in input order (task, then file).

    ``first[task][row] = source of the first copy``, for every later copy (a repeat inside its task
    too); ``converted``: ``(task, row, row dict)`` of the later copies whose task converted them (in
    their own task, before the first copy was known), whose outputs the stage takes back out."""

    first: dict[int, dict[int, str]]
    converted: list[tuple[int, int, dict]]


def find_duplicates(markers: Markers, tasks: list[Task], *, on_first: Callable[[dict], None] | None = None
                    ) -> Duplicates:
    """Read the rows of every task's marker, one task at a time, and find the later copies;
    ``on_first(row)`` sees every other row that has an id."""
    first: dict[str, str] = {}  # song id -> source of its first file (~150 bytes a song)
    dups = Duplicates(first={}, converted=[])
    for task in tasks:
        for i, r in enumerate(markers.finished(task.index)["rows"]):
            sid = r["id"]
            if sid is None:
                continue
            if sid in first:
                dups.first.setdefault(task.index, {})[i] = first[sid]
                if r["status"] in ("ok", "recovered"):
                    dups.converted.append((task.index, i, r))
            else:
                first[sid] = r["source"]
                if on_first is not None:
                    on_first(r)
    return dups


def mark_duplicate(row: dict, source: str, reset: dict | None = None) -> None:
    """``row`` becomes ``skipped: skip.duplicate`` of ``source``: only ``BASE_FIELDS`` stay, the rest
    is null (or ``reset``'s value)."""
    for k in row:
        if k not in BASE_FIELDS:
            row[k] = None
    row.update(status="skipped", code="skip.duplicate", message=f"same bytes as {source}")
    row.update({k: (list(v) if isinstance(v, list) else v) for k, v in (reset or {}).items()})


def final_rows(markers: Markers, tasks: list[Task], dups: Duplicates, *, reset: dict | None = None
               ) -> Iterator[tuple[Task, list[dict]]]:
    """``(task, rows)`` per task, in order, with its duplicates marked (read back from its marker)."""
    for task in tasks:
        rows = markers.finished(task.index)["rows"]
        for i, source in dups.first.get(task.index, {}).items():
            mark_duplicate(rows[i], source, reset)
        yield task, rows


def warning_counts(rows) -> dict[str, int]:
    """Files per coded warning (``code: text`` in a row's ``warnings``), for ``summary.json``; warnings
    without a code (plain sentences) are not counted."""
    counts: Counter = Counter()
    for r in rows:
        codes = {w.split(":", 1)[0] for w in r.get("warnings") or () if ":" in w}
        counts.update(c for c in codes if "." in c and " " not in c)
    return dict(sorted(counts.items()))


class Tally:
    """The counts every summary holds: files, per status, per code (and per coded warning)."""

    def __init__(self) -> None:
        self.files = 0
        self.status: Counter = Counter()
        self.codes: Counter = Counter()
        self.warnings: Counter = Counter()

    def add(self, rows: list[dict]) -> None:
        self.files += len(rows)
        self.status.update(r["status"] for r in rows)
        self.codes.update(r["code"] for r in rows if r["code"])
        self.warnings.update(warning_counts(rows))

    def record(self, *, warnings: bool = True) -> dict:
        rec = {"files": self.files, "status": {s: self.status.get(s, 0) for s in STATUSES},
               "codes": dict(sorted(self.codes.items()))}
        if warnings:
            rec["warnings"] = dict(sorted(self.warnings.items()))
        return rec


def write_manifest(path: Path, schema, chunks: Iterable[list[dict]], *, stage: str, to_table=None,
                   on_rows: Callable[[list[dict]], None] | None = None) -> tuple[Tally, str]:
    """Stream ``chunks`` (each task's rows, in order) into the manifest; returns the tally of the
    rows and the inputs digest of the card (``cards.Digest``). ``on_rows`` sees each chunk too."""
    from pipeline.cards import Digest
    from pipeline.formats.manifest import ManifestWriter

    tally = Tally()
    digest = Digest()
    kwargs = {} if to_table is None else {"to_table": to_table}
    with ManifestWriter(path, schema, stage=stage, **kwargs) as manifest:
        for rows in chunks:
            manifest.write(rows)
            digest.update(rows)
            tally.add(rows)
            if on_rows is not None:
                on_rows(rows)
    return tally, digest.hexdigest()


def write_summary(out: Path, summary: dict) -> None:
    """``summary.json`` (a DVC metric): sorted keys, two-space indents, a final newline."""
    from pipeline.files import write_json

    write_json(Path(out) / "summary.json", summary)
