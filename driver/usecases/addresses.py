"""Docker's address calls: RequestAddress and ReleaseAddress, and gc's reclaim of a lease."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

import netaddr

from driver.domain import addresses as allocator
from driver.domain.cni import event_detail
from driver.domain.dns import NameSource, lease_dns_name, recorded_policy
from driver.domain.errors import (
    AddressInUse,
    AddressOutOfRange,
    PoolNotFound,
)
from driver.domain.history import HistoryAction
from driver.domain.pools import (
    Lease,
    LeaseKind,
    Reuse,
    answers_shared_gateway,
    asks_serial,
    requested_lease,
    restores,
)
from driver.storage.ledger import Ledger
from driver.storage.outage import REPLAYED_SINCE, made_since_replayed
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.calls import IpamCalls
from driver.usecases.dns_names import queue_named, queue_unnamed
from driver.usecases.taking import free, take_dynamic, take_static

log = logging.getLogger(__name__)


class Addresses(IpamCalls):
    """RequestAddress, ReleaseAddress, and gc's reclaim of a lease no endpoint uses."""

    @retrying
    def request_address(self, pool_id: str, address: str, options: Mapping[str, str]) -> str:
        wanted = allocator.parse_address(address) if address else None
        lease = requested_lease(options, static=wanted is not None)
        serial = asks_serial(options)

        with self.store.transaction() as ledger:
            record = self._pool(ledger, pool_id)
            if record is None:
                raise PoolNotFound(pool_id)
            if record.shared:
                # a host using a shared pool is attached to it, so that another host's
                # ReleasePool leaves it (a read; a write only when the attachment was missing)
                ledger.attach(record.id, self.host_id)
            subnet = record.subnet
            gateway = (
                ledger.gateway_of(record.subnet_id, record.id)
                if record.shared and lease.kind == LeaseKind.GATEWAY
                else None
            )
            if answers_shared_gateway(record.shared, lease.kind, wanted, gateway):
                assert gateway is not None
                log.info(
                    "gateway %s of shared pool %s answered to host %s",
                    subnet.format(gateway),
                    pool_id,
                    self.host_id,
                )
                return subnet.format(gateway)
            if (
                wanted is not None
                and restores(record.owner)
                and ledger.claim_restoring(record.subnet_id, int(wanted), record.id)
            ):
                log.info("address %s of swarm pool %s restored", wanted, pool_id)
                return subnet.format(int(wanted))
            if wanted is not None:
                value = take_static(ledger, record, wanted)
            else:
                value = take_dynamic(
                    ledger, record, lease, serial or record.policy.reuse == Reuse.SERIAL
                )
            self._lease(ledger, record, value, lease)
        answer = subnet.format(value)
        log_lease(answer, pool_id, lease)
        return answer

    def _lease(
        self,
        ledger: Ledger,
        record: PoolRecord,
        value: int,
        lease: Lease,
        cni_attachment: str | None = None,
        pod: str | None = None,
    ) -> None:
        """Lease ``value`` to ``lease``'s holder, and write it to the history. A CNI lease
        records its attachment, and the pod the runtime named for it; the history's detail
        names both. A lease of a pool that publishes in DNS queues its records."""
        dns_name = queue_named(ledger, record, value, dns_source(lease, pod))
        ledger.add_lease(
            record.subnet_id,
            value,
            record.id,
            lease.kind,
            lease.mac,
            lease.name,
            self.host_id,
            cni_attachment=cni_attachment,
            pod=pod,
            dns_name=dns_name,
        )
        address = str(netaddr.IPAddress(value, record.subnet.version))
        detail = event_detail(cni_attachment, pod) if cni_attachment else None
        ledger.write_history(
            self.host_id, HistoryAction.ALLOCATE, record.id, address, lease, detail=detail
        )

    @retrying
    def release_address(self, pool_id: str, address: str) -> bool:
        """Release a lease; False (not an error) when the address was not leased."""
        wanted = allocator.parse_address(address)
        with self.store.transaction() as ledger:
            record = self._pool_of(ledger, pool_id, wanted)
            released = self._release(ledger, record, int(wanted), HistoryAction.RELEASE)
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
            return self._release(ledger, record, int(wanted), HistoryAction.GC_RELEASE)

    @retrying
    def name_lease(self, pool_id: str, address: str, container: str) -> str | None:
        """Publish a lease made without a name (an engine older than Docker 29 sends none)
        under its container's name, read from Docker's API once the endpoint exists: its DNS
        name, or None when the pool publishes nothing, the name cannot be one, or the lease is
        gone or named already."""
        wanted = allocator.parse_address(address)
        with self.store.transaction() as ledger:
            record = self._pool_of(ledger, pool_id, wanted)
            policy = recorded_policy(record.options)
            name = lease_dns_name(policy, NameSource(container=container))
            if name is None or not ledger.name_lease(
                record.subnet_id, int(wanted), record.id, name
            ):
                return None
            queue_named(ledger, record, int(wanted), NameSource(container=container))
        return name

    def _pool_of(self, ledger: Ledger, pool_id: str, wanted: netaddr.IPAddress) -> PoolRecord:
        record = self._pool(ledger, pool_id)
        if record is None:
            raise PoolNotFound(pool_id)
        if wanted.version != record.subnet.version or not record.subnet.contains(int(wanted)):
            raise AddressOutOfRange(str(wanted), record.subnet.cidr)
        return record

    def release_lease(
        self, ledger: Ledger, record: PoolRecord, value: int, action: HistoryAction
    ) -> bool:
        """Release a lease as this host, within the caller's transaction; the pool's reuse
        policy applies (see :meth:`_release`)."""
        return self._release(ledger, record, value, action)

    def _release(
        self,
        ledger: Ledger,
        record: PoolRecord,
        value: int,
        action: HistoryAction,
        cni_attachment: str | None = None,
    ) -> bool:
        """Drop a lease; park the address or free it. False when it was not leased. A CNI
        lease's attachment is written to the history's detail, as its allocation's is."""
        if REPLAYED_SINCE.get() is not None and made_since_replayed(
            ledger.lease_created_at(record.subnet_id, value)
        ):
            log.warning(
                "address %s of pool %s was leased again since this release's first attempt, "
                "whose commit was lost and may have been made: left to its new holder",
                netaddr.IPAddress(value, record.subnet.version),
                record.id,
            )
            return False
        if (
            record.shared
            and ledger.gateway_of(record.subnet_id, record.id) == value
            and set(ledger.attached_hosts(record.id)) - {self.host_id}
        ):
            log.info("gateway %s of shared pool %s stays: other hosts use it", value, record.id)
            return False
        pod = ledger.lease_pod(record.subnet_id, value) if cni_attachment else None
        lease = ledger.drop_pool_lease(record.subnet_id, value, record.id)
        if lease is None:
            holder = ledger.lease_pool(record.subnet_id, value)
            held = ledger.lease_at(record.subnet_id, value)
            if holder is not None and held is not None:
                # Networks that share a subnet with different ip-ranges share its addresses,
                # not their leases: Docker releases a lease through the pool that made it, so
                # a release through another must not free a lease another network holds.
                raise AddressInUse(
                    str(netaddr.IPAddress(value, record.subnet.version)),
                    f"held by {held.in_words()} in pool {holder}; "
                    f"pool {record.id} does not hold it, so it cannot release it",
                )
            return False
        queue_unnamed(ledger, record, value, lease.dns_name)
        keep = record.policy.parking_seconds(lease)
        if keep and not (record.reservations and ledger.reservation_at(record.subnet_id, value)):
            ledger.park(record.subnet_id, value, record.id, lease, ledger.clock() + keep)
        else:
            free(ledger, record, value)
        address = str(netaddr.IPAddress(value, record.subnet.version))
        ledger.write_history(
            self.host_id,
            action,
            record.id,
            address,
            lease,
            detail=event_detail(cni_attachment, pod, f"parked for {keep}s" if keep else None)
            if cni_attachment
            else (f"parked for {keep}s" if keep else None),
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


def dns_source(lease: Lease, pod: str | None) -> NameSource:
    """What a new lease's DNS name comes from: the pod of a CNI lease, the container Docker
    named for an endpoint's; nothing for gateways and auxiliary addresses."""
    if pod is not None:
        return NameSource(pod=pod)
    if lease.kind == LeaseKind.ENDPOINT and lease.name:
        return NameSource(container=lease.name)
    return NameSource()


def log_lease(answer: str, pool_id: str, lease: Lease, cni_attachment: str | None = None) -> None:
    """The log line of a lease made, once its transaction committed."""
    address = answer.split("/")[0]
    log.info(
        "address %s leased in pool %s (%s%s%s%s)",
        answer,
        pool_id,
        lease.kind,
        f", mac {lease.mac}" if lease.mac else "",
        f", name {lease.name}" if lease.name else "",
        f", CNI attachment {cni_attachment}" if cni_attachment else "",
        extra={
            "event": HistoryAction.ALLOCATE,
            "pool": pool_id,
            "address": address,
            "kind": lease.kind,
            "mac": lease.mac,
            "endpoint": lease.name,
        },
    )
