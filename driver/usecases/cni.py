"""CNI's calls on the ledger: ADD, DEL, CHECK and GC of an attachment, one transaction each.

The same ledger and rules as Docker's calls: a range of a CNI network is a pool (made on the first
ADD, its gateway leased as the gateway), an attachment's address is the lowest free one of its
range, parked on release as the pool's reuse policy says, and written to the history.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import netaddr

from driver.domain.addresses import SubPool
from driver.domain.cni import (
    Attachment,
    CniNetwork,
    CniRange,
    older_than_applied,
    option_changes,
    range_text,
    released_by_spooled_del,
)
from driver.domain.errors import (
    AddressInUse,
    AttachmentNotFound,
    GatewayInUse,
    InvalidRequest,
    NoAvailableAddress,
    PoolOverlap,
)
from driver.domain.history import HistoryAction
from driver.domain.pools import (
    CNI_NETWORK_OPTION,
    LOCAL_SPACE,
    SHARED,
    Lease,
    LeaseKind,
    PoolId,
    Reuse,
)
from driver.storage.ledger import Ledger
from driver.storage.locking import DEADLINE
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.addresses import Addresses, log_lease
from driver.usecases.pools import Pools
from driver.usecases.taking import free, take_dynamic, take_static

log = logging.getLogger(__name__)

# the history's actions: an option the conflist changed; a pool of a CNI network retired

# GC releases stale leases this many to a transaction, and starts no batch it has not time left
# for (twice the slowest batch, and this margin) within the call's bound
GC_BATCH = 500
GC_MARGIN = 0.5


@dataclass(frozen=True)
class CniAddress:
    """An attachment's address in one family, as CNI's result gives it."""

    address: str  # with the prefix length: 203.0.113.2/24
    gateway: str | None

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4


class CniCalls(Addresses, Pools):
    """What the ``ipledger-cni`` plugin asks of the ledger."""

    @retrying
    def add(
        self,
        network: CniNetwork,
        attachment: Attachment,
        holder: str,
        spooled: Sequence[tuple[str, float]] = (),
        pod: str | None = None,
    ) -> list[CniAddress]:
        """One address per range set; the ones the attachment holds already, when it does
        (runtimes repeat ADD); a new lease records ``pod``, the pod the runtime named. The
        network's ``spooled`` releases (attachment, time of its DEL) are applied first, in the
        same transaction: an attachment deleted while the server was down and created again now
        gets a lease of its own, not the one its DEL released."""
        key = str(attachment)
        with self.store.transaction() as ledger:
            self._apply_spooled(ledger, spooled)
            held = ledger.cni_leases(key)
            answers = [
                self._address_in(ledger, network, i, ranges, key, held, holder, pod)
                for i, ranges in enumerate(network.range_sets)
            ]
        for answer, made_in in answers:
            if made_in is not None:
                log_lease(answer.address, made_in, Lease(LeaseKind.CNI, None, holder), key)
        return [answer for answer, _ in answers]

    def _address_in(
        self,
        ledger: Ledger,
        network: CniNetwork,
        family: int,
        ranges: tuple[CniRange, ...],
        key: str,
        held: list[tuple[str, int]],
        holder: str,
        pod: str | None,
    ) -> tuple[CniAddress, str | None]:
        """The attachment's address in one family (range set ``family`` of the config), and the
        pool it was leased in just now (None when the attachment held it already)."""
        by_pool = _ranges_by_pool(network, ranges)
        for pool_id, address in held:
            if pool_id in by_pool:
                record = self._pool(ledger, pool_id)
                if record is not None:
                    self._follow(ledger, network, by_pool[pool_id], record)
                    where = f"ipam.ranges[{family}][{ranges.index(by_pool[pool_id])}]"
                    _check_gateway(ledger, network, record, by_pool[pool_id], where)
                return _answer(by_pool[pool_id], address), None
        lease = Lease(LeaseKind.CNI, None, holder)
        full: NoAvailableAddress | None = None
        for i, cni_range in enumerate(ranges):
            record = self._range_pool(ledger, network, family, cni_range)
            _check_gateway(ledger, network, record, cni_range, f"ipam.ranges[{family}][{i}]")
            try:
                value = take_dynamic(ledger, record, lease, record.policy.reuse == Reuse.SERIAL)
            except NoAvailableAddress as e:
                full = e
                continue
            self._lease(ledger, record, value, lease, cni_attachment=key, pod=pod)
            return _answer(cni_range, value), record.id
        assert full is not None
        raise full

    def _range_pool(
        self, ledger: Ledger, network: CniNetwork, family: int, cni_range: CniRange
    ) -> PoolRecord:
        """The range's pool, following the conflist's options; made, with its gateway leased,
        on the network's first ADD, or when the conflist changed the range."""
        pool_id = cni_range.pool_id(network.shared)
        owner = self.plans.of_pool(pool_id)
        record = ledger.pool(owner, str(pool_id), for_update=True)
        if record is None:
            ledger.lock_plans(LOCAL_SPACE, self.owner, shared_too=True)
            # another ADD (of this node, or of another node for a shared pool) may have made
            # it while this one waited for the lock: it is then this network's pool to use
            record = ledger.pool(owner, str(pool_id), for_update=True)
        if record is not None:
            made_for = json.loads(record.options).get(CNI_NETWORK_OPTION)
            if not record.shared and made_for != network.name:
                user = f"CNI network {made_for}" if made_for else "a Docker network"
                raise PoolOverlap(record.subnet.cidr, f"{record.id} ({user})", LOCAL_SPACE)
            return self._follow(ledger, network, cni_range, record)
        moved = self._replace_ranges(ledger, network, family, cni_range)
        if moved is not None:
            return self._follow(ledger, network, cni_range, moved)
        subpool = None
        if pool_id.subpool is not None:
            subpool = SubPool(pool_id.subpool, cni_range.first, cni_range.last)
        self.new_pools.explicit(
            ledger,
            owner,
            LOCAL_SPACE,
            cni_range.subnet,
            subpool,
            json.dumps(network.options(cni_range), sort_keys=True),
            network.policy,
            network.shared,
            attach=False,
        )
        ledger.write_history(
            self.host_id, HistoryAction.POOL_CREATE, str(pool_id), cni_range.subnet.cidr
        )
        record = ledger.pool(owner, str(pool_id), for_update=True)
        assert record is not None
        gateway = cni_range.gateway
        if gateway is not None and ledger.gateway_of(record.subnet_id, record.id) is None:
            try:
                take_static(ledger, record, netaddr.IPAddress(gateway, record.subnet.version))
            except AddressInUse:
                pass  # leased already: as the subnet's gateway, or refused by _check_gateway
            else:
                gateway_lease = Lease(LeaseKind.GATEWAY, None, f"CNI network {network.name}")
                self._lease(ledger, record, gateway, gateway_lease)
        return record

    def _follow(
        self, ledger: Ledger, network: CniNetwork, cni_range: CniRange, record: PoolRecord
    ) -> PoolRecord:
        """The pool with the options the conflist gives now: each one changed since the pool
        was made (or last changed) is written to the history, naming the old value and the
        new; a new gateway takes the gateway's lease. A shared pool another network made keeps
        the options that network gave."""
        wanted = network.options(cni_range)
        text = json.dumps(wanted, sort_keys=True)
        if text == record.options and network.policy == record.policy:
            return record  # every ADD but the first after a change: nothing to parse
        recorded = json.loads(record.options)
        if recorded.get(CNI_NETWORK_OPTION) != network.name:
            return record
        if older_than_applied(network, recorded) is not None:
            # a node whose conflist a rollout has not reached yet: served as the newer says
            return record
        changes = option_changes(network, cni_range, recorded, record.policy)
        if any(change.option == "gateway" for change in changes):
            self._move_gateway(ledger, network, cni_range, record)
        ledger.set_pool_policy(record.owner, record.id, text, network.policy)
        for change in changes:
            ledger.write_history(
                self.host_id,
                HistoryAction.CNI_OPTION,
                record.id,
                record.subnet.cidr,
                detail=f"{network.name}: {change}"[:255],
            )
            log.info(
                "CNI network %s: %s now %s (was %s) in pool %s",
                network.name,
                change.option,
                change.new,
                change.old,
                record.id,
                extra={
                    "event": HistoryAction.CNI_OPTION,
                    "pool": record.id,
                    "option": change.option,
                },
            )
        followed = ledger.pool(record.owner, record.id, for_update=True)
        assert followed is not None
        return followed

    def _move_gateway(
        self, ledger: Ledger, network: CniNetwork, cni_range: CniRange, record: PoolRecord
    ) -> None:
        """The gateway lease of the pool to the range's new gateway. The old address stays
        leased, as an auxiliary address ("former gateway of CNI network NAME"), until the
        network is retired: the bridge plugin never takes an address off a bridge, so each
        node's bridge keeps it until it is deleted, and a pod given it would clash with it. A
        new gateway that a container holds is refused afterwards (_check_gateway)."""
        former = f"former gateway of CNI network {network.name}"
        old = ledger.gateway_of(record.subnet_id, record.id)
        if (
            old is not None
            and old != cni_range.gateway
            and ledger.drop_lease(record.subnet_id, old)
        ):
            self._lease(ledger, record, old, Lease(LeaseKind.AUX, None, former))
        gateway = cni_range.gateway
        if gateway is None:
            return
        gateway_lease = Lease(LeaseKind.GATEWAY, None, f"CNI network {network.name}")
        held = ledger.lease_at(record.subnet_id, gateway)
        if held is None:
            take_static(ledger, record, netaddr.IPAddress(gateway, record.subnet.version))
            self._lease(ledger, record, gateway, gateway_lease)
        elif held.name == former and not held.mac:
            # back to a gateway it had before
            ledger.drop_lease(record.subnet_id, gateway)
            self._lease(ledger, record, gateway, gateway_lease)

    def _replace_ranges(
        self, ledger: Ledger, network: CniNetwork, family: int, cni_range: CniRange
    ) -> PoolRecord | None:
        """Before a pool is made for ``cni_range`` of range set ``family``: the network's pools
        of that address family that the set no longer names (other bounds, another subnet,
        another shared name) give way, so that the change takes effect.

        Other bounds in the same subnet move the pool to them, leases and all (the pool it
        is now is returned): the pods keep their addresses, so long as each is inside the new
        bounds. Any other pool no longer named is retired, unless an attachment holds an
        address in it. What cannot take effect is refused (InvalidRequest, CNI code 7) and
        the transaction writes nothing: a pod would keep an address outside the network's
        range; or the conflist is an older generation than the one that made the pools."""
        ranges = network.range_sets[family]
        named = {str(r.pool_id(network.shared)) for r in ranges}
        stale = [
            record
            for record in network_pools(ledger, network.name, self.owner, for_update=True)
            if record.subnet.version == ranges[0].version and record.id not in named
        ]
        if not stale:
            return None
        new = ", ".join(r.text(network.shared) for r in ranges)
        where = f"ipam.ranges[{family}]"
        for record in stale:
            applied = older_than_applied(network, json.loads(record.options))
            if applied is not None:
                raise InvalidRequest(
                    f"{where}: CNI network {network.name} has range {pool_text(record)} since "
                    f"its conflist's generation {applied}; this one, generation "
                    f"{network.generation}, gives {new}: update this node's conflist"
                )
        pool_id = cni_range.pool_id(network.shared)
        same_subnet = next(
            (
                r
                for r in stale
                if r.subnet.cidr == cni_range.subnet.cidr
                and PoolId.parse(r.id).shared == network.shared
            ),
            None,
        )
        moved = None
        if same_subnet is not None:
            old = pool_text(same_subnet)
            count, outside = ledger.cni_leases_outside(
                same_subnet.subnet_id, same_subnet.id, cni_range.first, cni_range.last
            )
            if count:
                attachment, address = outside
                shown = netaddr.IPAddress(address, cni_range.version)
                raise InvalidRequest(
                    f"{where}: CNI network {network.name} changes its range {old} to {new} "
                    f"while {count} attachment{'s' if count != 1 else ''} hold"
                    f"{'s' if count == 1 else ''} addresses outside it (e.g. {attachment} at "
                    f"{shown}): a pod would keep an address outside the network's range. Keep "
                    f"{old} in the conflist until those pods are gone (or drain the node), "
                    "then change it"
                )
            for address in ledger.parked_of_pool(same_subnet.subnet_id, same_subnet.id):
                # held or quarantined outside the new bounds: no one is to get it back here
                if not cni_range.first <= address <= cni_range.last and ledger.unpark(
                    same_subnet.subnet_id, address
                ):
                    free(ledger, same_subnet, address)
            ledger.move_pool(
                same_subnet.owner,
                same_subnet.subnet_id,
                same_subnet.id,
                str(pool_id),
                pool_id.subpool,
                (cni_range.first, cni_range.last),
            )
            ledger.write_history(
                self.host_id,
                HistoryAction.CNI_OPTION,
                str(pool_id),
                same_subnet.subnet.cidr,
                detail=f"{network.name}: ranges[{family}] {old} -> {new}"[:255],
            )
            moved = ledger.pool(same_subnet.owner, str(pool_id), for_update=True)
            stale.remove(same_subnet)
        for record in stale:
            count, example = ledger.cni_attachments_in(pool=(record.subnet_id, record.id))
            if count:
                old = pool_text(record)
                raise InvalidRequest(
                    f"{where}: CNI network {network.name} changes its range {old} to {new} "
                    f"while {count} attachment{'s' if count != 1 else ''} hold"
                    f"{'s' if count == 1 else ''} addresses in it (e.g. {example}): a pod would "
                    f"keep an address outside the network's range. Keep {old} in the conflist "
                    "until those pods are gone (or drain the node), then change it"
                )
        for record in stale:
            ledger.write_history(
                self.host_id,
                HistoryAction.CNI_OPTION,
                record.id,
                record.subnet.cidr,
                detail=f"{network.name}: ranges[{family}] {pool_text(record)} -> {new}"[:255],
            )
            self._release_pool(ledger, record, HistoryAction.CNI_RETIRE)
        return moved

    @retrying
    def delete(self, attachment: Attachment, spooled: Sequence[tuple[str, float]] = ()) -> int:
        """Release what the attachment holds; how many leases that was (0 is no error). The
        network's ``spooled`` releases are applied in the same transaction (their leases are not
        counted)."""
        with self.store.transaction() as ledger:
            self._apply_spooled(ledger, spooled)
            key = str(attachment)
            return self._release_all(ledger, key, ledger.cni_leases(key), HistoryAction.RELEASE)

    @retrying
    def apply_spooled(self, spooled: Sequence[tuple[str, float]]) -> int:
        """Apply DELs the plugin spooled while the server could not be reached; how many leases
        that released."""
        with self.store.transaction() as ledger:
            return self._apply_spooled(ledger, spooled)

    def _apply_spooled(self, ledger: Ledger, spooled: Sequence[tuple[str, float]]) -> int:
        """Release each attachment's leases made before its spooled DEL. A lease made after it
        (the attachment ADDed again since) is the new attachment's, and stays: so applying a
        release twice, or after the attachment came back, changes nothing."""
        released = 0
        for key, deleted_at in spooled:
            for pool_id, address in ledger.cni_leases(key):
                record = self._pool(ledger, pool_id)
                if record is None:
                    continue
                made = ledger.lease_created_at(record.subnet_id, address)
                if made is None or not released_by_spooled_del(made.timestamp(), deleted_at):
                    log.info("spooled DEL of %s keeps %s: leased after the DEL", key, address)
                    continue
                if self._release(ledger, record, address, HistoryAction.SPOOL_RELEASE, key):
                    released += 1
        return released

    @retrying
    def check(self, network: CniNetwork, attachment: Attachment) -> list[CniAddress]:
        """The attachment's addresses; AttachmentNotFound when a range set has none."""
        with self.store.reading() as ledger:
            held = ledger.cni_leases(str(attachment))
        answers = []
        for ranges in network.range_sets:
            by_pool = _ranges_by_pool(network, ranges)
            found = [_answer(by_pool[p], a) for p, a in held if p in by_pool]
            if not found:
                family = ranges[0].subnet.version
                raise AttachmentNotFound(
                    f"attachment {attachment} holds no IPv{family} address in network "
                    f"{network.name}"
                )
            answers.append(found[0])
        return answers

    @retrying
    def status(self) -> None:
        """Whether an ADD could be served now: the ledger answers (StorageUnavailable if not)."""
        with self.store.reading() as ledger:
            ledger.ping()

    def collect(self, network: str, valid: Collection[tuple[str, str]]) -> tuple[int, int]:
        """GC: release the network's leases whose (container ID, ifname) is not ``valid``.

        In batches of GC_BATCH leases, one transaction each, for as long as the call's bound
        leaves time for another: a GC of more leases than one bound can release commits what it
        did and says how many are left (the next GC goes on), rather than failing whole at every
        try. The number released, and the number still to release."""
        with self.store.reading() as ledger:
            stale = [
                (key, pool_id, address)
                for key, pool_id, address in ledger.cni_leases_of_network(network)
                if _pair(key) not in valid
            ]
        released, done, slowest = 0, 0, 0.0
        while done < len(stale):
            deadline = DEADLINE.get()
            if deadline is not None and deadline - time.monotonic() < 2 * slowest + GC_MARGIN:
                break
            started = time.monotonic()
            released += self._collect_batch(stale[done : done + GC_BATCH])
            done = min(done + GC_BATCH, len(stale))
            slowest = max(slowest, time.monotonic() - started)
        return released, len(stale) - done

    @retrying
    def _collect_batch(self, stale: list[tuple[str, str, int]]) -> int:
        """Release these leases, each only if the attachment that held it when GC read it holds
        it still (it may have been released, and the address leased again, since)."""
        with self.store.transaction() as ledger:
            released = 0
            for key, pool_id, address in stale:
                record = self._pool(ledger, pool_id)
                if record is None:
                    continue
                held = ledger.lease_at(record.subnet_id, address)
                if held is None or (held.kind, held.attachment) != (LeaseKind.CNI, key):
                    continue
                if self._release(ledger, record, address, HistoryAction.GC_RELEASE, key):
                    released += 1
            return released

    def _release_all(
        self, ledger: Ledger, key: str, leases: list[tuple[str, int]], action: HistoryAction
    ) -> int:
        released = 0
        for pool_id, address in leases:
            record = self._pool(ledger, pool_id)
            if record is not None and self._release(ledger, record, address, action, key):
                released += 1
        return released


