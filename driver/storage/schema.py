"""Schema migrations with alembic; the migrations ship inside the package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", "driver.storage:migrations")
    return config


# Any constant: the advisory lock that keeps several hosts from migrating one database at once.
MIGRATION_LOCK = 0x1ED6E4


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema, in place, one migrating process at a time."""
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def pending_migration(engine: Engine) -> tuple[str | None, str] | None:
    """(the ledger's schema revision, the newest) when the ledger needs a migration, else None."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    current = current_revision(engine)
    return None if current == head else (current, head)
