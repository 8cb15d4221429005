"""CNI's side of the ledger: a network's IPAM config, read as host-local reads it, and the
attachment a CNI lease belongs to.

Pure: parses and checks, names the field that is wrong (answered with CNI code 7), and writes
nothing. A range is a pool: its PoolID is the Docker form with the range as the sub-pool, so that
a CNI network and a Docker network with ``ipledger.shared=NAME`` and the same subnet draw from one
shared pool.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import netaddr

from driver.domain import addresses as allocator
from driver.domain.addresses import Subnet
from driver.domain.cni_spec import (
    IP4_IP6_RESULT,
    SUPPORTED_VERSIONS,
    UNVERSIONED,
    VERSIONED_IPS,
)
from driver.domain.dns import REVERSE_OPTION, ZONE_OPTION, DnsPolicy, dns_policy
from driver.domain.errors import InvalidRequest
from driver.domain.pools import (
    CNI_NETWORK_OPTION,
    HOLD_OPTION,
    LOCAL_SPACE,
    QUARANTINE_OPTION,
    REUSE_OPTION,
    SHARED_OPTION,
    LeaseKind,
    PoolId,
    ReusePolicy,
    reuse_policy,
    shared_name,
)

# CNI's network name: letters, digits, '_', '.', '-' (libcni's validation)
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
# how a lease held for a pod names it (its name): "pod NAMESPACE/NAME"
POD_HOLDER = "pod "
# Kubernetes' own limits: a namespace is a DNS label, a pod's name a DNS subdomain
POD_NAMESPACE_LENGTH = 63
POD_NAME_LENGTH = 253
# what a CNI network's pool records of its config beside the network's name (issue 21)
HOLD_BY_OPTION = "ipledger.cni.hold_by"
ROUTES_OPTION = "ipledger.cni.routes"
DNS_OPTION = "ipledger.cni.dns"
GATEWAY_OPTION = "ipledger.cni.gateway"
GENERATION_OPTION = "ipledger.cni.generation"
_OWN_KEYS = (
    "socket",
    "spool",
    "reuse",
    "quarantine",
    "hold",
    "hold_by",
    "shared",
    "generation",
    "dns_zone",
    "dns_reverse",
)


@dataclass(frozen=True)
class Attachment:
    """What a CNI lease belongs to: (network name, container ID, ifname)."""

    network: str
    container_id: str
    ifname: str

    def __str__(self) -> str:
        return f"{self.network}/{self.container_id}/{self.ifname}"

    @classmethod
    def parse(cls, text: str) -> Attachment:
        network, container_id, ifname = text.split("/", 2)
        return cls(network, container_id, ifname)


@dataclass(frozen=True)
class CniRange:
    """One entry of host-local's ``ranges``: a subnet, the addresses handed out, the gateway."""

    subnet: Subnet
    first: int
    last: int
    gateway: int | None

    @property
    def version(self) -> int:
        return self.subnet.version

    def text(self, shared: str | None) -> str:
        subpool = self.pool_id(shared).subpool
        return range_text(self.subnet.cidr, subpool, shared)

    @property
    def whole_subnet(self) -> bool:
        allocatable = self.subnet.allocatable()
        return allocatable is not None and (self.first, self.last) == allocatable

    def pool_id(self, shared: str | None) -> PoolId:
        """The pool this range is: the subnet, with the range as sub-pool unless it is all of it."""
        subpool = None
        if not self.whole_subnet:
            v = self.subnet.version
            subpool = f"{netaddr.IPAddress(self.first, v)}-{netaddr.IPAddress(self.last, v)}"
        return PoolId(LOCAL_SPACE, self.subnet.cidr, subpool, shared)


