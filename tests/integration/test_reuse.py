"""Reuse policies, stable addresses and reservations, through the use cases on a real SQLite ledger."""

from __future__ import annotations

import pytest

from driver.domain.errors import AddressInUse, InvalidRequest, NoAvailableAddress
from driver.usecases.admin import Admin
from tests.integration.test_ledger import snapshot

MAC = "com.docker.network.endpoint.macaddress"
NAME = "com.docker.network.endpoint.name"


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("driver.storage.ledger.Ledger.clock", lambda _ledger: clock())
    return clock


def new_pool(ipam, cidr="198.51.100.0/24", subpool="", **options) -> str:
    return ipam.request_pool(
        "LocalDefault", cidr, subpool, {f"ipledger.{k}": v for k, v in options.items()}, False
    ).pool_id


def take(ipam, pool_id, address="", **options) -> str:
    return ipam.request_address(pool_id, address, options).split("/")[0]


def test_by_default_a_released_address_is_the_next_one_handed_out_as_docker_does(ipam):
    pool = new_pool(ipam)
    first = take(ipam, pool)
    take(ipam, pool)
    ipam.release_address(pool, first)
    assert take(ipam, pool) == first


def test_serial_reuse_hands_addresses_out_round_robin(ipam):
    pool = new_pool(ipam, reuse="serial")
    a, b = take(ipam, pool), take(ipam, pool)
    ipam.release_address(pool, a)
    assert take(ipam, pool) == "198.51.100.3"
    assert (a, b) == ("198.51.100.1", "198.51.100.2")


def test_a_quarantined_address_is_not_reused_until_its_time_is_up(ipam, clock):
    pool = new_pool(ipam, quarantine="60s")
    first = take(ipam, pool)
    ipam.release_address(pool, first)
    assert take(ipam, pool) == "198.51.100.2"
    clock.now += 59
    assert take(ipam, pool) == "198.51.100.3"
    clock.now += 2
    assert take(ipam, pool) == first


def test_a_quarantined_address_is_handed_out_when_the_pool_would_otherwise_be_full(ipam, clock):
    pool = new_pool(ipam, "198.51.100.0/29", quarantine="1h")
    got = [take(ipam, pool) for _ in range(6)]
    ipam.release_address(pool, got[3])
    clock.now += 1
    ipam.release_address(pool, got[1])
    assert take(ipam, pool) == got[3], "the one quarantined first is due first"
    assert take(ipam, pool) == got[1]
    with pytest.raises(NoAvailableAddress):
        take(ipam, pool)


def test_a_static_request_may_take_a_quarantined_address(ipam, clock):
    pool = new_pool(ipam, quarantine="1h")
    first = take(ipam, pool)
    ipam.release_address(pool, first)
    assert take(ipam, pool, first) == first


def test_a_container_that_comes_back_with_its_mac_within_the_hold_time_gets_its_address(
    ipam, clock
):
    pool = new_pool(ipam, hold="10m")
    mine = take(ipam, pool, **{MAC: "02:00:00:00:00:aa"})
    other = take(ipam, pool, **{MAC: "02:00:00:00:00:bb"})
    ipam.release_address(pool, mine)
    assert take(ipam, pool, **{MAC: "02:00:00:00:00:cc"}) not in (mine, other)
    clock.now += 9 * 60
    assert take(ipam, pool, **{MAC: "02:00:00:00:00:aa"}) == mine


def test_an_endpoint_name_keeps_the_address_like_a_mac_does(ipam, clock):
    pool = new_pool(ipam, hold="10m")
    mine = take(ipam, pool, **{MAC: "02:00:00:00:00:01", NAME: "db"})
    ipam.release_address(pool, mine)
    take(ipam, pool, **{MAC: "02:00:00:00:00:02", NAME: "web"})
    # recreated: Docker generated a new MAC, but the name is the same
    assert take(ipam, pool, **{MAC: "02:00:00:00:00:03", NAME: "db"}) == mine


def test_after_the_hold_time_the_address_is_free_for_anyone(ipam, clock):
    pool = new_pool(ipam, hold="10m")
    mine = take(ipam, pool, **{MAC: "02:00:00:00:00:aa"})
    ipam.release_address(pool, mine)
    clock.now += 601
    assert take(ipam, pool, **{MAC: "02:00:00:00:00:bb"}) == mine


