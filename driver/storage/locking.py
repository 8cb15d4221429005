"""Bounded waits: the current plugin call's deadline, and the write lock of an SQLite file."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from driver.domain.errors import StorageUnavailable

# When the plugin call under way must be answered by (time.monotonic()); None outside one.
DEADLINE: ContextVar[float | None] = ContextVar("ipledger_deadline", default=None)


def within_call(wait: float) -> float:
    """``wait``, cut to what is left of the current call's bound."""
    deadline = DEADLINE.get()
    return wait if deadline is None else min(wait, deadline - time.monotonic())


class WriteLock:
    """Queues the writers of one SQLite file: this process's threads, then the processes.

    SQLite's own busy handler makes a blocked writer sleep 1, 2, 5, 10 ... 100 ms before it
    looks again, which turns a busy moment into a p99 of tens of milliseconds. Waiting on a
    thread lock and an flock(2) on ``<database>.lock`` instead takes the lock within a
    millisecond of its release. Every wait is bounded: by the busy timeout, and by what is left
    of the plugin call's bound; a holder that does not let go (a stopped worker, a long operator
    command) gets the waiting call a 503 naming the lock, never a hang. The busy timeout still
    guards against writers that do not take this lock (another tool on the file).
    """

    # how long a waiter sleeps between looks at the lock file at the most
    POLL_MAX = 0.001

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextmanager
    def held(self) -> Iterator[None]:
        wait = within_call(self.timeout)
        deadline = time.monotonic() + wait
        if not self._thread_lock.acquire(timeout=max(wait, 0)):
            raise self._timed_out(wait, "another thread of this worker")
        try:
            self._take_file_lock(deadline, wait)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _take_file_lock(self, deadline: float, wait: float) -> None:
        pause = 0.00005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out(
                    wait, "another process (a stopped worker, or an operator command?)"
                )
            time.sleep(min(pause, left))
            pause = min(pause * 2, self.POLL_MAX)

    def _timed_out(self, wait: float, holder: str) -> StorageUnavailable:
        return StorageUnavailable(
            f"database unavailable: waited {max(wait, 0):.1f} s for the "
            f"write lock on {self.path}, held by {holder}"
        )

    def close(self) -> None:
        os.close(self._fd)