@dataclass(frozen=True)
class CniNetwork:
    """A network's config, as far as its IPAM is concerned."""

    cni_version: str
    name: str
    # one set of ranges per address family; an attachment gets one address from each set
    range_sets: tuple[tuple[CniRange, ...], ...]
    routes: tuple[Mapping[str, Any], ...]
    dns: Mapping[str, Any]
    policy: ReusePolicy
    shared: str | None
    hold_by_pod: bool
    # the conflist's version as its operator numbers it (ipam.ipledger.generation): an ADD with
    # an older one than the ledger applied does not undo the newer one's options (a rollout)
    generation: int = 0
    # where its leases are published (ipam.ipledger.dns_zone, dns_reverse); None: nowhere
    dns_policy: DnsPolicy | None = None

    def options(self, cni_range: CniRange) -> dict[str, str]:
        """What a pool made for one of this network's ranges records of the config, beside its
        policy (in the pool's own columns): what the next ADD compares with its conflist."""
        recorded = {
            CNI_NETWORK_OPTION: self.name,
            HOLD_BY_OPTION: "pod" if self.hold_by_pod else "container",
            ROUTES_OPTION: _json(self.routes),
            DNS_OPTION: _json(self.dns),
            GENERATION_OPTION: str(self.generation),
        }
        if self.dns_policy is not None:
            recorded[ZONE_OPTION] = self.dns_policy.zone
            recorded[REVERSE_OPTION] = "true" if self.dns_policy.reverse else "false"
        if cni_range.gateway is not None:
            recorded[GATEWAY_OPTION] = str(netaddr.IPAddress(cni_range.gateway, cni_range.version))
        return recorded


@dataclass(frozen=True)
class OptionChange:
    """One option of a network whose conflist now says otherwise than the ledger recorded."""

    option: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.option} {self.old} -> {self.new}"


def option_changes(
    network: CniNetwork, cni_range: CniRange, recorded: Mapping[str, str], policy: ReusePolicy
) -> list[OptionChange]:
    """What the conflist changed, against the pool of ``cni_range`` made at an earlier ADD (its
    recorded options and policy). A pool made before ipledger recorded an option (routes, dns,
    gateway) records it at this ADD without a change: what it was is not known."""
    changes = [
        OptionChange(option, old, new)
        for option, old, new in (
            ("reuse", str(policy.reuse), str(network.policy.reuse)),
            ("quarantine", duration(policy.quarantine_s), duration(network.policy.quarantine_s)),
            ("hold", duration(policy.hold_s), duration(network.policy.hold_s)),
        )
        if old != new
    ]
    wanted = network.options(cni_range)
    for key, option in (
        (HOLD_BY_OPTION, "hold_by"),
        (ROUTES_OPTION, "routes"),
        (DNS_OPTION, "dns"),
        (GATEWAY_OPTION, "gateway"),
        (GENERATION_OPTION, "generation"),
        (ZONE_OPTION, "dns_zone"),
        (REVERSE_OPTION, "dns_reverse"),
    ):
        old = recorded.get(key, _UNRECORDED.get(key))
        new = wanted.get(key)
        if key in (ZONE_OPTION, REVERSE_OPTION) and old != new:
            changes.append(OptionChange(option, old or "none", new or "none"))
        elif old is not None and old != new:
            changes.append(OptionChange(option, old, new or "none"))
    return changes


# what a pool made before ipledger recorded its options had: no generation (the others are
# not known, and are recorded at the next ADD without a change)
_UNRECORDED = {GENERATION_OPTION: "0"}


def older_than_applied(network: CniNetwork, recorded: Mapping[str, str]) -> int | None:
    """The generation the ledger applied, when the network's conflist is an older one."""
    applied = int(recorded.get(GENERATION_OPTION, "0"))
    return applied if network.generation < applied else None


