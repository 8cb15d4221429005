"""Riding through a database outage: which failures are worth a replay on a fresh connection,
how long to wait between attempts, and how to learn whether a commit whose answer was lost was
made.

A PostgreSQL restart, a Patroni switchover or failover all look alike to a client for a few
seconds: connections refused or dropped, ``the database system is starting up`` or ``shutting
down``, or a pooled connection that now lands on a standby (``read_only_sql_transaction``). A
transaction that met one of them before its commit did not commit, so its use case is run again
whole (:class:`Interrupted`). One that met it at COMMIT may have committed: on PostgreSQL each
writing transaction reads its id and the server's start time first (piggy-backed on its BEGIN),
and :func:`resolve_commit` asks the server, on a fresh connection, what became of it.
"""

from __future__ import annotations

import logging
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from driver.domain.errors import StorageUnavailable
from driver.storage.locking import DEADLINE

log = logging.getLogger(__name__)

# admin_shutdown, crash_shutdown, cannot_connect_now (starting up, shutting down, in recovery),
# read_only_sql_transaction (a standby, or a leader demoted under a pooled connection), and the
# connection exceptions of class 08
INTERRUPTING_SQLSTATES = frozenset(
    {"57P01", "57P02", "57P03", "25006", "08000", "08001", "08003", "08004", "08006"}
)
# how long an operator command (no call bound) waits for the database to come back, by default
OUTAGE_BOUND = 30.0
# the pause between two attempts: short, so that a call resumes soon after the database does
PAUSE_MIN, PAUSE_MAX = 0.05, 0.25


