"""The DNS outbox and the records published, as statements of one transaction.

A change is queued in the transaction that makes or releases its lease, and taken by a
publisher in a short transaction of its own: a *claim* (``claimed_by``, ``claimed_until``) that
other publishers on the same ledger skip until it expires. A change is taken only when no
earlier change of the same name is queued, so that each name's changes reach the server in the
order they were made, whichever publisher sends them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import netaddr
from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from driver.domain.dns import DnsAction, DnsChange, DnsFailure
from driver.storage.models import dns_outbox, dns_records, leases, pools, subnets
from driver.storage.prepared import Prepared

_SET_LATER = ("id", "claimed_by", "claimed_until", "failure", "last_error")

# on the hot path (a lease of a pool that publishes): compiled once, as the lease's own insert
_QUEUE = Prepared(
    insert(dns_outbox).values(
        {c.name: bindparam(c.name) for c in dns_outbox.c if c.name not in _SET_LATER}
    )
)


@dataclass(frozen=True)
class QueuedChange:
    """A change in the outbox, as a publisher took it."""

    id: int
    change: DnsChange
    attempts: int


@dataclass(frozen=True)
class ZoneQueue:
    """What ``ipledger dns status`` shows of one zone."""

    zone: str
    pending: int
    oldest_at: float | None
    failing: int
    failure: str | None
    last_error: str | None


@dataclass(frozen=True)
class NamedLease:
    name: str
    address: str
    options: str  # its pool's recorded options (JSON)


@dataclass(frozen=True)
class PublishedRecord:
    name: str
    address: str
    zone: str
    reverse: bool


# a change of a PTR alone (DnsChange.forward False) is kept under its own action's text; a row
# of a plain action changes the A/AAAA record, and its PTR too when ``reverse`` (queued so
# before changes were split in two)
_PTR_ACTIONS = {DnsAction.ADD: "add-ptr", DnsAction.REMOVE: "rm-ptr"}
_PTR_TEXTS = {text: action for action, text in _PTR_ACTIONS.items()}


def _action_text(change: DnsChange) -> str:
    return str(change.action) if change.forward else _PTR_ACTIONS[change.action]


def _change(action: str, name: str, zone: str, address: str, reverse: bool) -> DnsChange:
    if action in _PTR_TEXTS:
        return DnsChange(_PTR_TEXTS[action], name, zone, address, True, forward=False)
    return DnsChange(DnsAction(action), name, zone, address, bool(reverse))


def _earlier_same_name() -> object:
    """An earlier change of the same name and of the same record (A/AAAA, or PTR) is queued:
    a name's PTR that fails never holds back its A record (nor the other way round)."""
    earlier = aliased(dns_outbox)
    ptr = list(_PTR_TEXTS)
    both_forward = and_(earlier.c.action.not_in(ptr), dns_outbox.c.action.not_in(ptr))
    both_ptr = and_(earlier.c.reverse.is_(True), dns_outbox.c.reverse.is_(True))
    return (
        select(earlier.c.id)
        .where(
            earlier.c.name == dns_outbox.c.name,
            earlier.c.id < dns_outbox.c.id,
            or_(both_forward, both_ptr),
        )
        .exists()
    )


