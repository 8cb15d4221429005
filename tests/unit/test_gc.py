"""gc's reconciliation: what the ledger holds against what Docker reports (pure, no Docker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driver.domain.pools import SWARM
from driver.domain.reconcile import (
    DockerNetwork,
    Endpoint,
    IpamConfig,
    LedgerLease,
    LedgerPool,
    SwarmRole,
    reconcile,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=1)
NEW = NOW - timedelta(seconds=30)
POOL = "LocalDefault/198.51.100.0/24"


def network(*endpoints: tuple[str, str], subnet="198.51.100.0/24", ip_range=None, scope="local"):
    return DockerNetwork(
        "web",
        scope,
        [IpamConfig(subnet, ip_range, "198.51.100.1", {"r": "198.51.100.250"})],
        [Endpoint(name, address, "02:00:00:00:00:01") for name, address in endpoints],
    )


def lease(address: str, created=OLD, pool=POOL, kind="endpoint") -> LedgerLease:
    return LedgerLease(pool, address, kind, created)


def judge(pools, leases, networks, host="me"):
    return [
        (f.what, f.pool_id, f.address, f.due)
        for f in reconcile(
            pools, leases, networks, owner="me", host_id=host, now=NOW, grace=timedelta(minutes=10)
        )
    ]


def test_a_lease_that_no_endpoint_gateway_or_aux_address_uses_is_a_leak():
    found = judge(
        [LedgerPool(POOL, "LocalDefault", "me", OLD)],
        [
            lease("198.51.100.1", kind="gateway"),
            lease("198.51.100.250", kind="aux"),
            lease("198.51.100.2"),
            lease("198.51.100.3"),
        ],
        [network(("a", "198.51.100.2/24"))],
    )
    assert found == [("lease", POOL, "198.51.100.3", True)]


def test_a_leak_younger_than_the_grace_period_is_reported_but_not_due():
    found = judge(
        [LedgerPool(POOL, "LocalDefault", "me", OLD)],
        [lease("198.51.100.1"), lease("198.51.100.250"), lease("198.51.100.7", created=NEW)],
        [network()],
    )
    assert found == [("lease", POOL, "198.51.100.7", False)]


def test_a_pool_that_no_docker_network_uses_is_a_leak_and_so_are_its_leases_not():
    found = judge([LedgerPool(POOL, "LocalDefault", "me", OLD)], [lease("198.51.100.5")], [])
    assert found == [("pool", POOL, None, True)]


def test_an_endpoint_docker_uses_without_a_lease_is_reported_missing():
    found = judge(
        [LedgerPool(POOL, "LocalDefault", "me", OLD)],
        [lease("198.51.100.1"), lease("198.51.100.250")],
        [network(("a", "198.51.100.9/24"))],
    )
    assert found == [("missing", POOL, "198.51.100.9", True)]


def test_ip_range_networks_map_to_their_own_pool_ids():
    sub = "LocalDefault/198.51.100.0/24/198.51.100.128/25"
    found = judge(
        [LedgerPool(sub, "LocalDefault", "me", OLD)],
        [
            lease("198.51.100.1", pool=sub),
            lease("198.51.100.250", pool=sub),
            lease("198.51.100.129", pool=sub),
        ],
        [network(("a", "198.51.100.129/24"), ip_range="198.51.100.128/25")],
    )
    assert found == []


def test_pools_of_other_hosts_and_of_the_global_space_are_not_judged():
    found = judge(
        [
            LedgerPool(POOL, "LocalDefault", "other-host", OLD),
            LedgerPool("GlobalDefault/203.0.113.0/24", "GlobalDefault", "me", OLD),
        ],
        [lease("198.51.100.5")],
        [],
    )
    assert found == []


def test_the_gateway_lease_is_not_a_leak_when_docker_does_not_show_the_gateway():
    quiet = DockerNetwork("web", "local", [IpamConfig("198.51.100.0/24", None, None, {})], [])
    found = judge(
        [LedgerPool(POOL, "LocalDefault", "me", OLD)],
        [lease("198.51.100.1", kind="gateway"), lease("198.51.100.4")],
        [quiet],
    )
    assert found == [("lease", POOL, "198.51.100.4", True)]


def test_in_a_shared_pool_only_this_hosts_leases_are_judged_and_never_the_pool():
    shared = "shared/lan/LocalDefault/198.51.100.0/24"
    # the network's ipledger.shared option names the shared pool it stands for
    net = DockerNetwork(
        "lan",
        "local",
        [IpamConfig("198.51.100.0/24", None, None, {})],
        [Endpoint("a", "198.51.100.2", None)],
        {"ipledger.shared": "lan"},
    )
    pools = [LedgerPool(shared, "LocalDefault", "shared", OLD)]
    leases = [
        LedgerLease(shared, "198.51.100.1", "gateway", OLD, "other-host"),
        LedgerLease(shared, "198.51.100.2", "endpoint", OLD, "me"),
        LedgerLease(shared, "198.51.100.3", "endpoint", OLD, "other-host"),
        LedgerLease(shared, "198.51.100.4", "endpoint", OLD, "me"),
    ]
    found = [
        (f.what, f.address)
        for f in reconcile(
            pools, leases, [net], owner="me", host_id="me", now=NOW, grace=timedelta(minutes=10)
        )
    ]
    assert found == [("lease", "198.51.100.4")]
    # with no network on this host, the shared pool is none of this host's business
    assert (
        reconcile(pools, leases, [], owner="me", host_id="me", now=NOW, grace=timedelta(minutes=10))
        == []
    )


def test_managed_ipledger_plugins_are_known_by_their_name_with_tag_and_latest_without():
    from driver.adapters.docker_state import plugin_names

    ipam = {"Types": ["docker.ipamdriver/1.0"], "Socket": "ipledger.sock"}
    plugins = [
        {"Name": "myorg/ipledger:latest", "Config": {"Interface": ipam}},
        {"Name": "ipledger-e2e:v1", "Config": {"Interface": ipam}},
        {"Name": "other/ipam:latest", "Config": {"Interface": {**ipam, "Socket": "other.sock"}}},
        {
            "Name": "vieux/sshfs:latest",
            "Config": {
                "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "ipledger.sock"}
            },
        },
    ]
    assert plugin_names(plugins) == {"myorg/ipledger:latest", "myorg/ipledger", "ipledger-e2e:v1"}


def test_gc_never_judges_cni_leases_nor_a_pool_that_holds_one_by_dockers_view():
    cni_pool = "LocalDefault/203.0.113.0/24"
    found = judge(
        [
            LedgerPool(POOL, "LocalDefault", "me", OLD),
            LedgerPool(cni_pool, "LocalDefault", "me", OLD),
        ],
        [
            lease("198.51.100.1", kind="gateway"),
            lease("198.51.100.250", kind="aux"),
            lease("198.51.100.9", kind="cni"),
            lease("203.0.113.1", pool=cni_pool, kind="gateway"),
            lease("203.0.113.2", pool=cni_pool, kind="cni"),
        ],
        [network()],
    )
    assert found == []


def swarm_network(cidr: str) -> DockerNetwork:
    return DockerNetwork("ov", "swarm", [IpamConfig(cidr, None, None, {})], [], {})


def test_a_manager_judges_the_swarms_pools_against_the_swarms_networks():
    live, gone = "GlobalDefault/198.51.100.0/24", "GlobalDefault/203.0.113.0/24"
    pools = [
        LedgerPool(live, "GlobalDefault", SWARM, OLD),
        LedgerPool(gone, "GlobalDefault", SWARM, OLD),
        LedgerPool("GlobalDefault/192.0.2.0/24", "GlobalDefault", "other-host", OLD),
    ]
    leases = [
        LedgerLease(live, "198.51.100.7", "aux", OLD),
        LedgerLease(gone, "203.0.113.2", "aux", OLD),
    ]
    found = reconcile(
        pools,
        leases,
        [swarm_network("198.51.100.0/24")],
        owner="me",
        host_id="me",
        now=NOW,
        grace=timedelta(minutes=10),
        swarm=SwarmRole.MANAGER,
    )
    # the live pool's leases are not judged: a manager shows only its own node's containers
    assert [(f.what, f.pool_id, f.due) for f in found] == [("pool", gone, True)]


@pytest.mark.parametrize("role", [SwarmRole.WORKER, SwarmRole.NONE])
def test_a_node_that_is_no_manager_never_judges_a_global_pool(role):
    pools = [LedgerPool("GlobalDefault/203.0.113.0/24", "GlobalDefault", SWARM, OLD)]
    found = reconcile(
        pools, [], [], owner="me", host_id="me", now=NOW, grace=timedelta(0), swarm=role
    )
    assert found == []
    assert role.why_not is not None and "not a swarm manager" in role.why_not
    assert SwarmRole.MANAGER.why_not is None


def test_docker_info_says_whether_the_node_is_a_swarm_manager():
    from driver.adapters.docker_state import swarm_role

    manager = {"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}
    worker = {"Swarm": {"LocalNodeState": "active", "ControlAvailable": False}}
    assert swarm_role(manager) is SwarmRole.MANAGER
    assert swarm_role(worker) is SwarmRole.WORKER
    assert swarm_role({"Swarm": {"LocalNodeState": "inactive"}}) is SwarmRole.NONE
    assert swarm_role({}) is SwarmRole.NONE
