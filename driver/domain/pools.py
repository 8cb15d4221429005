"""Pools as Docker and ipledger name them: address spaces, owners, PoolIDs, Docker's options
and ipledger's own, and the reuse policy they set. Pure: no Flask, no SQLAlchemy."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import netaddr

from driver.domain import addresses as allocator
from driver.domain.addresses import Subnet, SubPool
from driver.domain.dns import DNS_OPTIONS, dns_policy
from driver.domain.errors import InvalidRequest, PoolNotFound

# The owner of pools that several hosts share (ipledger.shared): every host's plan.
SHARED = "shared"

LOCAL_SPACE = "LocalDefault"
GLOBAL_SPACE = "GlobalDefault"
SPACES = (LOCAL_SPACE, GLOBAL_SPACE)
LOCAL_OWNER = "local"
# The owner of a shared ledger's GlobalDefault pools: the swarm's, whichever manager asked.
# One name, so one swarm per shared ledger (a plugin cannot ask Docker which swarm it serves).
SWARM = "swarm"

GATEWAY_TYPE = "com.docker.network.gateway"
REQUEST_ADDRESS_TYPE = "RequestAddressType"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
NAME_OPTION = "com.docker.network.endpoint.name"
SERIAL_OPTION = "com.docker.network.ipam.serial"

# ipledger's own network options (docker network create --ipam-opt ...)
REUSE_OPTION = "ipledger.reuse"
QUARANTINE_OPTION = "ipledger.quarantine"
HOLD_OPTION = "ipledger.hold"
SHARED_OPTION = "ipledger.shared"
# recorded in the options of a pool made for a CNI network: the network's name
CNI_NETWORK_OPTION = "ipledger.cni.network"
OWN_OPTIONS = (REUSE_OPTION, QUARANTINE_OPTION, HOLD_OPTION, SHARED_OPTION, *DNS_OPTIONS)
SHARED_PREFIX = "shared/"
# the longest holder name a lease, a parked address or a history line keeps: "container ID"
# (an ID of at most 255 characters) or "pod NAMESPACE/NAME" (Kubernetes: 63 and 253)
HOLDER_NAME_LENGTH = 400
# the longest detail of a history line (a CNI attachment "NETWORK/CONTAINER-ID/IFNAME" and more)
DETAIL_LENGTH = 1024
_SHARED_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class LeaseKind(StrEnum):
    """Who holds a lease, as Docker's request says it (stored as the string)."""

    GATEWAY = "gateway"
    ENDPOINT = "endpoint"  # a container's endpoint: Docker sent its MAC or name
    AUX = "aux"  # an address asked for by value without an endpoint (--aux-address)
    OTHER = "other"  # a dynamic request without an endpoint
    CNI = "cni"  # a CNI attachment's address (its lease names the attachment)


@dataclass(frozen=True)
class Lease:
    """The holder of a lease: its kind, and the endpoint's MAC and name when Docker sent them."""

    kind: LeaseKind
    mac: str | None
    name: str | None
    # the full DNS name it was published under (a lease being released); None when none
    dns_name: str | None = None
    # a CNI lease's attachment (NETWORK/CONTAINER-ID/IFNAME), as read back; None for Docker's
    attachment: str | None = None

    @property
    def known(self) -> bool:
        """Whether the holder can be known again (a hold keeps its address for it)."""
        return bool(self.mac or self.name)

    def in_words(self) -> str:
        """Who holds it, for an operator's error message: "an endpoint (name web, mac ...)"."""
        who = {
            LeaseKind.GATEWAY: "the gateway",
            LeaseKind.AUX: "an auxiliary address",
            LeaseKind.ENDPOINT: "an endpoint",
        }.get(self.kind, "an earlier request")
        details = ", ".join(f"{k} {v}" for k, v in (("name", self.name), ("mac", self.mac)) if v)
        return f"{who} ({details})" if details else who


