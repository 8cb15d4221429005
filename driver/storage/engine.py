"""The database engine: SQLite with WAL and BEGIN IMMEDIATE, PostgreSQL with every wait bounded."""

from __future__ import annotations

import os
import stat
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url

from driver.domain.errors import InvalidRequest, StorageUnavailable
from driver.domain.text import mask_secrets
from driver.storage.prepared import Prepared


def masked_url(url: str) -> str:
    """The database URL with any password hidden, for logs and errors."""
    return mask_secrets(url)


def is_shared(url: str) -> bool:
    """Whether a ledger URL is a server database, which several hosts may share (not SQLite)."""
    return make_url(url).get_backend_name() != "sqlite"


def sqlite_path(url: str) -> str | None:
    """The file of an SQLite URL; None for another database, memory or a ``file:`` URI."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database:
        return None
    if database == ":memory:" or database.startswith("file:"):
        return None
    return database


def check_private_file(path: str, what: str) -> None:
    """Refuse a ``path`` that another user could read or redirect: a symbolic link (dangling
    too: whoever can write its directory chooses what it points to), or a file another user
    owns (who can read and change it, whatever its mode). The message says how to fix it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        real = os.path.realpath(path)
        raise InvalidRequest(
            f"refusing {what}: {path} is a symbolic link (to {os.readlink(path)}), which whoever "
            f"can write its directory may point anywhere; give the real path: "
            f"{'sqlite:///' + real if what == 'the ledger' else real}"
        )
    me = os.geteuid()
    if info.st_uid != me:
        anyone = " (and its mode lets anyone)" if info.st_mode & 0o007 else ""
        raise InvalidRequest(
            f"refusing {what}: {path} is owned by uid {info.st_uid}, not by this user (uid {me}), "
            f"and that user can read and change it{anyone}; if it is yours: "
            f"chown {me} {path} && chmod 600 {path}"
        )


def on_read_only_fs(path: str) -> bool:
    """Whether ``path`` (or, when it does not exist, the nearest directory above it that does)
    is on a file system mounted read-only."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def read_only_sqlite(url: str) -> bool:
    """Whether ``url`` is an SQLite ledger that exists on a read-only file system."""
    database = sqlite_path(url)
    return database is not None and os.path.exists(database) and on_read_only_fs(database)


def prepare_sqlite_file(url: str, read_only: bool = False) -> None:
    """Check the database's file and its companions (``-wal``, ``-shm``, ``.lock``) with
    :func:`check_private_file`, then create its directory (0700) and file (0600) before SQLite
    does it with 0644; a ledger to be only read is left as it is."""
    database = sqlite_path(url)
    if database is None:
        return
    for path in (database, *(f"{database}{suffix}" for suffix in ("-wal", "-shm", ".lock"))):
        check_private_file(path, "the ledger")
    if read_only:
        return
    if on_read_only_fs(database):
        raise StorageUnavailable(
            f"the ledger {database} is on a read-only file system, and this writes to it: "
            "remount it read-write (pools, leases, usage, history, export and check only read)"
        )
    directory = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    if os.path.exists(database):
        # never open and close a ledger this process may hold open: closing any descriptor of
        # a file drops every POSIX lock the process holds on it, SQLite's too
        return
    try:
        fd = os.open(database, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return  # another process created it meanwhile
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
    read_only: bool = False,
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, ``BEGIN IMMEDIATE`` and a busy timeout.

    ``read_only`` (an SQLite ledger on a read-only file system, see :func:`read_only_sqlite`)
    opens the file as it is, to read only: no WAL set up, nothing created beside it.

    PostgreSQL gets the bounds of :func:`postgres_connect_args` and a ping before a pooled
    connection is reused, so that service resumes by itself once the server is back.
    ``call_timeout`` is the plugin's bound on a call; operator commands pass None.
    """
    parsed = make_url(url)
    if read_only and parsed.get_backend_name() == "sqlite":
        return _read_only_sqlite_engine(url, busy_timeout_ms)
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


def _read_only_sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    """SQLite on a read-only file system: nobody can write the file, so it is opened
    ``immutable`` (no lock, no ``-shm`` to create); with a write-ahead log that still holds
    changes, ``mode=ro`` so that SQLite reads them too."""
    database = sqlite_path(url)
    assert database is not None
    wal = f"{database}-wal"
    pending = os.path.exists(wal) and os.path.getsize(wal) > 0
    flag = "mode=ro" if pending else "immutable=1"
    uri = f"sqlite:///file:{quote(os.path.abspath(database))}?{flag}&uri=true"
    engine = create_engine(uri, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        _BEGIN.count(connection, {})

    return engine
