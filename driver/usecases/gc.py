"""``ipledger gc``: judge the ledger against Docker (:func:`driver.domain.reconcile.reconcile`),
decide whether ``--apply`` may act (:func:`doubt`), and repair what is due through the plugin's
own use cases, one transaction per repair."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from driver.domain import reconcile as reconciler
from driver.domain.errors import AddressInUse, IpamError
from driver.domain.pools import GATEWAY_TYPE, MAC_OPTION, REQUEST_ADDRESS_TYPE, LeaseKind
from driver.domain.reconcile import DockerNetwork, Finding, SwarmRole
from driver.usecases.ipam import Ipam

if TYPE_CHECKING:
    from driver.usecases.admin import Admin


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


class DockerShows(Protocol):
    """What gc reads of Docker (:class:`driver.adapters.docker_state.DockerView`)."""

    @property
    def drivers(self) -> frozenset[str]: ...
    @property
    def networks(self) -> list[DockerNetwork]: ...
    @property
    def ipam_drivers(self) -> frozenset[str]: ...
    @property
    def swarm(self) -> SwarmRole: ...


@dataclass(frozen=True)
class NoNetworkSeen:
    """Docker shows no network of the IPAM drivers judged, yet gc would release pools: most
    likely a wrong driver name, not every network gone."""

    drivers: frozenset[str]
    pools: int
    ipam_drivers: frozenset[str]


class ApplyRefused(Exception):
    """``--apply`` refused, for the reason it holds; nothing was changed."""

    def __init__(self, why: NoNetworkSeen) -> None:
        super().__init__(why)
        self.why = why


def doubt(
    docker: DockerShows, findings: Iterable[Finding], pools: int, all_networks_gone: bool
) -> NoNetworkSeen | None:
    """gc's safety rule: never release live pools on the guess that every network of the driver
    is gone, unless the operator says so (``all_networks_gone``)."""
    if docker.networks or all_networks_gone or not any(f.what == "pool" for f in findings):
        return None
    return NoNetworkSeen(docker.drivers, pools, docker.ipam_drivers)


@dataclass(frozen=True)
class Judgement:
    """What one gc run found: the ledger's counts, the findings, and any doubt on applying."""

    pools: int
    leases: int
    findings: list[Finding]
    unjudged: int  # global pools not judged, as docker.swarm.why_not says
    doubt: NoNetworkSeen | None
    now: datetime
    grace: timedelta


class Gc:
    """One gc run on a ledger, against what Docker shows."""

    def __init__(self, admin: Admin, ipam: Ipam) -> None:
        self.admin = admin
        self.ipam = ipam

    def served_as(self, default: str) -> set[str]:
        """The driver names this host's ipledger serve recorded (what it really serves, whatever
        this shell's settings say), else ``default``."""
        return set(self.admin.reports.served_drivers()) or {default}

    def judge(
        self, docker: DockerShows, *, now: datetime, grace: timedelta, all_networks_gone: bool
    ) -> Judgement:
        """What leaks or is missing; changes nothing."""
        pools, leases = self.admin.reports.gc_inputs()
        findings = reconciler.reconcile(
            pools,
            leases,
            docker.networks,
            owner=self.admin.owner,
            host_id=self.admin.host_id,
            now=now,
            grace=grace,
            swarm=docker.swarm,
        )
        unjudged = reconciler.global_pools(pools, self.admin.owner) if docker.swarm.why_not else []
        return Judgement(
            len(pools),
            len(leases),
            findings,
            len(unjudged),
            doubt(docker, findings, len(pools), all_networks_gone),
            now,
            grace,
        )

    def settle(
        self,
        judgement: Judgement,
        *,
        applying: bool,
        progress: Callable[[int], None] = lambda _n: None,
    ) -> dict[Finding, Repair]:
        """Each finding's repair (only reported unless ``applying``); what stays unresolved is
        recorded for the metrics. Raises :class:`ApplyRefused` when the rule doubts, first."""
        if applying and judgement.doubt is not None:
            raise ApplyRefused(judgement.doubt)
        outcome = {f: REPORTED for f in judgement.findings}
        if applying and judgement.findings:
            outcome.update(
                apply(
                    self.ipam,
                    judgement.findings,
                    now=judgement.now,
                    grace=judgement.grace,
                    progress=progress,
                )
            )
        self.admin.housekeeping.record_findings(
            [f for f, done in outcome.items() if not done.outcome.resolved]
        )
        return outcome
