"""Pieces every stage that reads input files shares: reading an input file within limits, a time
limit per input file, and one build per output folder at a time (with the temporary files of a
killed build swept away). The sharded-stage engine on top of them (tasks, resume markers,
duplicates, the manifest and the summary) is :mod:`pipeline.sharded`."""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import os
import threading
import time
from pathlib import Path

from pipeline.errors import MidiError, ParamsError, StageError

#: seconds one input file may take in a stage's per-file function (read + convert, tokenise or
#: render) before it becomes a manifest row ``error: input.timeout``; a safety net against hangs,
#: not a param: a Lakh file takes milliseconds to seconds, so the limit never decides an output
#: except for a file that would otherwise stall the run. Override (e.g. for tests) with the
#: environment variable below, in the workers' environment.
FILE_TIME_LIMIT = 600.0
FILE_TIME_LIMIT_ENV = "PIPELINE_FILE_TIME_LIMIT"


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


def file_time_limit() -> float:
    """The per-file time limit in seconds: ``$PIPELINE_FILE_TIME_LIMIT`` or ``FILE_TIME_LIMIT``."""
    value = os.environ.get(FILE_TIME_LIMIT_ENV)
    if not value:
        return FILE_TIME_LIMIT
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ParamsError(f"{FILE_TIME_LIMIT_ENV}={value!r} must be a positive number of seconds")
    return seconds


class _FileTimeout(BaseException):
    """Raised inside the worker thread by the watchdog; a BaseException so that the stages'
    ``except Exception`` (bugs recorded as rows) does not swallow it."""


_set_async_exc = ctypes.pythonapi["PyThreadState_SetAsyncExc"]  # a fresh function object each
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_clear_async_exc = ctypes.pythonapi["PyThreadState_SetAsyncExc"]
_clear_async_exc.argtypes = (ctypes.c_ulong, ctypes.c_void_p)


class _Watchdog:
    """One daemon thread per process that enforces every armed time limit.

    ``arm`` and ``disarm`` cost a lock and a list operation (a thread per file would cost more
    than converting a typical file). Deadlines of one limit arrive in order, so the pending
    ones form a queue whose head is the next to expire. The thread is woken only by a deadline
    earlier than the one it sleeps towards (idle, it sleeps ``IDLE_SECONDS`` at a time): waking
    it for every file would hand it the GIL for every file.
    """

    IDLE_SECONDS = 60.0

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.wake_at = float("-inf")  # when the thread will look at the queue next
        self.pending: dict[int, tuple[float, int]] = {}  # token -> (deadline, thread id)
        self.fired: set[int] = set()
        self.queue: list[tuple[float, int]] = []  # (deadline, token), a heap
        self.next_token = 0
        self.thread: threading.Thread | None = None

    def arm(self, seconds: float) -> int:
        with self.cond:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="pipeline-file-time-limit", daemon=True)
                self.thread.start()
            token = self.next_token
            self.next_token += 1
            deadline = time.monotonic() + seconds
            self.pending[token] = (deadline, threading.get_ident())
            heapq.heappush(self.queue, (deadline, token))
            if deadline < self.wake_at:
                self.cond.notify()
            return token

    def disarm(self, token: int) -> bool:
        """Stop one limit; True when it fired (a pending, undelivered exception is withdrawn)."""
        with self.cond:
            if self.pending.pop(token, None) is not None:
                while self.queue and self.queue[0][1] not in self.pending:
                    heapq.heappop(self.queue)  # forget limits that were disarmed
                return False
            self.fired.discard(token)
        _clear_async_exc(threading.get_ident(), None)
        return True

    def _run(self) -> None:
        with self.cond:
            while True:
                while self.queue and self.queue[0][1] not in self.pending:
                    heapq.heappop(self.queue)
                if not self.queue:
                    self.wake_at = time.monotonic() + self.IDLE_SECONDS
                    self.cond.wait(self.IDLE_SECONDS)
                    continue
                deadline, token = self.queue[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self.wake_at = deadline
                    self.cond.wait(left)
                    continue
                heapq.heappop(self.queue)
                _, thread_id = self.pending.pop(token)
                self.fired.add(token)
                _set_async_exc(thread_id, _FileTimeout)


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=lambda: globals().update(_WATCHDOG=_Watchdog()))


def call_with_time_limit(fn, *args, key: str, seconds: float | None = None, **kwargs):
    """``fn(*args, **kwargs)``, or ``MidiError('input.timeout')`` once it has run ``seconds``.

    The limit (``file_time_limit()`` by default) is enforced by a watchdog thread that raises an
    exception in the calling thread (any thread: a dask worker runs tasks in a pool), so it
    interrupts Python code between two bytecodes. A compiled kernel or a blocking system call is
    interrupted when it returns: the SMF kernels are linear in the file's bytes (at most
    ``max_file_bytes``) and FluidSynth has its own time limit (``render.timeout``).
    """
    seconds = file_time_limit() if seconds is None else seconds
    try:
        token = _WATCHDOG.arm(seconds)
        try:
            result = fn(*args, **kwargs)
        finally:
            fired = _WATCHDOG.disarm(token)
    except _FileTimeout:
        fired = True
    if fired:
        raise MidiError("input.timeout", key, f"took more than {seconds:g} s (the per-file time limit, "
                                              f"${FILE_TIME_LIMIT_ENV})")
    return result


def sweep_temp_files(out: Path) -> int:
    """Remove the temporary files (``.<name>.<random>[.ext].tmp``) that a killed build left in
    ``out``: every writer writes to such a name and then ``os.replace``s it, so they are never
    outputs. Returns how many were removed."""
    removed = 0
    for folder, _, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def lock_holder(fh) -> int | None:
    """The pid that holds a ``flock`` on the open file ``fh`` (from ``/proc/locks``; None elsewhere)."""
    st = os.fstat(fh.fileno())
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()  # 1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file_id:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None


class OutputLock:
    """One build per output folder at a time: an advisory lock (``flock``) on ``out/.lock``.

    A second build into the same folder is refused with one line (``StageError``) that names
    the holder's pid. The kernel drops the lock when its process dies, so the lock of a killed
    build (``kill -9``, power loss) never blocks the next one. On entry, and on a clean exit, the
    temporary files of killed writers are swept away (``sweep_temp_files``): an interrupted
    build leaves only complete files under their final names, and a rerun finishes it.
    ``.lock`` stays empty (it lies outside the DVC outputs, but tests hash whole folders).
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / ".lock"

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = lock_holder(self.fh)
            self.fh.close()
            by = f"locked by pid {holder}" if holder is not None else "locked"
            raise StageError(f"{self.path.parent}: another build is writing to this folder ({by}); "
                             f"wait for it to finish or stop it") from None
        sweep_temp_files(self.path.parent)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:  # on a failure, workers may still be writing: the next run sweeps
                sweep_temp_files(self.path.parent)
        finally:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