def duration(seconds: int) -> str:
    """Seconds as the options give them: ``10m``, ``1h``, ``90s``, ``0s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def range_text(cidr: str, subpool: str | None, shared: str | None) -> str:
    """A range as an operator reads it: the subnet, the addresses handed out when not all of
    it, the shared name."""
    return cidr + (f" {subpool}" if subpool else "") + (f" (shared {shared})" if shared else "")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def holder_shown(
    mac: str | None, attachment: str | None, name: str | None, pod: str | None = None
) -> str | None:
    """What stands where a lease's MAC would: the MAC; for a CNI lease, which has none, its
    attachment (network/container/ifname) and the pod the runtime named for it (the lease's
    ``pod``, else the pod it is held for when its name records one, ``hold_by: pod``), as
    ``lan/3f9a.../eth0 (pod shop/web-0)``; None when there is neither.
    Not escaped: whoever prints it does (:func:`driver.domain.text.printable`)."""
    if mac:
        return mac
    if not attachment:
        return None
    if pod:
        return f"{attachment} ({POD_HOLDER}{pod})"
    if name and name.startswith(POD_HOLDER):
        return f"{attachment} ({name})"
    return attachment


# how a CNI event's detail names the pod, after the attachment: "lan/c1/eth0, pod shop/web-0"
_POD_DETAIL = ", " + POD_HOLDER


def event_detail(attachment: str, pod: str | None, *more: str | None) -> str:
    """A CNI event's detail: the attachment first, then ``more``, the pod last (a pod's name is
    the runtime's text: whatever it holds, what follows ``, pod `` is the pod)."""
    parts = [attachment, *filter(None, more)]
    return ", ".join(parts) + (f"{_POD_DETAIL}{pod}" if pod else "")


def event_attachment(kind: str | None, detail: str | None) -> str | None:
    """The attachment a CNI event of the history names: its detail starts with it."""
    if kind != LeaseKind.CNI or not detail:
        return None
    first = detail.split(", ", 1)[0]  # an attachment has no space: an ifname may not
    return first if first.count("/") >= 2 else None


def event_pod(kind: str | None, detail: str | None) -> str | None:
    """The pod a CNI event of the history names (:func:`event_detail`), or None."""
    if event_attachment(kind, detail) is None:
        return None
    assert detail is not None
    _, found, pod = detail.partition(_POD_DETAIL)
    return pod if found and pod else None


def pod_of(cni_args: Mapping[str, str]) -> str | None:
    """The pod the runtime named in CNI_ARGS, "NAMESPACE/NAME"; None when it named none. A
    name longer than Kubernetes allows is refused (it could not be recorded)."""
    namespace, pod = cni_args.get("K8S_POD_NAMESPACE"), cni_args.get("K8S_POD_NAME")
    if not (namespace and pod):
        return None
    for key, value, longest in (
        ("K8S_POD_NAMESPACE", namespace, POD_NAMESPACE_LENGTH),
        ("K8S_POD_NAME", pod, POD_NAME_LENGTH),
    ):
        if len(value) > longest:
            raise InvalidRequest(
                f"CNI_ARGS: {key} has {len(value)} characters; Kubernetes allows at most {longest}"
            )
    return f"{namespace}/{pod}"


def hold_key(network: CniNetwork, container_id: str, cni_args: Mapping[str, str]) -> str:
    """Who a released address is held for: the pod (namespace/name) when the config says so and
    the runtime named it, else the container."""
    pod = pod_of(cni_args)
    if network.hold_by_pod and pod is not None:
        return f"{POD_HOLDER}{pod}"
    return f"container {container_id}"


