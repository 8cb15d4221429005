"""The store: one transaction per use case, each within the plugin call's bound; conflicts
retried."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, nullcontext
from typing import ParamSpec, TypeVar

from sqlalchemy import (
    Engine,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from driver.domain.errors import StorageUnavailable
from driver.storage.engine import READ_ONLY, make_engine, masked_url, read_only_sqlite
from driver.storage.ledger import Ledger
from driver.storage.locking import DEADLINE, WriteLock

log = logging.getLogger(__name__)


def open_store(
    url: str,
    *,
    synchronous: str = "NORMAL",
    busy_timeout_ms: int = 5000,
    call_timeout: float | None = None,
    read_only: bool = False,
    serving_host: str | None = None,
) -> Store:
    """The store for ``url``; on an SQLite file, with its :class:`WriteLock`. ``call_timeout``
    bounds every call made through :meth:`Store.bounded` (the plugin's). ``read_only``: for a
    caller that only reads, an SQLite ledger on a read-only file system is opened as it is
    (:attr:`Store.read_only`); elsewhere, as usual. ``serving_host``: the plugin's store, whose
    every write is refused while an operator has that host retired."""
    read_only = read_only and read_only_sqlite(url)
    engine = make_engine(
        url,
        synchronous=synchronous,
        busy_timeout_ms=busy_timeout_ms,
        call_timeout=call_timeout,
        read_only=read_only,
    )
    database = make_url(url).database
    lock = None
    if (
        not read_only
        and engine.dialect.name == "sqlite"
        and database
        and not database.startswith(":memory:")
    ):
        try:
            lock = WriteLock(f"{database}.lock", busy_timeout_ms / 1000)
        except OSError as e:
            # a read-only directory, say: SQLite's own locking still keeps writers apart
            log.warning(
                "no write lock file beside %s (%s): relying on SQLite's locking",
                database,
                e.strerror,
            )
    return Store(
        engine,
        lock,
        call_timeout=call_timeout or 5.0,
        read_only=read_only,
        serving_host=serving_host,
    )


class Conflict(Exception):
    """A transaction PostgreSQL aborted because another one got there first; worth a retry."""


# serialization_failure, deadlock_detected, unique_violation (two hosts inserting one subnet)
RETRIABLE_SQLSTATES = frozenset({"40001", "40P01", "23505"})
CONFLICT_RETRIES = 5

P = ParamSpec("P")
T = TypeVar("T")


def retrying(use_case: Callable[P, T]) -> Callable[P, T]:
    """Run a use case (one transaction) again when it hit a :class:`Conflict`, a few times."""

    @functools.wraps(use_case)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                return use_case(*args, **kwargs)
            except Conflict as e:
                if attempt == CONFLICT_RETRIES:
                    raise StorageUnavailable(
                        f"database busy: {CONFLICT_RETRIES} attempts met conflicting updates ({e})"
                    ) from e
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
        raise AssertionError("unreachable")

    return run


class Store:
    """The database behind the ledger: hands out one :class:`Ledger` per transaction."""

    def __init__(
        self,
        engine: Engine,
        lock: WriteLock | None = None,
        call_timeout: float = 5.0,
        read_only: bool = False,
        serving_host: str | None = None,
    ) -> None:
        self.engine = engine
        # the host whose plugin calls this store serves: none of its writes while it is retired
        self.serving_host = serving_host
        # an SQLite ledger on a read-only file system, opened as it is: no migration, no write
        self.read_only = read_only
        self.lock = lock
        self.call_timeout = call_timeout
        self._executor: ThreadPoolExecutor | None = None

    def bounded(self, call: Callable[[], T]) -> T:
        """Run a plugin call, answered within ``call_timeout``: its result, or a 503.

        On SQLite every wait of the call is local and bounded by what is left of the bound (the
        write lock, SQLite's busy timeout), so it runs right here. A server database is reached
        over a network that may go silent: the call runs on a thread of its own while this one
        waits at most the bound. A call that outlives it goes on until the database's statement
        timeout or the TCP timeouts end it; it commits nothing after its deadline
        (:meth:`_transaction`), and its connection is dropped when it failed.
        """
        deadline = time.monotonic() + self.call_timeout
        if self.engine.dialect.name == "sqlite":
            return _until(deadline, call)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ipledger-call")
        future = self._executor.submit(_until, deadline, call)
        try:
            return future.result(timeout=self.call_timeout)
        except FutureTimeout:
            where = masked_url(self.engine.url.render_as_string(hide_password=False))
            raise StorageUnavailable(
                f"database unavailable: no answer from {where} within {self.call_timeout:g} s"
            ) from None

    @property
    def shared(self) -> bool:
        """Whether several hosts may use this ledger (a server database, not an SQLite file)."""
        return self.engine.dialect.name != "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        held = self.lock.held() if self.lock is not None else nullcontext()
        with held, self._transaction() as ledger:
            if self.serving_host is not None:
                ledger.check_serving(self.serving_host)
            yield ledger

    @contextmanager
    def reading(self) -> Iterator[Ledger]:
        """A transaction that only reads (reports, metrics, export, check): it takes neither
        the write lock nor SQLite's, so Docker's calls never wait for it."""
        with self._transaction(read_only=True) as ledger:
            yield ledger

    @contextmanager
    def _transaction(self, read_only: bool = False) -> Iterator[Ledger]:
        try:
            connection = self.engine.connect()
        except DBAPIError as e:
            raise StorageUnavailable(f"database unavailable: {_reason(e)}") from e
        if read_only:
            connection.execution_options(**{READ_ONLY: True})
        try:
            with connection.begin():
                yield Ledger(connection)
                deadline = DEADLINE.get()
                if deadline is not None and time.monotonic() > deadline and not read_only:
                    # the caller has been answered 503 already: write nothing
                    raise StorageUnavailable(
                        "database unavailable: the call's time ran out "
                        "before its commit; nothing was written"
                    )
        except DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) in RETRIABLE_SQLSTATES:
                raise Conflict(_reason(e)) from e
            if not (isinstance(e, OperationalError) or e.connection_invalidated):
                raise
            # A connection that met a storage fault (disk full or read-only, the server gone)
            # may keep a stale state: drop it, so that the next call starts afresh.
            connection.invalidate()
            raise StorageUnavailable(f"database unavailable: {_reason(e)}") from e
        finally:
            connection.close()

    def dispose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.engine.dispose()
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def _until(deadline: float, call: Callable[[], T]) -> T:
    token = DEADLINE.set(deadline)
    try:
        return call()
    finally:
        DEADLINE.reset(token)


def _reason(error: DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
