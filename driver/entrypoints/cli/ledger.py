"""Opening the ledger for a command: the :class:`Admin` use cases, or a clean exit naming why
not; and the progress bar of a long command."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from driver.config import Settings
from driver.domain.errors import IpamError, StorageUnavailable
from driver.entrypoints.cli.options import settings_from_env

if TYPE_CHECKING:
    from driver.storage.store import Store
    from driver.usecases.admin import Admin


def require_ledger(settings: Settings) -> None:
    """Refuse an SQLite ledger that does not exist: a mistyped --db must not make an empty one."""
    from driver.storage.engine import sqlite_path

    path = sqlite_path(settings.db_url)
    if path is None:
        return
    if not os.path.lexists(path):  # a symbolic link is refused, saying so, when opened
        raise click.ClickException(
            f"no ledger at {path}: check --db or IPLEDGER_DB "
            "(ipledger serve creates the ledger on first start)"
        )


def _open(settings: Settings, reads: bool) -> Store:
    from driver.storage.store import open_configured

    try:
        return open_configured(settings, read_only=reads)
    except IpamError as e:
        raise click.ClickException(e.message) from None


def _migrated(store: Store, db_url: str) -> None:
    """Migrate to the newest schema; a read-only ledger must already have it."""
    from driver.storage.engine import masked_url
    from driver.storage.schema import migrate, pending_migration

    if not store.read_only:
        store.ride_through(lambda: migrate(store.engine))
        return
    stale = pending_migration(store.engine)
    if stale is not None:
        raise click.ClickException(
            f"the ledger {masked_url(db_url)} is on a read-only file system "
            f"and its schema (revision {stale[0] or 'none'}) is older than this "
            f"ipledger's ({stale[1]}): run ipledger once where it is writable, which "
            "migrates it"
        )


@contextmanager
def admin(db_url: str | None, *, create: bool = False, reads: bool = False) -> Iterator[Admin]:
    """The :class:`driver.usecases.admin.Admin` of the configured database, migrated to the newest
    schema; only ``create`` makes a new SQLite ledger. A command that only ``reads`` also works
    on an SQLite ledger on a read-only file system: opened as it is, when its schema is current."""
    from sqlalchemy.exc import DBAPIError

    from driver.storage.engine import masked_url
    from driver.storage.store import Conflict, first_line
    from driver.usecases.admin import Admin

    settings = settings_from_env(db_url=db_url)
    if not create:
        require_ledger(settings)
    store = _open(settings, reads)
    try:
        _migrated(store, settings.db_url)
        yield Admin(store, settings.host_id)
    except DBAPIError as e:
        raise click.ClickException(
            f"database unavailable at {masked_url(settings.db_url)}: {first_line(e)}"
        ) from None
    except StorageUnavailable as e:
        # the store's words say what failed; the operator also needs which ledger it was
        raise click.ClickException(f"{e.message} (ledger {masked_url(settings.db_url)})") from None
    except IpamError as e:
        raise click.ClickException(e.message) from None
    except Conflict as e:
        raise click.ClickException(
            f"database busy: a conflicting update ({e}); try again"
        ) from None
    finally:
        store.dispose()


@contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal, advanced by the callback."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update
