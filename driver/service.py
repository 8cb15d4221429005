"""The use cases: one function per IPAM call, one database transaction each.

Arguments and results are plain Python values; Docker's PascalCase JSON lives in ``api.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import netaddr

from driver import allocator
from driver.allocator import DefaultPool, Subnet
from driver.errors import (
    AddressInUse,
    AddressOutOfRange,
    InvalidRequest,
    NoAvailableAddress,
    PoolNotFound,
    PoolOverlap,
    PoolsExhausted,
)
from driver.store import Ledger, PoolRecord, Store

log = logging.getLogger(__name__)

LOCAL_SPACE = "LocalDefault"
GLOBAL_SPACE = "GlobalDefault"
SPACES = (LOCAL_SPACE, GLOBAL_SPACE)

GATEWAY_TYPE = "com.docker.network.gateway"
REQUEST_ADDRESS_TYPE = "RequestAddressType"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
NAME_OPTION = "com.docker.network.endpoint.name"
SERIAL_OPTION = "com.docker.network.ipam.serial"


@dataclass(frozen=True)
class PoolGrant:
    pool_id: str
    pool: str


def pool_id_for(space: str, cidr: str, subpool: str | None) -> str:
    """Deterministic, like the built-in ``LocalDefault/172.28.0.0/16/172.28.5.0/24``."""
    return f"{space}/{cidr}" + (f"/{subpool}" if subpool else "")


class Ipam:
    """Docker's IPAM calls as use cases over one :class:`Store`."""

    def __init__(self, store: Store, default_pools: tuple[DefaultPool, ...]) -> None:
        self.store = store
        self.default_pools = default_pools

    # --- pools ---------------------------------------------------------------------------

    def request_pool(self, space: str, pool: str, subpool: str,
                     options: Mapping[str, str], v6: bool) -> PoolGrant:
        if space not in SPACES:
            raise InvalidRequest(
                f"unknown address space {space!r}: ipledger serves {' and '.join(SPACES)}"
            )
        network = allocator.parse_cidr(pool, "pool") if pool else None
        sub = allocator.parse_cidr(subpool, "ip-range (SubPool)") if subpool else None
        size: int | None = None
        if network is not None and allocator.is_size_only(network):
            size, network = network.prefixlen, None
            version = 4 if "." in pool else 6
        elif network is not None:
            # The swarm manager never sets V6: the pool says which family it is.
            version = network.version
        else:
            version = 6 if v6 else 4
        if sub is not None and network is None:
            raise InvalidRequest(f"ip-range (SubPool) {subpool} given without a pool (subnet)")
        encoded_options = json.dumps(dict(options), sort_keys=True)

        with self.store.transaction() as ledger:
            if network is None:
                grant = self._new_default_pool(ledger, space, version, size, encoded_options)
            else:
                grant = self._new_explicit_pool(ledger, space, Subnet(network), sub,
                                                encoded_options)
        log.info("pool %s granted (%s)", grant.pool_id, grant.pool)
        return grant

    def _new_default_pool(self, ledger: Ledger, space: str, version: int, size: int | None,
                          options: str) -> PoolGrant:
        held = ledger.held_subnets(space, version)
        network = allocator.pick_default_subnet(self.default_pools, version, size, held)
        if network is None:
            bases = ", ".join(str(p.base) for p in self.default_pools if p.version == version)
            wanted = f"/{size}" if size is not None else "of the configured size"
            raise PoolsExhausted(
                f"no free IPv{version} subnet {wanted} left in the default pools "
                f"({bases or 'none configured'}; see IPLEDGER_DEFAULT_POOLS)"
            )
        subnet = Subnet(network)
        subnet_id = ledger.add_subnet(space, subnet)
        pool_id = pool_id_for(space, subnet.cidr, None)
        ledger.add_pool(pool_id, subnet_id, space, subnet.cidr, None,
                        (subnet.first, subnet.last), options)
        return PoolGrant(pool_id, subnet.cidr)

    def _new_explicit_pool(self, ledger: Ledger, space: str, subnet: Subnet,
                           sub: netaddr.IPNetwork | None, options: str) -> PoolGrant:
        subrange: Subnet | None = None
        if sub is not None:
            subrange = Subnet(sub)
            if not subnet.contains_subnet(subrange):
                raise InvalidRequest(
                    f"ip-range (SubPool) {subrange.cidr} is not inside pool {subnet.cidr}"
                )
        pool_id = pool_id_for(space, subnet.cidr, subrange.cidr if subrange else None)
        existing = ledger.subnet_at(space, subnet)
        if existing is not None:
            # The built-in IPAM shares one address set between networks that give the same
            # subnet with different ip-ranges; any other repeat is an overlap.
            if subrange is None or ledger.pool(pool_id) is not None:
                raise PoolOverlap(subnet.cidr, existing.cidr, space)
            ledger.change_refs(existing.id, +1)
            subnet_id = existing.id
        else:
            blocker = ledger.held_subnets(space, subnet.version).first_overlapping(
                subnet.first, subnet.last
            )
            if blocker is not None:
                other = netaddr.IPRange(blocker[0], blocker[1]).cidrs()[0]
                raise PoolOverlap(subnet.cidr, str(other), space)
            subnet_id = ledger.add_subnet(space, subnet)
        bounds = (subrange.first, subrange.last) if subrange else (subnet.first, subnet.last)
        ledger.add_pool(pool_id, subnet_id, space, subnet.cidr,
                        subrange.cidr if subrange else None, bounds, options)
        return PoolGrant(pool_id, subnet.cidr)

    def release_pool(self, pool_id: str) -> None:
        with self.store.transaction() as ledger:
            record = ledger.pool(pool_id, for_update=True)
            if record is None:
                raise PoolNotFound(pool_id)
            ledger.drop_pool(pool_id)
            if record.refs <= 1:
                ledger.drop_subnet(record.subnet_id)
            else:
                ledger.change_refs(record.subnet_id, -1)
                # Docker releases every address before the pool; whatever it left behind in
                # this pool goes back to the subnet that the other pools still share.
                book = ledger.book(record.subnet_id)
                for subnet_id, address in ledger.leased_addresses_of_pool(pool_id):
                    if ledger.drop_lease(subnet_id, address):
                        allocator.give_back(book, address)
        log.info("pool %s released", pool_id)

    # --- addresses -----------------------------------------------------------------------

    def request_address(self, pool_id: str, address: str,
                        options: Mapping[str, str]) -> str:
        wanted = allocator.parse_address(address) if address else None
        mac = options.get(MAC_OPTION) or None
        name = options.get(NAME_OPTION) or None
        if options.get(REQUEST_ADDRESS_TYPE) == GATEWAY_TYPE:
            kind = "gateway"
        elif mac or name:
            kind = "endpoint"
        else:
            kind = "aux" if wanted is not None else "other"
        serial = str(options.get(SERIAL_OPTION, "")).lower() == "true"

        with self.store.transaction() as ledger:
            record = ledger.pool(pool_id, for_update=True)
            if record is None:
                raise PoolNotFound(pool_id)
            subnet = record.subnet
            repeated = self._repeated(ledger, pool_id, kind, mac, wanted)
            if repeated is not None:
                log.info("address %s already leased in pool %s to this %s%s: answering it again",
                         subnet.format(repeated), pool_id, kind, f" (mac {mac})" if mac else "")
                return subnet.format(repeated)
            if wanted is not None:
                value = self._take_static(ledger, record, wanted)
            else:
                value = self._take_dynamic(ledger, record, serial)
            ledger.add_lease(record.subnet_id, value, pool_id, kind, mac, name)
        answer = subnet.format(value)
        log.info("address %s leased in pool %s (%s%s%s)", answer, pool_id, kind,
                 f", mac {mac}" if mac else "", f", name {name}" if name else "")
        return answer

    @staticmethod
    def _take_static(ledger: Ledger, record: PoolRecord, wanted: netaddr.IPAddress) -> int:
        """Take a given address anywhere in the subnet (also outside the ip-range)."""
        subnet, value = record.subnet, int(wanted)
        if wanted.version != subnet.version or not subnet.contains(value):
            raise AddressOutOfRange(str(wanted), subnet.cidr)
        why = subnet.reserved(value)
        if why is not None:
            raise AddressInUse(str(wanted), f"{why} of {subnet.cidr} is reserved")
        if not allocator.take(ledger.book(record.subnet_id), value):
            holder = ledger.lease_holder(record.subnet_id, value) or "another lease"
            raise AddressInUse(str(wanted), f"held by {holder} in {subnet.cidr}")
        return value

    @staticmethod
    def _take_dynamic(ledger: Ledger, record: PoolRecord, serial: bool) -> int:
        """Take the lowest free address of the pool's range, or the next one after the cursor."""
        book = ledger.book(record.subnet_id)
        lo, hi = record.range_first, record.range_last
        if serial:
            cursor = record.cursor if record.cursor is not None else lo
            taken = allocator.take_next(book, lo, hi, cursor)
        else:
            taken = allocator.take_lowest(book, lo, hi)
        if taken is None:
            raise NoAvailableAddress(
                f"ip-range {record.subpool} of pool {record.subnet.cidr}" if record.subpool
                else f"pool {record.subnet.cidr}"
            )
        if serial:
            ledger.set_cursor(record.subnet_id, taken + 1)
        return taken

    @staticmethod
    def _repeated(ledger: Ledger, pool_id: str, kind: str, mac: str | None,
                  wanted: netaddr.IPAddress | None) -> int | None:
        """The lease a repeated request already got, so that it is answered, not doubled.

        Docker's plugin client re-sends a request whose answer it did not get (ipledger died
        after the commit, say). A pool has one gateway, and an endpoint is known by the MAC
        address Docker sends (RequiresMACAddress): a second request of the same gateway or of
        the same endpoint in the same pool is that retry.
        """
        if kind == "gateway":
            held = ledger.held_by(pool_id, "gateway", None)
        elif kind == "endpoint" and mac:
            held = ledger.held_by(pool_id, "endpoint", mac)
        else:
            return None
        if held is None or (wanted is not None and int(wanted) != held):
            return None
        return held

    def release_address(self, pool_id: str, address: str) -> None:
        wanted = allocator.parse_address(address)
        with self.store.transaction() as ledger:
            record = ledger.pool(pool_id, for_update=True)
            if record is None:
                raise PoolNotFound(pool_id)
            value = int(wanted)
            if wanted.version != record.subnet.version or not record.subnet.contains(value):
                raise AddressOutOfRange(str(wanted), record.subnet.cidr)
            released = ledger.drop_lease(record.subnet_id, value)
            if released:
                allocator.give_back(ledger.book(record.subnet_id), value)
        if released:
            log.info("address %s released in pool %s", wanted, pool_id)
        else:
            log.info("address %s was not leased in pool %s: nothing to release", wanted, pool_id)

