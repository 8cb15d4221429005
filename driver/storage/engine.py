"""The database engine: SQLite with WAL and BEGIN IMMEDIATE, PostgreSQL with every wait bounded."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url

from driver.storage.prepared import Prepared


def masked_url(url: str) -> str:
    """The database URL with any password hidden, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


def is_shared(url: str) -> bool:
    """Whether a ledger URL is a server database, which several hosts may share (not SQLite)."""
    return make_url(url).get_backend_name() != "sqlite"


def prepare_sqlite_file(url: str) -> None:
    """Create the database's directory (0700) and file (0600) before SQLite does it with 0644."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    directory = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


_BEGIN, _BEGIN_IMMEDIATE = Prepared(text("BEGIN")), Prepared(text("BEGIN IMMEDIATE"))

# The execution option that makes a transaction read-only (see Store.reading).
READ_ONLY = "ipledger_read_only"


def postgres_connect_args(call_timeout: float | None) -> dict[str, Any]:
    """libpq parameters that bound every wait on PostgreSQL.

    A connect timeout, so that calls fail fast while the server is down; TCP keepalives and
    ``tcp_user_timeout``, so that a silent peer (a partition, a host gone) breaks the connection
    within seconds instead of the kernel's quarter of an hour; and, for the plugin's calls
    (``call_timeout``), server-side ``statement_timeout`` and ``lock_timeout`` of the call's bound
    and an ``idle_in_transaction_session_timeout``, so that the server drops the locks of a
    client that went away in the middle of a transaction.
    """
    bound_ms = int((call_timeout or 10) * 1000)
    args: dict[str, Any] = {
        "connect_timeout": max(2, min(3, int(call_timeout or 3))),
        "keepalives": 1,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": bound_ms,
    }
    if call_timeout is not None:
        args["options"] = (
            f"-c statement_timeout={bound_ms} -c lock_timeout={bound_ms} "
            f"-c idle_in_transaction_session_timeout={2 * bound_ms}"
        )
    return args


def make_engine(
    url: str,
    *,
    synchronous: str = "NORMAL",
    busy_timeout_ms: int = 5000,
    call_timeout: float | None = None,
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, ``BEGIN IMMEDIATE`` and a busy timeout.

    PostgreSQL gets the bounds of :func:`postgres_connect_args` and a ping before a pooled
    connection is reused, so that service resumes by itself once the server is back.
    ``call_timeout`` is the plugin's bound on a call; operator commands pass None.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args = (
            postgres_connect_args(call_timeout) if parsed.get_backend_name() == "postgresql" else {}
        )
        return create_engine(
            url, pool_pre_ping=True, pool_timeout=call_timeout or 30, connect_args=connect_args
        )
    prepare_sqlite_file(url)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not the driver, open transactions (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Take the write lock up front: two allocations can never interleave their reads.
        # A read-only transaction (Store.reading) reads a WAL snapshot beside the writer.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        (_BEGIN if read_only else _BEGIN_IMMEDIATE).count(connection, {})

    return engine
