"""Publishing the outbox to a DNS server, its status, and ``ipledger dns sync``.

The publisher takes a batch of due changes (a claim, one short transaction), sends each one
outside any transaction, and records the outcomes in one more: a change the server took leaves
the outbox; one it did not take stays, with why and when to try again
(:func:`driver.domain.dns.retry_delay`). Nothing here runs in a plugin call. The server is
reached through :class:`DnsUpdates`, whose exceptions of type ``rejected`` carry a
:class:`~driver.domain.dns.DnsFailure` (``driver.adapters.dns_server`` in ``serve``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from driver.domain.dns import DnsAction, DnsChange, DnsFailure, recorded_policy, retry_delay
from driver.domain.errors import IpamError
from driver.storage.dns_outbox import PublishedRecord, QueuedChange, ZoneQueue
from driver.storage.ledger import Ledger
from driver.storage.store import Store

log = logging.getLogger(__name__)

BATCH = 50
# how long a claim keeps other publishers off a batch; a batch stops sending at half of it
CLAIM_S = 120.0


class Rejected(Protocol):
    failure: DnsFailure
    message: str


class Transactions(Protocol):
    """The ledger's transactions, as :class:`~driver.storage.store.Store` gives them."""

    def transaction(self) -> AbstractContextManager[Ledger]: ...

    def reading(self) -> AbstractContextManager[Ledger]: ...


class DnsUpdates(Protocol):
    """The DNS server as the publisher needs it."""

    where: str

    def publish(self, change: DnsChange) -> None:
        """Send one change; raises an exception with ``failure`` and ``message``."""


@dataclass
class Outcome:
    published: int = 0
    failed: int = 0


class DnsPublishing:
    """One publisher of the outbox of one ledger (several may share it)."""

    def __init__(
        self, store: Transactions, server: DnsUpdates, publisher: str, rejected: type[Exception]
    ) -> None:
        self.store = store
        self.server = server
        self.publisher = publisher
        self.rejected = rejected
        # failures met by this publisher, by (zone, failure): read by the metrics
        self.failures: collections.Counter[tuple[str, str]] = collections.Counter()
        self.last_error: str | None = None

    def start(self) -> int:
        """At start: changes that waited for a configuration change are due again now."""
        with self.store.transaction() as ledger:
            return ledger.retry_dns_now()

    def due(self) -> bool:
        with self.store.reading() as ledger:
            return ledger.dns_due(_clock(ledger))

    def publish_due(self) -> Outcome:
        """Claim a batch of due changes and send them; what became of them. The outcomes are
        written in one transaction after the batch: two short writes a batch, whatever its
        size, beside the plugin calls (a change sent again after a crash is sent alike)."""
        with self.store.transaction() as ledger:
            now = _clock(ledger)
            batch = ledger.claim_dns(self.publisher, now, CLAIM_S, BATCH)
        outcome = Outcome()
        sent: list[QueuedChange] = []
        failed: tuple[list[QueuedChange], Rejected] | None = None
        stop_at = time.monotonic() + CLAIM_S / 2
        for i, queued in enumerate(batch):
            if time.monotonic() > stop_at:
                break  # the rest is given back below
            error = self._send(queued)
            if error is None:
                sent.append(queued)
            elif error.failure.retryable:
                # the server is down or failing: the rest of the batch would meet the same
                failed = (batch[i:], error)
                break
            else:
                self._failed([queued], error)
                outcome.failed += 1
        self._published(sent)
        outcome.published = len(sent)
        if failed is not None:
            self._failed(*failed)
            outcome.failed += len(failed[0])
        self._give_back()
        return outcome

    def _send(self, queued: QueuedChange) -> Rejected | None:
        try:
            self.server.publish(queued.change)
        except self.rejected as e:
            return e  # type: ignore[return-value]
        return None

    def _published(self, sent: list[QueuedChange]) -> None:
        if not sent:
            return
        with self.store.transaction() as ledger:
            now = _clock(ledger)
            done = [q for q in sent if ledger.published_dns(q, self.publisher, now)]
        for queued in done:
            change = queued.change
            log.info(
                "DNS: %s %s %s %s in zone %s%s",
                change.action,
                change.name,
                change.rdtype,
                change.address,
                change.zone,
                " (and its PTR)" if change.reverse else "",
                extra={"event": f"dns-{change.action}", "address": change.address},
            )

    def _failed(self, batch: Iterable[QueuedChange], error: Rejected) -> None:
        self.last_error = error.message
        with self.store.transaction() as ledger:
            now = _clock(ledger)
            for queued in batch:
                delay = retry_delay(queued.attempts + 1, error.failure)
                ledger.failed_dns(queued, self.publisher, error.failure, error.message, now + delay)
                self.failures[(queued.change.zone, str(error.failure))] += 1
        first = next(iter(batch))
        level = logging.WARNING if error.failure.retryable else logging.ERROR
        log.log(
            level,
            "DNS: %s not published (%s): %s; kept queued, next try in %ds",
            first.change.name,
            error.failure,
            error.message,
            retry_delay(first.attempts + 1, error.failure),
            extra={"event": "dns-failure", "failure": str(error.failure)},
        )

    def _give_back(self) -> None:
        with self.store.transaction() as ledger:
            ledger.release_dns(self.publisher)

    def stop(self) -> None:
        try:
            self._give_back()
        except IpamError as e:
            log.warning("DNS: could not give back this publisher's claims: %s", e.message)


