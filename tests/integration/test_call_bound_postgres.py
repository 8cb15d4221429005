"""A PostgreSQL ledger partitioned away: every call is still answered within the bound.

PostgreSQL runs in a network namespace of the test's own and ipledger reaches it over a veth
pair, as a remote ledger. Faults: every packet to PostgreSQL dropped (iptables in that
namespace) before a call and in the middle of one, and the link taken down. Each call is answered
within IPLEDGER_CALL_TIMEOUT; once the fault is gone service resumes without a restart; no
acknowledged lease is lost or doubled, and a call that got 503 left nothing behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from driver.adapters.plugin_client import PluginClient
from tests.e2e.harness import PluginProcess, bounded_plugin, timed
from tests.waiting import wait_until

BOUND = 3.0
SLACK = 0.75
POOL = {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24"}
POOL_ID = "LocalDefault/198.51.100.0/24"


@pytest.fixture
def remote(networked_postgres):
    return networked_postgres


@pytest.fixture
def ledger(remote) -> Iterator[tuple[str, str]]:
    """(the URL over the network for ipledger, the URL over the unix socket for the test)."""
    local = remote.new_database()
    yield remote.tcp_url(str(make_url(local).database)), local
    remote.heal_quietly()
    remote.drop_database(local)


@pytest.fixture
def server(ledger, tmp_path) -> Iterator[PluginProcess]:
    with bounded_plugin("ipl-pgbound", ledger[0], tmp_path, BOUND) as plugin:
        yield plugin


def leased(local_url: str) -> list[str]:
    engine = create_engine(local_url)
    try:
        with engine.connect() as c:
            rows = c.execute(text("SELECT address FROM leases ORDER BY address")).scalars()
            return [".".join(str(b) for b in bytes(row)[-4:]) for row in rows]
    finally:
        engine.dispose()


def call(client: PluginClient) -> tuple[float, int, dict]:
    return timed(client, "RequestAddress", {"PoolID": POOL_ID})


def others_in_a_transaction(local_url: str, waiting_on_a_lock: bool = False) -> int:
    """How many sessions of the ledger's database besides this one are inside a transaction
    (only those waiting for a lock, with ``waiting_on_a_lock``)."""
    engine = create_engine(local_url)
    try:
        with engine.connect() as c:
            return int(
                c.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                        " AND (wait_event_type = 'Lock' OR NOT :locked)"
                    ),
                    {"locked": waiting_on_a_lock},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def resumes(client: PluginClient, within: float = 30) -> str:
    def served() -> str | None:
        _, status, answer = call(client)
        return str(answer["Address"]).split("/")[0] if status == 200 else None

    return wait_until(served, within, "service to resume once the network was back", 0.5)


def test_calls_during_a_partition_are_answered_503_within_the_bound_and_service_resumes(
    remote, ledger, server
):
    client = PluginClient(server.socket, timeout=60)
    assert client.call("RequestPool", POOL)[0] == 200
    acked = [call(client)[2]["Address"].split("/")[0] for _ in range(2)]
    remote.drop_packets()
    try:
        for _ in range(3):
            elapsed, status, answer = call(client)
            assert status == 503, answer
            assert answer["Err"].startswith("database unavailable: ")
            assert elapsed < BOUND + SLACK
            print(f"packets dropped before the call: 503 after {elapsed:.2f} s")
    finally:
        remote.heal()
    acked.append(resumes(client))
    assert leased(ledger[1]) == sorted(acked), "nothing lost, nothing doubled, no 503 left a lease"


def test_a_call_waiting_on_a_row_lock_when_the_network_goes_is_answered_within_the_bound(
    remote, ledger, server
):
    client = PluginClient(server.socket, timeout=60)
    assert client.call("RequestPool", POOL)[0] == 200
    acked = [call(client)[2]["Address"].split("/")[0]]
    holder = create_engine(ledger[1]).connect()
    holder.execute(text("SELECT id FROM subnets FOR UPDATE"))  # the allocation now waits
    outcome: list[tuple[float, int, dict]] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(call(PluginClient(server.socket, timeout=60)))
    )
    try:
        waiting.start()
        wait_until(
            lambda: others_in_a_transaction(ledger[1], waiting_on_a_lock=True),
            30,
            "ipledger's allocation to wait on the row lock",
        )
        remote.drop_packets()
        waiting.join(BOUND * 4)
        assert outcome, "the call was not answered"
        elapsed, status, answer = outcome[0]
        assert status == 503 and answer["Err"].startswith("database unavailable: "), answer
        assert elapsed < BOUND + SLACK
        print(f"packets dropped while the call waits on a row lock: 503 after {elapsed:.2f} s")
        holder.rollback()
    finally:
        holder.close()
        holder.engine.dispose()
        remote.heal()
    acked.append(resumes(client))
    # the server drops the abandoned transaction (idle_in_transaction_session_timeout): then
    # the ledger holds exactly what was acknowledged
    wait_until(
        lambda: others_in_a_transaction(ledger[1]) == 0,
        10 * BOUND,
        "PostgreSQL to drop the abandoned transaction",
    )
    assert leased(ledger[1]) == sorted(acked)


def test_a_link_taken_down_is_answered_within_the_bound_and_service_resumes(remote, ledger, server):
    client = PluginClient(server.socket, timeout=60)
    assert client.call("RequestPool", POOL)[0] == 200
    acked = [call(client)[2]["Address"].split("/")[0]]
    remote.link(up=False)
    try:
        for _ in range(2):
            elapsed, status, answer = call(client)
            assert status == 503 and answer["Err"].startswith("database unavailable: "), answer
            assert elapsed < BOUND + SLACK
            print(f"link down: 503 after {elapsed:.2f} s")
    finally:
        remote.link(up=True)
    acked.append(resumes(client))
    assert leased(ledger[1]) == sorted(acked)