# the kinds of lease a container holds
CONTAINERS = (LeaseKind.CNI, LeaseKind.ENDPOINT)


def _check_gateway(
    ledger: Ledger, network: CniNetwork, record: PoolRecord, cni_range: CniRange, where: str
) -> None:
    """Refuse a range whose gateway is an address leased to a container (a CNI attachment, a
    Docker endpoint): it would be answered as the gateway of this network's attachments while
    it is another's address. A gateway lease of the subnet (this network's own, a shared pool's,
    a sibling range's) is the subnet's router, and is answered; so are Docker's leases that are
    no container's (an ``--aux-address``, a request without a MAC address)."""
    gateway = cni_range.gateway
    if gateway is None:
        return
    leased = ledger.lease_at(record.subnet_id, gateway)
    if leased is None or leased.kind not in CONTAINERS:
        return
    address = str(netaddr.IPAddress(gateway, record.subnet.version))
    holder = (
        f"CNI attachment {leased.attachment}"
        if leased.attachment is not None
        else "a Docker " + leased.in_words().removeprefix("an ")
    )
    raise GatewayInUse(
        address,
        f"{where}.gateway of CNI network {network.name} is held by {holder} in "
        f"{record.subnet.cidr}; a gateway may not be a container's address",
    )


def network_pools(
    ledger: Ledger, network: str, owner: str, *, for_update: bool = False
) -> list[PoolRecord]:
    """The pools made for a CNI network, in this host's plan and the shared one."""
    marker = json.dumps({CNI_NETWORK_OPTION: network})[1:-1]
    return [
        record
        for record in ledger.pools_with_options_containing(
            marker, (owner, SHARED), for_update=for_update
        )
        if json.loads(record.options).get(CNI_NETWORK_OPTION) == network
    ]


def pool_text(record: PoolRecord) -> str:
    pool_id = PoolId.parse(record.id)
    return range_text(record.subnet.cidr, pool_id.subpool, pool_id.shared)


def _pair(key: str) -> tuple[str, str]:
    attachment = Attachment.parse(key)
    return attachment.container_id, attachment.ifname


def _ranges_by_pool(network: CniNetwork, ranges: tuple[CniRange, ...]) -> dict[str, CniRange]:
    """A range set's ranges by the PoolID of their pools."""
    return {str(r.pool_id(network.shared)): r for r in ranges}


def _answer(cni_range: CniRange, address: int) -> CniAddress:
    subnet = cni_range.subnet
    gateway = cni_range.gateway
    return CniAddress(
        subnet.format(address),
        str(netaddr.IPAddress(gateway, subnet.version)) if gateway is not None else None,
    )
