"""How the ledger's rows hold values: addresses as 16-byte big-endian blobs (so that IPv4 and
IPv6 sort and compare with plain indexes), times in UTC, and the records the statements return."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

import netaddr

from driver.domain.addresses import Subnet
from driver.domain.pools import SHARED, ReusePolicy


def pack(address: int) -> bytes:
    return address.to_bytes(16, "big")


def unpack(blob: bytes) -> int:
    return int.from_bytes(blob, "big")


def now() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=4096)
def parsed_subnet(cidr: str) -> Subnet:
    """Parsing a CIDR costs more than the query that found it; pools are few and immutable."""
    return Subnet(netaddr.IPNetwork(cidr))


@dataclass(frozen=True)
class PoolRecord:
    """A pool as the ledger holds it, with the state of its subnet that calls work on."""

    owner: str
    id: str
    subnet_id: int
    space: str
    subnet: Subnet
    subpool: str | None
    range_first: int
    range_last: int
    cursor: int | None
    refs: int
    reservations: int
    policy: ReusePolicy
    options: str
    host_id: str | None
    created_at: datetime

    @property
    def shared(self) -> bool:
        return self.owner == SHARED

    @property
    def parks(self) -> bool:
        """Whether released addresses of this pool are parked rather than freed at once."""
        return self.policy.quarantine_s > 0 or self.policy.hold_s > 0


@dataclass(frozen=True)
class SubnetRecord:
    id: int
    cidr: str
    refs: int