def test_hold_does_not_keep_back_addresses_of_requests_without_mac_or_name(ipam, clock):
    pool = new_pool(ipam, hold="10m")
    first = take(ipam, pool)
    ipam.release_address(pool, first)
    assert take(ipam, pool) == first


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"ipledger.reuse": "random"},
            "invalid ipledger.reuse 'random': expected lowest or serial",
        ),
        (
            {"ipledger.quarantine": "soon"},
            "invalid ipledger.quarantine 'soon': expected a duration such as 60s, 15m, 2h or 7d",
        ),
        ({"ipledger.hold": "-5m"}, "invalid ipledger.hold '-5m'"),
        (
            {"ipledger.holdd": "5m"},
            "unknown option 'ipledger.holdd': ipledger's options are ipledger.reuse, ipledger.quarantine, ipledger.hold",
        ),
    ],
)
def test_a_bad_reuse_option_is_refused_by_name_and_creates_nothing(ipam, engine, options, message):
    before = snapshot(engine)
    with pytest.raises(InvalidRequest, match=message.replace(".", r"\.").replace("(", r"\(")):
        ipam.request_pool("LocalDefault", "198.51.100.0/24", "", options, False)
    assert snapshot(engine) == before


def test_reserved_addresses_are_never_handed_out_dynamically_but_may_be_asked_for(ipam):
    pool = new_pool(ipam, "198.51.100.0/28")
    admin = Admin(ipam.store, ipam.host_id)
    assert (
        admin.reservations.reserve("198.51.100.1-198.51.100.3", "routers")
        == "198.51.100.1-198.51.100.3"
    )
    assert take(ipam, pool) == "198.51.100.4"
    assert take(ipam, pool, "198.51.100.2") == "198.51.100.2"
    with pytest.raises(AddressInUse, match="held by an auxiliary address"):
        take(ipam, pool, "198.51.100.2")
    ipam.release_address(pool, "198.51.100.2")
    got = [take(ipam, pool) for _ in range(10)]
    assert "198.51.100.2" not in got and "198.51.100.1" not in got
    with pytest.raises(NoAvailableAddress):
        take(ipam, pool)


def test_a_reservation_over_leased_addresses_keeps_them_when_they_are_released(ipam):
    pool = new_pool(ipam, "198.51.100.0/28")
    leased = take(ipam, pool)
    Admin(ipam.store, ipam.host_id).reservations.reserve("198.51.100.0/29", "later")
    ipam.release_address(pool, leased)
    assert take(ipam, pool) == "198.51.100.8"
    assert Admin(ipam.store, ipam.host_id).checks.check().problems == []


def test_unreserving_frees_what_is_not_leased_and_check_stays_clean(ipam):
    pool = new_pool(ipam, "198.51.100.0/28")
    admin = Admin(ipam.store, ipam.host_id)
    admin.reservations.reserve("198.51.100.1-198.51.100.5", "spare")
    take(ipam, pool, "198.51.100.3")
    assert admin.reservations.unreserve("198.51.100.1") == "198.51.100.1-198.51.100.5"
    assert [take(ipam, pool) for _ in range(3)] == ["198.51.100.1", "198.51.100.2", "198.51.100.4"]
    assert admin.checks.check().problems == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("203.0.113.5", "203.0.113.5 is not in a subnet of a network in LocalDefault"),
        ("198.51.100.9-198.51.100.3", "the last address must follow the first"),
        ("198.51.100.0", "holds only addresses 198.51.100.0/24 never hands out"),
        ("198.51.100.20-198.51.100.40", "overlaps the reservation 198.51.100.10-198.51.100.30 (a)"),
    ],
)
def test_a_bad_reservation_is_refused_by_name_and_changes_nothing(ipam, engine, text, message):
    new_pool(ipam)
    admin = Admin(ipam.store, ipam.host_id)
    admin.reservations.reserve("198.51.100.10-198.51.100.30", "a")
    before = snapshot(engine)
    with pytest.raises(
        InvalidRequest, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")
    ):
        admin.reservations.reserve(text, "b")
    assert snapshot(engine) == before
