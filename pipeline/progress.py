"""A progress bar on stderr, silent when stderr is not a terminal or ``PIPELINE_PROGRESS=0``."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported when a bar is drawn (a run without one starts faster)
    from rich.progress import Progress


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
