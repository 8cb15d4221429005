"""The store: one transaction per use case, each within the plugin call's bound; conflicts
retried, and database outages ridden through until the bound (see :mod:`driver.storage.outage`)."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, nullcontext
from contextvars import Token
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy import (
    Engine,
    event,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from driver.domain.errors import StorageUnavailable
from driver.storage.engine import (
    READ_ONLY,
    make_engine,
    masked_url,
    read_only_sqlite,
    sqlite_path,
)
from driver.storage.ledger import Ledger
from driver.storage.locking import DEADLINE, WriteLock
from driver.storage.outage import (
    CALL,
    OUTAGE_BOUND,
    REPLAYED_SINCE,
    CallRecord,
    CommitOutcome,
    Interrupted,
    OutageObserver,
    interrupts,
    pause,
    resolve_commit,
    ride_deadline,
)

if TYPE_CHECKING:
    from driver.config import Settings

log = logging.getLogger(__name__)


def open_store(
    url: str,
    *,
    synchronous: str = "NORMAL",
    busy_timeout_ms: int = 5000,
    call_timeout: float | None = None,
    read_only: bool = False,
    serving_host: str | None = None,
    outage_bound: float = OUTAGE_BOUND,
) -> Store:
    """The store for ``url``; on an SQLite file, with its :class:`WriteLock`. ``call_timeout``
    bounds every call made through :meth:`Store.bounded` (the plugin's). ``read_only``: for a
    caller that only reads, an SQLite ledger on a read-only file system is opened as it is
    (:attr:`Store.read_only`); elsewhere, as usual. ``serving_host``: the plugin's store, whose
    every write is refused while an operator has that host retired. ``outage_bound``: how long a
    call without a deadline (an operator's) waits for a database that went away."""
    read_only = read_only and read_only_sqlite(url)
    engine = make_engine(
        url,
        synchronous=synchronous,
        busy_timeout_ms=busy_timeout_ms,
        call_timeout=call_timeout,
        read_only=read_only,
    )
    database = sqlite_path(url)
    lock = None
    if not read_only and database is not None:
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
        outage_bound=outage_bound,
    )


def open_configured(
    settings: Settings,
    *,
    bounded: bool = False,
    serving: bool = False,
    read_only: bool = False,
    outage_bound: float | None = None,
) -> Store:
    """The store of the configured ledger: each call bounded by the settings' call timeout
    (``bounded``), refusing this host's writes while it is retired (``serving``), opened as it
    is on a read-only file system for a caller that only reads (``read_only``), and waiting at
    most ``outage_bound`` (the call timeout unless given) for a database that went away in a
    call without a deadline (an operator's command, say)."""
    return open_store(
        settings.db_url,
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.busy_timeout_ms,
        call_timeout=settings.call_timeout if bounded else None,
        read_only=read_only,
        serving_host=settings.host_id if serving else None,
        outage_bound=settings.call_timeout if outage_bound is None else outage_bound,
    )


class Conflict(Exception):
    """A transaction PostgreSQL aborted because another one got there first; worth a retry."""


# serialization_failure, deadlock_detected, unique_violation (two hosts inserting one subnet)
RETRIABLE_SQLSTATES = frozenset({"40001", "40P01", "23505"})
CONFLICT_RETRIES = 5

P = ParamSpec("P")
T = TypeVar("T")


def retrying(use_case: Callable[P, T]) -> Callable[P, T]:
    """Run a use case (one transaction) again when it hit a :class:`Conflict`, a few times; and
    when the database went away before its commit (:class:`Interrupted`), again on a fresh
    connection with a short backoff until the call's deadline, then a 503."""

    @functools.wraps(use_case)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        conflicts = 0
        ride_until: float | None = None
        unsure: Token[datetime | None] | None = None
        try:
            while True:
                try:
                    return use_case(*args, **kwargs)
                except Conflict as e:
                    conflicts += 1
                    if conflicts == CONFLICT_RETRIES:
                        raise StorageUnavailable(
                            f"database busy: {CONFLICT_RETRIES} attempts met conflicting "
                            f"updates ({e})"
                        ) from e
                    time.sleep(random.uniform(0, 0.002 * 2**conflicts))
                except Interrupted as e:
                    if ride_until is None:
                        ride_until = ride_deadline(e.bound)
                    pause(ride_until, e)
                    if e.unsure_since is not None and unsure is None:
                        # the attempts that follow, and the use case they run, know it
                        unsure = REPLAYED_SINCE.set(e.unsure_since)
        finally:
            if unsure is not None:
                REPLAYED_SINCE.reset(unsure)

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
        outage_bound: float = OUTAGE_BOUND,
    ) -> None:
        self.engine = engine
        # the host whose plugin calls this store serves: none of its writes while it is retired
        self.serving_host = serving_host
        self.outage_bound = outage_bound
        # an SQLite ledger on a read-only file system, opened as it is: no migration, no write
        self.read_only = read_only
        self.lock = lock
        self.call_timeout = call_timeout
        self._executor: ThreadPoolExecutor | None = None
        # told of the calls that met an outage, and of the server each new connection reached
        self.observer: OutageObserver | None = None
        self.server: str | None = None
        if engine.dialect.name == "postgresql":
            event.listen(engine, "connect", self._connected)

    def observe_with(self, observer: OutageObserver) -> None:
        """Tell ``observer`` of the server, now and on each new connection, and of the calls
        that meet an outage."""
        self.observer = observer
        if self.server is not None:
            observer.server(self.server)

    def _connected(self, dbapi_connection: Any, _record: Any) -> None:
        info = dbapi_connection.info
        self.server = f"{info.host}:{info.port}"
        if self.observer is not None:
            self.observer.server(self.server)

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
            return _until(deadline, call, None)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ipledger-call")
        record = CallRecord()
        future = self._executor.submit(_until, deadline, call, record)
        try:
            result = future.result(timeout=self.call_timeout)
        except FutureTimeout:
            self._observe(record, refused=True)
            where = masked_url(self.engine.url.render_as_string(hide_password=False))
            raise StorageUnavailable(
                f"database unavailable: no answer from {where} within {self.call_timeout:g} s"
            ) from None
        except StorageUnavailable:
            self._observe(record, refused=True)
            raise
        self._observe(record, refused=False)
        return result

    def _observe(self, record: CallRecord, refused: bool) -> None:
        """Count a call that met an outage: it waited it out, or it was refused."""
        if record.interruptions and self.observer is not None:
            if refused:
                self.observer.refused()
            else:
                self.observer.waited()

    def ride_through(self, step: Callable[[], T]) -> T:
        """Run ``step``, one that connects by itself (a migration), again while the database
        is away, for :attr:`outage_bound` at most; then a 503."""
        until: float | None = None
        while True:
            try:
                return step()
            except DBAPIError as e:
                if self.engine.dialect.name == "sqlite" or not interrupts(e):
                    raise
                self.engine.dispose()
                if until is None:
                    until = ride_deadline(self.outage_bound)
                pause(until, StorageUnavailable(f"database unavailable: {first_line(e)}"))

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
        """One transaction on a pooled connection. On PostgreSQL a writing one reads its
        transaction id first, so that a commit whose answer was lost can be resolved
        (:func:`resolve_commit`): committed, the block's results stand; otherwise it raises
        :class:`Interrupted`, for :func:`retrying` to replay the whole use case."""
        try:
            connection = self.engine.connect()
        except DBAPIError as e:
            failure = self._failed(e, None)
            assert failure is not None  # no commit was sent
            raise failure from e
        if read_only:
            connection.execution_options(**{READ_ONLY: True})
        commit: CommitOutcome | None = None
        try:
            with connection.begin():
                if not read_only and self.engine.dialect.name == "postgresql":
                    commit = CommitOutcome.read(connection)
                yield Ledger(connection)
                deadline = DEADLINE.get()
                if deadline is not None and time.monotonic() > deadline and not read_only:
                    # the caller has been answered 503 already: write nothing
                    raise StorageUnavailable(
                        "database unavailable: the call's time ran out "
                        "before its commit; nothing was written"
                    )
                if commit is not None:
                    commit.sent = True
        except DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) in RETRIABLE_SQLSTATES:
                raise Conflict(first_line(e)) from e
            if not (isinstance(e, OperationalError) or e.connection_invalidated or interrupts(e)):
                raise
            # A connection that met a storage fault (disk full or read-only, the server gone)
            # may keep a stale state: drop it, so that the next call starts afresh.
            connection.invalidate()
            failure = self._failed(e, commit)
            if failure is not None:
                raise failure from e
        finally:
            connection.close()

    def _failed(self, error: DBAPIError, commit: CommitOutcome | None) -> StorageUnavailable | None:
        """What a transaction that met ``error`` raises: a 503; :class:`Interrupted` when the
        database went away and the use case may be replayed; None when its commit, sent before
        the connection dropped, turns out to have been made."""
        reason = first_line(error)
        if self.engine.dialect.name == "sqlite" or not interrupts(error):
            return StorageUnavailable(f"database unavailable: {reason}")
        # the pooled connections are likely as broken as this one (a restart, or a promoted
        # standby and this one demoted): start afresh
        self.engine.dispose()
        record = CALL.get()
        if record is not None:
            record.interruptions += 1
        if commit is None or not commit.sent:
            return Interrupted(f"database unavailable: {reason}", self.outage_bound)
        outcome = resolve_commit(self.engine, commit, reason, self.outage_bound)
        if outcome == "committed":
            return None
        unsure = commit.began if outcome == "elsewhere" else None
        return Interrupted(f"database unavailable: {reason}", self.outage_bound, unsure)

    def dispose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.engine.dispose()
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def _until(deadline: float, call: Callable[[], T], record: CallRecord | None) -> T:
    token = DEADLINE.set(deadline)
    call_token = CALL.set(record)
    try:
        return call()
    finally:
        CALL.reset(call_token)
        DEADLINE.reset(token)


def first_line(error: DBAPIError) -> str:
    """What the database said, on one line: the first of its message (the rest is SQL)."""
    text = str(error.orig).strip() if error.orig else ""
    return text.splitlines()[0] if text else type(error).__name__
