"""Docker's IPAM calls as use cases: one function per call, one database transaction each.

Arguments and results are plain Python values; Docker's PascalCase JSON lives in
``entrypoints/api.py``. The pool calls are in :mod:`driver.usecases.pools`, the address calls in
:mod:`driver.usecases.addresses`; :class:`Ipam` is both, as Docker's plugin API sees them.
"""

from __future__ import annotations

from driver.domain.addresses import DefaultPool
from driver.domain.pools import SWARM, Plans, PoolId
from driver.storage.ledger import Ledger
from driver.storage.rows import PoolRecord
from driver.storage.store import Store
from driver.usecases.new_pools import NewPools


class IpamCalls:
    """What the pool and address use cases share: the store, the default pools, this host, and
    how new pools are made."""

    def __init__(
        self, store: Store, default_pools: tuple[DefaultPool, ...], host_id: str = "local"
    ) -> None:
        self.store = store
        self.default_pools = default_pools
        self.host_id = host_id
        self.plans = Plans.of(store.shared, host_id)
        self.owner = self.plans.own
        self.new_pools = NewPools(self.plans, host_id, default_pools)

    def _pool(self, ledger: Ledger, pool_id: str) -> PoolRecord | None:
        """The pool Docker (or a CNI lease) names by its PoolID, held until the call commits."""
        owner = self.plans.of_pool(PoolId.parse(pool_id))
        record = ledger.pool(owner, pool_id, for_update=True)
        if record is None and owner == SWARM:
            # a global pool this host made before they were the swarm's, which migration 0008
            # could not move (another host held the same subnet): still this host's to use
            record = ledger.pool(self.owner, pool_id, for_update=True)
        return record
