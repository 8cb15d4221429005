"""Addresses an operator sets aside from dynamic requests."""

from __future__ import annotations

import netaddr

from driver.domain import addresses as allocator
from driver.domain.dns import NameSource, lease_dns_name, recorded_policy
from driver.domain.errors import InvalidRequest
from driver.domain.history import HistoryAction
from driver.domain.pools import LOCAL_SPACE, SHARED, PoolId
from driver.storage.inventory import (
    Inventory,
    SubnetRow,
    allocatable_in,
)
from driver.storage.ledger import Ledger
from driver.storage.store import retrying
from driver.usecases.dns_names import queue_named, queue_unnamed
from driver.usecases.operator import OnLedger, show_range


class Reservations(OnLedger):
    """Addresses an operator sets aside from dynamic requests."""

    @retrying
    def reserve(
        self, range_text: str, label: str, space: str = LOCAL_SPACE, shared: bool = False
    ) -> str:
        """Set addresses aside; leased ones stay leased and are not freed when released."""
        if not label.strip():
            raise InvalidRequest("a reservation needs a label (--label)")
        first, last = allocator.parse_range(range_text, "range to reserve")
        with self.store.transaction() as ledger:
            inventory = Inventory(ledger.connection)
            held = self._locked_subnet(ledger, inventory, shared, space, first, last)
            bounds = allocatable_in(held.subnet, int(first), int(last))
            if bounds is None:
                raise InvalidRequest(
                    f"{range_text} holds only addresses {held.subnet.cidr} never hands out"
                )
            for r_first, r_last, r_label in inventory.reservations(held.id):
                if r_first <= bounds[1] and bounds[0] <= r_last:
                    raise InvalidRequest(
                        f"{range_text} overlaps the reservation "
                        f"{show_range(r_first, r_last, first.version)} ({r_label})"
                    )
            allocator.take_range(ledger.free_ranges(held.id), *bounds)
            ledger.add_reservation(held.id, bounds, label)
            self._queue_dns(ledger, held, bounds, label, added=True)
            shown = show_range(*bounds, first.version)
            ledger.write_history(
                self.host_id,
                HistoryAction.RESERVE,
                self._pool_of_subnet(ledger, held),
                shown,
                detail=label,
            )
        return shown

    @retrying
    def unreserve(self, range_text: str, space: str = LOCAL_SPACE, shared: bool = False) -> str:
        """Drop the reservation that starts at the range's first address; free what is free."""
        first, last = allocator.parse_range(range_text, "reservation")
        with self.store.transaction() as ledger:
            inventory = Inventory(ledger.connection)
            held = self._locked_subnet(ledger, inventory, shared, space, first, last)
            match = [
                r
                for r in inventory.reservations(held.id)
                if r[0] <= int(first) <= r[1]
                and ("-" not in range_text or (r[0], r[1]) == (int(first), int(last)))
            ]
            if not match:
                raise InvalidRequest(f"no reservation in {held.subnet.cidr} covers {range_text}")
            r_first, r_last, label = match[0]
            ledger.drop_reservation(held.id, r_first)
            self._queue_dns(ledger, held, (r_first, r_last), label, added=False)
            free_ranges = ledger.free_ranges(held.id)
            taken = inventory.taken_between(held.id, r_first, r_last)
            for gap in allocator.gaps((r_first, r_last), taken):
                allocator.give_back_range(free_ranges, *gap)
            shown = show_range(r_first, r_last, first.version)
            ledger.write_history(
                self.host_id,
                HistoryAction.UNRESERVE,
                self._pool_of_subnet(ledger, held),
                shown,
                detail=label,
            )
        return shown

    @staticmethod
    def _queue_dns(
        ledger: Ledger, held: SubnetRow, bounds: tuple[int, int], label: str, *, added: bool
    ) -> None:
        """A reservation of one address is published under its label, in the zone of the
        first of its subnet's pools that has one; a range of several is not published."""
        if bounds[0] != bounds[1]:
            return
        for pool_id in sorted(ledger.pools_of_subnet(held.id)):
            record = ledger.pool(held.owner, pool_id)
            if record is None or recorded_policy(record.options) is None:
                continue
            if added:
                queue_named(ledger, record, bounds[0], NameSource(label=label))
            else:
                name = lease_dns_name(recorded_policy(record.options), NameSource(label=label))
                queue_unnamed(ledger, record, bounds[0], name)
            return

    @staticmethod
    def _pool_of_subnet(ledger: Ledger, held: SubnetRow) -> str:
        """The PoolID a subnet's history is written under: its pool (the first, when ip-range
        pools share it), a shared pool's ``shared/NAME/...`` included."""
        found = sorted(ledger.pools_of_subnet(held.id))
        return found[0] if found else str(PoolId(held.space, held.subnet.cidr))

    def _locked_subnet(
        self,
        ledger: Ledger,
        inventory: Inventory,
        shared: bool,
        space: str,
        first: netaddr.IPAddress,
        last: netaddr.IPAddress,
    ) -> SubnetRow:
        """The subnet (this host's, or the shared one) holding the range, locked as an
        allocation locks it."""
        owner = SHARED if shared else self.owner
        held = inventory.subnet_containing(owner, space, first.version, int(first))
        if held is None or not held.subnet.contains(int(last)):
            raise InvalidRequest(
                f"{first} is not in a subnet of a network in {space}: "
                "create the network first, or check --space"
            )
        ledger.lock_subnet(held.id)
        return held
