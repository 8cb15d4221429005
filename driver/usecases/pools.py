"""Docker's pool calls: RequestPool and ReleasePool, and gc's reclaim of a leaked pool."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime

import netaddr

from driver.domain import addresses as allocator
from driver.domain.addresses import Subnet
from driver.domain.errors import (
    InvalidRequest,
    PoolNotFound,
    PoolOverlap,
    PoolsExhausted,
)
from driver.domain.pools import (
    SHARED,
    SHARED_OPTION,
    SPACES,
    PoolGrant,
    PoolId,
    ReusePolicy,
    describe,
    reuse_policy,
    shared_name,
)
from driver.storage.ledger import Ledger
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.calls import IpamCalls

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
                grant = self._new_default_pool(
                    ledger, space, version, size, encoded_options, policy
                )
            else:
                grant = self._new_explicit_pool(
                    ledger, owner, space, Subnet(network), sub, encoded_options, policy, shared
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

    def _add_pool(
        self,
        ledger: Ledger,
        owner: str,
        pool_id: str,
        subnet_id: int,
        space: str,
        subnet: Subnet,
        subrange: Subnet | None,
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
            subrange.cidr if subrange else None,
            bounds,
            options,
            policy,
            host_id=self.host_id,
        )

    def _new_default_pool(
        self,
        ledger: Ledger,
        space: str,
        version: int,
        size: int | None,
        options: str,
        policy: ReusePolicy,
    ) -> PoolGrant:
        held = ledger.held_subnets((self.owner, SHARED), space, version)
        network = allocator.pick_default_subnet(self.default_pools, version, size, held)
        if network is None:
            bases = ", ".join(str(p.base) for p in self.default_pools if p.version == version)
            wanted = f"/{size}" if size is not None else "of the configured size"
            raise PoolsExhausted(
                f"no free IPv{version} subnet {wanted} left in the default pools "
                f"({bases or 'none configured'}; see IPLEDGER_DEFAULT_POOLS)"
            )
        subnet = Subnet(network)
        subnet_id = ledger.add_subnet(self.owner, space, subnet)
        pool_id = str(PoolId(space, subnet.cidr))
        self._add_pool(ledger, self.owner, pool_id, subnet_id, space, subnet, None, options, policy)
        return PoolGrant(pool_id, subnet.cidr)

    def _new_explicit_pool(
        self,
        ledger: Ledger,
        owner: str,
        space: str,
        subnet: Subnet,
        sub: netaddr.IPNetwork | None,
        options: str,
        policy: ReusePolicy,
        shared: str | None,
    ) -> PoolGrant:
        subrange: Subnet | None = None
        if sub is not None:
            subrange = Subnet(sub)
            if not subnet.contains_subnet(subrange):
                raise InvalidRequest(
                    f"ip-range (SubPool) {subrange.cidr} is not inside pool {subnet.cidr}"
                )
        pool_id = str(PoolId(space, subnet.cidr, subrange.cidr if subrange else None, shared))
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
        other_plan = self.owner if shared is not None else SHARED
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
        if existing is not None:
            # The built-in IPAM shares one address set between networks that give the same
            # subnet with different ip-ranges; any other repeat is an overlap.
            if shared is not None or subrange is None or ledger.pool(owner, pool_id) is not None:
                other, held_by = ledger.holder_of((owner,), space, (subnet.first, subnet.last))
                raise PoolOverlap(subnet.cidr, other, space, held_by)
            self._refuse_overlap(ledger, (other_plan,), space, subnet)
            ledger.change_refs(existing.id, +1)
            subnet_id = existing.id
        else:
            self._refuse_overlap(ledger, (owner, other_plan), space, subnet)
            subnet_id = ledger.add_subnet(owner, space, subnet)
        self._add_pool(ledger, owner, pool_id, subnet_id, space, subnet, subrange, options, policy)
        if shared is not None:
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
            other, held_by = ledger.holder_of(owners, space, blocker)
            raise PoolOverlap(subnet.cidr, other, space, held_by)

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
            if ledger.attached_hosts(record.id):
                # Other hosts still use it: only this host's leftovers go back, and never the
                # gateway, which is every host's.
                gateway = ledger.gateway_of(record.subnet_id, record.id)
                for address in ledger.leased_addresses_of_pool(
                    record.subnet_id, record.id, self.host_id
                ):
                    if address != gateway and ledger.drop_lease(record.subnet_id, address):
                        self._free(ledger, record, address)
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
                self._free(ledger, record, address)
            for address in ledger.leased_addresses_of_pool(record.subnet_id, record.id):
                if ledger.drop_lease(record.subnet_id, address):
                    self._free(ledger, record, address)
        ledger.write_history(self.host_id, action, record.id, record.subnet.cidr)
        log.info(
            "pool %s released%s",
            record.id,
            " by gc" if action.startswith("gc") else "",
            extra={"event": action, "pool": record.id, "subnet": record.subnet.cidr},
        )
