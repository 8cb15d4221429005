"""The CNI networks of the ledger as operators see them (``ipledger cni networks``), and the
retiring of one that no runtime uses any more (``ipledger cni retire``).

A CNI network has no call that ends it: runtimes forget a conflist and send nothing. Its pools
and gateway leases stay until an operator retires them; a later ADD makes them again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from driver.domain.errors import InvalidRequest, NetworkInUse
from driver.domain.history import HistoryAction
from driver.domain.pools import CNI_NETWORK_OPTION, LOCAL_SPACE, SHARED, LeaseKind
from driver.storage.store import retrying
from driver.usecases.cni import network_pools
from driver.usecases.pools import Pools

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CniNetworkReport:
    name: str
    attachments: int
    # the last ADD that leased an address, as far as the history (pruned) still holds it
    last_add: datetime | None
    pools: tuple[str, ...]


class CniNetworks(Pools):
    """The CNI networks with pools in this host's plan or the shared one."""

    @retrying
    def networks(self) -> list[CniNetworkReport]:
        with self.store.reading() as ledger:
            by_network: dict[str, list[str]] = {}
            for record in ledger.pools_with_options_containing(
                f'"{CNI_NETWORK_OPTION}"', (self.owner, SHARED)
            ):
                name = json.loads(record.options).get(CNI_NETWORK_OPTION)
                if isinstance(name, str):
                    by_network.setdefault(name, []).append(record.id)
            reports = []
            for name, pool_ids in sorted(by_network.items()):
                count, _ = ledger.cni_attachments_in(network=name)
                last_add = ledger.last_allocation(pool_ids, LeaseKind.CNI)
                reports.append(CniNetworkReport(name, count, last_add, tuple(pool_ids)))
            return reports

    @retrying
    def retire(self, name: str) -> list[str]:
        """Retire the network's pools with their gateway leases and parked addresses; refused
        (NetworkInUse) while an attachment holds an address of the network. The PoolIDs
        retired.

        One transaction: the network's subnets are held (FOR UPDATE on PostgreSQL, the whole
        database on SQLite) before the attachments are counted, so that an ADD either leased
        its address before (and the retiring is refused) or finds no pool after, and makes it
        again."""
        with self.store.transaction() as ledger:
            ledger.lock_plans(LOCAL_SPACE, self.owner, shared_too=True)
            records = network_pools(ledger, name, self.owner, for_update=True)
            count, example = ledger.cni_attachments_in(network=name)
            if count:
                raise NetworkInUse(
                    f"CNI network {name} has {count} attachment{'s' if count != 1 else ''} "
                    f"(e.g. {example}): retire it once no pod uses it (a runtime's DEL or GC "
                    "releases an attachment; `ipledger leases` lists them)"
                )
            if not records:
                raise InvalidRequest(
                    f"no CNI network {name} in the ledger (`ipledger cni networks` lists them)"
                )
            for record in records:
                self._release_pool(ledger, record, HistoryAction.CNI_RETIRE)
        log.info(
            "CNI network %s retired: %s",
            name,
            ", ".join(r.id for r in records),
            extra={"event": HistoryAction.CNI_RETIRE, "network": name},
        )
        return [record.id for record in records]
