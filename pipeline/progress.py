"""A progress bar on stderr, silent when stderr is not a terminal or ``PIPELINE_PROGRESS=0``; the
data stages' bars count files and move per file (``per_file``, ``FileTally``)."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, TypeVar

if TYPE_CHECKING:  # rich is imported when a bar is drawn (a run without one starts faster)
    from rich.progress import Progress

T = TypeVar("T")


def progress_enabled() -> bool:
    """Whether bars are drawn: stderr is a terminal and ``PIPELINE_PROGRESS`` is not ``0``."""
    if os.environ.get("PIPELINE_PROGRESS", "").strip() == "0":
        return False
    return sys.stderr.isatty()


def _rate_column():
    """A rich column: units per second."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class _RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("?/s" if speed is None else f"{speed:.1f}/s", style="progress.data.speed")

    return _RateColumn()


class ProgressBar:
    """Handle of one bar; ``advance(n)`` adds ``n`` completed units (a no-op when disabled)."""

    def __init__(self, progress: Progress | None, task_id: int | None) -> None:
        self._progress = progress
        self._task_id = task_id

    @property
    def enabled(self) -> bool:
        return self._progress is not None

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, n)


@contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool | None = None) -> Iterator[ProgressBar]:
    """Show ``description``, completed/total units, rate and ETA on stderr.

    Parameters
    ----------
    description : str
        Text left of the bar.
    total : int or None
        Units expected; None for an open-ended count.
    enabled : bool, optional
        Force the bar on or off; by default :func:`progress_enabled` decides.

    Yields
    ------
    ProgressBar
        Call ``.advance(n)`` as units complete. When disabled nothing is printed.
    """
    if enabled is None:
        enabled = progress_enabled()
    if not enabled:
        yield ProgressBar(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _rate_column(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with progress:
        yield ProgressBar(progress, progress.add_task(description, total=total))


# ---------------------------------------------------------------------------------------------
# Files done inside a task: the data stages' bars count files, and move as each file is done rather
# than when its whole shard is. A task's loop over its files goes through `per_file`; the count
# reaches the runner's bar from this process (workers=1) or from a dask worker through the
# scheduler's event log (local processes and a remote cluster alike), at most every
# SEND_EVERY_S per worker. When a task finishes, the runner settles its count to the task's units,
# so the bar ends at its total whatever was sent on the way.

#: the scheduler's event topic that carries workers' file counts ({task key: files done})
TOPIC = "lakh-pipeline.files-done"
SEND_EVERY_S = 0.1

_in_process: Callable[[int], None] | None = None  # set by the runner while a task runs in this process
_unsent: dict[str, int] = {}  # in a dask worker: files done per task key, not sent yet
_sent_at = 0.0


def per_file(items: Iterable[T]) -> Iterator[T]:
    """Yield ``items``; each counts as one file done when the loop asks for the next one (a
    ``continue`` included) or ends: ``for i, key in per_file(enumerate(task.keys)):``."""
    for item in items:
        yield item
        file_done()


def file_done(n: int = 1) -> None:
    """Count ``n`` files of the running task as done (a no-op outside a task of the runner)."""
    if _in_process is not None:
        _in_process(n)
        return
    distributed = sys.modules.get("distributed")
    if distributed is None:  # not a dask worker (which has imported it)
        return
    try:
        worker = distributed.get_worker()
        key = str(worker.get_current_task())
    except (ValueError, KeyError, AttributeError):  # not inside a task of a worker
        return
    global _sent_at
    _unsent[key] = _unsent.get(key, 0) + n
    now = time.monotonic()
    if now - _sent_at >= SEND_EVERY_S:
        _sent_at = now
        counts = dict(_unsent)
        _unsent.clear()
        worker.log_event(TOPIC, counts)


class FileTally:
    """The runner's side: files done per task, fed by ``file_done`` (in this process or as
    scheduler events) and settled when a task finishes, never past a task's units."""

    def __init__(self, bar: ProgressBar, units: list[int]) -> None:
        self.bar, self.units = bar, units
        self.done = [0] * len(units)
        self.finished = [False] * len(units)
        self.index_of: dict[str, int] = {}  # dask task key -> task index (the runner fills it)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return getattr(self.bar, "enabled", True)

    def add(self, index: int, n: int) -> None:
        with self._lock:
            if self.finished[index]:
                return
            n = min(n, self.units[index] - self.done[index])
            if n <= 0:
                return
            self.done[index] += n
        self.bar.advance(n)

    def finish(self, index: int) -> None:
        with self._lock:
            n = self.units[index] - self.done[index]
            self.done[index], self.finished[index] = self.units[index], True
        if n > 0:
            self.bar.advance(n)

    @contextmanager
    def running_here(self, index: int) -> Iterator[None]:
        """While task ``index`` runs in this process, its ``file_done`` calls count for it."""
        global _in_process
        if not self.enabled:
            yield
            return
        _in_process = lambda n: self.add(index, n)  # noqa: E731
        try:
            yield
        finally:
            _in_process = None

    def on_event(self, event) -> None:
        """A scheduler event ``(timestamp, {task key: files})`` from ``file_done`` in a worker."""
        _, counts = event
        for key, n in counts.items():
            index = self.index_of.get(key)
            if index is not None:
                self.add(index, int(n))


_OPEN_BARS: list["StepBar"] = []


class StepBar:
    """A bar over training steps with ETA and a note (the latest loss), on stderr when a terminal
    shows it. ``step()`` after each step; it closes itself at the last step, and ``close_all()``
    closes what an interruption left open. ``done``/``total`` say where a run stands."""

    def __init__(self, description: str, total: int, done: int = 0, *, enabled: bool | None = None) -> None:
        self.description, self.total, self.done = description, int(total), int(done)
        self._progress = None
        if (progress_enabled() if enabled is None else enabled) and self.total > self.done:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      _rate_column(), TimeRemainingColumn(), console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task(description, total=self.total, completed=self.done)
        _OPEN_BARS.append(self)

    def step(self, n: int = 1, *, note: str | None = None) -> None:
        self.done += n
        if self._progress is not None:
            text = f"{self.description} {note}" if note else self.description
            self._progress.update(self._task, advance=n, description=text)
        if self.done >= self.total:
            self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self in _OPEN_BARS:
            _OPEN_BARS.remove(self)


def close_all() -> list[StepBar]:
    """Close every open bar (after an interruption); returns them, for saying where they stopped."""
    bars = list(_OPEN_BARS)
    for b in bars:
        b.close()
    return bars


def training_bar(family: str, total: int, done: int, log=None, *, unit: str = "step") -> StepBar:
    """The bar of one training run; says so first when the run resumes from a checkpoint."""
    if done > 0 and log is not None:
        log(f"{family}: resumed from {unit} {done} of {total} (its last checkpoint)")
    return StepBar(f"train {family} ({unit}s)", total, done)
