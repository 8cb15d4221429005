"""Storage failures reach the operator as one clean line, never a traceback."""

from __future__ import annotations

from contextlib import contextmanager

from click.testing import CliRunner
from sqlalchemy import text

from driver.entrypoints.cli import main
from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from driver.storage.store import Conflict, Store


def test_a_conflict_that_outlasts_the_retries_is_a_clean_error_and_operator_writes_retry(
    tmp_path, monkeypatch
):
    url = f"sqlite:///{tmp_path}/ledger.db"
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as c:  # one old event for prune-history to drop
        c.execute(
            text(
                "INSERT INTO history (at, host_id, action, pool_id, address) "
                "VALUES ('2020-01-01 00:00:00', 'h', 'allocate', 'p', '198.51.100.1')"
            )
        )
    engine.dispose()
    attempts = []

    @contextmanager
    def always_conflicting(self):
        attempts.append(1)
        raise Conflict("could not serialize access due to concurrent update")
        yield

    monkeypatch.setattr(Store, "transaction", always_conflicting)
    result = CliRunner().invoke(
        main, ["prune-history", "--older-than", "1d", "--apply", "--db", url]
    )
    assert result.exit_code == 1, result.output
    assert "database busy: 5 attempts met conflicting updates" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(attempts) == 5
