"""A host as JSON, one shape for ``ipledger hosts --json`` and the status page's ``/hosts``."""

from __future__ import annotations

from datetime import datetime

from driver.usecases.hosts import HostReport


def host_json(report: HostReport, now: datetime) -> dict[str, object]:
    host = report.host
    age = host.age(now)
    return {
        "host": host.id,
        "name": host.name,
        "version": host.version,
        "first_seen": host.first_seen.isoformat(),
        "last_seen": host.last_seen.isoformat() if host.last_seen else None,
        "last_seen_age_s": round(age.total_seconds(), 3) if age is not None else None,
        "seen_recently": host.seen_recently(now),
        "state": host.state.value,
        "retired_at": host.retired_at.isoformat() if host.retired_at else None,
        "retired_by": host.retired_by,
        "leases": report.leases,
        "drivers": list(report.drivers),
        "cni_networks": list(report.cni_networks),
    }
