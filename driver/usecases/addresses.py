"""Docker's address calls: RequestAddress and ReleaseAddress, and gc's reclaim of a lease."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

import netaddr

from driver.domain import addresses as allocator
from driver.domain.errors import (
    AddressInUse,
    AddressOutOfRange,
    NoAvailableAddress,
    PoolNotFound,
)
from driver.domain.pools import (
    Lease,
    LeaseKind,
    PoolId,
    Reuse,
    answers_shared_gateway,
    asks_serial,
    requested_lease,
)
from driver.storage.ledger import Ledger
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.calls import IpamCalls

log = logging.getLogger(__name__)

# Expired parked addresses freed per allocation: bounds the cost of one call after a long pause.
EXPIRE_BATCH = 32


class Addresses(IpamCalls):
    """RequestAddress, ReleaseAddress, and gc's reclaim of a lease no endpoint uses."""

    @retrying
    def request_address(self, pool_id: str, address: str, options: Mapping[str, str]) -> str:
        wanted = allocator.parse_address(address) if address else None
        lease = requested_lease(options, static=wanted is not None)
        kind, mac, name = lease.kind, lease.mac, lease.name
        serial = asks_serial(options)

        with self.store.transaction() as ledger:
            record = ledger.pool(PoolId.parse(pool_id).owner(self.owner), pool_id, for_update=True)
            if record is None:
                raise PoolNotFound(pool_id)
            subnet = record.subnet
            gateway = (
                ledger.gateway_of(record.subnet_id, record.id)
                if record.shared and kind == LeaseKind.GATEWAY
                else None
            )
            if answers_shared_gateway(record.shared, kind, wanted, gateway):
                assert gateway is not None
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
                    ledger, record, lease, serial or record.policy.reuse == Reuse.SERIAL
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
            if record.policy.hold_s and lease.kind == "endpoint" and (lease.mac or lease.name):
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
        record = ledger.pool(PoolId.parse(pool_id).owner(self.owner), pool_id, for_update=True)
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
        keep = record.policy.parking_seconds(lease)
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
