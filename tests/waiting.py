"""Waiting on a condition, never on the clock alone: a wait that times out fails, naming what it
waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """``predicate()``'s first truthy value, checked every ``interval`` s; after ``timeout`` s
    an AssertionError naming ``what`` (and the last value seen) fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last: {found!r})"
            )
        time.sleep(interval)