def requested_lease(options: Mapping[str, str], *, static: bool) -> Lease:
    """Who a RequestAddress is for, from Docker's options."""
    mac = options.get(MAC_OPTION) or None
    name = options.get(NAME_OPTION) or None
    if options.get(REQUEST_ADDRESS_TYPE) == GATEWAY_TYPE:
        kind = LeaseKind.GATEWAY
    elif mac or name:
        kind = LeaseKind.ENDPOINT
    else:
        kind = LeaseKind.AUX if static else LeaseKind.OTHER
    return Lease(kind, mac, name)


def asks_serial(options: Mapping[str, str]) -> bool:
    """The swarm manager's round-robin option on a request."""
    return str(options.get(SERIAL_OPTION, "")).lower() == "true"


def answers_shared_gateway(
    shared: bool, kind: LeaseKind, wanted: netaddr.IPAddress | None, gateway: int | None
) -> bool:
    """Whether a request is answered with the shared pool's existing ``gateway`` lease.

    This is the only request answered with an existing lease. It cannot give one address to two
    holders: the holder is the gateway of the shared segment (a router outside the hosts, or each
    host's side of it), never a container, and a gateway lease is released only when the last
    host leaves the pool. Any other request, a second one with the same MAC included, is a new
    holder: Docker re-sends a dropped call with an empty body, so no request is ever a retry.
    """
    if not shared or kind != LeaseKind.GATEWAY or gateway is None:
        return False
    return wanted is None or int(wanted) == gateway


def restores(owner: str) -> bool:
    """Whether a request for an address by value may be answered with a lease its pool holds:
    in a swarm pool, once after a new leader asked for the pool again (the lease then says
    whether it awaits that request). A dynamic request is always a new holder."""
    return owner == SWARM


class Reuse(StrEnum):
    """Which free address a dynamic request gets: the lowest, or the next after the last one
    handed out (Docker's ``com.docker.network.ipam.serial``)."""

    LOWEST = "lowest"
    SERIAL = "serial"


@dataclass(frozen=True)
class ReusePolicy:
    """How a pool hands released addresses out again."""

    reuse: Reuse = Reuse.LOWEST
    quarantine_s: int = 0
    hold_s: int = 0

    def parking_seconds(self, lease: Lease) -> int:
        """How long a released address is parked instead of freed: the quarantine, or the hold
        when its holder can be known again, whichever is longer; 0 frees it at once."""
        return max(self.quarantine_s, self.hold_s if lease.known else 0)


def _meant(key: str) -> str | None:
    """The ipledger option a key without its prefix means (``hold``, ``ipledger-hold``)."""
    bare = key.strip().lower()
    for prefix in ("ipledger-", "ipledger_"):
        bare = bare.removeprefix(prefix)
    return next((own for own in OWN_OPTIONS if own == f"ipledger.{bare}"), None)


def reuse_policy(options: Mapping[str, str]) -> ReusePolicy:
    """The ``ipledger.*`` options of a pool; anything unknown or malformed is refused.

    So is one of ipledger's names without its prefix (``hold=10m``): Docker shows a user no
    warning of a plugin's, and the option would be silently ignored.
    """
    for key in sorted(options):
        meant = _meant(key) if key not in OWN_OPTIONS else None
        if meant is not None:
            raise InvalidRequest(
                f"option {key!r:.40} is not read: ipledger's options take their prefix, "
                f"{meant}={options[key]:.40}"
            )
    unknown = sorted(k for k in options if k.startswith("ipledger.") and k not in OWN_OPTIONS)
    if unknown:
        raise InvalidRequest(
            f"unknown option {unknown[0]!r:.80}: ipledger's options are {', '.join(OWN_OPTIONS)}"
        )
    reuse = options.get(REUSE_OPTION, Reuse.LOWEST).strip().lower()
    if str(options.get(SERIAL_OPTION, "")).lower() == "true":
        reuse = Reuse.SERIAL
    if reuse not in tuple(Reuse):
        raise InvalidRequest(
            f"invalid {REUSE_OPTION} {options[REUSE_OPTION]!r:.40}: expected lowest or serial"
        )
    durations = [
        allocator.parse_duration(options[key], key) if key in options else 0
        for key in (QUARANTINE_OPTION, HOLD_OPTION)
    ]
    return ReusePolicy(Reuse(reuse), *durations)


