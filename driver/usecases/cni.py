"""CNI's calls on the ledger: ADD, DEL, CHECK and GC of an attachment, one transaction each.

The same ledger and rules as Docker's calls: a range of a CNI network is a pool (made on the first
ADD, its gateway leased as the gateway), an attachment's address is the lowest free one of its
range, parked on release as the pool's reuse policy says, and written to the history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import dataclass

import netaddr

from driver.domain.addresses import SubPool
from driver.domain.cni import Attachment, CniNetwork, CniRange
from driver.domain.errors import (
    AddressInUse,
    AttachmentNotFound,
    GatewayInUse,
    NoAvailableAddress,
    PoolOverlap,
)
from driver.domain.pools import (
    CNI_NETWORK_OPTION,
    LOCAL_SPACE,
    Lease,
    LeaseKind,
    Reuse,
)
from driver.storage.ledger import Ledger
from driver.storage.locking import DEADLINE
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.addresses import Addresses, log_lease
from driver.usecases.taking import take_dynamic, take_static

# GC releases stale leases this many to a transaction, and starts no batch it has not time left
# for (twice the slowest batch, and this margin) within the call's bound
GC_BATCH = 500
GC_MARGIN = 0.5


@dataclass(frozen=True)
class CniAddress:
    """An attachment's address in one family, as CNI's result gives it."""

    address: str  # with the prefix length: 203.0.113.2/24
    gateway: str | None

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4


class CniCalls(Addresses):
    """What the ``ipledger-cni`` plugin asks of the ledger."""

    @retrying
    def add(self, network: CniNetwork, attachment: Attachment, holder: str) -> list[CniAddress]:
        """One address per range set; the ones the attachment holds already, when it does
        (runtimes repeat ADD)."""
        key = str(attachment)
        with self.store.transaction() as ledger:
            held = ledger.cni_leases(key)
            answers = [
                self._address_in(ledger, network, i, ranges, key, held, holder)
                for i, ranges in enumerate(network.range_sets)
            ]
        for answer, made_in in answers:
            if made_in is not None:
                log_lease(answer.address, made_in, Lease(LeaseKind.CNI, None, holder), key)
        return [answer for answer, _ in answers]

    def _address_in(
        self,
        ledger: Ledger,
        network: CniNetwork,
        family: int,
        ranges: tuple[CniRange, ...],
        key: str,
        held: list[tuple[str, int]],
        holder: str,
    ) -> tuple[CniAddress, str | None]:
        """The attachment's address in one family (range set ``family`` of the config), and the
        pool it was leased in just now (None when the attachment held it already)."""
        by_pool = _ranges_by_pool(network, ranges)
        for pool_id, address in held:
            if pool_id in by_pool:
                record = self._pool(ledger, pool_id)
                if record is not None:
                    where = f"ipam.ranges[{family}][{ranges.index(by_pool[pool_id])}]"
                    _check_gateway(ledger, network, record, by_pool[pool_id], where)
                return _answer(by_pool[pool_id], address), None
        lease = Lease(LeaseKind.CNI, None, holder)
        full: NoAvailableAddress | None = None
        for i, cni_range in enumerate(ranges):
            record = self._range_pool(ledger, network, cni_range)
            _check_gateway(ledger, network, record, cni_range, f"ipam.ranges[{family}][{i}]")
            try:
                value = take_dynamic(ledger, record, lease, record.policy.reuse == Reuse.SERIAL)
            except NoAvailableAddress as e:
                full = e
                continue
            self._lease(ledger, record, value, lease, cni_attachment=key)
            return _answer(cni_range, value), record.id
        assert full is not None
        raise full

    def _range_pool(self, ledger: Ledger, network: CniNetwork, cni_range: CniRange) -> PoolRecord:
        """The range's pool; made, with its gateway leased, on the network's first ADD."""
        pool_id = cni_range.pool_id(network.shared)
        owner = pool_id.owner(self.owner)
        record = ledger.pool(owner, str(pool_id), for_update=True)
        if record is None:
            ledger.lock_plans(LOCAL_SPACE, self.owner, shared_too=network.shared is not None)
            # another ADD (of this node, or of another node for a shared pool) may have made
            # it while this one waited for the lock: it is then this network's pool to use
            record = ledger.pool(owner, str(pool_id), for_update=True)
        if record is not None:
            made_for = json.loads(record.options).get(CNI_NETWORK_OPTION)
            if not record.shared and made_for != network.name:
                user = f"CNI network {made_for}" if made_for else "a Docker network"
                raise PoolOverlap(record.subnet.cidr, f"{record.id} ({user})", LOCAL_SPACE)
            return record
        subpool = None
        if pool_id.subpool is not None:
            subpool = SubPool(pool_id.subpool, cni_range.first, cni_range.last)
        self.new_pools.explicit(
            ledger,
            owner,
            LOCAL_SPACE,
            cni_range.subnet,
            subpool,
            json.dumps(network.options, sort_keys=True),
            network.policy,
            network.shared,
            attach=False,
        )
        ledger.write_history(self.host_id, "pool-create", str(pool_id), cni_range.subnet.cidr)
        record = ledger.pool(owner, str(pool_id), for_update=True)
        assert record is not None
        gateway = cni_range.gateway
        if gateway is not None and ledger.gateway_of(record.subnet_id, record.id) is None:
            try:
                take_static(ledger, record, netaddr.IPAddress(gateway, record.subnet.version))
            except AddressInUse:
                pass  # leased already: as the subnet's gateway, or refused by _check_gateway
            else:
                gateway_lease = Lease(LeaseKind.GATEWAY, None, f"CNI network {network.name}")
                self._lease(ledger, record, gateway, gateway_lease)
        return record

    @retrying
    def delete(self, attachment: Attachment) -> int:
        """Release what the attachment holds; how many leases that was (0 is no error)."""
        with self.store.transaction() as ledger:
            return self._release_all(ledger, ledger.cni_leases(str(attachment)), "release")

    def check(self, network: CniNetwork, attachment: Attachment) -> list[CniAddress]:
        """The attachment's addresses; AttachmentNotFound when a range set has none."""
        with self.store.reading() as ledger:
            held = ledger.cni_leases(str(attachment))
        answers = []
        for ranges in network.range_sets:
            by_pool = _ranges_by_pool(network, ranges)
            found = [_answer(by_pool[p], a) for p, a in held if p in by_pool]
            if not found:
                family = ranges[0].subnet.version
                raise AttachmentNotFound(
                    f"attachment {attachment} holds no IPv{family} address in network "
                    f"{network.name}"
                )
            answers.append(found[0])
        return answers

    def status(self) -> None:
        """Whether an ADD could be served now: the ledger answers (StorageUnavailable if not)."""
        with self.store.reading() as ledger:
            ledger.ping()

    def collect(self, network: str, valid: Collection[tuple[str, str]]) -> tuple[int, int]:
        """GC: release the network's leases whose (container ID, ifname) is not ``valid``.

        In batches of GC_BATCH leases, one transaction each, for as long as the call's bound
        leaves time for another: a GC of more leases than one bound can release commits what it
        did and says how many are left (the next GC goes on), rather than failing whole at every
        try. The number released, and the number still to release."""
        with self.store.reading() as ledger:
            stale = [
                (key, pool_id, address)
                for key, pool_id, address in ledger.cni_leases_of_network(network)
                if _pair(key) not in valid
            ]
        released, done, slowest = 0, 0, 0.0
        while done < len(stale):
            deadline = DEADLINE.get()
            if deadline is not None and deadline - time.monotonic() < 2 * slowest + GC_MARGIN:
                break
            started = time.monotonic()
            released += self._collect_batch(stale[done : done + GC_BATCH])
            done = min(done + GC_BATCH, len(stale))
            slowest = max(slowest, time.monotonic() - started)
        return released, len(stale) - done

    @retrying
    def _collect_batch(self, stale: list[tuple[str, str, int]]) -> int:
        """Release these leases, each only if the attachment that held it when GC read it holds
        it still (it may have been released, and the address leased again, since)."""
        with self.store.transaction() as ledger:
            released = 0
            for key, pool_id, address in stale:
                record = self._pool(ledger, pool_id)
                if record is None or ledger.lease_kind(record.subnet_id, address) != (
                    LeaseKind.CNI,
                    key,
                ):
                    continue
                if self._release(ledger, record, address, "gc-release"):
                    released += 1
            return released

    def _release_all(self, ledger: Ledger, leases: list[tuple[str, int]], action: str) -> int:
        released = 0
        for pool_id, address in leases:
            record = self._pool(ledger, pool_id)
            if record is not None and self._release(ledger, record, address, action):
                released += 1
        return released


