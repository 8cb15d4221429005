"""The container behind a Docker lease, for its name in DNS. Pure: no Docker, no SQLAlchemy.

Docker 29 sends the container's name in RequestAddress; 20.10, 26.1 and 28.5 send only its MAC,
and they ask for the address before the endpoint exists. So a lease Docker made without a name
waits: once the endpoint exists, Docker's network inspect shows which container holds the
address, and :func:`resolve` takes the name from there. A container that never starts never
shows; after ``patience`` the wait is given up rather than kept forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from driver.domain import addresses as allocator
from driver.domain.errors import InvalidRequest
from driver.domain.moments import as_utc
from driver.domain.reconcile import DockerNetwork, Endpoint, config_pool

# PoolID -> address -> the endpoint Docker shows holding it
Shown = Mapping[str, Mapping[str, Endpoint]]


def endpoints_by_pool(networks: Iterable[DockerNetwork]) -> dict[str, dict[str, Endpoint]]:
    """The endpoints of Docker's networks by the ledger PoolID they draw from (as gc maps
    networks to pools) and by address, in the ledger's spelling of it."""
    found: dict[str, dict[str, Endpoint]] = {}
    for network in networks:
        for config in network.configs:
            pool_id, subnet = config_pool(network, config)
            held = found.setdefault(str(pool_id), {})
            for endpoint in network.endpoints:
                try:
                    address = allocator.parse_address(endpoint.address.split("/")[0])
                except InvalidRequest:
                    continue
                if address.version == subnet.version and subnet.contains(int(address)):
                    held[str(address)] = endpoint
    return found


@dataclass(frozen=True)
class WantedName:
    """A lease Docker made without the container's name."""

    pool_id: str
    address: str
    mac: str | None
    since: datetime  # when the lease was made


class Resolution(StrEnum):
    NAMED = "named"  # Docker shows the container holding the address
    WAITING = "waiting"  # not yet: the endpoint may not exist yet
    GIVEN_UP = "given-up"  # still not after the patience: the lease stays without a name


@dataclass(frozen=True)
class Resolved:
    wanted: WantedName
    outcome: Resolution
    container: str | None = None


def _holder(wanted: WantedName, shown: Shown) -> str | None:
    endpoint = shown.get(wanted.pool_id, {}).get(wanted.address)
    if endpoint is None or not endpoint.container or endpoint.container == "?":
        return None
    # the same address shown with another MAC is another container's endpoint (one released
    # and taken again): not this lease's
    if wanted.mac and endpoint.mac and wanted.mac.lower() != endpoint.mac.lower():
        return None
    return endpoint.container


def resolve(
    wanted: Iterable[WantedName], shown: Shown, *, now: datetime, patience: timedelta
) -> list[Resolved]:
    """For each lease waiting for its name: the container Docker shows holding its address,
    or waiting still, or given up once it has waited ``patience``."""
    found = []
    for want in wanted:
        container = _holder(want, shown)
        if container is not None:
            found.append(Resolved(want, Resolution.NAMED, container))
        elif now - as_utc(want.since) >= patience:
            found.append(Resolved(want, Resolution.GIVEN_UP))
        else:
            found.append(Resolved(want, Resolution.WAITING))
    return found
