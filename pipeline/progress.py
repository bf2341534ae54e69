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