def parse_args(text: str) -> dict[str, str]:
    """``CNI_ARGS``: ``K=V;K=V``."""
    found: dict[str, str] = {}
    for item in filter(None, text.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidRequest(f"CNI_ARGS: {item!r:.60} is not KEY=VALUE")
        found[key] = value
    return found


def parse_network(conf: Any) -> CniNetwork:
    """The network config from the runtime's stdin; InvalidRequest names the field."""
    if not isinstance(conf, dict):
        raise InvalidRequest("network config: expected a JSON object")
    if "plugins" in conf and "ipam" not in conf:
        raise InvalidRequest(
            'network config: a conflist ("plugins") was given where the runtime passes one '
            "plugin's config (the list's entry that has the ipam section, with the list's name "
            "and cniVersion put in it, as libcni does)"
        )
    version = conf.get("cniVersion")
    if version is None or version == "":
        version = UNVERSIONED  # as libcni reads a config without one
    if not isinstance(version, str):
        raise InvalidRequest(f"cniVersion: expected a version string, not {version!r:.20}")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidRequest(
            f"cniVersion: {version!r:.20} is not supported (ipledger speaks "
            f"{', '.join(SUPPORTED_VERSIONS)})"
        )
    name = _text(conf, "name")
    if not _NETWORK_NAME.fullmatch(name):
        raise InvalidRequest(f"name: {name!r:.80} is not a valid CNI network name")
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict):
        raise InvalidRequest("ipam: expected an object")
    own = ipam.get("ipledger", {})
    if not isinstance(own, dict):
        raise InvalidRequest("ipam.ipledger: expected an object")
    unknown = sorted(set(own) - set(_OWN_KEYS))
    if unknown:
        raise InvalidRequest(
            f"ipam.ipledger.{unknown[0]}: unknown option (known: {', '.join(_OWN_KEYS)})"
        )
    options = {
        key: str(own[field])
        for key, field in (
            (REUSE_OPTION, "reuse"),
            (QUARANTINE_OPTION, "quarantine"),
            (HOLD_OPTION, "hold"),
            (SHARED_OPTION, "shared"),
        )
        if own.get(field) is not None
    }
    try:
        policy, shared = reuse_policy(options), shared_name(options)
    except InvalidRequest as e:
        raise InvalidRequest(f"ipam.ipledger: {e.message}") from None
    hold_by = own.get("hold_by", "container")
    if hold_by not in ("container", "pod"):
        raise InvalidRequest(f"ipam.ipledger.hold_by: {hold_by!r:.40} is not container or pod")
    generation = own.get("generation", 0)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise InvalidRequest(
            f"ipam.ipledger.generation: {generation!r:.40} is not a whole number 0 or more"
        )
    try:
        dns = dns_policy(
            {
                key: str(own[field]).lower() if isinstance(own[field], bool) else str(own[field])
                for key, field in ((ZONE_OPTION, "dns_zone"), (REVERSE_OPTION, "dns_reverse"))
                if own.get(field) is not None
            }
        )
    except InvalidRequest as e:
        raise InvalidRequest(f"ipam.ipledger: {e.message}") from None
    range_sets = _range_sets(ipam)
    routes = ipam.get("routes", [])
    if not isinstance(routes, list) or not all(
        isinstance(r, dict) and isinstance(r.get("dst"), str) for r in routes
    ):
        raise InvalidRequest('ipam.routes: expected a list of {"dst": CIDR, "gw": IP}')
    for i, route in enumerate(routes):
        allocator.parse_cidr(route["dst"], f"ipam.routes[{i}].dst")
    resolver = ipam.get("dns", {})
    if not isinstance(resolver, dict):
        raise InvalidRequest("ipam.dns: expected an object")
    return CniNetwork(
        cni_version=version,
        name=name,
        range_sets=range_sets,
        routes=tuple(routes),
        dns=resolver,
        policy=policy,
        shared=shared,
        hold_by_pod=hold_by == "pod",
        generation=generation,
        dns_policy=dns,
    )


def cni_result(network: CniNetwork, ips: Sequence[tuple[str, str | None]]) -> dict[str, Any]:
    """ADD's result in the network's CNI version, for its addresses (``203.0.113.2/24``) and
    their gateways, as host-local prints it (IPAM gives no interfaces). The configured ``dns`` is
    answered (host-local answers ``{}`` whatever the config says)."""
    version = network.cni_version
    if version in IP4_IP6_RESULT:
        return _ip4_ip6_result(network, ips)
    entries = []
    for address, gateway in ips:
        entry: dict[str, Any] = {}
        if version in VERSIONED_IPS:
            entry["version"] = "6" if ":" in address else "4"
        entry["address"] = address
        if gateway is not None:
            entry["gateway"] = gateway
        entries.append(entry)
    result: dict[str, Any] = {"cniVersion": version, "ips": entries}
    if network.routes:
        result["routes"] = list(network.routes)
    result["dns"] = dict(network.dns)
    return result


