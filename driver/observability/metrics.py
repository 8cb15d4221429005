"""Prometheus metrics: what the workers count, and what the ledger holds, on one listener.

Counters and latencies come from every gunicorn worker through prometheus-client's multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``driver.entrypoints.server`` before this module is first
imported); pool usage and leak candidates are read from the database at scrape time, so they are
right whichever worker changed them, and on every host that shares the ledger. The listener runs
in gunicorn's master process, never in a worker serving Docker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from driver.domain.errors import IpamError
from driver.domain.text import printable
from driver.usecases.admin import Admin
from driver.usecases.dns import DnsStatus
from driver.usecases.hosts import HostReport
from driver.usecases.status import DatabaseState

log = logging.getLogger(__name__)

# Docker's own calls; anything else is counted as "other" so that a scanner cannot blow up the
# label set.
ENDPOINTS = frozenset(
    {
        "/Plugin.Activate",
        "/IpamDriver.GetCapabilities",
        "/IpamDriver.GetDefaultAddressSpaces",
        "/IpamDriver.RequestPool",
        "/IpamDriver.ReleasePool",
        "/IpamDriver.RequestAddress",
        "/IpamDriver.ReleaseAddress",
    }
)
DATABASE_SERVER = "ipledger_database_server"
OUTAGE_WAITS = "ipledger_database_outage_waits"
OUTAGE_REFUSALS = "ipledger_database_outage_refusals"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The instruments a worker updates on each call."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kwargs: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.latency = Histogram(
            "ipledger_request_duration_seconds",
            "Time to answer one plugin call",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            **kwargs,
        )
        self.allocations = Counter(
            "ipledger_allocations", "Addresses handed out", ["pool"], **kwargs
        )
        self.releases = Counter("ipledger_releases", "Leases released", ["pool"], **kwargs)
        self.spooled_releases = Counter(
            "ipledger_cni_spooled_releases",
            "CNI DELs spooled while the server was unreachable, applied by a worker",
            **kwargs,
        )
        self.errors = Counter(
            "ipledger_errors", "Calls answered with an error", ["endpoint", "error"], **kwargs
        )
        self.database_server = Gauge(
            DATABASE_SERVER,
            "1 for the database server (host:port) this instance's connections reach now",
            ["server"],
            multiprocess_mode="livemax",
            **kwargs,
        )
        self.outage_waits = Counter(
            OUTAGE_WAITS,
            "Plugin calls that waited for the database through an outage, and were answered",
            **kwargs,
        )
        self.outage_refusals = Counter(
            OUTAGE_REFUSALS,
            "Plugin calls refused (503) because the database stayed unavailable for their bound",
            **kwargs,
        )
        self._server: str | None = None

    # the store's OutageObserver
    def server(self, where: str) -> None:
        if where != self._server:
            if self._server is not None:
                self.database_server.labels(self._server).set(0)
            self.database_server.labels(where).set(1)
            self._server = where

    def waited(self) -> None:
        self.outage_waits.inc()

    def refused(self) -> None:
        self.outage_refusals.inc()

    @staticmethod
    def endpoint(path: str) -> str:
        return path.lstrip("/") if path in ENDPOINTS else "other"

    def observe(self, path: str, seconds: float) -> None:
        self.latency.labels(self.endpoint(path)).observe(seconds)

    def error(self, path: str, name: str) -> None:
        self.errors.labels(self.endpoint(path), name).inc()


class LedgerCollector(Collector):
    """Pool usage and gc's findings, read from the ledger at each scrape."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # owner: "local" (SQLite), the host id, "shared" or "swarm"; PoolIDs repeat across hosts
        labels = ["pool", "subnet", "range", "owner"]
        families = {
            "size": GaugeMetricFamily(
                "ipledger_pool_size_addresses", "Addresses the pool can hand out", labels=labels
            ),
            "leased": GaugeMetricFamily(
                "ipledger_pool_leased_addresses",
                "Addresses leased in the pool's range",
                labels=labels,
            ),
            "reserved": GaugeMetricFamily(
                "ipledger_pool_reserved_addresses",
                "Addresses reserved by an operator and not leased",
                labels=labels,
            ),
            "parked": GaugeMetricFamily(
                "ipledger_pool_parked_addresses",
                "Released addresses in quarantine or held",
                labels=labels,
            ),
            "free": GaugeMetricFamily(
                "ipledger_pool_free_addresses",
                "Addresses a dynamic request can get now",
                labels=labels,
            ),
            "utilisation": GaugeMetricFamily(
                "ipledger_pool_utilisation_ratio", "1 - free/size", labels=labels
            ),
        }
        leaks = GaugeMetricFamily(
            "ipledger_leak_candidates",
            "Leases and pools that the last ipledger gc found unused by Docker",
            labels=["pool", "what"],
        )
        up = GaugeMetricFamily("ipledger_ledger_up", "1 when the ledger could be read")
        try:
            reports = self.admin.reports.pools()
            found = self.admin.reports.findings()
            hosts = self.admin.hosts.reports()
        except IpamError as e:
            log.warning("metrics: the ledger cannot be read: %s", e.message)
            up.add_metric([], 0)
            yield up
            return
        for report in reports:
            pool, usage = report.pool, report.usage
            values = [pool.id, pool.subnet.cidr, pool.subpool or pool.subnet.cidr, pool.owner]
            families["size"].add_metric(values, usage.size)
            families["leased"].add_metric(values, usage.leased)
            families["reserved"].add_metric(values, usage.reserved)
            families["parked"].add_metric(values, usage.parked)
            families["free"].add_metric(values, usage.free)
            families["utilisation"].add_metric(values, usage.utilisation)
        counts: dict[tuple[str, str], int] = {}
        for finding in found:
            if finding.what in ("pool", "lease"):
                key = (finding.pool_id, finding.what)
                counts[key] = counts.get(key, 0) + 1
        for (pool_id, what), count in sorted(counts.items()):
            leaks.add_metric([pool_id, what], count)
        up.add_metric([], 1)
        yield from families.values()
        yield leaks
        yield from _host_families(hosts)
        yield up


