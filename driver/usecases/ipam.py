"""The use cases: one function per IPAM call, one database transaction each.

Arguments and results are plain Python values; Docker's PascalCase JSON lives in ``api.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime

import netaddr

from driver.domain import addresses as allocator
from driver.domain.addresses import DefaultPool, Subnet
from driver.domain.errors import (
    AddressInUse,
    AddressOutOfRange,
    InvalidRequest,
    NoAvailableAddress,
    PoolNotFound,
    PoolOverlap,
    PoolsExhausted,
)
from driver.domain.pools import (
    GATEWAY_TYPE,
    MAC_OPTION,
    NAME_OPTION,
    REQUEST_ADDRESS_TYPE,
    SERIAL_OPTION,
    SHARED,
    SHARED_OPTION,
    SHARED_PREFIX,
    SPACES,
    PoolGrant,
    ReusePolicy,
    describe,
    own_plan,
    owner_of,
    pool_id_for,
    reuse_policy,
    shared_name,
)
from driver.storage.store import Lease, Ledger, PoolRecord, Store, retrying

log = logging.getLogger(__name__)

# Expired parked addresses freed per allocation: bounds the cost of one call after a long pause.
EXPIRE_BATCH = 32


class Ipam:
    """Docker's IPAM calls as use cases over one :class:`Store`."""

    def __init__(
        self, store: Store, default_pools: tuple[DefaultPool, ...], host_id: str = "local"
    ) -> None:
        self.store = store
        self.default_pools = default_pools
        self.host_id = host_id
        self.owner = own_plan(store.shared, host_id)

    # --- pools ---------------------------------------------------------------------------

    @retrying
    def request_pool(
        self, space: str, pool: str, subpool: str, options: Mapping[str, str], v6: bool
    ) -> PoolGrant:
        if space not in SPACES:
            raise InvalidRequest(
                f"unknown address space {space!r}: ipledger serves {' and '.join(SPACES)}"
            )
        network = allocator.parse_cidr(pool, "pool") if pool else None
        sub = allocator.parse_cidr(subpool, "ip-range (SubPool)") if subpool else None
        size: int | None = None
        if network is not None and allocator.is_size_only(network):
            # Docker 29: "any subnet of this size"; /0, "a subnet of the default size"
            size, network = network.prefixlen or None, None
            version = 4 if "." in pool else 6
        elif network is not None:
            # The swarm manager never sets V6: the pool says which family it is.
            version = network.version
        else:
            version = 6 if v6 else 4
        if sub is not None and network is None:
            raise InvalidRequest(f"ip-range (SubPool) {subpool} given without a pool (subnet)")
        policy = reuse_policy(options)
        shared = shared_name(options)
        if shared is not None and network is None:
            raise InvalidRequest(
                f"{SHARED_OPTION}={shared} needs a subnet (--subnet): every "
                "host must name the same one"
            )
        encoded_options = json.dumps(dict(options), sort_keys=True)
        owner = SHARED if shared is not None else self.owner

        with self.store.transaction() as ledger:
            ledger.lock_plans(space, self.owner, shared_too=shared is not None)
            if network is None:
                grant = self._new_default_pool(
                    ledger, space, version, size, encoded_options, policy
                )
            else:
                grant = self._new_explicit_pool(
                    ledger, owner, space, Subnet(network), sub, encoded_options, policy, shared
                )
            ledger.write_history(
                self.host_id,
                "pool-create",
                grant.pool_id,
                grant.pool,
                detail=describe(policy, shared),
            )
        log.info(
            "pool %s granted (%s)",
            grant.pool_id,
            grant.pool,
            extra={"event": "pool-create", "pool": grant.pool_id, "subnet": grant.pool},
        )
        return grant

    def _add_pool(
        self,
        ledger: Ledger,
        owner: str,
        pool_id: str,
        subnet_id: int,
        space: str,
        subnet: Subnet,
        subrange: Subnet | None,
        options: str,
        policy: ReusePolicy,
    ) -> None:
        bounds = (subrange.first, subrange.last) if subrange else (subnet.first, subnet.last)
        ledger.add_pool(
            owner,
            pool_id,
            subnet_id,
            space,
            subnet.cidr,
            subrange.cidr if subrange else None,
            bounds,
            options,
            reuse=policy.reuse,
            quarantine_s=policy.quarantine_s,
            hold_s=policy.hold_s,
            host_id=self.host_id,
        )

    def _new_default_pool(
        self,
        ledger: Ledger,
        space: str,
        version: int,
        size: int | None,
        options: str,
        policy: ReusePolicy,
    ) -> PoolGrant:
        held = ledger.held_subnets((self.owner, SHARED), space, version)
        network = allocator.pick_default_subnet(self.default_pools, version, size, held)
        if network is None:
            bases = ", ".join(str(p.base) for p in self.default_pools if p.version == version)
            wanted = f"/{size}" if size is not None else "of the configured size"
            raise PoolsExhausted(
                f"no free IPv{version} subnet {wanted} left in the default pools "
                f"({bases or 'none configured'}; see IPLEDGER_DEFAULT_POOLS)"
            )
        subnet = Subnet(network)
        subnet_id = ledger.add_subnet(self.owner, space, subnet)
        pool_id = pool_id_for(space, subnet.cidr, None)
        self._add_pool(ledger, self.owner, pool_id, subnet_id, space, subnet, None, options, policy)
        return PoolGrant(pool_id, subnet.cidr)

    def _new_explicit_pool(
        self,
        ledger: Ledger,
        owner: str,
        space: str,
        subnet: Subnet,
        sub: netaddr.IPNetwork | None,
        options: str,
        policy: ReusePolicy,
        shared: str | None,
    ) -> PoolGrant:
        subrange: Subnet | None = None
        if sub is not None:
            subrange = Subnet(sub)
            if not subnet.contains_subnet(subrange):
                raise InvalidRequest(
                    f"ip-range (SubPool) {subrange.cidr} is not inside pool {subnet.cidr}"
                )
        pool_id = pool_id_for(space, subnet.cidr, subrange.cidr if subrange else None, shared)
        existing = ledger.subnet_at(owner, space, subnet)
        if shared is not None:
            named = [
                p for p in ledger.shared_pools_named(f"{SHARED_PREFIX}{shared}/") if p != pool_id
            ]
            if named:
                raise InvalidRequest(
                    f"{SHARED_OPTION}={shared} is already {named[0]}: every "
                    "host must give the same subnet and ip-range"
                )
        # A host's own pools and the shared pools it uses are one address plan to it: nothing
        # in one may overlap the other.
        other_plan = self.owner if shared is not None else SHARED
        if shared is not None and ledger.pool(owner, pool_id) is not None:
            # Another host made this shared pool: use it too. A second network on this host
            # would release the first one's leases with its own: refused, as an overlap.
            self._refuse_overlap(ledger, (other_plan,), space, subnet)
            if not ledger.attach(pool_id, self.host_id):
                raise PoolOverlap(
                    subnet.cidr,
                    f"{subnet.cidr} ({pool_id}, already used by a network on host {self.host_id})",
                    space,
                )
            return PoolGrant(pool_id, subnet.cidr)
        if existing is not None:
            # The built-in IPAM shares one address set between networks that give the same
            # subnet with different ip-ranges; any other repeat is an overlap.
            if shared is not None or subrange is None or ledger.pool(owner, pool_id) is not None:
                other, held_by = ledger.holder_of((owner,), space, (subnet.first, subnet.last))
                raise PoolOverlap(subnet.cidr, other, space, held_by)
            self._refuse_overlap(ledger, (other_plan,), space, subnet)
            ledger.change_refs(existing.id, +1)
            subnet_id = existing.id
        else:
            self._refuse_overlap(ledger, (owner, other_plan), space, subnet)
            subnet_id = ledger.add_subnet(owner, space, subnet)
        self._add_pool(ledger, owner, pool_id, subnet_id, space, subnet, subrange, options, policy)
        if shared is not None:
            ledger.attach(pool_id, self.host_id)
        return PoolGrant(pool_id, subnet.cidr)

    @staticmethod
    def _refuse_overlap(
        ledger: Ledger, owners: tuple[str, ...], space: str, subnet: Subnet
    ) -> None:
        blocker = ledger.held_subnets(owners, space, subnet.version).first_overlapping(
            subnet.first, subnet.last
        )
        if blocker is not None:
            other, held_by = ledger.holder_of(owners, space, blocker)
            raise PoolOverlap(subnet.cidr, other, space, held_by)

    @retrying
    def release_pool(self, pool_id: str) -> None:
        with self.store.transaction() as ledger:
            record = ledger.pool(owner_of(pool_id, self.owner), pool_id, for_update=True)
            if record is None:
                raise PoolNotFound(pool_id)
            self._release_pool(ledger, record, "pool-release")

    @retrying
    def reclaim_pool(self, pool_id: str, created_before: datetime) -> bool:
        """Release a leaked pool (``ipledger gc``), unless it was made again meanwhile."""
        owner = owner_of(pool_id, self.owner)
        with self.store.transaction() as ledger:
            record = ledger.pool(owner, pool_id, for_update=True)
            created = ledger.pool_created_at(owner, pool_id)
            if record is None or created is None or created > created_before:
                return False
            self._release_pool(ledger, record, "gc-pool-release")
        return True

    def _release_pool(self, ledger: Ledger, record: PoolRecord, action: str) -> None:
        if record.shared:
            ledger.detach(record.id, self.host_id)
            if ledger.attached_hosts(record.id):
                # Other hosts still use it: only this host's leftovers go back, and never the
                # gateway, which is every host's.
                gateway = ledger.gateway_of(record.subnet_id, record.id)
                for address in ledger.leased_addresses_of_pool(
                    record.subnet_id, record.id, self.host_id
                ):
                    if address != gateway and ledger.drop_lease(record.subnet_id, address):
                        self._free(ledger, record, address)
                ledger.write_history(self.host_id, "pool-detach", record.id, record.subnet.cidr)
                log.info(
                    "host %s no longer uses shared pool %s",
                    self.host_id,
                    record.id,
                    extra={"event": "pool-detach", "pool": record.id},
                )
                return
        ledger.drop_pool(record.owner, record.id)
        if record.refs <= 1:
            ledger.drop_subnet(record.subnet_id)
        else:
            ledger.change_refs(record.subnet_id, -1)
            # Docker releases every address before the pool; whatever it left behind in
            # this pool goes back to the subnet that the other pools still share.
            for address in ledger.parked_of_pool(record.subnet_id, record.id):
                ledger.unpark(record.subnet_id, address)
                self._free(ledger, record, address)
            for address in ledger.leased_addresses_of_pool(record.subnet_id, record.id):
                if ledger.drop_lease(record.subnet_id, address):
                    self._free(ledger, record, address)
        ledger.write_history(self.host_id, action, record.id, record.subnet.cidr)
        log.info(
            "pool %s released%s",
            record.id,
            " by gc" if action.startswith("gc") else "",
            extra={"event": action, "pool": record.id, "subnet": record.subnet.cidr},
        )

    # --- addresses -----------------------------------------------------------------------

    @retrying
    def request_address(self, pool_id: str, address: str, options: Mapping[str, str]) -> str:
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
        lease = Lease(kind, mac, name)

        with self.store.transaction() as ledger:
            record = ledger.pool(owner_of(pool_id, self.owner), pool_id, for_update=True)
            if record is None:
                raise PoolNotFound(pool_id)
            subnet = record.subnet
            gateway = self._shared_gateway(ledger, record, kind, wanted)
            if gateway is not None:
                log.info(
                    "gateway %s of shared pool %s answered to host %s",
                    subnet.format(gateway),
                    pool_id,
                    self.host_id,
                )
                return subnet.format(gateway)
            if wanted is not None:
                value = self._take_static(ledger, record, wanted)
            else:
                value = self._take_dynamic(
                    ledger, record, lease, serial or record.reuse == "serial"
                )
            ledger.add_lease(record.subnet_id, value, pool_id, kind, mac, name, self.host_id)
            address = str(netaddr.IPAddress(value, subnet.version))
            ledger.write_history(self.host_id, "allocate", pool_id, address, lease)
        answer = subnet.format(value)
        log.info(
            "address %s leased in pool %s (%s%s%s)",
            answer,
            pool_id,
            kind,
            f", mac {mac}" if mac else "",
            f", name {name}" if name else "",
            extra={
                "event": "allocate",
                "pool": pool_id,
                "address": address,
                "kind": kind,
                "mac": mac,
                "endpoint": name,
            },
        )
        return answer

    @staticmethod
    def _take_static(ledger: Ledger, record: PoolRecord, wanted: netaddr.IPAddress) -> int:
        """Take a given address anywhere in the subnet (also outside the ip-range).

        A parked address (quarantined or held) and an address an operator reserved may be
        asked for by name: reservations only keep addresses from dynamic requests.
        """
        subnet, value = record.subnet, int(wanted)
        if wanted.version != subnet.version or not subnet.contains(value):
            raise AddressOutOfRange(str(wanted), subnet.cidr)
        why = subnet.reserved(value)
        if why is not None:
            raise AddressInUse(str(wanted), f"{why} of {subnet.cidr} is reserved")
        if allocator.take(ledger.book(record.subnet_id), value):
            return value
        holder = ledger.lease_holder(record.subnet_id, value)
        if holder is None and ledger.unpark(record.subnet_id, value):
            return value
        if (
            holder is None
            and record.reservations
            and ledger.reservation_at(record.subnet_id, value)
        ):
            return value
        raise AddressInUse(str(wanted), f"held by {holder or 'another lease'} in {subnet.cidr}")

    def _take_dynamic(self, ledger: Ledger, record: PoolRecord, lease: Lease, serial: bool) -> int:
        """Take the lowest free address of the pool's range, or the next one after the cursor.

        In a pool that parks released addresses: an endpoint that had an address within the
        hold time gets it back; expired parked addresses are freed first; and when nothing is
        free, the parked address due soonest is handed out rather than failing.
        """
        book = ledger.book(record.subnet_id)
        lo, hi = record.range_first, record.range_last
        if record.parks:
            at = ledger.clock()
            if record.hold_s and lease.kind == "endpoint" and (lease.mac or lease.name):
                held = ledger.parked_for(record.subnet_id, record.id, lease.mac, lease.name, at)
                if held is not None and ledger.unpark(record.subnet_id, held):
                    return held
            for address in ledger.expired_parked(record.subnet_id, at, EXPIRE_BATCH):
                ledger.unpark(record.subnet_id, address)
                self._free(ledger, record, address)
        if serial:
            cursor = record.cursor if record.cursor is not None else lo
            taken = allocator.take_next(book, lo, hi, cursor)
        else:
            taken = allocator.take_lowest(book, lo, hi)
        if taken is None:
            taken = ledger.soonest_parked(record.subnet_id, lo, hi)
            if taken is not None:
                ledger.unpark(record.subnet_id, taken)
        if taken is None:
            raise NoAvailableAddress(
                f"ip-range {record.subpool} of pool {record.subnet.cidr}"
                if record.subpool
                else f"pool {record.subnet.cidr}"
            )
        if serial:
            ledger.set_cursor(record.subnet_id, taken + 1)
        return taken

    @staticmethod
    def _shared_gateway(
        ledger: Ledger, record: PoolRecord, kind: str, wanted: netaddr.IPAddress | None
    ) -> int | None:
        """The one gateway of a shared pool, which every host's network asks for.

        This is the only request answered with an existing lease. It cannot give one address
        to two holders: the holder is the gateway of the shared segment (a router outside the
        hosts, or each host's side of it), never a container, and a gateway lease is released
        only when the last host leaves the pool. Any other request, a second one with the same
        MAC included, is a new holder: Docker re-sends a dropped call with an empty body, so no
        request is ever a retry of an earlier one.
        """
        if not record.shared or kind != "gateway":
            return None
        held = ledger.gateway_of(record.subnet_id, record.id)
        if held is None or (wanted is not None and int(wanted) != held):
            return None
        return held

    @retrying
    def release_address(self, pool_id: str, address: str) -> bool:
        """Release a lease; False (not an error) when the address was not leased."""
        wanted = allocator.parse_address(address)
        with self.store.transaction() as ledger:
            record = self._pool_of(ledger, pool_id, wanted)
            released = self._release(ledger, record, int(wanted), "release")
        if not released:
            log.info("address %s was not leased in pool %s: nothing to release", wanted, pool_id)
        return released

    @retrying
    def reclaim_address(self, pool_id: str, address: str, leased_before: datetime) -> bool:
        """Release a leaked lease (``ipledger gc``), unless it was leased again meanwhile."""
        wanted = allocator.parse_address(address)
        with self.store.transaction() as ledger:
            record = self._pool_of(ledger, pool_id, wanted)
            leased = ledger.lease_created_at(record.subnet_id, int(wanted))
            if leased is None or leased > leased_before:
                return False
            return self._release(ledger, record, int(wanted), "gc-release")

    def _pool_of(self, ledger: Ledger, pool_id: str, wanted: netaddr.IPAddress) -> PoolRecord:
        record = ledger.pool(owner_of(pool_id, self.owner), pool_id, for_update=True)
        if record is None:
            raise PoolNotFound(pool_id)
        if wanted.version != record.subnet.version or not record.subnet.contains(int(wanted)):
            raise AddressOutOfRange(str(wanted), record.subnet.cidr)
        return record

    def _release(self, ledger: Ledger, record: PoolRecord, value: int, action: str) -> bool:
        """Drop a lease; park the address or free it. False when it was not leased."""
        if (
            record.shared
            and ledger.gateway_of(record.subnet_id, record.id) == value
            and set(ledger.attached_hosts(record.id)) - {self.host_id}
        ):
            log.info("gateway %s of shared pool %s stays: other hosts use it", value, record.id)
            return False
        lease = ledger.drop_lease(record.subnet_id, value)
        if lease is None:
            return False
        keep = record.quarantine_s
        if lease.mac or lease.name:
            keep = max(keep, record.hold_s)
        if keep and not (record.reservations and ledger.reservation_at(record.subnet_id, value)):
            ledger.park(record.subnet_id, value, record.id, lease, ledger.clock() + keep)
        else:
            self._free(ledger, record, value)
        address = str(netaddr.IPAddress(value, record.subnet.version))
        ledger.write_history(
            self.host_id,
            action,
            record.id,
            address,
            lease,
            detail=f"parked for {keep}s" if keep else None,
        )
        log.info(
            "address %s released in pool %s%s",
            address,
            record.id,
            f" (parked for {keep}s)" if keep else "",
            extra={
                "event": action,
                "pool": record.id,
                "address": address,
                "kind": lease.kind,
                "mac": lease.mac,
                "endpoint": lease.name,
            },
        )
        return True

    @staticmethod
    def _free(ledger: Ledger, record: PoolRecord, address: int) -> None:
        """Return an address to the free ranges, unless an operator reserved it meanwhile."""
        if record.reservations and ledger.reservation_at(record.subnet_id, address):
            return
        allocator.give_back(ledger.book(record.subnet_id), address)
