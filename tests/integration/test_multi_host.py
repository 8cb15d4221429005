"""Several hosts, one PostgreSQL ledger: three real `ipledger serve` instances on one shared pool."""

from __future__ import annotations

import threading
import time

import netaddr
import pytest
from sqlalchemy import create_engine, select

from driver.adapters.plugin_client import PluginClient
from driver.storage.models import leases
from driver.storage.rows import unpack
from tests.e2e.harness import PluginProcess
from tests.waiting import wait_until

SHARED_POOL = {
    "AddressSpace": "LocalDefault",
    "Pool": "2001:db8:1::/64",
    "Options": {"ipledger.shared": "lan"},
}
POOL_ID = "shared/lan/LocalDefault/2001:db8:1::/64"
GATEWAY = {"RequestAddressType": "com.docker.network.gateway"}


@pytest.fixture
def pg_url(postgres):
    url = postgres.new_database(template=None)
    yield url
    postgres.drop_database(url)


@pytest.fixture
def hosts(tmp_path, pg_url):
    instances = [
        PluginProcess(
            f"ipl-host{i}",
            pg_url,
            tmp_path,
            socket=str(tmp_path / f"host{i}.sock"),
            extra_env={"IPLEDGER_HOST_ID": f"host-{i}"},
        )
        for i in range(3)
    ]
    threads = [threading.Thread(target=instance.start) for instance in instances]
    for t in threads:  # all three migrate the new database at once
        t.start()
    for t in threads:
        t.join()
    yield instances
    for instance in instances:
        instance.stop()


def ledger_addresses(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [
                str(netaddr.IPAddress(unpack(a), 6))
                for a in c.execute(select(leases.c.address)).scalars()
            ]
    finally:
        engine.dispose()


class Load:
    """Clients on every host asking for and giving back addresses until stopped."""

    def __init__(self, hosts, clients_per_host: int = 3, timeout: float = 10) -> None:
        self.timeout = timeout
        self.held: dict[str, tuple[int, str]] = {}  # address -> (host, MAC), acknowledged
        self.duplicates: list[str] = []
        self.uncertain = 0
        self.errors: list[str] = []
        self.durations: list[float] = []  # of every call answered, in seconds
        self.granted = [0] * len(hosts)  # acknowledged allocations, per host
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(h, host.socket, n))
            for h, host in enumerate(hosts)
            for n in range(clients_per_host)
        ]

    def run(self, h: int, socket: str, n: int) -> None:
        client = PluginClient(socket, timeout=self.timeout)
        mine: list[str] = []
        i = 0
        while not self.stop.is_set():
            i += 1
            mac = f"02:00:{h:02x}:{n:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"
            try:
                if i % 4 == 0 and mine:
                    address = mine.pop(0)
                    # no longer counted as held before the release is sent: the moment it is
                    # done, another client may get the address
                    with self.lock:
                        del self.held[address]
                    status, body = self.timed(
                        client, "ReleaseAddress", {"PoolID": POOL_ID, "Address": address}
                    )
                    if status != 200:
                        with self.lock:
                            self.uncertain += 1
                            self.errors.append(body.get("Err", ""))
                    continue
                status, body = self.timed(
                    client,
                    "RequestAddress",
                    {"PoolID": POOL_ID, "Options": {"com.docker.network.endpoint.macaddress": mac}},
                )
            except OSError:
                with self.lock:
                    self.uncertain += 1
                client = PluginClient(socket, timeout=self.timeout)
                continue
            with self.lock:
                if status != 200:
                    self.uncertain += 1
                    self.errors.append(body.get("Err", ""))
                    continue
                address = body["Address"].split("/")[0]
                if address in self.held:
                    self.duplicates.append(address)
                self.held[address] = (h, mac)
                self.granted[h] += 1
                mine.append(address)

    def timed(self, client: PluginClient, call: str, body: dict) -> tuple[int, dict]:
        started = time.monotonic()
        answer = client.call(call, body)
        with self.lock:
            self.durations.append(time.monotonic() - started)
        return answer

    def summary(self) -> str:
        """The calls made, how long the slowest and the median waited, and the failures."""
        ordered = sorted(self.durations)
        if not ordered:
            return "no call answered"
        return (
            f"{len(ordered)} calls, waited max {ordered[-1]:.2f} s, "
            f"p50 {ordered[len(ordered) // 2] * 1000:.1f} ms, "
            f"p99 {ordered[int(len(ordered) * 0.99)]:.2f} s, {len(self.errors)} failed "
            f"({self.uncertain} unanswered or failed), {len(self.duplicates)} addresses twice"
        )

    def granted_by_each(self, count: int, what: str) -> None:
        """Wait until every host has acknowledged ``count`` more allocations from now."""
        with self.lock:
            target = [g + count for g in self.granted]
        wait_until(
            lambda: all(g >= t for g, t in zip(self.granted, target, strict=True)),
            60,
            f"every host to grant {count} more addresses {what}",
        )

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def attach_all(hosts) -> str:
    gateways = set()
    for host in hosts:
        assert host.client.call("RequestPool", SHARED_POOL) == (
            200,
            {"PoolID": POOL_ID, "Pool": "2001:db8:1::/64", "Data": {}},
        )
        gateways.add(
            host.client.call("RequestAddress", {"PoolID": POOL_ID, "Options": GATEWAY})[1][
                "Address"
            ]
        )
    assert len(gateways) == 1, "every host's network has the shared segment's one gateway"
    return gateways.pop()


