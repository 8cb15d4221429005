"""The quick lane's stand-in for a read-only mount (tests/integration/test_read_only_ledger.py
mounts one, as root): the file system is said to be read-only, and the ledger file and its
directory are made read-only by mode, which binds any user but root."""

from __future__ import annotations

import json

from click.testing import CliRunner

from driver.entrypoints.cli import main
from driver.storage import engine as engines
from driver.storage.engine import make_engine
from driver.storage.schema import migrate


def test_a_ledger_on_a_read_only_file_system_is_read_as_it_is(tmp_path, monkeypatch):
    where = tmp_path / "h-cli-ro"
    url = f"sqlite:///{where}/ledger.db"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    (where / "ledger.db").chmod(0o444)
    where.chmod(0o555)
    monkeypatch.setattr(engines, "on_read_only_fs", lambda _path: True)
    try:
        result = CliRunner().invoke(main, ["pools", "--json", "--db", url])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == []
        assert sorted(p.name for p in where.iterdir()) == ["ledger.db"]
        refused = CliRunner().invoke(main, ["reserve", "198.51.100.1", "--label", "x", "--db", url])
        assert refused.exit_code == 1
        assert "is on a read-only file system, and this writes to it" in refused.output
    finally:
        where.chmod(0o755)
