"""One address, one holder: no rule answers an address that another request still holds.

Docker re-sends a call whose connection dropped with an empty body, so no request is ever a
retry of an earlier one (PROTOCOL.md): every request that gets an answer gets its own lease.
These run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import netaddr
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from driver.domain.errors import AddressInUse, IpamError, PoolOverlap
from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from driver.storage.store import Store
from driver.usecases.admin import Admin
from driver.usecases.ipam import Ipam
from tests.examples import examples

GW = {"RequestAddressType": "com.docker.network.gateway"}
MAC = "com.docker.network.endpoint.macaddress"
NAME = "com.docker.network.endpoint.name"


def endpoint(mac: str, name: str | None = None) -> dict[str, str]:
    return {MAC: mac, **({NAME: name} if name else {})}


def new_pool(ipam: Ipam, cidr: str, subpool: str = "", **options: str) -> str:
    return ipam.request_pool(
        "LocalDefault", cidr, subpool, {f"ipledger.{k}": v for k, v in options.items()}, False
    ).pool_id


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
    shared = ipam.request_pool(
        "LocalDefault", "10.128.0.0/24", "", {"ipledger.shared": "lan"}, False
    )
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
        ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {"ipledger.shared": "lan"}, False)


def test_a_shared_pool_overlapping_another_hosts_own_pool_is_refused(ipam, engine, settings):
    # every host may use a shared pool, and a host's own pools and the shared ones are one
    # address plan to it (check's no-overlap rule): another host's own pool blocks it too
    if not ipam.store.shared:
        pytest.skip("one host per SQLite ledger")
    other = Ipam(Store(engine), settings.default_pools, "host-b")
    new_pool(other, "198.51.100.0/26")
    with pytest.raises(PoolOverlap, match=re.escape("LocalDefault/198.51.100.0/26")):
        ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {"ipledger.shared": "lan"}, False)
    assert Admin(Store(engine)).checks.check().problems == []


@pytest.mark.parametrize(
    ("pool", "v6", "expected"),
    [
        ("::/0", True, "fd42:1edb::/64"),
        ("0.0.0.0/0", False, "10.128.0.0/24"),
        ("::/56", True, "fd42:1edb::/56"),
    ],
)
def test_an_all_zero_pool_of_any_length_is_a_request_for_a_default_subnet(ipam, pool, v6, expected):
    assert ipam.request_pool("LocalDefault", pool, "", {}, v6).pool == expected


# --- the property: any sequence, any number of hosts -----------------------------------------

SUBNETS = ("198.51.100.0/28", "198.51.100.0/29", "198.51.100.8/29", "10.128.0.0/24")
POOL_KINDS = st.sampled_from(["default", "own", "own-range", "shared"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("pool"), st.integers(0, 1), POOL_KINDS, st.sampled_from(SUBNETS)),
        st.tuples(
            st.just("take"),
            st.integers(0, 1),
            st.integers(0, 7),
            st.sampled_from(["", "gateway", "mac", "static"]),
            st.integers(1, 14),
        ),
        st.tuples(st.just("release"), st.integers(0, 1), st.integers(0, 30)),
        st.tuples(st.just("release-pool"), st.integers(0, 1), st.integers(0, 7)),
    ),
    max_size=40,
)


@dataclass(frozen=True)
class Answer:
    host: int
    pool_id: str
    shared: bool
    address: str
    gateway: bool


def conflicting(a: Answer, b: Answer) -> bool:
    """Two held answers that would put one address on two holders: on one host (its own pools
    and the shared pools it uses are one address plan to it), or in one shared pool across
    hosts, where only the one gateway is every host's."""
    if a.address != b.address:
        return False
    if a.shared and b.shared and a.pool_id == b.pool_id:
        return not (a.gateway and b.gateway)
    return a.host == b.host


@hyp_settings(
    max_examples=examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# the two ways ipledger once gave an address twice, besides whatever hypothesis comes up with
@example(
    ops=[("pool", 0, "own", "198.51.100.0/28"), ("take", 0, 0, "mac", 1), ("take", 0, 0, "mac", 1)]
)
@example(
    ops=[
        ("pool", 0, "shared", "10.128.0.0/24"),
        ("pool", 0, "default", ""),
        ("take", 0, 0, "", 1),
        ("take", 0, 1, "", 1),
    ]
)
@given(ops=OPS)
def test_no_sequence_of_requests_from_any_hosts_gives_one_address_to_two_holders(
    backend, request, tmp_path_factory, ops
):
    from driver.config import parse_default_pools
    from driver.usecases.admin import Admin

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('prop')}/ledger.db"
        engine = make_engine(url)
        migrate(engine)
    else:
        url = request.getfixturevalue("postgres").new_database()
        engine = make_engine(url)
    defaults = parse_default_pools('[{"base":"10.128.0.0/23","size":24}]')
    hosts = [Ipam(Store(engine), defaults, f"host-{i}") for i in range(2)]
    pools: list[tuple[int, str, bool, netaddr.IPNetwork]] = []  # (host, PoolID, shared, subnet)
    held: list[Answer] = []
    try:
        for op in ops:
            host = op[1]
            ipam = hosts[host]
            try:
                if op[0] == "pool":
                    kind, cidr = op[2], op[3]
                    options = {"ipledger.shared": "lan"} if kind == "shared" else {}
                    grant = ipam.request_pool(
                        "LocalDefault",
                        "" if kind == "default" else cidr,
                        cidr.replace("/28", "/30").replace("/29", "/30")
                        if kind == "own-range" and cidr != "10.128.0.0/24"
                        else "",
                        options,
                        False,
                    )
                    pools.append(
                        (host, grant.pool_id, kind == "shared", netaddr.IPNetwork(grant.pool))
                    )
                elif op[0] == "take" and (mine := [p for p in pools if p[0] == host]):
                    _, pool_id, shared, subnet = mine[op[2] % len(mine)]
                    how, n = op[3], op[4]
                    options = (
                        {"RequestAddressType": "com.docker.network.gateway"}
                        if how == "gateway"
                        else {MAC: "02:42:c6:33:64:01"}
                        if how == "mac"
                        else {}
                    )
                    address = ""
                    if how == "static" and n < subnet.size:
                        address = str(netaddr.IPAddress(int(subnet.first) + n))
                    answer = ipam.request_address(pool_id, address, options).split("/")[0]
                    new = Answer(host, pool_id, shared, answer, how == "gateway")
                    clash = [a for a in held if conflicting(a, new)]
                    assert not clash, f"{new} was already answered to {clash[0]}"
                    held.append(new)
                elif op[0] == "release" and (taken := [a for a in held if a.host == host]):
                    answer = taken[op[2] % len(taken)]
                    ipam.release_address(answer.pool_id, answer.address)
                    held.remove(answer)
                elif op[0] == "release-pool" and (mine := [p for p in pools if p[0] == host]):
                    granted = mine[op[2] % len(mine)]
                    ipam.release_pool(granted[1])
                    pools.remove(granted)
                    held = [a for a in held if not (a.host == host and a.pool_id == granted[1])]
            except IpamError:
                pass
        report = Admin(Store(engine)).checks.check()
        assert report.problems == []
    finally:
        engine.dispose()
        if backend == "postgresql":
            request.getfixturevalue("postgres").drop_database(url)
