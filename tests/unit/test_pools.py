"""The pool rules of the domain, with no database: request kinds, parking, the shared gateway."""

from __future__ import annotations

import netaddr
import pytest

from driver.domain.errors import InvalidRequest, PoolNotFound
from driver.domain.pools import (
    GATEWAY_TYPE,
    MAC_OPTION,
    NAME_OPTION,
    REQUEST_ADDRESS_TYPE,
    SHARED,
    SWARM,
    Lease,
    LeaseKind,
    Plans,
    PoolId,
    PoolRequest,
    ReusePolicy,
    answers_shared_gateway,
    asks_serial,
    requested_lease,
    restores,
    reuse_policy,
    shared_name,
)


@pytest.mark.parametrize(
    ("options", "static", "kind"),
    [
        ({REQUEST_ADDRESS_TYPE: GATEWAY_TYPE}, False, LeaseKind.GATEWAY),
        (
            {REQUEST_ADDRESS_TYPE: GATEWAY_TYPE, MAC_OPTION: "02:00:00:00:00:01"},
            True,
            LeaseKind.GATEWAY,
        ),
        ({MAC_OPTION: "02:00:00:00:00:01"}, False, LeaseKind.ENDPOINT),
        ({NAME_OPTION: "web"}, True, LeaseKind.ENDPOINT),
        ({}, True, LeaseKind.AUX),
        ({}, False, LeaseKind.OTHER),
    ],
)
def test_a_request_is_for_a_gateway_an_endpoint_an_aux_address_or_nobody_known(
    options, static, kind
):
    assert requested_lease(options, static=static).kind == kind


def test_a_requests_lease_carries_the_mac_and_name_docker_sent():
    lease = requested_lease({MAC_OPTION: "02:00:00:00:00:01", NAME_OPTION: "db"}, static=False)
    assert (lease.mac, lease.name, lease.known) == ("02:00:00:00:00:01", "db", True)
    assert not requested_lease({MAC_OPTION: ""}, static=False).known


@pytest.mark.parametrize(
    ("policy", "lease", "seconds"),
    [
        (ReusePolicy(), Lease(LeaseKind.ENDPOINT, "m", None), 0),
        (ReusePolicy(quarantine_s=60), Lease(LeaseKind.OTHER, None, None), 60),
        (ReusePolicy(hold_s=600), Lease(LeaseKind.OTHER, None, None), 0),
        (ReusePolicy(hold_s=600), Lease(LeaseKind.ENDPOINT, "m", None), 600),
        (ReusePolicy(quarantine_s=60, hold_s=600), Lease(LeaseKind.ENDPOINT, None, "db"), 600),
        (ReusePolicy(quarantine_s=900, hold_s=600), Lease(LeaseKind.ENDPOINT, "m", None), 900),
    ],
)
def test_a_released_address_is_parked_for_the_longer_of_quarantine_and_a_known_holders_hold(
    policy, lease, seconds
):
    assert policy.parking_seconds(lease) == seconds


def test_only_a_shared_pools_gateway_request_is_answered_with_its_existing_gateway():
    gateway = int(netaddr.IPAddress("198.51.100.1"))
    assert answers_shared_gateway(True, LeaseKind.GATEWAY, None, gateway)
    assert answers_shared_gateway(
        True, LeaseKind.GATEWAY, netaddr.IPAddress("198.51.100.1"), gateway
    )
    assert not answers_shared_gateway(
        True, LeaseKind.GATEWAY, netaddr.IPAddress("198.51.100.9"), gateway
    )
    assert not answers_shared_gateway(False, LeaseKind.GATEWAY, None, gateway)
    assert not answers_shared_gateway(True, LeaseKind.ENDPOINT, None, gateway)
    assert not answers_shared_gateway(True, LeaseKind.GATEWAY, None, None)


def test_pool_ids_are_deterministic_and_say_whose_plan_they_are_in():
    assert (
        str(PoolId("LocalDefault", "192.0.2.0/24", "192.0.2.128/25"))
        == "LocalDefault/192.0.2.0/24/192.0.2.128/25"
    )
    shared = PoolId("LocalDefault", "192.0.2.0/24", shared="lan")
    assert str(shared) == "shared/lan/LocalDefault/192.0.2.0/24"
    plans = Plans.of(shared_ledger=True, host_id="host-a")
    assert plans.of_pool(shared) == SHARED
    assert plans.of_pool(PoolId("LocalDefault", "192.0.2.0/24")) == "host-a"


def test_on_a_shared_ledger_global_pools_are_the_swarms_whichever_host_asks():
    overlay = PoolId("GlobalDefault", "198.51.100.0/24")
    owners = {Plans.of(True, host).of_pool(overlay) for host in ("host-a", "host-b")}
    assert owners == {SWARM}
    assert Plans.of(True, "host-a").of_space("LocalDefault") == "host-a"
    assert Plans.of(True, "host-a").seen == ("host-a", SHARED, SWARM)


def test_a_global_pool_shared_by_name_stays_every_hosts():
    named = PoolId("GlobalDefault", "198.51.100.0/24", shared="lan")
    assert Plans.of(True, "host-a").of_pool(named) == SHARED


def test_on_sqlite_every_pool_not_shared_is_the_hosts_own_as_before():
    plans = Plans.of(shared_ledger=False, host_id="host-a")
    assert plans.of_pool(PoolId("GlobalDefault", "198.51.100.0/24")) == "local"
    assert plans.of_pool(PoolId("LocalDefault", "198.51.100.0/24")) == "local"
    assert plans.seen == ("local", SHARED)


