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
from dataclasses import dataclass, replace
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
        """At start: changes that waited for a configuration change are due again now, and
        those an earlier process of this host claimed (``HOST/PID/...``; one serve a host,
        killed before it gave them back) are taken back at once, not when their claim ends."""
        host = self.publisher.rsplit("/", 2)[0]
        with self.store.transaction() as ledger:
            taken = ledger.release_dns_of(f"{host}/")
            return ledger.retry_dns_now() + taken

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
                "DNS: %s %s %s %s in zone %s",
                change.action,
                change.name,
                change.records,
                change.address,
                change.zone,
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
    # (name, type, value) held at a managed name that ipledger never published: left alone
    foreign: tuple[tuple[str, str, str], ...] = ()
    # (zone, why) of the zones that could not be read: their names are not compared
    failed: tuple[tuple[str, str], ...] = ()


@dataclass
class _Held:
    """What the transfers found, and the zones they could not read."""

    forward: set[tuple[str, str]]
    pointers: set[tuple[str, str]]
    reverse_zone: dict[str, str]  # address -> the zone its PTR is in
    failed: dict[str, str]


class DnsSync:
    """``ipledger dns sync``: the zones against the leases, for the names ipledger manages.

    A record is added for a lease that lacks it, and removed only when ipledger published it
    (``dns_records``) and no lease holds it any more: a record someone else put at a managed
    name is shown as not ipledger's and left alone. A zone that cannot be transferred is
    reported, and the others compared still.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def plan(self, server: ZoneTransfers, rejected: type[Exception] = Exception) -> SyncPlan:
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
        held = _read(server, rejected, zone_of_name, wanted, published)
        changes = _adds(wanted, held)
        foreign: list[tuple[str, str, str]] = []
        mine = {(r.name, r.address) for r in published}
        mine_ptr = {(r.name, r.address) for r in published if r.reverse}
        wanted_ptr = {key for key, c in wanted.items() if c.reverse}
        for keys, owned, forward in (
            (held.forward - set(wanted), mine, True),
            (held.pointers - wanted_ptr, mine_ptr, False),
        ):
            for name, address in sorted(keys):
                change = DnsChange(
                    DnsAction.REMOVE, name, zone_of_name[name], address, not forward, forward
                )
                if (name, address) in owned or change in queued:
                    changes.append(change)
                else:
                    foreign.append((name, change.rdtype if forward else "PTR", address))
        return SyncPlan(
            tuple(c for c in changes if c not in queued),
            tuple(sorted({*zone_of_name.values(), *held.reverse_zone.values()})),
            len(zone_of_name),
            tuple(foreign),
            tuple(sorted(held.failed.items())),
        )

    def apply(self, plan: SyncPlan) -> int:
        """Queue the plan's changes, after what is queued already (the publisher sends them)."""
        with self.store.transaction() as ledger:
            for change in plan.changes:
                ledger.queue_dns(change)
        return len(plan.changes)


def _adds(wanted: dict[tuple[str, str], DnsChange], held: _Held) -> list[DnsChange]:
    """The A/AAAA and PTR records leases want and the zones (those read) lack."""
    changes = []
    for key, change in wanted.items():
        if change.zone not in held.failed and key not in held.forward:
            changes.append(replace(change, reverse=False))
        zone = held.reverse_zone.get(change.address)
        if change.reverse and zone not in held.failed and key not in held.pointers:
            if zone is None:
                held.failed[f"PTR of {change.address}"] = "the server holds no zone for it"
            else:
                changes.append(replace(change, forward=False))
    return changes


def _read(
    server: ZoneTransfers,
    rejected: type[Exception],
    zone_of_name: dict[str, str],
    wanted: dict[tuple[str, str], DnsChange],
    published: Iterable[PublishedRecord],
) -> _Held:
    """The managed names' records the zones hold, forward and reverse."""
    failed: dict[str, str] = {}
    zones = sorted(set(zone_of_name.values()))
    forward = {
        r for r in _transfer(server, rejected, zones, failed, ("A", "AAAA")) if r[0] in zone_of_name
    }
    addresses = {c.address for c in wanted.values() if c.reverse}
    addresses |= {r.address for r in published if r.reverse}
    addresses |= {address for _, address in forward}
    reverse_zone = {}
    for address in sorted(addresses):
        with contextlib.suppress(Exception):
            reverse_zone[address] = server.reverse_zone_of(address)
    pointers = _transfer(server, rejected, sorted(set(reverse_zone.values())), failed, ("PTR",))
    return _Held(
        forward,
        {r for r in pointers if r[0] in zone_of_name},
        reverse_zone,
        failed,
    )


def _transfer(
    server: ZoneTransfers,
    rejected: type[Exception],
    zones: Iterable[str],
    failed: dict[str, str],
    kinds: tuple[str, ...],
) -> set[tuple[str, str]]:
    """(name, value) of the records of these kinds the zones hold; a zone that cannot be read
    is noted in ``failed`` and the others are read still."""
    found: set[tuple[str, str]] = set()
    for zone in zones:
        try:
            records = list(server.transfer(zone))
        except rejected as e:
            failed[zone] = str(getattr(e, "message", e))
            continue
        found |= {(r.name, r.value) for r in records if r.rdtype in kinds}
    return found