def test_three_hosts_on_one_shared_pool_never_hand_out_an_address_twice(hosts, pg_url):
    gateway = attach_all(hosts)
    with Load(hosts) as load:
        load.granted_by_each(200, "under load")
    assert load.duplicates == []
    assert load.errors == []
    held = set(load.held) | {gateway.split("/")[0]}
    in_ledger = ledger_addresses(pg_url)
    assert len(in_ledger) == len(set(in_ledger))
    assert set(in_ledger) == held
    assert len(load.held) > 300


def test_two_postgresql_restarts_under_load_fail_no_call_and_lose_no_acknowledged_lease(
    hosts, pg_url, postgres, capsys
):
    attach_all(hosts)
    with Load(hosts) as load:
        for _ in range(2):
            load.granted_by_each(50, "before a restart")
            postgres.restart()  # a second or two: shorter than the call bound (5 s)
        load.granted_by_each(50, "after the restarts")
    with capsys.disabled():
        print(f"\nride through two PostgreSQL restarts, 3 hosts x 3 clients: {load.summary()}")
    assert load.duplicates == []
    assert load.errors == []
    assert load.uncertain == 0
    in_ledger = ledger_addresses(pg_url)
    assert len(in_ledger) == len(set(in_ledger))
    # every acknowledged lease is there; an extra one would be a leak gc reclaims
    assert set(load.held) <= set(in_ledger)
    assert max(load.durations) < 5.5, "every call answered within its bound"


def test_while_postgresql_stays_down_calls_are_refused_within_their_bound_with_a_clear_error(
    hosts, postgres
):
    attach_all(hosts)
    postgres.stop()
    try:
        started = time.monotonic()
        status, body = hosts[0].client.call("RequestAddress", {"PoolID": POOL_ID})
        waited = time.monotonic() - started
        assert status == 503
        assert body["Err"].startswith("database unavailable: ")
        assert 4 < waited < 6, "it waited for the database for its bound (5 s), not longer"
    finally:
        postgres.start()
    assert hosts[0].client.call("RequestAddress", {"PoolID": POOL_ID})[0] == 200


def test_a_shared_pool_lives_until_the_last_host_releases_it(hosts, pg_url):
    attach_all(hosts)
    leased = hosts[1].client.call("RequestAddress", {"PoolID": POOL_ID})[1]["Address"]
    assert hosts[0].client.call("ReleasePool", {"PoolID": POOL_ID}) == (200, {})
    assert hosts[1].client.call("ReleasePool", {"PoolID": POOL_ID}) == (200, {})
    # host 2 still uses it: its gateway stays, and host 1's leftovers went back
    assert hosts[2].client.call("RequestAddress", {"PoolID": POOL_ID})[1]["Address"] == leased
    assert hosts[2].client.call("ReleasePool", {"PoolID": POOL_ID}) == (200, {})
    assert ledger_addresses(pg_url) == []
    assert hosts[0].client.call("RequestAddress", {"PoolID": POOL_ID})[0] == 404


def test_a_second_network_on_one_host_cannot_take_the_same_shared_pool(hosts):
    attach_all(hosts)
    status, body = hosts[0].client.call("RequestPool", SHARED_POOL)
    assert status == 409
    assert body["Err"] == (
        "Pool overlaps with other one on this address space: 2001:db8:1::/64 overlaps "
        "2001:db8:1::/64 (shared/lan/LocalDefault/2001:db8:1::/64, already used by a network "
        "on host host-0) in address space LocalDefault"
    )


def test_a_reservation_in_a_shared_pool_holds_for_every_host(hosts, pg_url):
    from click.testing import CliRunner

    from driver.entrypoints.cli import main

    attach_all(hosts)
    result = CliRunner().invoke(
        main,
        [
            "reserve",
            "--db",
            pg_url,
            "--shared",
            "2001:db8:1::2-2001:db8:1::9",
            "--label",
            "routers",
        ],
        env={"IPLEDGER_HOST_ID": "host-0"},
    )
    assert result.exit_code == 0, result.output
    got = {host.client.call("RequestAddress", {"PoolID": POOL_ID})[1]["Address"] for host in hosts}
    assert got == {"2001:db8:1::a/64", "2001:db8:1::b/64", "2001:db8:1::c/64"}


def test_without_the_shared_option_each_host_keeps_its_own_pools(hosts):
    pool = {"AddressSpace": "LocalDefault", "Pool": "203.0.113.0/24"}
    answers = [host.client.call("RequestPool", pool) for host in hosts]
    assert {status for status, _ in answers} == {200}
    first = [
        host.client.call("RequestAddress", {"PoolID": "LocalDefault/203.0.113.0/24"})[1]["Address"]
        for host in hosts
    ]
    assert first == ["203.0.113.1/24"] * 3


def test_ipledger_pools_on_a_shared_ledger_names_each_pools_owner(hosts, pg_url):
    from click.testing import CliRunner

    from driver.entrypoints.cli import main

    attach_all(hosts)
    for host in hosts[:2]:
        host.client.call("RequestPool", {"AddressSpace": "LocalDefault", "Pool": "203.0.113.0/24"})
    out = (
        CliRunner()
        .invoke(main, ["pools", "--db", pg_url], env={"IPLEDGER_HOST_ID": "host-0"})
        .output
    )
    rows = sorted(line.split()[:2] for line in out.splitlines()[1:])
    assert rows == [
        ["LocalDefault/203.0.113.0/24", "host-0"],
        ["LocalDefault/203.0.113.0/24", "host-1"],
        ["shared/lan/LocalDefault/2001:db8:1::/64", "shared"],
    ]
