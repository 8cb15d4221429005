"""The hosts of a ledger: which ``ipledger serve`` instances use it, whether each is alive, and
the rules of retiring a dead one and admitting it back. Pure: no Flask, no SQLAlchemy.

Every ``ipledger serve`` keeps a row for its host and beats on it every :data:`HEARTBEAT_S`.
A host not seen for :data:`STALE_AFTER_S` (three beats) may be retired: its leases are released
and it may hand out nothing until an operator admits it again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from driver.domain.errors import HostRetired, HostSeenRecently, InvalidRequest

# How often ``ipledger serve`` records that its host is alive.
HEARTBEAT_S = 15.0
# A host is stale when its last heartbeat is older than this: three beats missed, so that one
# slow beat (a database failover, a busy host) does not make a live host look dead.
STALE_AFTER_S = 3 * HEARTBEAT_S
# A host's human name, as IPLEDGER_HOST_NAME or the host name gives it (a DNS name is at most 253).
HOST_NAME_LENGTH = 255


class HostState(enum.StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class Beat:
    """What a heartbeat found: the host's state, and the name another live serve with this
    host id beat under (its row named otherwise, seen within :data:`STALE_AFTER_S`), if any."""

    state: HostState
    rival: str | None = None


@dataclass(frozen=True)
class Host:
    """A host as the ledger knows it."""

    id: str
    name: str
    version: str
    first_seen: datetime
    # None for a host found only on leases or history (a ledger older than the hosts table)
    last_seen: datetime | None
    state: HostState
    retired_at: datetime | None = None
    retired_by: str | None = None

    @property
    def retired(self) -> bool:
        return self.state == HostState.RETIRED

    def age(self, now: datetime) -> timedelta | None:
        """How long ago its last heartbeat was; None when it never beat."""
        return None if self.last_seen is None else max(now - self.last_seen, timedelta(0))

    def seen_recently(self, now: datetime) -> bool:
        """Whether it beat within :data:`STALE_AFTER_S`: likely alive."""
        age = self.age(now)
        return age is not None and age.total_seconds() <= STALE_AFTER_S

    def check_retirable(self, now: datetime, force: bool) -> None:
        """Refuse to retire a host seen recently (HostSeenRecently) unless forced, and a host
        retired already (InvalidRequest)."""
        if self.retired:
            raise InvalidRequest(f"host {self.label} is retired already")
        if self.seen_recently(now) and not force:
            age = self.age(now)
            assert age is not None
            raise HostSeenRecently(self.label, age.total_seconds(), STALE_AFTER_S)

    def check_serving(self) -> None:
        """Refuse (HostRetired) any call of a retired host."""
        if self.retired:
            raise HostRetired(self.id, self.name)

    @property
    def label(self) -> str:
        """The host as a message names it: its name, and its id when they differ."""
        return self.id if self.name == self.id else f"{self.name} ({self.id})"


def check_host_name(name: str) -> str:
    """A host's human name, 1 to :data:`HOST_NAME_LENGTH` characters without NUL (which
    PostgreSQL cannot store); other control characters are kept, and escaped where shown."""
    if not 0 < len(name) <= HOST_NAME_LENGTH or "\0" in name:
        raise InvalidRequest(
            f"host name {name!r:.80} must be 1 to {HOST_NAME_LENGTH} characters, without NUL"
        )
    return name


def age_shown(age: timedelta | None) -> str:
    """An age as a person reads it: 5s, 3m, 2h, 4d; "never" when there is none."""
    if age is None:
        return "never"
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