@pytest.mark.parametrize(
    "text",
    [
        "LocalDefault/192.0.2.0/24",
        "GlobalDefault/2001:db8::/64/2001:db8::/80",
        "shared/lan/LocalDefault/192.0.2.0/24/192.0.2.128/25",
    ],
)
def test_a_pool_id_reads_back_as_the_pool_it_names(text: str) -> None:
    assert str(PoolId.parse(text)) == text


@pytest.mark.parametrize(
    "text", ["", "LocalDefault", "LocalDefault/192.0.2.0", "shared/lan", "a/b/c/d", "x/1/2/3/4/5/6"]
)
def test_a_pool_id_that_names_no_pool_is_a_pool_not_found(text: str) -> None:
    with pytest.raises(PoolNotFound):
        PoolId.parse(text)


def test_reuse_options_are_checked_and_unknown_ones_refused_by_name():
    assert reuse_policy({"ipledger.quarantine": "15m", "ipledger.reuse": "serial"}) == ReusePolicy(
        "serial", 900, 0
    )
    assert reuse_policy({"com.docker.network.ipam.serial": "true"}).reuse == "serial"
    with pytest.raises(InvalidRequest, match=r"unknown option 'ipledger\.quarantin'"):
        reuse_policy({"ipledger.quarantin": "1m"})
    with pytest.raises(InvalidRequest, match="expected lowest or serial"):
        reuse_policy({"ipledger.reuse": "random"})
    assert asks_serial({"com.docker.network.ipam.serial": "TRUE"})


def test_a_shared_pools_name_is_letters_digits_dots_dashes_and_underscores():
    assert shared_name({"ipledger.shared": "lan-1.a_b"}) == "lan-1.a_b"
    assert shared_name({}) is None
    with pytest.raises(InvalidRequest, match=r"invalid ipledger\.shared"):
        shared_name({"ipledger.shared": "a/b"})


def test_a_pool_request_for_a_subnet_carries_its_ip_range_and_options():
    request = PoolRequest.parse(
        "LocalDefault",
        "198.51.100.7/24",
        "198.51.100.128/25",
        {"ipledger.shared": "lan", "ipledger.hold": "10m"},
        False,
    )
    assert request.subnet is not None and request.subnet.cidr == "198.51.100.0/24"
    assert request.subpool is not None and request.subpool.text == "198.51.100.128/25"
    assert (request.version, request.shared, request.policy.hold_s) == (4, "lan", 600)


@pytest.mark.parametrize(
    ("pool", "v6", "version", "size"),
    [
        ("", False, 4, None),
        ("", True, 6, None),
        ("0.0.0.0/26", False, 4, 26),
        ("::/0", True, 6, None),
    ],
)
def test_a_pool_request_without_a_subnet_asks_for_a_default_one_of_a_family_and_size(
    pool, v6, version, size
):
    request = PoolRequest.parse("LocalDefault", pool, "", {}, v6)
    assert (request.subnet, request.version, request.size) == (None, version, size)


@pytest.mark.parametrize(
    ("pool", "cidr"),
    [
        ("f656::/0", "::/0"),
        ("f656::3740/0", "::/0"),
        ("10.0.0.0/0", "0.0.0.0/0"),
        ("0.0.0.1/24", "0.0.0.0/24"),
        ("::1/56", "::/56"),
    ],
)
def test_a_pool_is_size_only_only_when_its_address_as_given_is_all_zero(pool, cidr):
    # Docker 29 reads the address before masking it: f656::/0 is the whole IPv6 space
    request = PoolRequest.parse("LocalDefault", pool, "", {}, False)
    assert request.subnet is not None and request.subnet.cidr == cidr
    assert request.size is None


@pytest.mark.parametrize("pool", ["::/128", "0::0/128", "0:0::/128"])
def test_a_size_only_ipv6_pool_of_one_address_is_refused_having_no_usable_address(pool):
    with pytest.raises(InvalidRequest, match=r"size-only pool ::/128: .*no usable address"):
        PoolRequest.parse("LocalDefault", pool, "", {}, True)


def test_a_size_only_ipv4_pool_of_one_address_is_granted_as_docker_uses_a_32():
    request = PoolRequest.parse("LocalDefault", "0.0.0.0/32", "", {}, False)
    assert (request.subnet, request.version, request.size) == (None, 4, 32)


@pytest.mark.parametrize(
    ("space", "pool", "subpool", "options", "says"),
    [
        ("Elsewhere", "", "", {}, "unknown address space"),
        ("LocalDefault", "", "198.51.100.0/25", {}, "without a pool"),
        ("LocalDefault", "", "", {"ipledger.shared": "lan"}, "needs a subnet"),
        ("LocalDefault", "198.51.100.0/33", "", {}, "bad prefix length"),
    ],
)
def test_a_pool_request_that_cannot_be_granted_is_refused_naming_why(
    space, pool, subpool, options, says
):
    with pytest.raises(InvalidRequest, match=says):
        PoolRequest.parse(space, pool, subpool, options, False)


def test_only_a_swarm_pool_answers_a_request_with_a_lease_it_holds():
    assert restores(SWARM)
    assert not restores("host-a") and not restores(SHARED) and not restores("local")
