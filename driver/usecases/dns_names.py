"""A lease's DNS changes, queued in the lease's own transaction (the outbox).

This is the port the lease use cases call: :func:`queue_named` when a lease is made (or named
later, as for a Docker container whose engine does not send its name), :func:`queue_unnamed`
when it is released. The name itself is decided by :func:`driver.domain.dns.lease_dns_name`.
"""

from __future__ import annotations

import logging

import netaddr

from driver.domain.dns import (
    DnsAction,
    DnsChange,
    NameSource,
    lease_dns_name,
    recorded_policy,
)
from driver.storage.ledger import Ledger
from driver.storage.rows import PoolRecord

log = logging.getLogger(__name__)


def queue_named(ledger: Ledger, record: PoolRecord, value: int, source: NameSource) -> str | None:
    """Queue the DNS records of a lease of ``record`` at ``value`` named by ``source``; its full
    name, or None when the pool publishes nothing or the name cannot be made one (logged)."""
    policy = recorded_policy(record.options)
    if policy is None:
        return None
    name = lease_dns_name(policy, source)
    address = str(netaddr.IPAddress(value, record.subnet.version))
    if name is None:
        if source != NameSource():
            log.warning(
                "lease %s in pool %s is not published in DNS: %r cannot be made a DNS name "
                "(see docs/dns.md, the name rule)",
                address,
                record.id,
                source.pod or source.container or source.label,
            )
        return None
    ledger.queue_dns(DnsChange(DnsAction.ADD, name, policy.zone, address, policy.reverse))
    return name


def queue_unnamed(ledger: Ledger, record: PoolRecord, value: int, name: str | None) -> None:
    """Queue the removal of the DNS records of a lease published as ``name``."""
    if name is None:
        return
    policy = recorded_policy(record.options)
    if policy is not None and name.endswith(f".{policy.zone}"):
        zone, reverse = policy.zone, policy.reverse
    else:
        # the pool's zone changed since: remove it from where it was published
        published = ledger.published_zone(name)
        if published is None:
            zone, reverse = name.partition(".")[2], bool(policy and policy.reverse)
        else:
            zone, reverse = published
    address = str(netaddr.IPAddress(value, record.subnet.version))
    ledger.queue_dns(DnsChange(DnsAction.REMOVE, name, zone, address, reverse))
