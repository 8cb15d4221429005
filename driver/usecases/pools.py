"""Docker's pool calls: RequestPool and ReleasePool, and gc's reclaim of a leaked pool."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime

from driver.domain import addresses as allocator
from driver.domain.addresses import Subnet, SubPool
from driver.domain.errors import (
    InvalidRequest,
    PoolNotFound,
)
from driver.domain.pools import (
    SHARED,
    SHARED_OPTION,
    SPACES,
    PoolGrant,
    PoolId,
    describe,
    reuse_policy,
    shared_name,
)
from driver.storage.ledger import Ledger
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.calls import IpamCalls
from driver.usecases.taking import free

log = logging.getLogger(__name__)


class Pools(IpamCalls):
    """RequestPool, ReleasePool, and gc's reclaim of a pool no network uses."""

    @retrying
    def request_pool(
        self, space: str, pool: str, subpool: str, options: Mapping[str, str], v6: bool
    ) -> PoolGrant:
        if space not in SPACES:
            raise InvalidRequest(
                f"unknown address space {space!r}: ipledger serves {' and '.join(SPACES)}"
            )
        network = allocator.parse_cidr(pool, "pool") if pool else None
        sub = allocator.parse_cidr(subpool, "ip-range (SubPool)") if subpool else None
        size: int | None = None
        if network is not None and allocator.is_size_only(network):
            # Docker 29: "any subnet of this size"; /0, "a subnet of the default size"
            size, network = network.prefixlen or None, None
            version = 4 if "." in pool else 6
        elif network is not None:
            # The swarm manager never sets V6: the pool says which family it is.
            version = network.version
        else:
            version = 6 if v6 else 4
        if sub is not None and network is None:
            raise InvalidRequest(f"ip-range (SubPool) {subpool} given without a pool (subnet)")
        policy = reuse_policy(options)
        shared = shared_name(options)
        if shared is not None and network is None:
            raise InvalidRequest(
                f"{SHARED_OPTION}={shared} needs a subnet (--subnet): every "
                "host must name the same one"
            )
        encoded_options = json.dumps(dict(options), sort_keys=True)
        owner = SHARED if shared is not None else self.owner

        with self.store.transaction() as ledger:
            ledger.lock_plans(space, self.owner, shared_too=shared is not None)
            if network is None:
                grant = self.new_pools.default(
                    ledger, space, version, size, encoded_options, policy
                )
            else:
                grant = self.new_pools.explicit(
                    ledger,
                    owner,
                    space,
                    Subnet(network),
                    SubPool.of_cidr(sub) if sub is not None else None,
                    encoded_options,
                    policy,
                    shared,
                )
            ledger.write_history(
                self.host_id,
                "pool-create",
                grant.pool_id,
                grant.pool,
                detail=describe(policy, shared),
            )
        log.info(
            "pool %s granted (%s)",
            grant.pool_id,
            grant.pool,
            extra={"event": "pool-create", "pool": grant.pool_id, "subnet": grant.pool},
        )
        return grant

    @retrying
    def release_pool(self, pool_id: str) -> None:
        with self.store.transaction() as ledger:
            record = ledger.pool(PoolId.parse(pool_id).owner(self.owner), pool_id, for_update=True)
            if record is None:
                raise PoolNotFound(pool_id)
            self._release_pool(ledger, record, "pool-release")

    @retrying
    def reclaim_pool(self, pool_id: str, created_before: datetime) -> bool:
        """Release a leaked pool (``ipledger gc``), unless it was made again meanwhile."""
        owner = PoolId.parse(pool_id).owner(self.owner)
        with self.store.transaction() as ledger:
            record = ledger.pool(owner, pool_id, for_update=True)
            created = ledger.pool_created_at(owner, pool_id)
            if record is None or created is None or created > created_before:
                return False
            self._release_pool(ledger, record, "gc-pool-release")
        return True

    def _release_pool(self, ledger: Ledger, record: PoolRecord, action: str) -> None:
        if record.shared:
            ledger.detach(record.id, self.host_id)
            if ledger.attached_hosts(record.id) or ledger.holds_cni_leases(record.id):
                # Other hosts, or CNI attachments, still use it: only this host's leftovers go
                # back, and never the gateway, which is every host's.
                gateway = ledger.gateway_of(record.subnet_id, record.id)
                for address in ledger.leased_addresses_of_pool(
                    record.subnet_id, record.id, self.host_id
                ):
                    if address != gateway and ledger.drop_lease(record.subnet_id, address):
                        free(ledger, record, address)
                ledger.write_history(self.host_id, "pool-detach", record.id, record.subnet.cidr)
                log.info(
                    "host %s no longer uses shared pool %s",
                    self.host_id,
                    record.id,
                    extra={"event": "pool-detach", "pool": record.id},
                )
                return
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
            " by gc" if action.startswith("gc") else "",
            extra={"event": action, "pool": record.id, "subnet": record.subnet.cidr},
        )
