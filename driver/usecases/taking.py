"""Which address a request takes from a pool's free ranges, and how a freed one goes back."""

from __future__ import annotations

import netaddr

from driver.domain import addresses as allocator
from driver.domain.errors import AddressInUse, AddressOutOfRange, NoAvailableAddress
from driver.domain.pools import Lease, LeaseKind
from driver.storage.ledger import Ledger
from driver.storage.rows import PoolRecord

# The kinds of lease whose holder can come back for its address within the hold time.
HOLDERS = (LeaseKind.ENDPOINT, LeaseKind.CNI)
# Expired parked addresses freed per allocation: bounds the cost of one call after a long pause.
EXPIRE_BATCH = 32


def free(ledger: Ledger, record: PoolRecord, address: int) -> None:
    """Return an address to the free ranges, unless an operator reserved it meanwhile."""
    if record.reservations and ledger.reservation_at(record.subnet_id, address):
        return
    allocator.give_back(ledger.free_ranges(record.subnet_id), address)


def take_static(ledger: Ledger, record: PoolRecord, wanted: netaddr.IPAddress) -> int:
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
    if allocator.take(ledger.free_ranges(record.subnet_id), value):
        return value
    leased = ledger.lease_at(record.subnet_id, value)
    holder = leased.in_words() if leased is not None else None
    if holder is None and ledger.unpark(record.subnet_id, value):
        return value
    if holder is None and record.reservations and ledger.reservation_at(record.subnet_id, value):
        return value
    raise AddressInUse(str(wanted), f"held by {holder or 'another lease'} in {subnet.cidr}")


def take_dynamic(ledger: Ledger, record: PoolRecord, lease: Lease, serial: bool) -> int:
    """Take the lowest free address of the pool's range, or the next one after the cursor.

    In a pool that parks released addresses: an endpoint that had an address within the
    hold time gets it back; expired parked addresses are freed first; and when nothing is
    free, the parked address due soonest is handed out rather than failing.
    """
    free_ranges = ledger.free_ranges(record.subnet_id)
    lo, hi = record.range_first, record.range_last
    if record.parks:
        at = ledger.clock()
        if record.policy.hold_s and lease.kind in HOLDERS and lease.known:
            held = ledger.parked_for(record.subnet_id, record.id, lease.mac, lease.name, at)
            if held is not None and ledger.unpark(record.subnet_id, held):
                return held
        for address in ledger.expired_parked(record.subnet_id, at, EXPIRE_BATCH):
            ledger.unpark(record.subnet_id, address)
            free(ledger, record, address)
    if serial:
        cursor = record.cursor if record.cursor is not None else lo
        taken = allocator.take_next(free_ranges, lo, hi, cursor)
    else:
        taken = allocator.take_lowest(free_ranges, lo, hi)
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