# the kinds of lease a container holds
CONTAINERS = (LeaseKind.CNI, LeaseKind.ENDPOINT)


def _check_gateway(
    ledger: Ledger, network: CniNetwork, record: PoolRecord, cni_range: CniRange, where: str
) -> None:
    """Refuse a range whose gateway is an address leased to a container (a CNI attachment, a
    Docker endpoint): it would be answered as the gateway of this network's attachments while
    it is another's address. A gateway lease of the subnet (this network's own, a shared pool's,
    a sibling range's) is the subnet's router, and is answered; so are Docker's leases that are
    no container's (an ``--aux-address``, a request without a MAC address)."""
    gateway = cni_range.gateway
    if gateway is None:
        return
    leased = ledger.lease_kind(record.subnet_id, gateway)
    if leased is None or leased[0] not in CONTAINERS:
        return
    attachment = leased[1]
    address = str(netaddr.IPAddress(gateway, record.subnet.version))
    holder = (
        f"CNI attachment {attachment}"
        if attachment is not None
        else "a Docker "
        + (ledger.lease_holder(record.subnet_id, gateway) or "").removeprefix("an ")
    )
    raise GatewayInUse(
        address,
        f"{where}.gateway of CNI network {network.name} is held by {holder} in "
        f"{record.subnet.cidr}; a gateway may not be a container's address",
    )


def _pair(key: str) -> tuple[str, str]:
    attachment = Attachment.parse(key)
    return attachment.container_id, attachment.ifname


def _ranges_by_pool(network: CniNetwork, ranges: tuple[CniRange, ...]) -> dict[str, CniRange]:
    """A range set's ranges by the PoolID of their pools."""
    return {str(r.pool_id(network.shared)): r for r in ranges}


def _answer(cni_range: CniRange, address: int) -> CniAddress:
    subnet = cni_range.subnet
    gateway = cni_range.gateway
    return CniAddress(
        subnet.format(address),
        str(netaddr.IPAddress(gateway, subnet.version)) if gateway is not None else None,
    )
