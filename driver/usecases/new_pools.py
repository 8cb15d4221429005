"""New pools: a default pool picked from the configured ones, or the subnet Docker gave, checked
against every pool it must not overlap."""

from __future__ import annotations

import logging

from driver.domain import addresses as allocator
from driver.domain.addresses import DefaultPool, Subnet, SubPool
from driver.domain.errors import InvalidRequest, PoolOverlap, PoolsExhausted
from driver.domain.pools import (
    SHARED,
    SHARED_OPTION,
    SWARM,
    Plans,
    PoolGrant,
    PoolId,
    ReusePolicy,
    overlap_detail,
)
from driver.storage.ledger import Ledger

log = logging.getLogger(__name__)


class NewPools:
    """Adds pools to this host's address plan, or to the shared one, within a transaction."""

    def __init__(self, plans: Plans, host_id: str, default_pools: tuple[DefaultPool, ...]) -> None:
        self.plans = plans
        self.host_id = host_id
        self.default_pools = default_pools

    def _add(
        self,
        ledger: Ledger,
        owner: str,
        pool_id: str,
        subnet_id: int,
        space: str,
        subnet: Subnet,
        subrange: SubPool | None,
        options: str,
        policy: ReusePolicy,
    ) -> None:
        bounds = (subrange.first, subrange.last) if subrange else (subnet.first, subnet.last)
        ledger.add_pool(
            owner,
            pool_id,
            subnet_id,
            space,
            subnet.cidr,
            subrange.text if subrange else None,
            bounds,
            options,
            policy,
            host_id=self.host_id,
        )

    def default(
        self,
        ledger: Ledger,
        space: str,
        version: int,
        size: int | None,
        options: str,
        policy: ReusePolicy,
    ) -> PoolGrant:
        owner = self.plans.of_space(space)
        held = ledger.held_subnets((owner, SHARED), space, version)
        network = allocator.pick_default_subnet(self.default_pools, version, size, held)
        if network is None:
            bases = ", ".join(str(p.base) for p in self.default_pools if p.version == version)
            wanted = f"/{size}" if size is not None else "of the configured size"
            raise PoolsExhausted(
                f"no free IPv{version} subnet {wanted} left in the default pools "
                f"({bases or 'none configured'}; see IPLEDGER_DEFAULT_POOLS)"
            )
        subnet = Subnet(network)
        subnet_id = ledger.add_subnet(owner, space, subnet)
        pool_id = str(PoolId(space, subnet.cidr))
        self._add(ledger, owner, pool_id, subnet_id, space, subnet, None, options, policy)
        return PoolGrant(pool_id, subnet.cidr)

    def explicit(
        self,
        ledger: Ledger,
        owner: str,
        space: str,
        subnet: Subnet,
        subrange: SubPool | None,
        options: str,
        policy: ReusePolicy,
        shared: str | None,
        *,
        attach: bool = True,
    ) -> PoolGrant:
        """The pool of ``subnet`` (and ``subrange``): a new one, or a shared one another host
        made, which this host then uses too (``attach``: it says so, as Docker's networks do;
        CNI networks, which never release a pool, do not)."""
        if subrange is not None and not subrange.inside(subnet):
            raise InvalidRequest(
                f"ip-range (SubPool) {subrange.text} is not inside pool {subnet.cidr}"
            )
        pool_id = str(PoolId(space, subnet.cidr, subrange.text if subrange else None, shared))
        existing = ledger.subnet_at(owner, space, subnet)
        if shared is not None:
            named = [
                p for p in ledger.shared_pools_named(PoolId.shared_prefix(shared)) if p != pool_id
            ]
            if named:
                raise InvalidRequest(
                    f"{SHARED_OPTION}={shared} is already {named[0]}: every "
                    "host must give the same subnet and ip-range"
                )
        # A host's own pools and the shared pools it uses are one address plan to it: nothing
        # in one may overlap the other.
        other_plan = self.plans.of_space(space) if shared is not None else SHARED
        if shared is not None and ledger.pool(owner, pool_id) is not None:
            # Another host made this shared pool: use it too. A second network on this host
            # would release the first one's leases with its own: refused, as an overlap.
            self._refuse_overlap(ledger, (other_plan,), space, subnet)
            if not ledger.attach(pool_id, self.host_id):
                raise PoolOverlap(
                    subnet.cidr,
                    f"{subnet.cidr} ({pool_id}, already used by a network on host {self.host_id})",
                    space,
                )
            return PoolGrant(pool_id, subnet.cidr)
        restored = ledger.pool(owner, pool_id, for_update=True) if owner == SWARM else None
        if restored is not None:
            # A new leader restores the swarm's networks: it asks for their pools, then for
            # the addresses their leases hold, again (swarmkit's state is the truth; the old
            # leader never released them). Each lease then answers one request.
            count = ledger.mark_restoring(restored.subnet_id, restored.id)
            log.info("swarm pool %s asked for again, %d leases to restore", pool_id, count)
            return PoolGrant(pool_id, subnet.cidr)
        if existing is not None:
            # The built-in IPAM shares one address set between networks that give the same
            # subnet with different ip-ranges; any other repeat is an overlap.
            if shared is not None or subrange is None or ledger.pool(owner, pool_id) is not None:
                holding = ledger.holder_of((owner,), space, (subnet.first, subnet.last))
                raise PoolOverlap(subnet.cidr, holding.cidr, space, overlap_detail(holding))
            self._refuse_overlap(ledger, (other_plan,), space, subnet)
            ledger.change_refs(existing.id, +1)
            subnet_id = existing.id
        else:
            # a new shared pool is in every host's plan: no host's own pool may overlap it
            plans = ledger.plan_owners(space) if shared is not None else (owner, other_plan)
            self._refuse_overlap(ledger, (owner, other_plan, *plans), space, subnet)
            subnet_id = ledger.add_subnet(owner, space, subnet)
        self._add(ledger, owner, pool_id, subnet_id, space, subnet, subrange, options, policy)
        if shared is not None and attach:
            ledger.attach(pool_id, self.host_id)
        return PoolGrant(pool_id, subnet.cidr)

    @staticmethod
    def _refuse_overlap(
        ledger: Ledger, owners: tuple[str, ...], space: str, subnet: Subnet
    ) -> None:
        blocker = ledger.held_subnets(owners, space, subnet.version).first_overlapping(
            subnet.first, subnet.last
        )
        if blocker is not None:
            holding = ledger.holder_of(owners, space, blocker)
            raise PoolOverlap(subnet.cidr, holding.cidr, space, overlap_detail(holding))
