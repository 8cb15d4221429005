"""Docker leases made without their container's name (engines before 29) are named from Docker's
view once the endpoint shows, then queued for DNS like any other; on SQLite and PostgreSQL.
Docker's view is given here as the adapter returns it (tests/e2e/test_docker_endpoints.py reads a
real one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import netaddr
import pytest

from driver.domain.dns import DnsAction, DnsChange
from driver.domain.reconcile import Endpoint
from driver.storage.engine import make_engine
from driver.storage.store import Store
from driver.usecases.docker_names import DockerNames
from driver.usecases.ipam import Ipam

ZONE = {"ipledger.dns_zone": "apps.example.test"}
MAC = "02:42:c0:00:02:07"
WITH_MAC = {"com.docker.network.endpoint.macaddress": MAC}
POOL_CIDR = "192.0.2.0/24"
ZONE_NAME = "apps.example.test"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Docker:
    """What Docker shows: PoolID -> address -> endpoint; how often it was asked."""

    def __init__(self) -> None:
        self.shown: dict[str, dict[str, Endpoint]] = {}
        self.asked = 0

    def __call__(self) -> dict[str, dict[str, Endpoint]]:
        self.asked += 1
        return self.shown

    def show(self, pool: str, address: str, container: str, mac: str | None = MAC) -> None:
        self.shown.setdefault(pool, {})[address] = Endpoint(container, address, mac)


@pytest.fixture
def docker() -> Docker:
    return Docker()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def names(ipam, docker, clock) -> DockerNames:
    return DockerNames(ipam.store, ipam.host_id, ipam.plans, docker, timedelta(seconds=30), clock)


def queued(ipam) -> list[DnsChange]:
    with ipam.store.reading() as ledger:
        return ledger.queued_dns()


def dns_name(ipam, address: str) -> str | None:
    """The DNS name the lease of ``address`` (IPv4) is published under."""
    from sqlalchemy import select

    from driver.storage.models import leases
    from driver.storage.rows import pack

    value = int(netaddr.IPAddress(address))
    with ipam.store.reading() as ledger:
        return ledger.connection.execute(
            select(leases.c.dns_name).where(leases.c.address == pack(value))
        ).scalar_one()


def zoned_pool(ipam, options=None) -> str:
    return ipam.request_pool("LocalDefault", POOL_CIDR, "", options or ZONE, False).pool_id


def add(address: str, name: str, reverse: bool = False) -> DnsChange:
    return DnsChange(DnsAction.ADD, f"{name}.{ZONE_NAME}", ZONE_NAME, address, reverse)


def test_a_lease_made_without_a_name_is_named_after_the_container_docker_shows_and_queued(
    ipam, names, docker
):
    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    # RequestAddress is answered before the endpoint exists: nothing to name yet
    assert names.run_once().waiting == 1
    assert queued(ipam) == []
    docker.show(pool, address, "web_1")
    done = names.run_once()
    assert done.named == [(address, "web-1.apps.example.test")]
    assert queued(ipam) == [add(address, "web-1")]
    assert dns_name(ipam, address) == "web-1.apps.example.test"
    # named once: a later pass finds nothing waiting and does not ask Docker
    asked = docker.asked
    assert names.run_once().waiting == 0
    assert docker.asked == asked


def test_the_release_of_a_lease_named_later_removes_the_name_it_was_published_under(
    ipam, names, docker
):
    pool = zoned_pool(ipam, {**ZONE, "ipledger.dns_reverse": "true"})
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    docker.show(pool, address, "my.app")
    names.run_once()
    ipam.release_address(pool, address)
    assert queued(ipam) == [  # the A record and the PTR, each a change
        *add(address, "my-app", reverse=True).parts(),
        *DnsChange(DnsAction.REMOVE, f"my-app.{ZONE_NAME}", ZONE_NAME, address, True).parts(),
    ]


def test_a_lease_released_before_docker_showed_it_is_never_named(ipam, names, docker):
    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    names.run_once()
    ipam.release_address(pool, address)
    # Docker still shows the old endpoint (its view was read before the release)
    docker.show(pool, address, "web1")
    names.run_once()
    assert queued(ipam) == []


def test_an_address_released_and_leased_again_to_another_container_takes_the_new_name(
    ipam, names, docker, clock
):
    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    names.run_once()
    ipam.release_address(pool, address)
    other_mac = "02:42:c0:00:02:08"
    again = ipam.request_address(
        pool, "", {"com.docker.network.endpoint.macaddress": other_mac}
    ).split("/")[0]
    assert again == address
    # the first container's endpoint, as a stale view shows it, is not the new lease's
    docker.show(pool, address, "old", MAC)
    clock.now += timedelta(seconds=1)
    assert names.run_once().named == []
    docker.show(pool, address, "new", other_mac)
    assert names.run_once().named == [(address, f"new.{ZONE_NAME}")]
    assert queued(ipam) == [add(address, "new")]


def test_a_container_that_never_shows_is_given_up_after_the_patience_with_a_warning(
    ipam, names, docker, clock, caplog
):
    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    names.run_once()
    clock.now += timedelta(seconds=31)
    done = names.run_once()
    assert done.given_up == [address]
    assert f"lease {address} of pool {pool} is not published in DNS" in caplog.text
    asked = docker.asked
    clock.now += timedelta(seconds=1)
    assert names.run_once().waiting == 0
    assert docker.asked == asked, "a lease given up is not asked for again"
    assert queued(ipam) == []


def test_gateways_named_leases_and_pools_without_a_zone_wait_for_nothing(ipam, names, docker):
    plain = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(plain, "", WITH_MAC)
    pool = zoned_pool(ipam)
    ipam.request_address(pool, "", {"RequestAddressType": "com.docker.network.gateway"})
    ipam.request_address(pool, "192.0.2.200", {})  # an auxiliary address
    # Docker 29 sends the name: named in the lease's own transaction, nothing to wait for
    ipam.request_address(pool, "", {**WITH_MAC, "com.docker.network.endpoint.name": "web29"})
    assert names.run_once().waiting == 0
    assert docker.asked == 0


def test_only_the_host_whose_docker_made_the_lease_names_it(ipam, names, docker, settings):
    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    docker.show(pool, address, "web1")
    elsewhere = DockerNames(ipam.store, "host-b", ipam.plans, docker, timedelta(seconds=30))
    assert elsewhere.run_once().waiting == 0
    assert queued(ipam) == []
    assert names.run_once().named == [(address, f"web1.{ZONE_NAME}")]


def test_leases_made_while_no_publisher_ran_are_named_by_the_next_one(
    ipam, docker, clock, settings
):
    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    docker.show(pool, address, "web1")
    # a publisher started long after the lease was made still takes it in on its first pass
    clock.now += timedelta(hours=1)
    later = DockerNames(ipam.store, ipam.host_id, ipam.plans, docker, timedelta(seconds=30), clock)
    assert later.run_once().named == [(address, f"web1.{ZONE_NAME}")]


def test_a_docker_that_cannot_be_read_keeps_the_leases_waiting_for_the_next_pass(
    ipam, docker, clock
):
    from driver.adapters.docker_state import DockerUnavailable

    down = True

    def look() -> dict[str, dict[str, Endpoint]]:
        if down:
            raise DockerUnavailable("cannot reach Docker at unix:///nowhere")
        return docker()

    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    docker.show(pool, address, "web1")
    names = DockerNames(ipam.store, ipam.host_id, ipam.plans, look, timedelta(seconds=30), clock)
    with pytest.raises(DockerUnavailable):
        names.run_once()
    down = False
    assert names.run_once().named == [(address, f"web1.{ZONE_NAME}")]


def test_two_ledgers_handles_on_one_database_name_a_lease_once(ipam, docker, db_url, clock):
    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    docker.show(pool, address, "web1")
    engine = make_engine(db_url)
    try:
        other = Ipam(Store(engine), ipam.default_pools, ipam.host_id)
        first = DockerNames(
            ipam.store, ipam.host_id, ipam.plans, docker, timedelta(seconds=30), clock
        )
        second = DockerNames(
            other.store, ipam.host_id, ipam.plans, docker, timedelta(seconds=30), clock
        )
        first._take_in(clock())
        second._take_in(clock())
        assert len(first.run_once().named) + len(second.run_once().named) == 1
    finally:
        engine.dispose()
    assert queued(ipam) == [add(address, "web1")]


def test_the_publishers_namer_warns_once_of_a_docker_it_cannot_read_and_names_once_it_can(
    ipam, settings, docker, caplog, monkeypatch
):
    from driver.adapters.docker_state import DockerUnavailable
    from driver.entrypoints import docker_namer
    from driver.entrypoints.docker_namer import DockerNamer

    down = True

    def look() -> dict[str, dict[str, Endpoint]]:
        if down:
            raise DockerUnavailable("cannot reach Docker at unix:///nowhere")
        return docker()

    monkeypatch.setattr(docker_namer, "INTERVAL_S", 0.0)
    monkeypatch.setattr(docker_namer, "AFTER_FAILURE_S", 0.0)
    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    docker.show(pool, address, "web1")
    namer = DockerNamer(ipam.store, settings, ipam.plans, look)
    assert not namer.tick()
    assert not namer.tick()
    assert caplog.text.count("names of Docker's containers cannot be read now") == 1
    down = False
    assert namer.tick()
    assert queued(ipam) == [add(address, "web1")]


def test_the_publishers_namer_asks_at_most_once_per_interval(ipam, settings, docker):
    from driver.entrypoints.docker_namer import DockerNamer

    pool = zoned_pool(ipam)
    ipam.request_address(pool, "", WITH_MAC)
    namer = DockerNamer(ipam.store, settings, ipam.plans, docker)
    namer.tick()
    namer.tick()
    assert docker.asked == 1


def test_the_publishers_namer_waits_longer_after_docker_failed(ipam, settings, monkeypatch):
    from driver.adapters.docker_state import DockerUnavailable
    from driver.entrypoints import docker_namer
    from driver.entrypoints.docker_namer import DockerNamer

    asked = []

    def down() -> dict[str, dict[str, Endpoint]]:
        asked.append(1)
        raise DockerUnavailable("cannot read Docker's networks: Read timed out")

    monkeypatch.setattr(docker_namer, "INTERVAL_S", 0.0)
    ipam.request_address(zoned_pool(ipam), "", WITH_MAC)
    namer = DockerNamer(ipam.store, settings, ipam.plans, down)
    namer.tick()
    namer.tick()
    assert len(asked) == 1


def test_leases_are_given_up_after_the_patience_even_while_docker_cannot_be_read(
    ipam, clock, caplog
):
    from driver.adapters.docker_state import DockerUnavailable

    def down() -> dict[str, dict[str, Endpoint]]:
        raise DockerUnavailable("cannot reach Docker at unix:///nowhere")

    pool = zoned_pool(ipam)
    address = ipam.request_address(pool, "", WITH_MAC).split("/")[0]
    names = DockerNames(ipam.store, ipam.host_id, ipam.plans, down, timedelta(seconds=30), clock)
    with pytest.raises(DockerUnavailable):
        names.run_once()
    clock.now += timedelta(seconds=31)
    with pytest.raises(DockerUnavailable):
        names.run_once()
    assert f"lease {address} of pool {pool} is not published in DNS" in caplog.text
    assert names.run_once().waiting == 0, "nothing waits: Docker is not asked"
