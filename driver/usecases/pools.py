"""Docker's pool calls: RequestPool and ReleasePool, and gc's reclaim of a leaked pool."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from driver.domain.errors import (
    PoolNotFound,
)
from driver.domain.history import HistoryAction
from driver.domain.pools import (
    SHARED,
    PoolGrant,
    PoolRequest,
    describe,
)
from driver.storage.ledger import Ledger
from driver.storage.outage import made_since_replayed
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.calls import IpamCalls
from driver.usecases.dns_names import queue_unnamed
from driver.usecases.taking import free

log = logging.getLogger(__name__)


class Pools(IpamCalls):
    """RequestPool, ReleasePool, and gc's reclaim of a pool no network uses."""

    @retrying
    def request_pool(
        self, space: str, pool: str, subpool: str, options: Mapping[str, str], v6: bool
    ) -> PoolGrant:
        request = PoolRequest.parse(space, pool, subpool, options, v6)
        owner = SHARED if request.shared is not None else self.plans.of_space(space)

        with self.store.transaction() as ledger:
            ledger.lock_plans(
                space, self.plans.of_space(space), shared_too=request.shared is not None
            )
            if request.subnet is None:
                grant = self.new_pools.default(
                    ledger, space, request.version, request.size, request.options, request.policy
                )
            else:
                grant = self.new_pools.explicit(
                    ledger,
                    owner,
                    space,
                    request.subnet,
                    request.subpool,
                    request.options,
                    request.policy,
                    request.shared,
                )
            ledger.write_history(
                self.host_id,
                HistoryAction.POOL_CREATE,
                grant.pool_id,
                grant.pool,
                detail=describe(request.policy, request.shared),
            )
        log.info(
            "pool %s granted (%s)",
            grant.pool_id,
            grant.pool,
            extra={"event": HistoryAction.POOL_CREATE, "pool": grant.pool_id, "subnet": grant.pool},
        )
        return grant

    @retrying
    def release_pool(self, pool_id: str) -> None:
        with self.store.transaction() as ledger:
            record = self._pool(ledger, pool_id)
            if record is None:
                raise PoolNotFound(pool_id)
            if made_since_replayed(record.created_at):
                # this release's first attempt, whose commit was lost, released the pool; this
                # one was made since, by another network
                return
            self._release_pool(ledger, record, HistoryAction.POOL_RELEASE)

    @retrying
    def reclaim_pool(self, pool_id: str, created_before: datetime) -> bool:
        """Release a leaked pool (``ipledger gc``), unless it was made again meanwhile."""
        with self.store.transaction() as ledger:
            record = self._pool(ledger, pool_id)
            if record is None or record.created_at > created_before:
                return False
            self._release_pool(ledger, record, HistoryAction.GC_POOL_RELEASE)
        return True

    def _release_pool(self, ledger: Ledger, record: PoolRecord, action: HistoryAction) -> None:
        if record.shared:
            ledger.detach(record.id, self.host_id)
            if ledger.attached_hosts(record.id) or ledger.holds_cni_leases(record.id):
                # Other hosts, or CNI attachments, still use it: only this host's leftovers go
                # back, and never the gateway, which is every host's.
                gateway = ledger.gateway_of(record.subnet_id, record.id)
                for address in ledger.leased_addresses_of_pool(
                    record.subnet_id, record.id, self.host_id
                ):
                    if address == gateway:
                        continue
                    dropped = ledger.drop_lease(record.subnet_id, address)
                    if dropped is not None:
                        queue_unnamed(ledger, record, address, dropped.dns_name)
                        free(ledger, record, address)
                ledger.write_history(
                    self.host_id, HistoryAction.POOL_DETACH, record.id, record.subnet.cidr
                )
                log.info(
                    "host %s no longer uses shared pool %s",
                    self.host_id,
                    record.id,
                    extra={"event": HistoryAction.POOL_DETACH, "pool": record.id},
                )
                return
        for address, name in ledger.named_leases_of_pool(record.subnet_id, record.id):
            queue_unnamed(ledger, record, address, name)
        ledger.drop_pool(record.owner, record.id)
        if record.refs <= 1:
            ledger.drop_subnet(record.subnet_id)
        else:
            ledger.change_refs(record.subnet_id, -1)
            # Docker releases every address before the pool; whatever it left behind in
            # this pool goes back to the subnet that the other pools still share.
            for address in ledger.parked_of_pool(record.subnet_id, record.id):
                ledger.unpark(record.subnet_id, address)
                free(ledger, record, address)
            for address in ledger.leased_addresses_of_pool(record.subnet_id, record.id):
                if ledger.drop_lease(record.subnet_id, address):
                    free(ledger, record, address)
        ledger.write_history(self.host_id, action, record.id, record.subnet.cidr)
        log.info(
            "pool %s released%s",
            record.id,
            " by gc" if action.by_gc else "",
            extra={"event": action, "pool": record.id, "subnet": record.subnet.cidr},
        )
