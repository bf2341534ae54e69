"""Parallel map over tasks: in-process, local dask processes, or a dask.distributed cluster.

Results come back as tasks finish, tagged with the task's index; callers sort them, so
nothing downstream depends on timing or worker count. Worker counts and scheduler
addresses never reach an output.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterator, Sequence

from pipeline.errors import ParamsError, StageError
from pipeline.progress import TOPIC, FileTally, progress_bar

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def _one(task: Any) -> int:
    return 1


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence,
    *,
    workers: int = 0,
    scheduler: str | None = None,
    description: str = "working",
    total_units: int | None = None,
    units: Callable[[Any], int] = _one,
    retries: int = 2,
    resubmits: int = 2,
) -> Iterator[tuple[int, Any]]:
    """Apply ``fn`` to every task, yielding ``(task_index, result)`` as tasks finish.

    Parameters
    ----------
    fn : callable
        A module-level function of one task (worker processes import it by name).
    tasks : sequence
        Small, picklable task descriptions (send paths, not data).
    workers : int, optional
        ``1``: run in this process, in order (for debugging). ``0``: one local process
        per CPU. ``n > 1``: ``n`` local processes. Ignored when a scheduler is used.
    scheduler : str, optional
        Address of a dask scheduler (``tcp://host:8786``); when None, the environment
        variable ``DASK_SCHEDULER_ADDRESS`` is used if set.
    description : str, optional
        Text of the progress bar.
    total_units : int, optional
        Units of work for the bar; ``sum(units(task))`` when None.
    units : callable, optional
        Units of work in one task (e.g. its file count); 1 by default. The bar moves by a task's
        units when it finishes, or unit by unit where the task counts them as it goes
        (``pipeline.progress.per_file`` / ``file_done``, from this process or a dask worker).
    retries : int, optional
        Passed to ``Client.map``: how many times dask re-runs a task that raised before
        giving up. A task whose worker died is rescheduled by the scheduler itself
        (``distributed.scheduler.allowed-failures``, 3 by default); when the scheduler gives
        up on it (``KilledWorker``), it is submitted again, up to ``resubmits`` times.
    resubmits : int, optional
        How many times a task lost with its workers is submitted again before the run fails
        with a ``StageError`` that names it (a task that kills every worker it meets is a bug).

    Yields
    ------
    task_index : int
        Position of the task in ``tasks``.
    result : object
        What ``fn`` returned.

    Raises
    ------
    ParamsError
        When ``workers`` or ``retries`` is negative (raised at call time).
    StageError
        When the scheduler cannot be reached.
    Exception
        Whatever ``fn`` raised (a bug), re-raised here with its message.

    Notes
    -----
    Validation happens at call time; the work starts on the first ``next()``. Leaving
    the loop early (or an exception) closes the client, cancelling what is left, and a
    local cluster is shut down. Local processes are started with ``spawn``: a script
    that calls this with ``workers != 1`` needs an ``if __name__ == "__main__":`` guard.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ParamsError(f"workers={workers!r} must be >= 0")
    for name, value in (("retries", retries), ("resubmits", resubmits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ParamsError(f"{name}={value!r} must be >= 0")
    tasks = list(tasks)
    if total_units is None:
        total_units = sum(units(task) for task in tasks)
    address = scheduler if scheduler is not None else os.environ.get(SCHEDULER_ENV) or None
    return _run(fn, tasks, workers=workers, address=address, description=description,
                total_units=total_units, units=units, retries=retries, resubmits=resubmits)


def _run(fn, tasks, *, workers, address, description, total_units, units, retries, resubmits):
    if not tasks:
        return
    with progress_bar(description, total_units) as bar:
        # a task that calls pipeline.progress.file_done (its loop over files goes through per_file)
        # moves the bar per file; any other task moves it by its units when it finishes
        tally = FileTally(bar, [units(task) for task in tasks])
        if address is None and workers == 1:
            for index, task in enumerate(tasks):
                with tally.running_here(index):
                    result = fn(task)
                tally.finish(index)
                yield index, result
            return
        for index, result in _run_dask(fn, tasks, workers=workers, address=address, retries=retries,
                                       resubmits=resubmits, tally=tally):
            tally.finish(index)
            yield index, result


def _run_dask(fn, tasks, *, workers, address, retries, resubmits, tally):
    from contextlib import ExitStack

    from distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker

    with ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # The scheduler serves health routes even without a dashboard, on 8787 by
                # default: take a free loopback port so parallel runs neither clash nor warn.
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.WARNING,
            ))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(address))
            except (OSError, ValueError) as exc:
                raise StageError(f"cannot reach the dask scheduler at {address}: "
                                 f"{' '.join(str(exc).split())}") from None
        futures = client.map(fn, tasks, retries=retries, pure=False)
        index_of = {future.key: index for index, future in enumerate(futures)}
        if tally.enabled:  # the workers' file counts (pipeline.progress.file_done), as they come
            tally.index_of.update((str(key), index) for key, index in index_of.items())
            client.subscribe_topic(TOPIC, tally.on_event)
        lost = [0] * len(tasks)
        completed = as_completed(futures)
        del futures
        for future in completed:
            index = index_of.pop(future.key)
            if future.status == "error" and isinstance(future.exception(), KilledWorker):
                # the scheduler gave up on a task whose workers kept dying (killed, OOM...):
                # submit it again, a bounded number of times
                lost[index] += 1
                if lost[index] > resubmits:
                    raise StageError(f"the scheduler gave up on task {index} of {len(tasks)} {lost[index]} times "
                                     f"(KilledWorker: its workers kept dying; a task that kills its worker "
                                     f"is a bug, or the workers run out of memory): {tasks[index]!r:.300}")
                logging.getLogger(__name__).warning("task %d lost with its worker: submitted again", index)
                again = client.submit(fn, tasks[index], retries=retries, pure=False)
                index_of[again.key] = index
                tally.index_of[str(again.key)] = index
                completed.add(again)
                continue
            result = future.result()  # re-raises the worker's exception
            yield index, result
