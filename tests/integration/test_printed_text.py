"""What ipledger prints of text from outside: hostile names on one line, no password ever.

Run as `ipledger ...` (click's runner) on real SQLite ledgers, and `ipledger serve` as the real
gunicorn on a real unix socket.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from driver.entrypoints.cli import main
from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from tests.e2e.harness import PluginProcess

FORGED = "web\n2026-01-01 00:00:00,000 INFO [1] driver.usecases.addresses: released everything"
ESCAPE = "db\x1b[2J\x1b[31m"


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:Pw0rdX@db.example/x",
        "postgresql://u:Pw0rdX@127.0.0.1:1/x",
        "postgresql+psycopg://u:Pw0rdX@127.0.0.1:1/x",
        "mysql://u:Pw0rdX@db.example/x",
        "mysql+pymysql://u:Pw0rdX@db.example/x",
        "nosuchdb+nodriver://u:Pw0rdX@db.example/x",
        "postgresql+psycopg://127.0.0.1:1/x?password=Pw0rdX",
    ],
)
@pytest.mark.parametrize(
    "command", [["pools"], ["check"], ["serve", "--socket", "/nonexistent/h-cli.sock"]]
)
def test_no_database_password_is_ever_printed_whatever_the_scheme(url, command):
    # a command waits for a database that does not answer up to the call bound: keep it short
    quick = {"IPLEDGER_CALL_TIMEOUT": "0.5"}
    via_option = invoke("--db", url, *command, env=quick)
    via_env = invoke(*command, env={"IPLEDGER_DB": url, **quick})
    for result in (via_option, via_env):
        assert result.exit_code == 1, result.output
        assert "Pw0rdX" not in result.output
        if "db.example" in result.output or "127.0.0.1" in result.output:
            assert "***" in result.output
        assert "Traceback" not in result.output


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"

    def run(*args: str, ok: bool = True) -> str:
        result = invoke(*args, env={"IPLEDGER_DB": url})
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return url, run


def test_a_hostile_endpoint_name_stays_on_its_row_in_leases_and_history(cli, tmp_path):
    url, run = cli
    server = PluginProcess("h-cli-names", url, tmp_path, socket=str(tmp_path / "h-cli.sock"))
    try:
        server.start()
        pool = server.client.call(
            "RequestPool",
            {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24", "Options": {}},
        )[1]["PoolID"]
        for name in (FORGED, ESCAPE):
            status, _ = server.client.call(
                "RequestAddress",
                {
                    "PoolID": pool,
                    "Address": "",
                    "Options": {
                        "com.docker.network.endpoint.macaddress": "02:42:c6:33:64:07",
                        "com.docker.network.endpoint.name": name,
                    },
                },
            )
            assert status == 200
        log = server.log_path.read_text()
    finally:
        server.stop()
    # the text log: one line per event, the name escaped within it
    assert "released everything" in log
    for line in log.splitlines():
        assert not line.startswith("2026-01-01"), line
        assert "\x1b" not in line
    assert "web\\n2026-01-01" in log
    reserved = run("reserve", "198.51.100.100", "--label", "ops\nforged row")
    assert reserved == "reserved 198.51.100.100 (ops\\nforged row)\n"
    leases = run("leases", pool)
    history = run("history", "--pool", pool)
    for out in (leases, history):
        assert "\x1b" not in out
        assert "web\\n2026-01-01" in out
        rows = out.splitlines()
        assert all("released everything" not in r or "web\\n" in r for r in rows)
    assert len(leases.splitlines()) == 1 + 3  # a header, two leases and the reservation
    assert "ops\\nforged row" in leases


def test_an_error_naming_a_hostile_argument_is_one_escaped_line(cli):
    url, run = cli
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    out = run("leases", "LocalDefault/x\x1b[2J\nError: forged", ok=False)
    assert out.count("\n") == 1
    assert "\x1b" not in out
    assert "x\\x1b[2J\\nError: forged" in out