@dataclass(frozen=True)
class PoolRequest:
    """A RequestPool, checked: its space, and either an explicit subnet (with its ip-range) or
    the family and size of a default one; and ipledger's options for the new pool."""

    space: str
    version: int
    subnet: Subnet | None  # None: a default subnet
    size: int | None  # a default subnet's prefix length, when Docker asks for a size only
    subpool: SubPool | None
    policy: ReusePolicy
    shared: str | None
    options: str  # all of Docker's options, as recorded with the pool (JSON)

    @classmethod
    def parse(
        cls, space: str, pool: str, subpool: str, options: Mapping[str, str], v6: bool
    ) -> PoolRequest:
        if space not in SPACES:
            raise InvalidRequest(
                f"unknown address space {space!r}: ipledger serves {' and '.join(SPACES)}"
            )
        network = allocator.parse_cidr(pool, "pool") if pool else None
        sub = allocator.parse_cidr(subpool, "ip-range (SubPool)") if subpool else None
        size: int | None = None
        if network is not None and allocator.is_size_only(pool):
            # Docker 29: "any subnet of this size"; /0, "a subnet of the default size"
            size, network = network.prefixlen or None, None
            version = 4 if "." in pool else 6
            if version == 6 and size == 128:
                raise InvalidRequest(
                    "invalid size-only pool ::/128: an IPv6 /128 has no usable address "
                    "(its only address is the subnet's first, which is never handed out)"
                )
        elif network is not None:
            # The swarm manager never sets V6: the pool says which family it is.
            version = network.version
        else:
            version = 6 if v6 else 4
        if sub is not None and network is None:
            raise InvalidRequest(f"ip-range (SubPool) {subpool} given without a pool (subnet)")
        shared = shared_name(options)
        dns_policy(options)  # refused here, with the pool, rather than at its first lease
        if shared is not None and network is None:
            raise InvalidRequest(
                f"{SHARED_OPTION}={shared} needs a subnet (--subnet): every "
                "host must name the same one"
            )
        return cls(
            space=space,
            version=version,
            subnet=Subnet(network) if network is not None else None,
            size=size,
            subpool=SubPool.of_cidr(sub) if sub is not None else None,
            policy=reuse_policy(options),
            shared=shared,
            options=json.dumps(dict(options), sort_keys=True),
        )


@dataclass(frozen=True)
class PoolGrant:
    pool_id: str
    pool: str


@dataclass(frozen=True)
class PoolId:
    """What Docker knows a pool by: deterministic, like the built-in IPAM's
    ``LocalDefault/172.28.0.0/16/172.28.5.0/24``; a shared pool's starts with ``shared/NAME/``."""

    space: str
    cidr: str
    subpool: str | None = None
    shared: str | None = None

    def __str__(self) -> str:
        text = f"{self.space}/{self.cidr}" + (f"/{self.subpool}" if self.subpool else "")
        return f"{SHARED_PREFIX}{self.shared}/{text}" if self.shared is not None else text

    @classmethod
    def parse(cls, text: str) -> PoolId:
        """The PoolID Docker sent; one that no pool could have is a pool not found."""
        parts = text.split("/")
        shared = None
        if f"{parts[0]}/" == SHARED_PREFIX and len(parts) > 2:
            shared, parts = parts[1], parts[2:]
        # the sub-pool is Docker's ip-range (a CIDR) or a CNI range (FIRST-LAST)
        if len(parts) not in (3, 4, 5) or not all(parts) or (len(parts) == 4) != ("-" in parts[-1]):
            raise PoolNotFound(text)
        subpool = "/".join(parts[3:]) or None
        return cls(parts[0], "/".join(parts[1:3]), subpool, shared)

    @staticmethod
    def shared_prefix(name: str) -> str:
        """What every PoolID of the shared pool ``name`` starts with."""
        return f"{SHARED_PREFIX}{name}/"


