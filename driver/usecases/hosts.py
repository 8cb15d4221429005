"""The hosts of a ledger: the heartbeat of ``ipledger serve``, the list operators read, and the
retiring of a dead host (its leases in shared pools released) and admitting it back."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from driver.domain.errors import HostNotFound, InvalidRequest
from driver.domain.history import HistoryAction
from driver.domain.hosts import Beat, Host, HostState
from driver.domain.pools import SHARED
from driver.storage.inventory import Roster
from driver.storage.ledger import Ledger
from driver.storage.store import retrying
from driver.usecases.addresses import Addresses
from driver.usecases.operator import OnLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostReport:
    """A host, with what it serves and holds."""

    host: Host
    leases: int
    drivers: tuple[str, ...]
    cni_networks: tuple[str, ...]


@dataclass(frozen=True)
class Retirement:
    """What retiring a host did."""

    host: Host
    released: int
    # leases left in place: a shared pool's gateway that other hosts still use
    kept: int
    detached: tuple[str, ...]
    # the leases of its own pools: in its own address plan, which no other host draws from,
    # so releasing them frees nothing for anyone and hands them out twice if it comes back
    own_kept: int = 0


@dataclass(frozen=True)
class Admission:
    """What admitting a host again did."""

    host: Host
    # the shared pools its retiring took it off, which still exist: it uses them again
    attached: tuple[str, ...]


class Hosts(OnLedger):
    """The hosts of the ledger, as serve, operators and the status page see them."""

    @retrying
    def beat(self, name: str, version: str) -> Beat:
        """This host is alive (``ipledger serve``'s heartbeat); the state operators gave it,
        and the name of another live serve with this host id."""
        with self.store.transaction() as ledger:
            return ledger.beat(self.host_id, name, version)

    def reports(self) -> list[HostReport]:
        with self.store.reading() as ledger:
            roster = Roster(ledger.connection)
            counts, drivers, networks = (
                roster.lease_counts(),
                roster.drivers(),
                roster.cni_networks(),
            )
            return [
                HostReport(
                    host,
                    counts.get(host.id, 0),
                    tuple(drivers.get(host.id, ())),
                    tuple(networks.get(host.id, ())),
                )
                for host in roster.hosts()
            ]

    def report(self, wanted: str) -> HostReport:
        """One host (by id, or by a name one host has), with what it serves and holds."""
        with self.store.reading() as ledger:
            host_id = self._host(ledger, wanted, for_update=False).id
        found = [r for r in self.reports() if r.host.id == host_id]
        if not found:  # retired and dropped meanwhile: hosts are never dropped, but be exact
            raise HostNotFound(wanted)
        return found[0]

    def names(self) -> dict[str, str]:
        """Host id -> human name, for views that show a host id."""
        with self.store.reading() as ledger:
            return Roster(ledger.connection).names()

    @retrying
    def retire(self, wanted: str, by: str, *, force: bool = False) -> Retirement:
        """Retire a dead host in one transaction: mark it retired first (its calls under way
        finish before, its later calls are refused), then release every lease it made, each
        as its pool's reuse policy says, and detach it from the shared pools it used.
        Only the leases of shared pools are released: a host's own pools are in its own plan.
        Refused while it beat within the staleness bound, unless ``force``."""
        now = datetime.now(UTC)
        with self.store.transaction() as ledger:
            host = self._host(ledger, wanted, for_update=True)
            host.check_retirable(now, force)
            ledger.set_host_state(host.id, HostState.RETIRED, now, by)
            released, kept = _release_leases(self._as(host), ledger, host)
            own_kept = sum(1 for lease in ledger.leases_of_host(host.id) if lease[0] != SHARED)
            detached = ledger.attachments_of_host(host.id)
            for pool_id in detached:
                ledger.detach(pool_id, host.id)
                ledger.write_history(
                    host.id, HistoryAction.HOST_RETIRE, pool_id, "", detail=_by(by)
                )
            retired = ledger.host(host.id)
        assert retired is not None
        log.info(
            "host %s retired by %s: %d leases released, %d shared pools left, "
            "%d leases in its own pools kept",
            host.label,
            by,
            released,
            len(detached),
            own_kept,
            extra={"event": HistoryAction.HOST_RETIRE, "host": host.id},
        )
        return Retirement(retired, released, kept, tuple(detached), own_kept)

    @retrying
    def admit(self, wanted: str) -> Admission:
        """Admit a retired host again: its calls are served from now on, and it is attached
        again to the shared pools its retiring took it off (its containers may still use them:
        another host's ReleasePool must not release them)."""
        with self.store.transaction() as ledger:
            host = self._host(ledger, wanted, for_update=True)
            if not host.retired or host.retired_at is None:
                raise InvalidRequest(f"host {host.label} is not retired")
            left = ledger.pools_left_since(host.id, HistoryAction.HOST_RETIRE, host.retired_at)
            attached = tuple(pool_id for pool_id in left if ledger.attach(pool_id, host.id))
            for pool_id in attached:
                ledger.write_history(host.id, HistoryAction.HOST_ADMIT, pool_id, "")
            ledger.set_host_state(host.id, HostState.ACTIVE, None, None)
            admitted = ledger.host(host.id)
        assert admitted is not None
        log.info(
            "host %s admitted again, attached again to %d shared pools",
            host.label,
            len(attached),
            extra={"event": HistoryAction.HOST_ADMIT},
        )
        return Admission(admitted, attached)

    def _as(self, host: Host) -> Addresses:
        """The address use cases as ``host`` runs them: its leases released in its name."""
        return Addresses(self.store, (), host.id)

    def _host(self, ledger: Ledger, wanted: str, *, for_update: bool) -> Host:
        """The host an operator named by its id, or by its name when one host has it."""
        host = ledger.host(wanted, for_update=for_update)
        if host is not None:
            return host
        named = ledger.hosts_named(wanted)
        if len(named) > 1:
            raise InvalidRequest(
                f"{len(named)} hosts are named {wanted!r}: name one by its id ("
                + ", ".join(h.id for h in named)
                + ")"
            )
        if not named:
            raise HostNotFound(wanted)
        found = ledger.host(named[0].id, for_update=for_update)
        assert found is not None
        return found


def _release_leases(addresses: Addresses, ledger: Ledger, host: Host) -> tuple[int, int]:
    """Release the leases ``host`` made in the shared pools; (released, kept)."""
    released = kept = 0
    for owner, pool_id, address in ledger.shared_leases_of_host(host.id):
        record = ledger.pool(owner, pool_id, for_update=True)
        if record is None:  # a lease outlives no pool; nothing to release through
            continue
        if addresses.release_lease(ledger, record, address, HistoryAction.HOST_RETIRE):
            released += 1
        else:
            kept += 1
    return released, kept


def _by(who: str) -> str:
    return f"host retired by {who}"