class DnsStatus:
    """What ``ipledger dns status``, the metrics and the status page show of the outbox."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def zones(self) -> list[ZoneQueue]:
        with self.store.reading() as ledger:
            return ledger.dns_queue()

    def names(self) -> list[tuple[str, str, str]]:
        """(DNS name, address, state) of every lease with a name: published, pending (a
        change waits in the outbox) or not published."""
        with self.store.reading() as ledger:
            named = ledger.named_leases()
            states = ledger.dns_states(lease.name for lease in named)
        return [
            (n.name, n.address, states.get((n.name, n.address), "not published")) for n in named
        ]


def _clock(ledger: Ledger) -> float:
    # the database's clock on a shared ledger, so that every host judges claims alike
    return ledger.clock()


class ZoneTransfers(Protocol):
    """The DNS server as ``ipledger dns sync`` needs it."""

    def transfer(self, zone: str) -> Iterable[Any]:
        """The zone's records (``name``, ``rdtype``, ``value``), by AXFR."""

    def reverse_zone_of(self, address: str) -> str:
        """The zone the server holds ``address``'s PTR in."""


@dataclass(frozen=True)
class SyncPlan:
    """What the zones hold of the names ipledger manages, against the leases."""

    changes: tuple[DnsChange, ...]  # what converges them (already queued ones left out)
    zones: tuple[str, ...]  # the zones transferred
    managed: int  # names ipledger manages (leased now, or published earlier)


class DnsSync:
    """``ipledger dns sync``: the zones against the leases, for the names ipledger manages."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def plan(self, server: ZoneTransfers) -> SyncPlan:
        with self.store.reading() as ledger:
            named = ledger.named_leases()
            published = ledger.published_records()
            queued = set(ledger.queued_dns())
        wanted: dict[tuple[str, str], DnsChange] = {}
        for lease in named:
            policy = recorded_policy(lease.options)
            if policy is not None and lease.name.endswith(f".{policy.zone}"):
                wanted[(lease.name, lease.address)] = DnsChange(
                    DnsAction.ADD, lease.name, policy.zone, lease.address, policy.reverse
                )
        zone_of_name = {c.name: c.zone for c in wanted.values()}
        zone_of_name.update({r.name: r.zone for r in published if r.name not in zone_of_name})
        forward, reverse_zones = self._forward(server, zone_of_name, wanted, published)
        pointers = self._pointers(server, reverse_zones, zone_of_name)
        changes = [
            c
            for key, c in wanted.items()
            if key not in forward or (c.reverse and key not in pointers)
        ]
        for name, address in sorted((forward | pointers) - set(wanted)):
            changes.append(
                DnsChange(
                    DnsAction.REMOVE,
                    name,
                    zone_of_name[name],
                    address,
                    (name, address) in pointers,
                )
            )
        return SyncPlan(
            tuple(c for c in changes if c not in queued),
            tuple(sorted({*zone_of_name.values(), *reverse_zones})),
            len(zone_of_name),
        )

    @staticmethod
    def _forward(
        server: ZoneTransfers,
        zone_of_name: dict[str, str],
        wanted: dict[tuple[str, str], DnsChange],
        published: Iterable[PublishedRecord],
    ) -> tuple[set[tuple[str, str]], set[str]]:
        """The managed names' addresses the forward zones hold; the reverse zones to read."""
        held: set[tuple[str, str]] = set()
        for zone in sorted(set(zone_of_name.values())):
            for record in server.transfer(zone):
                if record.rdtype in ("A", "AAAA") and record.name in zone_of_name:
                    held.add((record.name, record.value))
        reverse = {c.address for c in wanted.values() if c.reverse}
        reverse |= {r.address for r in published if r.reverse}
        reverse |= {address for _, address in held}
        zones = set()
        for address in sorted(reverse):
            with contextlib.suppress(Exception):
                zones.add(server.reverse_zone_of(address))
        return held, zones

    @staticmethod
    def _pointers(
        server: ZoneTransfers, zones: Iterable[str], zone_of_name: dict[str, str]
    ) -> set[tuple[str, str]]:
        """(name, address) of the PTR records that point at a managed name."""
        found = set()
        for zone in sorted(zones):
            for record in server.transfer(zone):
                if record.rdtype == "PTR" and record.name in zone_of_name:
                    found.add((record.name, record.value))
        return found

    def apply(self, plan: SyncPlan) -> int:
        """Queue the plan's changes, after what is queued already (the publisher sends them)."""
        with self.store.transaction() as ledger:
            for change in plan.changes:
                ledger.queue_dns(change)
        return len(plan.changes)
