"""``ipledger gc --apply``: repair what :func:`driver.domain.reconcile.reconcile` found, through
the plugin's own use cases, one transaction per repair."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from driver.domain.errors import AddressInUse, IpamError
from driver.domain.pools import GATEWAY_TYPE, MAC_OPTION, REQUEST_ADDRESS_TYPE
from driver.domain.reconcile import Finding
from driver.usecases.ipam import Ipam


def apply(
    ipam: Ipam,
    findings: Iterable[Finding],
    *,
    now: datetime,
    grace: timedelta,
    progress: Callable[[int], None] = lambda _n: None,
) -> list[tuple[Finding, str]]:
    """Repair what is due; returns each finding with what was done about it."""
    cutoff = now - grace
    done = []
    for finding in findings:
        progress(1)
        if not finding.due:
            done.append((finding, "kept: younger than the grace period"))
            continue
        try:
            if finding.what == "pool":
                ok = ipam.reclaim_pool(finding.pool_id, cutoff)
                done.append((finding, "released" if ok else "kept: changed meanwhile"))
            elif finding.what == "lease" and finding.address:
                ok = ipam.reclaim_address(finding.pool_id, finding.address, cutoff)
                done.append((finding, "released" if ok else "kept: changed meanwhile"))
            elif finding.what == "missing" and finding.address:
                options = (
                    {REQUEST_ADDRESS_TYPE: GATEWAY_TYPE}
                    if finding.kind == "gateway"
                    else {MAC_OPTION: finding.mac}
                    if finding.mac
                    else {}
                )
                ipam.request_address(finding.pool_id, finding.address, options)
                done.append((finding, "recorded in the ledger"))
        except AddressInUse:
            done.append((finding, "kept: leased meanwhile"))
        except IpamError as e:
            done.append((finding, f"failed: {e.message}"))
    return done
