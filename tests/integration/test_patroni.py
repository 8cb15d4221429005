"""Three `ipledger serve` instances on a Patroni cluster (etcd, two members, synchronous
replication) under load: a planned switchover and a lost leader node, measured."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.harness import PluginProcess
from tests.integration.test_multi_host import (
    POOL_ID,
    Load,
    attach_all,
    ledger_addresses,
)
from tests.patroni import MEMBERS, PatroniCluster
from tests.pg import binaries

pytestmark = pytest.mark.full


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    """One cluster for the module, healthy again before each test (see ``database``)."""
    missing = [tool for tool in ("patroni", "patronictl", "etcd") if shutil.which(tool) is None]
    if missing or binaries() is None:
        pytest.fail(
            f"{missing or 'postgresql'} missing: tests/run.sh installs patroni, etcd-server"
        )
    patroni = PatroniCluster()
    try:
        patroni.start()
        yield patroni
    finally:
        patroni.destroy()


@pytest.fixture
def database(cluster: PatroniCluster) -> str:
    """A new database on the cluster, with both members back and in sync."""
    for member in MEMBERS:
        if member.name not in cluster.patroni:
            cluster.start_member(member)  # a node killed by the last test rejoins
    cluster.wait_healthy(90)
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()
    return cluster.url(name)


def start_hosts(tmp_path, url: str, call_timeout: float) -> list[PluginProcess]:
    instances = [
        PluginProcess(
            f"iplha-host{i}",
            url,
            tmp_path,
            socket=str(tmp_path / f"host{i}.sock"),
            extra_env={
                "IPLEDGER_HOST_ID": f"host-{i}",
                "IPLEDGER_CALL_TIMEOUT": f"{call_timeout:g}",
            },
        )
        for i in range(3)
    ]
    threads = [threading.Thread(target=instance.start) for instance in instances]
    for t in threads:  # all three migrate the new database at once
        t.start()
    for t in threads:
        t.join()
    return instances


@pytest.fixture
def hosts(request, tmp_path, database) -> Iterator[list[PluginProcess]]:
    instances = start_hosts(tmp_path, database, getattr(request, "param", 5))
    try:
        yield instances
    finally:
        for instance in instances:
            instance.stop()


def report(capsys, what: str, load: Load, leaks: int) -> None:
    with capsys.disabled():
        print(
            f"\n{what}, 3 hosts x 3 clients: {load.summary()}; "
            f"{leaks} leases no client was answered (leaks gc reclaims)"
        )


def check_ledger(load: Load, url: str) -> int:
    """No address twice, and every acknowledged lease in the ledger of the leader now; the
    number of leases no client was answered (the gateway aside)."""
    assert load.duplicates == []
    in_ledger = ledger_addresses(url)
    assert len(in_ledger) == len(set(in_ledger))
    assert set(load.held) <= set(in_ledger)
    return len(in_ledger) - len(load.held) - 1


def serves_again(hosts: list[PluginProcess]) -> None:
    for host in hosts:
        status, body = host.client.call("RequestAddress", {"PoolID": POOL_ID})
        assert status == 200, body


def test_a_planned_switchover_under_load_fails_no_call_and_loses_no_lease(
    cluster, hosts, database, capsys
):
    attach_all(hosts)
    leader = cluster.leader()
    candidate = next(m for m in MEMBERS if m != leader)
    with Load(hosts) as load:
        time.sleep(2)
        cluster.switchover(candidate)
        cluster.wait_healthy(60)
        time.sleep(2)
    leaks = check_ledger(load, database)
    report(capsys, f"planned switchover {leader.name} -> {candidate.name}", load, leaks)
    assert cluster.leader() == candidate
    assert load.errors == []
    assert load.uncertain == 0
    assert max(load.durations) < 5.5, "every call answered within its bound (5 s)"


def lose_the_leader(cluster: PatroniCluster, hosts, call_timeout: float) -> Load:
    """Kill -9 the leader's Patroni and postmaster under load; stop the load once the other
    member leads and a few calls went through it."""
    leader = cluster.leader()
    assert leader is not None
    with Load(hosts, timeout=call_timeout + 5) as load:
        time.sleep(2)
        cluster.kill_member(leader)
        deadline = time.monotonic() + 60
        while cluster.leader() in (None, leader):
            assert time.monotonic() < deadline, "no member was promoted"
            time.sleep(0.2)
        time.sleep(3)
    return load


def test_a_lost_leader_node_gets_every_call_answered_within_its_bound_and_service_resumes(
    cluster, hosts, database, capsys
):
    attach_all(hosts)
    load = lose_the_leader(cluster, hosts, 5)
    leaks = check_ledger(load, database)
    report(capsys, "leader node lost (kill -9), call bound 5 s", load, leaks)
    assert max(load.durations) < 5.5, "every call answered within its bound (5 s)"
    assert all(e.startswith("database unavailable: ") for e in load.errors), load.errors[:3]
    assert load.uncertain == len(load.errors), "every call was answered"
    serves_again(hosts)  # without restarting ipledger


@pytest.mark.parametrize("hosts", [20], indirect=True)
def test_with_a_bound_above_the_failover_time_a_lost_leader_node_fails_no_call(
    cluster, hosts, database, capsys
):
    attach_all(hosts)
    load = lose_the_leader(cluster, hosts, 20)
    leaks = check_ledger(load, database)
    report(capsys, "leader node lost (kill -9), call bound 20 s", load, leaks)
    assert load.errors == []
    assert load.uncertain == 0
    assert max(load.durations) < 20.5, "every call answered within its bound (20 s)"
    serves_again(hosts)
