"""One address, one holder: no rule answers an address that another request still holds.

Docker re-sends a call whose connection dropped with an empty body, so no request is ever a
retry of an earlier one (PROTOCOL.md): every request that gets an answer gets its own lease.
These run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re

import pytest

from driver.errors import AddressInUse, PoolOverlap
from driver.service import Ipam
from driver.store import Store

GW = {"RequestAddressType": "com.docker.network.gateway"}
MAC = "com.docker.network.endpoint.macaddress"
NAME = "com.docker.network.endpoint.name"


def endpoint(mac: str, name: str | None = None) -> dict[str, str]:
    return {MAC: mac, **({NAME: name} if name else {})}


def new_pool(ipam: Ipam, cidr: str, subpool: str = "", **options: str) -> str:
    return ipam.request_pool("LocalDefault", cidr, subpool,
                             {f"ipledger.{k}": v for k, v in options.items()}, False).pool_id


def test_two_endpoints_with_the_same_mac_get_two_addresses(ipam):
    pool = new_pool(ipam, "192.0.2.0/24")
    ipam.request_address(pool, "", GW)
    first = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07"))
    second = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07"))
    assert (first, second) == ("192.0.2.2/24", "192.0.2.3/24")


def test_releasing_one_of_two_endpoints_with_one_mac_never_frees_the_other_ones_address(ipam):
    pool = new_pool(ipam, "192.0.2.0/24")
    ipam.request_address(pool, "", GW)
    a = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07", "a"))
    b = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07", "b"))
    ipam.release_address(pool, a.split("/")[0])
    c = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:09", "c"))
    d = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07", "d"))
    assert len({b, c, d}) == 3


def test_a_static_request_for_an_address_the_same_mac_holds_is_refused_as_in_use(ipam):
    pool = new_pool(ipam, "192.0.2.0/24")
    first = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07")).split("/")[0]
    with pytest.raises(AddressInUse):
        ipam.request_address(pool, first, endpoint("02:42:c0:00:02:07"))


def test_a_second_gateway_request_in_a_pool_of_this_host_is_a_new_request_as_in_docker(ipam):
    pool = new_pool(ipam, "192.0.2.0/24")
    assert ipam.request_address(pool, "", GW) == "192.0.2.1/24"
    assert ipam.request_address(pool, "", GW) == "192.0.2.2/24"
    with pytest.raises(AddressInUse):
        ipam.request_address(pool, "192.0.2.1", GW)


def test_a_held_address_goes_back_to_one_endpoint_only(ipam):
    pool = new_pool(ipam, "192.0.2.0/24", hold="1h")
    a = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07", "a"))
    ipam.release_address(pool, a.split("/")[0])
    back = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07", "a"))
    again = ipam.request_address(pool, "", endpoint("02:42:c0:00:02:07", "a"))
    assert back == a and again != a


def test_a_default_pool_never_overlaps_a_shared_pool(ipam, settings):
    shared = ipam.request_pool("LocalDefault", "10.128.0.0/24", "",
                               {"ipledger.shared": "lan"}, False)
    own = ipam.request_pool("LocalDefault", "", "", {}, False)
    assert shared.pool == "10.128.0.0/24"
    assert own.pool == "10.128.1.0/24"


def test_an_explicit_pool_of_this_host_overlapping_a_shared_pool_is_refused(ipam):
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {"ipledger.shared": "lan"}, False)
    with pytest.raises(PoolOverlap, match=re.escape("shared/lan/LocalDefault/198.51.100.0/24")):
        new_pool(ipam, "198.51.100.128/25")
    with pytest.raises(PoolOverlap):
        new_pool(ipam, "198.51.100.0/24")


def test_a_shared_pool_overlapping_a_pool_of_this_host_is_refused(ipam):
    new_pool(ipam, "198.51.100.0/25")
    with pytest.raises(PoolOverlap, match=re.escape("LocalDefault/198.51.100.0/25")):
        ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {"ipledger.shared": "lan"},
                          False)


def test_another_host_cannot_join_a_shared_pool_its_own_pool_overlaps(ipam, engine, settings):
    if not ipam.store.shared:
        pytest.skip("one host per SQLite ledger")
    other = Ipam(Store(engine), settings.default_pools, "host-b")
    new_pool(other, "198.51.100.0/26")
    ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {"ipledger.shared": "lan"}, False)
    with pytest.raises(PoolOverlap, match=re.escape("LocalDefault/198.51.100.0/26")):
        other.request_pool("LocalDefault", "198.51.100.0/24", "", {"ipledger.shared": "lan"},
                           False)


@pytest.mark.parametrize(("pool", "v6", "expected"), [
    ("::/0", True, "fd42:1edb::/64"),
    ("0.0.0.0/0", False, "10.128.0.0/24"),
    ("::/56", True, "fd42:1edb::/56"),
])
def test_an_all_zero_pool_of_any_length_is_a_request_for_a_default_subnet(ipam, pool, v6,
                                                                          expected):
    assert ipam.request_pool("LocalDefault", pool, "", {}, v6).pool == expected
