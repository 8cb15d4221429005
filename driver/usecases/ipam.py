"""Docker's IPAM calls, as the plugin API sees them: pools and addresses over one ledger."""

from __future__ import annotations

from driver.usecases.addresses import Addresses
from driver.usecases.pools import Pools


class Ipam(Pools, Addresses):
    """Every IPAM call: :class:`Pools` and :class:`Addresses` on one store."""