def own_plan(shared_ledger: bool, host_id: str) -> str:
    """The owner of this host's own pools: its id in a shared ledger; an SQLite ledger has one
    host, whose pools are ``local`` whatever its id."""
    return host_id if shared_ledger else LOCAL_OWNER


@dataclass(frozen=True)
class Plans:
    """Whose address plan a pool is in, as one host sees its ledger.

    A pool named ``ipledger.shared`` is every host's (``shared``). A LocalDefault pool is the
    host's own: ``local`` in an SQLite ledger, its id in a shared one. A GlobalDefault pool is
    asked for by the swarm's leading manager, whichever node that is, and a new leader asks for
    the same pool and addresses again: in a shared ledger it is the swarm's (``swarm``), so the
    new leader finds them; in an SQLite ledger (one per host) it stays the host's, ``local``.
    """

    own: str
    swarm: bool  # whether GlobalDefault pools are the swarm's: a shared ledger

    @classmethod
    def of(cls, shared_ledger: bool, host_id: str) -> Plans:
        return cls(own_plan(shared_ledger, host_id), shared_ledger)

    def of_space(self, space: str) -> str:
        """The owner of a pool of ``space`` that is not shared."""
        return SWARM if self.swarm and space == GLOBAL_SPACE else self.own

    def of_pool(self, pool_id: PoolId) -> str:
        """The owner of the pool ``pool_id`` names."""
        return SHARED if pool_id.shared is not None else self.of_space(pool_id.space)

    @property
    def seen(self) -> tuple[str, ...]:
        """The owners whose pools this host uses: its own, the shared ones, the swarm's."""
        return (self.own, SHARED, SWARM) if self.swarm else (self.own, SHARED)


def shared_name(options: Mapping[str, str]) -> str | None:
    """The ``ipledger.shared`` name, checked: letters, digits, ``.``, ``_`` and ``-``."""
    name = options.get(SHARED_OPTION)
    if name is None:
        return None
    if not _SHARED_NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid {SHARED_OPTION} {name!r:.80}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return name


def describe(policy: ReusePolicy, shared: str | None = None) -> str | None:
    if policy == ReusePolicy() and shared is None:
        return None
    parts = [f"reuse={policy.reuse}"] + ([f"shared={shared}"] if shared else [])
    if policy.quarantine_s:
        parts.append(f"quarantine={policy.quarantine_s}s")
    if policy.hold_s:
        parts.append(f"hold={policy.hold_s}s")
    return " ".join(parts)


@dataclass(frozen=True)
class Holding:
    """A held subnet that a new pool overlaps: its pools, age and leases, for the error."""

    cidr: str
    pools: tuple[str, ...]
    age: timedelta | None
    leases: int
    gateway_leased: bool

    @property
    def idle(self) -> bool:
        """No lease but its gateway's: no container uses it; its network may be gone."""
        return self.leases == int(self.gateway_leased)


def overlap_detail(holding: Holding) -> str:
    """Who holds what a new pool overlaps, in a few words; ``ipledger gc --apply`` is suggested
    only for a pool that no container uses (its network may be gone, removed while ipledger was
    down), never for one in use."""
    if not holding.pools:
        return "held by another pool"
    pools = f"pool{'s' if len(holding.pools) > 1 else ''} {', '.join(holding.pools)}"
    if not holding.idle:
        verb = "hold" if len(holding.pools) > 1 else "holds"
        return f"{pools} {verb} {holding.leases} lease{'' if holding.leases == 1 else 's'}"
    age = f", {_age(holding.age)} old" if holding.age is not None else ""
    what = "leases only its gateway" if holding.gateway_leased else "leases nothing"
    return f"{pools}{age}, {what}: if its network is gone, 'ipledger gc --apply' reclaims it"


def _age(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
