"""Task functions for tests/test_runner.py, importable by dask worker processes."""

from __future__ import annotations

import os


def square(x: int) -> int:
    return x * x


def square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError(f"task x={x} failed on purpose")
    return x * x


def die_once(task: tuple[str, int]) -> int:
    """Kill this worker process the first time any worker sees the marker file."""
    marker, x = task
    if x == 10:
        try:
            os.remove(marker)
        except FileNotFoundError:
            pass
        else:
            os._exit(1)
    return x * x


def die_always_on_ten(x: int) -> int:
    """Task 10 kills every worker that runs it (a bug that no retry can fix)."""
    if x == 10:
        os._exit(1)
    return x * x


def files(n: int) -> int:
    """A task of ``n`` files, each counted on the bar as it is done."""
    from pipeline.progress import per_file

    return sum(1 for _ in per_file(range(n)))


def files_slowly(n: int) -> int:
    """``files``, each file a little longer than a worker waits between two progress events."""
    import time

    from pipeline.progress import SEND_EVERY_S, per_file

    for _ in per_file(range(n)):
        time.sleep(SEND_EVERY_S * 1.5)
    return n
