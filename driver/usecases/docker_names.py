"""Names for the Docker leases that came without one, then published like any other.

Docker 20.10, 26.1 and 28.5 ask for an endpoint's address before the endpoint exists and do not
send the container's name. :class:`DockerNames` runs in the DNS publisher's loop, never in a
request: it reads the leases waiting (one short reading transaction), asks Docker which
container holds each address (outside any transaction: Docker may be slow or wait on its own
locks), and names each found lease in a transaction of its own that first checks the lease is
still the one that waited. Only the host whose Docker made a lease can find its container, so
each host names only its own leases. A lease whose container does not show within the patience
is left unpublished, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from driver.domain.dns import NameSource
from driver.domain.docker_names import Resolution, Resolved, Shown, WantedName, resolve
from driver.domain.pools import Plans, PoolId
from driver.domain.text import printable
from driver.storage.docker_names import (
    WaitingLease,
    leases_waiting_for_names,
    name_lease,
    still_waiting,
)
from driver.storage.store import retrying
from driver.usecases.dns import Transactions
from driver.usecases.dns_names import queue_named

log = logging.getLogger(__name__)

# how long a lease waits for its container to show in Docker's networks: a container that
# starts shows within a second; one whose start failed has its lease released by Docker
PATIENCE = timedelta(seconds=60)
# a lease's transaction may commit this long after the moment it records (the call's bound)
COMMIT_LAG = timedelta(seconds=30)

_Key = tuple[str, str, datetime]


@dataclass
class Pass:
    """What one pass did, for the publisher's log and tests."""

    named: list[tuple[str, str]] = field(default_factory=list)  # (address, DNS name)
    waiting: int = 0
    given_up: list[str] = field(default_factory=list)


class DockerNames:
    """Finds and publishes the names of this host's Docker leases that came without one."""

    def __init__(
        self,
        store: Transactions,
        host_id: str,
        plans: Plans,
        look: Callable[[], Shown],
        patience: timedelta = PATIENCE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.host_id = host_id
        self.plans = plans  # whose plan each pool is in, as this host sees the ledger
        self.look = look  # Docker's endpoints by PoolID and address (the adapter's endpoints)
        self.patience = patience
        self.clock = clock
        self.started = clock()
        self._swept = False
        self._waiting: dict[_Key, WaitingLease] = {}
        self._given_up: dict[_Key, datetime] = {}

    def run_once(self) -> Pass:
        """One pass: take in the leases made since the last, name those Docker shows."""
        now = self.clock()
        self._take_in(now)
        done = Pass()
        if not self._waiting:
            return done
        keys = list(self._waiting)
        wanted = [
            WantedName(lease.pool_id, lease.address, lease.mac, max(key[2], self.started))
            for key, lease in self._waiting.items()
        ]
        try:
            shown = self.look()
        except Exception:
            # Docker cannot be read (it says why): the leases keep waiting, up to the patience
            self._settle_all(keys, wanted, {}, now, done)
            raise
        self._settle_all(keys, wanted, shown, now, done)
        done.waiting = len(self._waiting)
        return done

    def _settle_all(
        self, keys: list[_Key], wanted: list[WantedName], shown: Shown, now: datetime, done: Pass
    ) -> None:
        found = resolve(wanted, shown, now=now, patience=self.patience)
        for key, one in zip(keys, found, strict=True):
            self._settle(key, one, now, done)

    def _take_in(self, now: datetime) -> None:
        # the first pass takes every waiting lease (made while ipledger was down or before a
        # restart), each with a fresh patience; later passes only what is recent
        since = None if not self._swept else now - self.patience - COMMIT_LAG
        with self.store.reading() as ledger:
            found = leases_waiting_for_names(
                ledger.connection, self.host_id, self.plans.seen, since
            )
        self._swept = True
        for lease in found:
            key = (lease.pool_id, lease.address, lease.created_at)
            if key not in self._given_up:
                self._waiting.setdefault(key, lease)
        horizon = now - self.patience - COMMIT_LAG - COMMIT_LAG
        self._given_up = {k: t for k, t in self._given_up.items() if t >= horizon}

    def _settle(self, key: _Key, found: Resolved, now: datetime, done: Pass) -> None:
        lease = self._waiting[key]
        if found.outcome == Resolution.WAITING:
            return
        del self._waiting[key]
        if found.outcome == Resolution.GIVEN_UP:
            self._given_up[key] = now
            done.given_up.append(lease.address)
            log.warning(
                "lease %s of pool %s is not published in DNS: Docker showed no container "
                "holding it within %d s",
                lease.address,
                lease.pool_id,
                self.patience.total_seconds(),
            )
            return
        assert found.container is not None
        name = self.name(lease, found.container)
        if name is None:
            self._given_up[key] = now  # released meanwhile, or a name that cannot be one
        else:
            done.named.append((lease.address, name))
            log.info(
                "lease %s of pool %s named %s after its container %s",
                lease.address,
                lease.pool_id,
                name,
                printable(found.container),
            )

    @retrying
    def name(self, lease: WaitingLease, container: str) -> str | None:
        """Name the lease after ``container`` and queue its records, in one transaction; None
        when it was released (or taken again) meanwhile, or the name cannot be published."""
        owner = self.plans.of_pool(PoolId.parse(lease.pool_id))
        with self.store.transaction() as ledger:
            record = ledger.pool(owner, lease.pool_id, for_update=True)
            if record is None or not still_waiting(ledger.connection, lease):
                return None
            name = queue_named(ledger, record, lease.value, NameSource(container=container))
            if name is not None:
                name_lease(ledger.connection, lease, name)
            return name