class Interrupted(StorageUnavailable):
    """The database went away before the transaction committed (or at its commit, and the
    server that answers now cannot tell whether it was made: ``unsure_since``): replay the use
    case whole, until the call's deadline or, for a call without one, for ``bound`` seconds."""

    def __init__(
        self, message: str, bound: float = OUTAGE_BOUND, unsure_since: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.bound = bound
        # set when the lost commit may have been made after all: when the attempt began
        self.unsure_since = unsure_since


# Set while a call is replayed although its first commit may have been made (it could not be
# learnt: another server answers now): when that attempt began. A replayed release must then
# leave alone a lease made after it, which the first attempt's release let someone else take.
REPLAYED_SINCE: ContextVar[datetime | None] = ContextVar("ipledger_replayed_since", default=None)


def made_since_replayed(created_at: datetime | None) -> bool:
    """Whether a lease or pool made at ``created_at`` is newer than the first attempt of the
    call being replayed (see :data:`REPLAYED_SINCE`): not the one the call meant."""
    since = REPLAYED_SINCE.get()
    return since is not None and created_at is not None and created_at > since


class OutageObserver(Protocol):
    """Told of the server a new connection reached, and of the calls that met an outage."""

    def server(self, where: str) -> None: ...

    def waited(self) -> None: ...

    def refused(self) -> None: ...


@dataclass
class CallRecord:
    """What one plugin call met: how many times the database went away under it."""

    interruptions: int = 0


CALL: ContextVar[CallRecord | None] = ContextVar("ipledger_call", default=None)


def interrupts(error: DBAPIError) -> bool:
    """Whether ``error`` means the server is (for now) out of reach, not the statement wrong."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in INTERRUPTING_SQLSTATES
    # refused, reset, timed out, or no host read-write yet: libpq gives no SQLSTATE
    return error.connection_invalidated or isinstance(error, OperationalError)


def ride_deadline(bound: float) -> float:
    """Until when a call waits for the database: its deadline, or for a call without one (an
    operator command) ``bound`` seconds from now."""
    deadline = DEADLINE.get()
    return deadline if deadline is not None else time.monotonic() + bound


def pause(until: float, why: StorageUnavailable) -> None:
    """Sleep a short, jittered while before the next attempt; raise ``why`` as a final 503
    when that would go past ``until``."""
    wait = random.uniform(PAUSE_MIN, PAUSE_MAX)
    if time.monotonic() + wait >= until:
        raise StorageUnavailable(
            f"{why.message}; the database stayed unavailable until the call's time ran out"
        ) from why
    time.sleep(wait)


# The transaction's id and the server's start: a commit whose answer was lost is resolved only
# on the server that ran it (after a restart or a failover, an id not written to the log may be
# given to another transaction, so the answer would not be about ours).
_IDENTIFY = b"SELECT txid_current(), pg_postmaster_start_time()::text"
_STATUS = text("SELECT pg_postmaster_start_time()::text, txid_status(:xid)")


@dataclass
class CommitOutcome:
    """A writing transaction's id on PostgreSQL, and whether its COMMIT was sent."""

    xid: int
    started: str
    sent: bool = False
    # this host's clock when the attempt began, as leases' and pools' created_at are written
    began: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def read(cls, connection: Connection) -> CommitOutcome:
        """The transaction's id, read in the round trip of its BEGIN, so that a writing
        transaction costs no extra round trip: psycopg sends its BEGIN with the first
        statement, and not at all once the server says a transaction is open."""
        driver: Any = connection.connection.driver_connection
        dbapi = connection.dialect.loaded_dbapi
        try:
            if driver.pgconn.transaction_status == dbapi.pq.TransactionStatus.IDLE:
                result = driver.pgconn.exec_(b"BEGIN; " + _IDENTIFY)
                if result.status != dbapi.pq.ExecStatus.TUPLES_OK:
                    raise dbapi.errors.error_from_result(result, driver.info.encoding)
                row = (result.get_value(0, 0), result.get_value(0, 1))
            else:
                with driver.cursor(binary=False) as cursor:
                    cursor.execute(_IDENTIFY)
                    row = cursor.fetchone()
        except dbapi.Error as e:
            raise DBAPIError.instance(
                _IDENTIFY.decode(),
                (),
                e,
                dbapi.Error,
                connection_invalidated=connection.dialect.is_disconnect(e, driver, None),
                dialect=connection.dialect,
            ) from e
        return cls(int(_text(row[0])), _text(row[1]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def resolve_commit(
    engine: Engine, commit: CommitOutcome, reason: str, bound: float = OUTAGE_BOUND
) -> str:
    """What became of a transaction whose COMMIT was sent but not answered: "committed" when
    the server that ran it says so; "aborted" when it says not; "elsewhere" when the server is
    another one or restarted since, which cannot tell (the use case is then replayed under
    :data:`REPLAYED_SINCE`: a lease the lost commit may have made is a leak gc reclaims, and a
    release it may have made is not made again on what someone took since). Asks again while
    it is in progress or the database is out of reach; a 503 when still unknown at the call's
    deadline (or, without one, after ``bound`` seconds)."""
    until = ride_deadline(bound)
    why = StorageUnavailable(
        f"database unavailable: {reason}, at commit; whether the commit was made "
        "could not be learnt"
    )
    while True:
        status = _ask(engine, commit)
        if status in ("committed", "aborted", "elsewhere"):
            log.warning(
                "the commit of transaction %d went unanswered (%s): %s%s",
                commit.xid,
                reason,
                status,
                "" if status == "committed" else "; the call is replayed",
            )
            return status
        pause(until, why)


def _ask(engine: Engine, commit: CommitOutcome) -> str | None:
    """txid_status of the commit's transaction; "elsewhere" when this server is not the one
    that ran it; None when it cannot be learnt now."""
    try:
        with engine.connect() as connection:
            started, status = connection.execute(_STATUS, {"xid": commit.xid}).one()
    except DBAPIError as e:
        if interrupts(e):
            return None
        if getattr(e.orig, "sqlstate", None) == "22023":
            return "elsewhere"  # an id in the future: a promoted standby that never saw it
        raise
    if started != commit.started:
        return "elsewhere"
    return str(status) if status is not None else None
