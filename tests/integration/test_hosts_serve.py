"""A real `ipledger serve` (gunicorn on a unix socket) keeps its host's row in the ledger, and a
retired host's serve hands out nothing until it is admitted again; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import version

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from driver.domain.hosts import HEARTBEAT_S
from driver.entrypoints.cli import main
from driver.storage.models import hosts, leases
from tests.e2e.harness import PluginProcess
from tests.waiting import wait_until

HOST = "iplhost-serve"
POOL = {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24"}


@pytest.fixture
def server(tmp_path, db_url):
    process = PluginProcess(
        "iplhost",
        db_url,
        tmp_path,
        socket=str(tmp_path / "iplhost.sock"),
        extra_env={"IPLEDGER_HOST_ID": HOST, "IPLEDGER_HOST_NAME": "web-1 \x1b[31mred"},
    )
    process.start()
    yield process
    process.stop()


def host_row(db_url: str):
    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            return c.execute(select(hosts).where(hosts.c.id == HOST)).one()
    finally:
        engine.dispose()


def hosts_cli(db_url: str, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["hosts", *args], env={"IPLEDGER_DB": db_url, "IPLEDGER_HOST_ID": "operator"}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_serve_records_its_host_and_a_retired_host_hands_out_nothing_until_admitted(server, db_url):
    row = host_row(db_url)
    assert (row.name, row.version, row.state) == (
        "web-1 \x1b[31mred",
        version("ipledger"),
        "active",
    )
    seen = row.last_seen if row.last_seen.tzinfo else row.last_seen.replace(tzinfo=UTC)
    assert datetime.now(UTC) - seen < timedelta(seconds=HEARTBEAT_S)
    status, pool = server.client.call("RequestPool", POOL)
    assert status == 200, pool
    status, lease = server.client.call("RequestAddress", {"PoolID": pool["PoolID"]})
    assert status == 200, lease

    retired = hosts_cli(db_url, "retire", HOST, "--apply", "--force")
    # its own pool is in its own plan: its lease is kept, not answered twice once admitted
    assert "0 leases released" in retired and "1 leases in its own pools kept" in retired
    for method, body in (
        ("RequestAddress", {"PoolID": pool["PoolID"]}),
        ("RequestPool", {"AddressSpace": "LocalDefault", "Pool": "203.0.113.0/24"}),
        ("ReleasePool", {"PoolID": pool["PoolID"]}),
    ):
        status, answer = server.client.call(method, body)
        assert status == 403, answer
        assert answer["Err"].endswith(f"ipledger hosts admit {HOST}"), answer
    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            assert len(c.execute(select(leases)).all()) == 1
    finally:
        engine.dispose()
    # restarted while retired: it serves, and answers every call with the fix
    server.stop()
    server.start()
    assert "is retired from the ledger" in server.log_tail(200)
    status, answer = server.client.call("RequestAddress", {"PoolID": pool["PoolID"]})
    assert (status, answer["Err"][-len(HOST) :]) == (403, HOST)

    assert "admitted host" in hosts_cli(db_url, "admit", HOST)
    status, again = server.client.call("RequestAddress", {"PoolID": pool["PoolID"]})
    assert status == 200, again
    assert again["Address"] != lease["Address"]


@pytest.mark.full
def test_the_heartbeat_advances_and_notices_a_retiring_while_serve_runs(server, db_url):
    first = host_row(db_url).last_seen
    hosts_cli(db_url, "retire", HOST, "--apply", "--force")
    wait_until(
        lambda: "is retired from the ledger" in server.log_tail(200),
        2 * HEARTBEAT_S,
        "the heartbeat to log that its host is retired",
        0.2,
    )
    assert f"calls are refused until an operator runs: ipledger hosts admit {HOST}" in (
        server.log_tail(200)
    )
    assert host_row(db_url).last_seen > first
    assert host_row(db_url).state == "retired"  # a heartbeat never admits its host