def _host_families(reports: list[HostReport]) -> Iterator[GaugeMetricFamily]:
    """Every host of the ledger, as every instance reads it: a host that stops beating is
    seen by the others' scrapes (see the IpledgerHostSilent alert)."""
    labels = ["host", "name"]
    seen = GaugeMetricFamily(
        "ipledger_host_last_seen_timestamp_seconds",
        "When the host's ipledger serve last beat (every 15 s), in seconds since the epoch",
        labels=labels,
    )
    held = GaugeMetricFamily(
        "ipledger_host_leases", "Leases the host made, in the ledger", labels=labels
    )
    retired = GaugeMetricFamily(
        "ipledger_host_retired", "1 when an operator retired the host", labels=labels
    )
    for report in reports:
        # a host id written before the settings refused control characters is escaped too
        values = [printable(report.host.id), printable(report.host.name)]
        if report.host.last_seen is not None:
            seen.add_metric(values, report.host.last_seen.timestamp())
        held.add_metric(values, report.leases)
        retired.add_metric(values, 1 if report.host.retired else 0)
    yield from (seen, held, retired)


class DnsCollector(Collector):
    """The DNS outbox (from the ledger, so every host shows the same) and the failures this
    host's publisher met (it runs in the same process as the listener)."""

    def __init__(
        self, status: DnsStatus, failures: Callable[[], dict[tuple[str, str], int]] | None
    ) -> None:
        self.status = status
        self.failures = failures

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily(
            "ipledger_dns_queue_changes",
            "DNS changes waiting in the outbox to be published",
            labels=["zone"],
        )
        age = GaugeMetricFamily(
            "ipledger_dns_queue_oldest_seconds",
            "Age of the oldest DNS change waiting in the outbox",
            labels=["zone"],
        )
        failing = GaugeMetricFamily(
            "ipledger_dns_failing_changes",
            "Queued DNS changes whose last attempt failed",
            labels=["zone", "failure"],
        )
        failures = CounterMetricFamily(
            "ipledger_dns_failures",
            "Attempts to publish a DNS change that failed, by why (this host's publisher)",
            labels=["zone", "failure"],
        )
        try:
            zones = self.status.zones()
        except IpamError as e:
            log.warning("metrics: the DNS outbox cannot be read: %s", e.message)
            zones = []
        now = time.time()
        for zone in zones:
            depth.add_metric([zone.zone], zone.pending)
            oldest = now - zone.oldest_at if zone.oldest_at is not None else 0.0
            age.add_metric([zone.zone], max(0.0, oldest))
            if zone.failing:
                failing.add_metric([zone.zone, zone.failure or "other"], zone.failing)
        for (zone_name, failure), count in sorted((self.failures or dict)().items()):
            failures.add_metric([zone_name, failure], count)
        yield from (depth, age, failing, failures)


def scrape_registry(
    admin: Admin, dns_failures: Callable[[], dict[tuple[str, str], int]] | None = None
) -> CollectorRegistry:
    """What the listener serves: every worker's counters, and the ledger's gauges."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(LedgerCollector(admin))
    registry.register(DnsCollector(DnsStatus(admin.store), dns_failures))
    return registry


def database_state(registry: CollectorRegistry | None = None) -> DatabaseState:
    """The database servers the workers are on and their outage counts, read now from the
    workers' files (or from ``registry``), not from the ledger."""
    if registry is None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    servers: set[str] = set()
    counts = {OUTAGE_WAITS: 0.0, OUTAGE_REFUSALS: 0.0}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == DATABASE_SERVER and sample.value >= 1:
                servers.add(sample.labels["server"])
            elif sample.name.removesuffix("_total") in counts and sample.name.endswith("_total"):
                counts[sample.name.removesuffix("_total")] += sample.value
    return DatabaseState(
        tuple(sorted(servers)), int(counts[OUTAGE_WAITS]), int(counts[OUTAGE_REFUSALS])
    )