def _ip4_ip6_result(network: CniNetwork, ips: Sequence[tuple[str, str | None]]) -> dict[str, Any]:
    """0.1.0 and 0.2.0: one address per family, each with the routes of its family, as libcni
    converts a result down to them."""
    result: dict[str, Any] = {"cniVersion": network.cni_version}
    for family, key in ((4, "ip4"), (6, "ip6")):
        found = [(a, g) for a, g in ips if (":" in a) == (family == 6)]
        if not found:
            continue
        address, gateway = found[0]
        config: dict[str, Any] = {"ip": address}
        if gateway is not None:
            config["gateway"] = gateway
        routes = [r for r in network.routes if (":" in r["dst"]) == (family == 6)]
        if routes:
            config["routes"] = routes
        result[key] = config
    result["dns"] = dict(network.dns)
    return result


def _range_sets(ipam: Mapping[str, Any]) -> tuple[tuple[CniRange, ...], ...]:
    sets = ipam.get("ranges")
    if sets is None and "subnet" in ipam:
        # host-local's older form: one range at the top of the ipam section
        sets = [
            [{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}]
        ]
    if not isinstance(sets, list) or not sets:
        raise InvalidRequest("ipam.ranges: expected a non-empty list of range sets")
    parsed: list[tuple[CniRange, ...]] = []
    families: set[int] = set()
    for i, entries in enumerate(sets):
        if not isinstance(entries, list) or not entries:
            raise InvalidRequest(f"ipam.ranges[{i}]: expected a non-empty list of ranges")
        ranges = tuple(_range(entry, f"ipam.ranges[{i}][{j}]") for j, entry in enumerate(entries))
        versions = {r.subnet.version for r in ranges}
        if len(versions) > 1:
            raise InvalidRequest(f"ipam.ranges[{i}]: mixes IPv4 and IPv6 ranges in one set")
        if versions & families:
            raise InvalidRequest(f"ipam.ranges[{i}]: a second range set of IPv{versions.pop()}")
        families |= versions
        parsed.append(ranges)
    return tuple(parsed)


def _range(entry: Any, path: str) -> CniRange:
    if not isinstance(entry, dict):
        raise InvalidRequest(f"{path}: expected an object")
    network = allocator.parse_cidr(entry.get("subnet"), f"{path}.subnet")
    subnet = Subnet(network)
    allocatable = subnet.allocatable()
    if allocatable is None:
        raise InvalidRequest(f"{path}.subnet: {subnet.cidr} has no address to hand out")
    first, last = allocatable

    def address(key: str) -> int | None:
        if entry.get(key) is None:
            return None
        value = allocator.parse_address(entry[key], f"{path}.{key}")
        if value.version != subnet.version or not subnet.contains(int(value)):
            raise InvalidRequest(f"{path}.{key}: {value} is not in {subnet.cidr}")
        if subnet.reserved(int(value)):
            raise InvalidRequest(f"{path}.{key}: {value} is {subnet.reserved(int(value))}")
        return int(value)

    start, end = address("rangeStart"), address("rangeEnd")
    first, last = start if start is not None else first, end if end is not None else last
    if first > last:
        raise InvalidRequest(f"{path}: rangeStart comes after rangeEnd")
    gateway = address("gateway")
    if gateway is None:
        # as host-local: the subnet's first address that can be handed out
        gateway = allocatable[0]
    return CniRange(subnet, first, last, gateway)


def _text(conf: Mapping[str, Any], key: str) -> str:
    value = conf.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{key}: expected a non-empty string")
    return value


def released_by_spooled_del(leased_at: float, deleted_at: float) -> bool:
    """Whether a DEL that ``ipledger-cni`` spooled at ``deleted_at`` (seconds since the epoch,
    the node's clock) releases a lease of its attachment made at ``leased_at``: only a lease made
    before the DEL. The attachment's identity (network, container ID, ifname) comes back when a
    runtime ADDs the same container again, and the spool is applied before any ADD of the
    network is served, so a lease made after the DEL is the new attachment's own."""
    return leased_at <= deleted_at
