"""Reconcile the ledger with Docker: leaked leases and pools, and endpoints the ledger lacks.

:func:`reconcile` is pure: it compares what the ledger holds with what Docker reports and says
what is wrong. :func:`apply` acts on it through the use cases, one transaction per repair, and
only on what is older than the grace period, so that an allocation Docker has asked for but not
yet attached to an endpoint is never taken for a leak.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from driver.domain import addresses as allocator
from driver.domain.moments import as_utc
from driver.domain.pools import (
    GLOBAL_SPACE,
    LOCAL_SPACE,
    SHARED,
    SHARED_OPTION,
    SWARM,
    LeaseKind,
    PoolId,
)


@dataclass(frozen=True)
class Endpoint:
    container: str
    address: str
    mac: str | None


@dataclass(frozen=True)
class IpamConfig:
    subnet: str
    ip_range: str | None
    gateway: str | None
    aux: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DockerNetwork:
    name: str
    scope: str
    configs: list[IpamConfig]
    endpoints: list[Endpoint]
    ipam_options: dict[str, str] = field(default_factory=dict)


class SwarmRole(StrEnum):
    """What the Docker that gc reads is in a swarm: only a manager shows the swarm's networks."""

    MANAGER = "manager"
    WORKER = "worker"
    NONE = "none"

    @property
    def why_not(self) -> str | None:
        """Why global pools cannot be judged from this node; None when they can."""
        if self is SwarmRole.MANAGER:
            return None
        where = "a swarm worker" if self is SwarmRole.WORKER else "in no swarm"
        return (
            f"this node is not a swarm manager ({where}): only a manager shows every network "
            "of the swarm; run gc with a manager's Docker (--docker-host)"
        )


@dataclass(frozen=True)
class LedgerPool:
    id: str
    space: str
    owner: str
    created_at: datetime
    for_cni: bool = False  # made for a CNI network, which Docker's view cannot judge


@dataclass(frozen=True)
class LedgerLease:
    pool_id: str
    address: str
    kind: LeaseKind
    created_at: datetime
    host_id: str | None = None


@dataclass(frozen=True)
class Finding:
    """``pool``: no Docker network uses it; ``lease``: no endpoint, gateway or auxiliary
    address uses it; ``missing``: Docker uses an address the ledger does not hold."""

    what: str
    pool_id: str
    address: str | None
    detail: str
    due: bool  # old enough to repair (leaks) or always (missing)
    kind: LeaseKind | None = None
    mac: str | None = None


Used = dict[str, tuple[LeaseKind, str | None]]  # address -> (kind, MAC)


@dataclass(frozen=True)
class PoolUse:
    """What one Docker network uses of a pool. Docker shows a gateway it did not get from the
    user only on some versions; when it shows none, the pool's gateway lease is taken as used."""

    addresses: Used
    gateway_shown: bool


def config_pool(network: DockerNetwork, config: IpamConfig) -> tuple[PoolId, allocator.Subnet]:
    """The ledger PoolID one IPAM config of a Docker network stands for, with its subnet."""
    space = LOCAL_SPACE if network.scope == "local" else GLOBAL_SPACE
    subnet = allocator.Subnet(allocator.parse_cidr(config.subnet, "subnet"))
    subrange = str(allocator.parse_cidr(config.ip_range, "ip-range")) if config.ip_range else None
    return PoolId(space, subnet.cidr, subrange, network.ipam_options.get(SHARED_OPTION)), subnet


def pool_ids(network: DockerNetwork) -> dict[str, PoolUse]:
    """The ledger PoolIDs a Docker network stands for, each with the addresses it uses."""
    found: dict[str, PoolUse] = {}
    for config in network.configs:
        pool_id, subnet = config_pool(network, config)
        used: Used = {}
        for endpoint in network.endpoints:
            address = allocator.parse_address(endpoint.address.split("/")[0])
            if address.version == subnet.version and subnet.contains(int(address)):
                used[str(address)] = (LeaseKind.ENDPOINT, endpoint.mac)
        for aux in config.aux.values():
            used[str(allocator.parse_address(aux))] = (LeaseKind.AUX, None)
        if config.gateway:
            used[str(allocator.parse_address(config.gateway))] = (LeaseKind.GATEWAY, None)
        found[str(pool_id)] = PoolUse(used, bool(config.gateway))
    return found


