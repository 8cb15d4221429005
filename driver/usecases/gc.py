"""``ipledger gc --apply``: repair what :func:`driver.domain.reconcile.reconcile` found, through
the plugin's own use cases, one transaction per repair."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from driver.domain.errors import AddressInUse, IpamError
from driver.domain.pools import GATEWAY_TYPE, MAC_OPTION, REQUEST_ADDRESS_TYPE, LeaseKind
from driver.domain.reconcile import Finding
from driver.usecases.ipam import Ipam


class Outcome(Enum):
    """What became of a finding."""

    REPORTED = "reported"  # gc ran without --apply
    RELEASED = "released"
    RECORDED = "recorded in the ledger"
    KEPT = "kept"
    FAILED = "failed"

    @property
    def resolved(self) -> bool:
        """Whether the finding is gone (released or recorded), not left for later."""
        return self in (Outcome.RELEASED, Outcome.RECORDED)


@dataclass(frozen=True)
class Repair:
    outcome: Outcome
    why: str | None = None

    def __str__(self) -> str:
        return f"{self.outcome.value}: {self.why}" if self.why else self.outcome.value


REPORTED = Repair(Outcome.REPORTED)
CHANGED_MEANWHILE = Repair(Outcome.KEPT, "changed meanwhile")


def apply(
    ipam: Ipam,
    findings: Iterable[Finding],
    *,
    now: datetime,
    grace: timedelta,
    progress: Callable[[int], None] = lambda _n: None,
) -> list[tuple[Finding, Repair]]:
    """Repair what is due; returns each finding with what was done about it."""
    cutoff = now - grace
    done: list[tuple[Finding, Repair]] = []
    for finding in findings:
        progress(1)
        if not finding.due:
            done.append((finding, Repair(Outcome.KEPT, "younger than the grace period")))
            continue
        try:
            if finding.what == "pool":
                ok = ipam.reclaim_pool(finding.pool_id, cutoff)
                done.append((finding, Repair(Outcome.RELEASED) if ok else CHANGED_MEANWHILE))
            elif finding.what == "lease" and finding.address:
                ok = ipam.reclaim_address(finding.pool_id, finding.address, cutoff)
                done.append((finding, Repair(Outcome.RELEASED) if ok else CHANGED_MEANWHILE))
            elif finding.what == "missing" and finding.address:
                options = (
                    {REQUEST_ADDRESS_TYPE: GATEWAY_TYPE}
                    if finding.kind == LeaseKind.GATEWAY
                    else {MAC_OPTION: finding.mac}
                    if finding.mac
                    else {}
                )
                ipam.request_address(finding.pool_id, finding.address, options)
                done.append((finding, Repair(Outcome.RECORDED)))
        except AddressInUse:
            done.append((finding, Repair(Outcome.KEPT, "leased meanwhile")))
        except IpamError as e:
            done.append((finding, Repair(Outcome.FAILED, e.message)))
    return done
