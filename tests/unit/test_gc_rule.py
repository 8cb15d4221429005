"""gc's safety rule, in the gc use case: --apply never releases pools on the guess that every
network of the driver is gone (pure: Docker and the ledger are stand-ins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from driver.domain.reconcile import DockerNetwork, Finding, SwarmRole
from driver.usecases.gc import REPORTED, ApplyRefused, Gc, Judgement, NoNetworkSeen, doubt

POOL = Finding("pool", "LocalDefault/198.51.100.0/24", None, "no network uses it", True)
LEASE = Finding("lease", "LocalDefault/198.51.100.0/24", "198.51.100.7", "no endpoint", True)


@dataclass(frozen=True)
class Docker:
    networks: list[DockerNetwork] = field(default_factory=list)
    drivers: frozenset[str] = frozenset({"ipledgr"})
    ipam_drivers: frozenset[str] = frozenset({"ipledger", "default"})
    swarm: SwarmRole = SwarmRole.NONE


WEB = DockerNetwork("web", "local", [], [])


def test_no_network_of_the_driver_while_gc_would_release_a_pool_is_a_doubt():
    assert doubt(Docker(), [POOL, LEASE], 3, all_networks_gone=False) == NoNetworkSeen(
        frozenset({"ipledgr"}), 3, frozenset({"ipledger", "default"})
    )


@pytest.mark.parametrize(
    ("docker", "findings", "gone"),
    [
        (Docker(networks=[WEB]), [POOL], False),  # Docker shows a network: it was asked right
        (Docker(), [LEASE], False),  # no pool would be released
        (Docker(), [], False),
        (Docker(), [POOL], True),  # the operator says every network is really gone
    ],
)
def test_there_is_no_doubt_when_docker_shows_a_network_no_pool_is_found_or_all_are_gone(
    docker, findings, gone
):
    assert doubt(docker, findings, 1, all_networks_gone=gone) is None


class Housekeeping:
    def __init__(self) -> None:
        self.recorded: list[list[Finding]] = []

    def record_findings(self, found: list[Finding]) -> None:
        self.recorded.append(found)


class Admin:
    def __init__(self) -> None:
        self.housekeeping = Housekeeping()


class Ipam:
    """Any call is a change: the refused --apply must make none."""

    def __getattr__(self, name: str):
        raise AssertionError(f"Ipam.{name} called")


def judgement(doubted: bool) -> Judgement:
    why = NoNetworkSeen(frozenset({"ipledgr"}), 1, frozenset()) if doubted else None
    return Judgement(1, 0, [POOL], 0, why, datetime.now(UTC), timedelta(minutes=10))


def test_apply_is_refused_on_a_doubt_before_anything_is_released_or_recorded():
    admin = Admin()
    gc = Gc(admin, Ipam())  # type: ignore[arg-type]
    with pytest.raises(ApplyRefused) as refused:
        gc.settle(judgement(doubted=True), applying=True)
    assert refused.value.why.drivers == frozenset({"ipledgr"})
    assert admin.housekeeping.recorded == []


def test_a_report_with_a_doubt_releases_nothing_and_records_the_findings_for_the_metrics():
    admin = Admin()
    gc = Gc(admin, Ipam())  # type: ignore[arg-type]
    assert gc.settle(judgement(doubted=True), applying=False) == {POOL: REPORTED}
    assert admin.housekeeping.recorded == [[POOL]]