class DnsStatements:
    """The outbox and the published records."""

    connection: Connection

    def queue_dns(self, change: DnsChange) -> None:
        """Queue a change (its A/AAAA and its PTR apart), to be published after this
        transaction commits."""
        for part in change.parts():
            _QUEUE.count(
                self.connection,
                {
                    "name": part.name,
                    "zone": part.zone,
                    "action": _action_text(part),
                    "address": part.address,
                    "reverse": part.reverse,
                    "created_at": time.time(),
                    "next_at": 0.0,
                    "attempts": 0,
                },
            )

    def dns_due(self, now: float) -> bool:
        """Whether any change is due and unclaimed: read without the write lock."""
        row = self.connection.execute(
            select(dns_outbox.c.id)
            .where(
                dns_outbox.c.next_at <= now,
                or_(dns_outbox.c.claimed_until.is_(None), dns_outbox.c.claimed_until < now),
            )
            .limit(1)
        ).first()
        return row is not None

    def claim_dns(
        self, publisher: str, now: float, hold_s: float, limit: int
    ) -> list[QueuedChange]:
        """Take up to ``limit`` changes that are due, unclaimed (or whose claim expired) and
        first of their name, for ``publisher`` until ``now + hold_s``."""
        query = (
            select(dns_outbox.c.id)
            .where(
                dns_outbox.c.next_at <= now,
                or_(dns_outbox.c.claimed_until.is_(None), dns_outbox.c.claimed_until < now),
                ~_earlier_same_name(),  # type: ignore[operator]
            )
            .order_by(dns_outbox.c.id)
            .limit(limit)
        )
        if self.connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(self.connection.execute(query).scalars())
        if not ids:
            return []
        # the claim is taken again under the row's lock: a change another publisher claimed
        # meanwhile (SQLite's write lock, PostgreSQL's re-check) is not taken twice
        self.connection.execute(
            update(dns_outbox)
            .where(
                dns_outbox.c.id.in_(ids),
                or_(dns_outbox.c.claimed_until.is_(None), dns_outbox.c.claimed_until < now),
            )
            .values(claimed_by=publisher, claimed_until=now + hold_s)
        )
        rows = self.connection.execute(
            select(
                dns_outbox.c.id,
                dns_outbox.c.action,
                dns_outbox.c.name,
                dns_outbox.c.zone,
                dns_outbox.c.address,
                dns_outbox.c.reverse,
                dns_outbox.c.attempts,
            )
            .where(dns_outbox.c.id.in_(ids), dns_outbox.c.claimed_by == publisher)
            .order_by(dns_outbox.c.id)
        )
        return [
            QueuedChange(
                row.id,
                _change(row.action, row.name, row.zone, row.address, row.reverse),
                row.attempts,
            )
            for row in rows
        ]

    def published_dns(self, queued: QueuedChange, publisher: str, now: float) -> bool:
        """A change the server took: out of the outbox, into (or out of) the records. False
        when the claim was lost (another publisher took it over), and nothing is changed."""
        gone = self.connection.execute(
            delete(dns_outbox).where(
                dns_outbox.c.id == queued.id, dns_outbox.c.claimed_by == publisher
            )
        ).rowcount
        if not gone:
            return False
        self._record(queued.change, now)
        return True

    def _record(self, change: DnsChange, now: float) -> None:
        """The published records after ``change``: a row per name and address while its A/AAAA
        record is published, ``reverse`` while its PTR is."""
        key = (dns_records.c.name == change.name, dns_records.c.address == change.address)
        held = self.connection.execute(select(dns_records.c.reverse).where(*key)).first()
        if change.forward and change.action == DnsAction.REMOVE:
            self.connection.execute(delete(dns_records).where(*key))
            return
        if change.forward:
            reverse = change.reverse or bool(held and held[0])
        else:
            reverse = change.action == DnsAction.ADD
        if held is not None:
            self.connection.execute(update(dns_records).where(*key).values(reverse=reverse))
        elif change.action == DnsAction.ADD:
            self.connection.execute(
                insert(dns_records).values(
                    name=change.name,
                    address=change.address,
                    zone=change.zone,
                    reverse=reverse,
                    published_at=now,
                )
            )

    def failed_dns(
        self, queued: QueuedChange, publisher: str, failure: DnsFailure, error: str, next_at: float
    ) -> None:
        """A change the server did not take: kept, with why, until ``next_at``."""
        self.connection.execute(
            update(dns_outbox)
            .where(dns_outbox.c.id == queued.id, dns_outbox.c.claimed_by == publisher)
            .values(
                attempts=dns_outbox.c.attempts + 1,
                next_at=next_at,
                claimed_by=None,
                claimed_until=None,
                failure=str(failure),
                last_error=error[:1024],
            )
        )

    def release_dns(self, publisher: str) -> None:
        """Give back what ``publisher`` claimed and did not finish (it stops)."""
        self.connection.execute(
            update(dns_outbox)
            .where(dns_outbox.c.claimed_by == publisher)
            .values(claimed_by=None, claimed_until=None)
        )

    def release_dns_of(self, prefix: str) -> int:
        """Give back the claims of every publisher named ``prefix...`` (an earlier process of
        this host, killed before it could give them back)."""
        return self.connection.execute(
            update(dns_outbox)
            .where(dns_outbox.c.claimed_by.startswith(prefix, autoescape=True))
            .values(claimed_by=None, claimed_until=None)
        ).rowcount

    def retry_dns_now(self) -> int:
        """Make every queued change due now (new settings: errors may be fixed)."""
        return self.connection.execute(
            update(dns_outbox).where(dns_outbox.c.next_at > 0).values(next_at=0.0)
        ).rowcount

    def dns_queue(self) -> list[ZoneQueue]:
        """Per zone: how many changes wait, since when, and the last error met."""
        counts = self.connection.execute(
            select(
                dns_outbox.c.zone,
                func.count(),
                func.min(dns_outbox.c.created_at),
                func.count(dns_outbox.c.failure),
            ).group_by(dns_outbox.c.zone)
        ).all()
        found = []
        for zone, pending, oldest, failing in counts:
            last = self.connection.execute(
                select(dns_outbox.c.failure, dns_outbox.c.last_error)
                .where(dns_outbox.c.zone == zone, dns_outbox.c.failure.is_not(None))
                .order_by(dns_outbox.c.attempts.desc(), dns_outbox.c.id)
                .limit(1)
            ).first()
            found.append(
                ZoneQueue(
                    zone,
                    int(pending),
                    float(oldest) if oldest is not None else None,
                    int(failing),
                    last[0] if last else None,
                    last[1] if last else None,
                )
            )
        return sorted(found, key=lambda q: q.zone)

    def queued_dns(self) -> list[DnsChange]:
        """Every queued change, in order."""
        rows = self.connection.execute(
            select(
                dns_outbox.c.action,
                dns_outbox.c.name,
                dns_outbox.c.zone,
                dns_outbox.c.address,
                dns_outbox.c.reverse,
            ).order_by(dns_outbox.c.id)
        )
        return [_change(*r) for r in rows]

    def published_records(self) -> list[PublishedRecord]:
        rows = self.connection.execute(
            select(
                dns_records.c.name,
                dns_records.c.address,
                dns_records.c.zone,
                dns_records.c.reverse,
            ).order_by(dns_records.c.name, dns_records.c.address)
        )
        return [PublishedRecord(*row) for row in rows]

    def dns_states(self, names: Iterable[str]) -> dict[tuple[str, str], str]:
        """Per (name, address) of these names: ``published``, ``pending`` while a change of
        its A/AAAA record waits in the outbox, or ``published, PTR pending`` while only a
        change of its PTR does."""
        wanted = sorted(set(names))
        states: dict[tuple[str, str], str] = {}
        if not wanted:
            return states
        for name, address in self.connection.execute(
            select(dns_records.c.name, dns_records.c.address).where(dns_records.c.name.in_(wanted))
        ):
            states[(name, address)] = "published"
        waiting = self.connection.execute(
            select(dns_outbox.c.name, dns_outbox.c.address, dns_outbox.c.action).where(
                dns_outbox.c.name.in_(wanted)
            )
        )
        ptr_only: set[tuple[str, str]] = set()
        for name, address, action in waiting:
            if action in _PTR_TEXTS:
                ptr_only.add((name, address))
            else:
                states[(name, address)] = "pending"
        for key in ptr_only:
            # its A/AAAA record is out: only its PTR waits (e.g. for a reverse zone)
            states[key] = "published, PTR pending" if states.get(key) == "published" else "pending"
        return states

    def published_zone(self, name: str) -> tuple[str, bool] | None:
        """The zone (and whether with PTR) a name was published in, if it was."""
        row = self.connection.execute(
            select(dns_records.c.zone, dns_records.c.reverse)
            .where(dns_records.c.name == name)
            .limit(1)
        ).first()
        return (row[0], bool(row[1])) if row else None

    def name_lease(self, subnet_id: int, address: int, pool_id: str, name: str) -> bool:
        """Record the DNS name of a lease of ``pool_id`` that has none yet; False when there is
        no such lease (released meanwhile, or named already)."""
        return bool(
            self.connection.execute(
                update(leases)
                .where(
                    leases.c.subnet_id == subnet_id,
                    leases.c.address == address.to_bytes(16, "big"),
                    leases.c.pool_id == pool_id,
                    leases.c.dns_name.is_(None),
                )
                .values(dns_name=name)
            ).rowcount
        )

    def named_leases_of_pool(self, subnet_id: int, pool_id: str) -> list[tuple[int, str]]:
        """(address, DNS name) of the leases of a pool published under a name."""
        rows = self.connection.execute(
            select(leases.c.address, leases.c.dns_name).where(
                leases.c.subnet_id == subnet_id,
                leases.c.pool_id == pool_id,
                leases.c.dns_name.is_not(None),
            )
        )
        return [(int.from_bytes(r[0], "big"), r[1]) for r in rows]

    def named_leases(self) -> list[NamedLease]:
        """Every lease published under a name, with its pool's recorded options."""
        rows = self.connection.execute(
            select(leases.c.dns_name, subnets.c.version, leases.c.address, pools.c.options)
            .join(subnets, subnets.c.id == leases.c.subnet_id)
            .join(
                pools,
                (pools.c.id == leases.c.pool_id) & (pools.c.subnet_id == leases.c.subnet_id),
            )
            .where(leases.c.dns_name.is_not(None))
        )
        found = {}
        for name, version, address, options in rows:
            text = str(netaddr.IPAddress(int.from_bytes(address, "big"), version))
            found[(name, text)] = NamedLease(name, text, options)
        return sorted(found.values(), key=lambda n: (n.name, n.address))