def reconcile(
    pools: Iterable[LedgerPool],
    leases: Iterable[LedgerLease],
    networks: Iterable[DockerNetwork],
    *,
    owner: str,
    host_id: str,
    now: datetime,
    grace: timedelta,
    swarm: SwarmRole = SwarmRole.NONE,
) -> list[Finding]:
    """What is leaking or missing in this host's LocalDefault pools (``owner``), and in the
    shared pools its networks use, where only the leases this host made are judged; and, read
    from a swarm manager, which global pools no network of the swarm uses."""
    cutoff = now - grace
    networks = list(networks)
    pools = list(pools)
    in_docker: dict[str, PoolUse] = {}
    for network in networks:
        in_docker.update(pool_ids(network))
    leases = list(leases)
    # CNI's attachments are not Docker's to judge: neither their leases nor the pools they use
    with_cni = {lease.pool_id for lease in leases if lease.kind == LeaseKind.CNI}
    leases = [lease for lease in leases if lease.kind != LeaseKind.CNI]
    mine = {
        p.id: p
        for p in pools
        if p.space == LOCAL_SPACE
        and not p.for_cni
        and (p.owner == owner or (p.owner == SHARED and p.id in in_docker))
    }
    findings: list[Finding] = []
    for pool in mine.values():
        if pool.id not in in_docker and pool.owner != SHARED and pool.id not in with_cni:
            findings.append(
                Finding(
                    "pool",
                    pool.id,
                    None,
                    "no Docker network uses this pool",
                    as_utc(pool.created_at) <= cutoff,
                )
            )
    held: dict[str, set[str]] = {}
    for lease in leases:
        judged = mine.get(lease.pool_id)
        if judged is None or (judged.owner == SHARED and lease.host_id != host_id):
            continue
        held.setdefault(lease.pool_id, set()).add(lease.address)
        use = in_docker.get(lease.pool_id)
        if use is None or (lease.kind == LeaseKind.GATEWAY and not use.gateway_shown):
            continue
        if lease.address not in use.addresses:
            findings.append(
                Finding(
                    "lease",
                    lease.pool_id,
                    lease.address,
                    f"no endpoint, gateway or auxiliary address of the "
                    f"network uses this {lease.kind} lease",
                    as_utc(lease.created_at) <= cutoff,
                    lease.kind,
                )
            )
    for pool_id, use in in_docker.items():
        if pool_id not in mine or mine[pool_id].owner == SHARED:
            continue
        for address, (kind, mac) in sorted(use.addresses.items()):
            if address not in held.get(pool_id, set()):
                findings.append(
                    Finding(
                        "missing",
                        pool_id,
                        address,
                        f"Docker uses this address ({kind}) but the ledger holds no lease",
                        True,
                        kind,
                        mac,
                    )
                )
    if swarm is SwarmRole.MANAGER:
        findings += gone_global_pools(pools, networks, owner, cutoff)
    return findings


def global_pools(pools: Iterable[LedgerPool], owner: str) -> list[LedgerPool]:
    """The global pools a host's gc judges: the swarm's, and its own (an SQLite ledger's, or
    a shared ledger's from before global pools were the swarm's)."""
    return [
        p for p in pools if p.space == GLOBAL_SPACE and p.owner in (SWARM, owner) and not p.for_cni
    ]


def gone_global_pools(
    pools: Iterable[LedgerPool], networks: Iterable[DockerNetwork], owner: str, cutoff: datetime
) -> list[Finding]:
    """The global pools of no network of the swarm (as a manager shows them). Their leases are
    not judged: a manager shows only its own node's containers of a network."""
    in_swarm: set[str] = set()
    for network in networks:
        if network.scope != "local":
            in_swarm.update(pool_ids(network))
    return [
        Finding(
            "pool",
            pool.id,
            None,
            "no network of the swarm uses this pool",
            as_utc(pool.created_at) <= cutoff,
        )
        for pool in global_pools(pools, owner)
        if pool.id not in in_swarm
    ]
