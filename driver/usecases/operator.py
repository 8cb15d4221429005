"""What every operator use case stands on: the ledger the plugin uses, as one of its hosts.

Each operator use case is one transaction (or, for long writes, a series of short ones) on the
same :class:`driver.storage.store.Store` the plugin uses, so that it may run while the plugin
serves Docker. Results are plain records; the CLI renders them.
"""

from __future__ import annotations

import netaddr

from driver.domain.errors import PoolNotFound
from driver.domain.pools import Plans, PoolId
from driver.storage.inventory import Inventory
from driver.storage.rows import PoolRecord
from driver.storage.store import Store

# Rows an operator command writes in one transaction at the most: long enough to be quick,
# short enough that a plugin call never waits long for the write lock behind it.
WRITE_BATCH = 5000
# The pause between two such transactions: longer than a waiting call sleeps between looks at
# the write lock (WriteLock.POLL_MAX), so that the calls get it rather than the next batch.
BATCH_PAUSE = 0.003


def show(address: int, version: int) -> str:
    return str(netaddr.IPAddress(address, version))


def show_range(first: int, last: int, version: int) -> str:
    return (
        show(first, version) if first == last else f"{show(first, version)}-{show(last, version)}"
    )


class OnLedger:
    """The ledger, and this host's place in it."""

    def __init__(self, store: Store, host_id: str = "local") -> None:
        self.store = store
        self.host_id = host_id
        self.plans = Plans.of(store.shared, host_id)
        self.owner = self.plans.own

    def _owner_of(self, text: str) -> str:
        """Whose plan an operator's pool ID is in; this host's for text that is no pool ID
        (the lookup then finds nothing)."""
        try:
            return self.plans.of_pool(PoolId.parse(text))
        except PoolNotFound:
            return self.owner

    def _pool_in(self, inventory: Inventory, pool_id: str) -> PoolRecord:
        """The pool an operator named; PoolNotFound when the ledger holds none by that ID."""
        found = inventory.pools(pool_id, self._owner_of(pool_id))
        if not found:
            raise PoolNotFound(pool_id)
        return found[0]
