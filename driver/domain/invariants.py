"""The invariants of a ledger: what no state of it may break, checked on its contents.

One checker serves ``ipledger import`` (the file on its own, then beside what the ledger holds,
before anything is written) and ``ipledger check`` (what the ledger holds). Each rule is one the
live calls enforce as they go (RequestPool, RequestAddress, ``reserve``, CNI ADD), so that an
import can bring in nothing a live call would refuse, and ``check`` finds whatever did get in.
The two stored-state rules (:attr:`Rule.COUNTS`, :attr:`Rule.FREE_RANGES`) apply to a ledger
only: an import computes what they check.

A problem names its rule (``[no-overlap]``), where it is (``subnets[1].leases[0]`` in a file,
``LocalDefault 198.51.100.0/24`` in a ledger), and what is wrong, in words.
Pure: no Flask, no SQLAlchemy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import netaddr

from driver.domain import addresses as allocator
from driver.domain.addresses import Range, Subnet
from driver.domain.errors import InvalidRequest, PoolNotFound
from driver.domain.pools import SHARED, SPACES, PoolId, shared_name

# The longest quarantine or hold: what the ledger's integer columns hold on every database
# (68 years).
MAX_SECONDS = 2**31 - 1
# How many addresses held in two subnets one problem lists.
SHOWN = 5


class Rule(StrEnum):
    """The invariants, by the name a problem gives (see :data:`RULES` for each in words)."""

    NO_OVERLAP = "no-overlap"
    ONE_HOLDER = "one-holder"
    POOL_IN_SUBNET = "pool-in-subnet"
    HELD_IN_SUBNET = "held-in-subnet"
    LEASE_POOL = "lease-pool"
    RESERVATIONS_APART = "reservations-apart"
    POOL_ID = "pool-id"
    SUBNET_SHARING = "subnet-sharing"
    DURATIONS = "durations"
    SPACE = "space"
    COUNTS = "counts"
    FREE_RANGES = "free-ranges"


RULES = {
    Rule.NO_OVERLAP: "no two subnets of one address plan (a host's own pools and the shared "
    "ones, in one address space) overlap",
    Rule.ONE_HOLDER: "an address is leased or parked once: not twice in a subnet, not both, "
    "not in two overlapping subnets",
    Rule.POOL_IN_SUBNET: "a pool's ip-range lies inside its subnet, and it draws from exactly it",
    Rule.HELD_IN_SUBNET: "leases, parked addresses, reservations and the cursor lie among the "
    "addresses their subnet hands out",
    Rule.LEASE_POOL: "a lease or parked address names a pool of its subnet",
    Rule.RESERVATIONS_APART: "no two reservations of a subnet overlap",
    Rule.POOL_ID: "a pool ID is the one its space, subnet, ip-range and owner make, used once "
    "in its plan; a shared name is one pool",
    Rule.SUBNET_SHARING: "a subnet has a pool; pools share it only when they are a host's own, "
    "and one at most without an ip-range (as RequestPool lets an ip-range pool join a subnet)",
    Rule.DURATIONS: f"quarantine and hold are 0 to {MAX_SECONDS} seconds; a parked address is "
    "parked until a finite time",
    Rule.SPACE: f"the address space is one ipledger serves ({', '.join(SPACES)})",
    Rule.COUNTS: "a subnet's stored counts of pools and reservations match what it holds",
    Rule.FREE_RANGES: "the free ranges are exactly the usable addresses nothing holds",
}


@dataclass(frozen=True)
class Problem:
    rule: Rule
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message} [{self.rule}]"


@dataclass(frozen=True, slots=True)
class PoolFacts:
    id: str
    subpool: str | None
    quarantine_s: int
    hold_s: int
    where: str
    # the range it draws from, as a ledger stores it; None in a file, which names only the subpool
    draws: Range | None = None


@dataclass(frozen=True, slots=True)
class HeldFacts:
    """A lease, or a parked address (``until`` set)."""

    address: int
    pool_id: str
    where: str
    until: float | None = None

    @property
    def what(self) -> str:
        return "lease" if self.until is None else "parked address"


@dataclass(frozen=True, slots=True)
class ReservedFacts:
    first: int
    last: int
    label: str
    where: str


@dataclass(frozen=True, slots=True)
class Stored:
    """What a ledger stores about a subnet besides its contents: counts and free ranges."""

    refs: int
    reservations: int
    free: list[Range]


@dataclass(frozen=True, slots=True)
class Placed:
    """A subnet's place in the address plans: what overlaps are checked on."""

    owner: str
    space: str
    subnet: Subnet
    where: str
    # how a problem of another subnet names this one: " (subnets[0])", " (in the ledger)"
    label: str
    pool_ids: tuple[str, ...]
    fresh: bool = True  # from the file being imported, not already in the ledger


@dataclass
class SubnetFacts:
    owner: str
    space: str
    subnet: Subnet
    where: str
    label: str
    pools: Sequence[PoolFacts]
    held: Sequence[HeldFacts]
    reservations: Sequence[ReservedFacts] = ()
    cursor: int | None = None
    stored: Stored | None = None
    fresh: bool = True
    pool_ids: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.pool_ids = tuple(p.id for p in self.pools)

    def placed(self) -> Placed:
        return Placed(
            self.owner, self.space, self.subnet, self.where, self.label, self.pool_ids, self.fresh
        )


def show(address: int, version: int) -> str:
    return str(netaddr.IPAddress(address, version))


def show_range(first: int, last: int, version: int) -> str:
    return (
        show(first, version) if first == last else f"{show(first, version)}-{show(last, version)}"
    )


def subpool_bounds(text: str) -> tuple[int, int, int] | None:
    """(version, first, last) of an ip-range (a CIDR) or a CNI range (FIRST-LAST); None when it
    is neither."""
    try:
        first, last = allocator.parse_range(text, "ip-range")
    except InvalidRequest:
        return None
    return int(first.version), int(first), int(last)


def subnet_problems(s: SubnetFacts) -> list[Problem]:
    """Every rule that one subnet, with its pools and what it holds, can break on its own."""
    problems: list[Problem] = []
    if s.space not in SPACES:
        problems.append(
            Problem(
                Rule.SPACE,
                s.where,
                f"unknown address space {s.space!r:.80}: ipledger serves {' and '.join(SPACES)}",
            )
        )
    problems += _pool_problems(s)
    problems += _held_problems(s)
    problems += _reservation_problems(s)
    if s.cursor is not None and not s.subnet.first <= s.cursor <= s.subnet.last + 1:
        problems.append(
            Problem(Rule.HELD_IN_SUBNET, s.where, f"its cursor lies outside {s.subnet.cidr}")
        )
    if s.stored is not None:
        problems += _stored_problems(s, s.stored)
    return problems


def _pool_problems(s: SubnetFacts) -> list[Problem]:
    problems: list[Problem] = []
    subnet = s.subnet
    if not s.pools:
        problems.append(Problem(Rule.SUBNET_SHARING, s.where, "no pool uses it"))
    elif len(s.pools) > 1 and (
        s.owner == SHARED or sum(1 for p in s.pools if p.subpool is None) > 1
    ):
        problems.append(
            Problem(
                Rule.SUBNET_SHARING,
                s.where,
                f"{len(s.pools)} pools use {subnet.cidr} ({', '.join(s.pool_ids)}), but a subnet "
                "is shared only by pools of a host's own, and by one at most without an ip-range",
            )
        )
    seen: set[str] = set()
    for p in s.pools:
        if p.id in seen:
            problems.append(Problem(Rule.POOL_ID, p.where, f"pool {p.id!r} is named twice"))
        seen.add(p.id)
        problems += _pool_id_problems(s, p)
        for name, value in (("quarantine_s", p.quarantine_s), ("hold_s", p.hold_s)):
            if not 0 <= value <= MAX_SECONDS:
                value_shown = (
                    str(value) if abs(value) < 10**15 else f"a {len(str(abs(value)))}-digit number"
                )
                problems.append(
                    Problem(
                        Rule.DURATIONS,
                        p.where,
                        f"pool {p.id!r}: {name} {value_shown} is out of range (0 to {MAX_SECONDS})",
                    )
                )
        bounds: Range = (subnet.first, subnet.last)
        if p.subpool is not None:
            parsed = subpool_bounds(p.subpool)
            if parsed is None or parsed[0] != subnet.version:
                problems.append(
                    Problem(
                        Rule.POOL_IN_SUBNET,
                        p.where,
                        f"pool {p.id!r}: ip-range {p.subpool!r:.80} is not an IPv{subnet.version} "
                        "CIDR or FIRST-LAST range",
                    )
                )
                continue
            bounds = parsed[1:]
        if not subnet.first <= bounds[0] <= bounds[1] <= subnet.last:
            problems.append(
                Problem(
                    Rule.POOL_IN_SUBNET,
                    p.where,
                    f"pool {p.id!r}: ip-range {p.subpool} is not inside {subnet.cidr}",
                )
            )
        elif p.draws is not None and p.draws != bounds:
            outside = not subnet.first <= p.draws[0] <= p.draws[1] <= subnet.last
            problems.append(
                Problem(
                    Rule.POOL_IN_SUBNET,
                    p.where,
                    f"pool {p.id} draws from "
                    + ("outside the subnet" if outside else "other addresses than its ip-range"),
                )
            )
    return problems


def _pool_id_problems(s: SubnetFacts, p: PoolFacts) -> list[Problem]:
    def wrong(why: str) -> list[Problem]:
        return [Problem(Rule.POOL_ID, p.where, f"pool ID {p.id!r:.200} {why}")]

    try:
        named = PoolId.parse(p.id)
    except PoolNotFound:
        return wrong("is not one ipledger makes (SPACE/SUBNET[/IP-RANGE])")
    if named.space != s.space:
        return wrong(f"names address space {named.space!r:.80}, but its subnet is in {s.space}")
    if named.cidr != s.subnet.cidr:
        return wrong(f"names subnet {named.cidr!r:.80}, but it is a pool of {s.subnet.cidr}")
    if named.subpool != p.subpool:
        return wrong(f"names ip-range {named.subpool!r:.80}, but its ip-range is {p.subpool!r}")
    if (named.shared is not None) != (s.owner == SHARED):
        return wrong(
            "is a shared pool's, but its owner is not 'shared'"
            if named.shared is not None
            else "is not a shared pool's, but its owner is 'shared'"
        )
    if named.shared is not None:
        try:
            shared_name({"ipledger.shared": named.shared})
        except InvalidRequest as e:
            return wrong(f"names a shared pool no network can: {e.message}")
    return []


def _held_problems(s: SubnetFacts) -> list[Problem]:
    problems: list[Problem] = []
    subnet, v = s.subnet, s.subnet.version
    pool_ids = set(s.pool_ids)
    seen: dict[int, HeldFacts] = {}
    for h in s.held:
        if (
            subnet.first < h.address < subnet.last
            and h.pool_id in pool_ids
            and h.address not in seen
            and h.until is None
        ):
            seen[h.address] = h  # the common case, quickly: nothing below applies
            continue
        text = show(h.address, v) if 0 <= h.address < 2 ** (32 if v == 4 else 128) else "?"
        if not subnet.contains(h.address):
            problems.append(
                Problem(Rule.HELD_IN_SUBNET, h.where, f"{text} cannot be held in {subnet.cidr}")
            )
        elif why := subnet.reserved(h.address):
            problems.append(
                Problem(
                    Rule.HELD_IN_SUBNET,
                    h.where,
                    f"{text} cannot be held in {subnet.cidr}: it is {why}",
                )
            )
        if h.pool_id not in pool_ids:
            problems.append(
                Problem(
                    Rule.LEASE_POOL,
                    h.where,
                    f"{h.what} {text} names pool {h.pool_id!r:.200}, which is not a pool of "
                    f"{subnet.cidr}",
                )
            )
        before = seen.get(h.address)
        if before is not None:
            both = (
                "leased twice"
                if before.until is None and h.until is None
                else "both leased and parked"
                if (before.until is None) != (h.until is None)
                else "parked twice"
            )
            also = f" ({before.where})" if before.where != h.where else ""
            problems.append(Problem(Rule.ONE_HOLDER, h.where, f"{text} is {both}{also}"))
        else:
            seen[h.address] = h
        if h.until is not None and not math.isfinite(h.until):
            problems.append(
                Problem(Rule.DURATIONS, h.where, f"{text} is parked until {h.until}, never")
            )
    return problems


def _reservation_problems(s: SubnetFacts) -> list[Problem]:
    problems: list[Problem] = []
    v = s.subnet.version
    usable = s.subnet.allocatable()
    before: ReservedFacts | None = None
    for r in sorted(s.reservations, key=lambda r: (r.first, r.last)):
        shown = (
            show_range(r.first, r.last, v)
            if 0 <= r.first <= r.last < 2 ** (32 if v == 4 else 128)
            else "?"
        )
        if r.last < r.first:
            problems.append(
                Problem(Rule.HELD_IN_SUBNET, r.where, f"reservation {r.label!r}: last before first")
            )
            continue
        if usable is None or not usable[0] <= r.first <= r.last <= usable[1]:
            problems.append(
                Problem(
                    Rule.HELD_IN_SUBNET,
                    r.where,
                    f"reservation {shown} ({r.label}) is not among the addresses "
                    f"{s.subnet.cidr} hands out",
                )
            )
        if before is not None and r.first <= before.last:
            problems.append(
                Problem(
                    Rule.RESERVATIONS_APART,
                    r.where,
                    f"reservation {shown} ({r.label}) overlaps the reservation "
                    f"{show_range(before.first, before.last, v)} ({before.label})",
                )
            )
        if before is None or r.last > before.last:
            before = r
    return problems


def expected_free(s: SubnetFacts) -> list[Range]:
    """The free ranges a subnet must have: its usable addresses that nothing holds."""
    usable = s.subnet.allocatable()
    if usable is None:
        return []
    taken = [(h.address, h.address) for h in s.held]
    taken += [(r.first, r.last) for r in s.reservations if r.first <= r.last]
    return allocator.gaps(usable, allocator.merge(taken))


def _stored_problems(s: SubnetFacts, stored: Stored) -> list[Problem]:
    problems: list[Problem] = []
    v = s.subnet.version
    if stored.refs != len(s.pools):
        problems.append(
            Problem(
                Rule.COUNTS,
                s.where,
                f"{len(s.pools)} pools use it but its count says {stored.refs}",
            )
        )
    if stored.reservations != len(s.reservations):
        problems.append(
            Problem(
                Rule.COUNTS,
                s.where,
                f"{len(s.reservations)} reservations but its count says {stored.reservations}",
            )
        )
    expected = expected_free(s)
    if stored.free != expected:
        extra = sorted(set(stored.free) - set(expected))
        missing = sorted(set(expected) - set(stored.free))
        detail = []
        if extra:
            detail.append(
                "marked free but not expected: "
                + ", ".join(show_range(a, b, v) for a, b in extra[:3])
            )
        if missing:
            detail.append(
                "expected free but not marked: "
                + ", ".join(show_range(a, b, v) for a, b in missing[:3])
            )
        problems.append(
            Problem(
                Rule.FREE_RANGES,
                s.where,
                "the free ranges do not match the leases, reservations and parked addresses ("
                + "; ".join(detail or ["split differently"])
                + ")",
            )
        )
    return problems


def same_plan(a: Placed, b: Placed) -> bool:
    """Whether two subnets are in one address plan: a host's own pools and the shared ones are
    one plan to it; two hosts' own pools are not."""
    return a.space == b.space and (a.owner == b.owner or SHARED in (a.owner, b.owner))


def overlapping(placed: Sequence[Placed]) -> list[tuple[Placed, Placed]]:
    """Every pair of subnets of one plan that overlap, the lower (or wider) one first.

    A sweep by first address: each subnet is compared only with those still open at its start.
    """
    pairs: list[tuple[Placed, Placed]] = []
    order = sorted(
        range(len(placed)),
        key=lambda i: (
            placed[i].space,
            placed[i].subnet.version,
            placed[i].subnet.first,
            -placed[i].subnet.last,
            i,
        ),
    )
    open_: list[Placed] = []
    for i in order:
        b = placed[i]
        open_ = [
            a
            for a in open_
            if a.space == b.space
            and a.subnet.version == b.subnet.version
            and a.subnet.last >= b.subnet.first
        ]
        pairs += [(a, b) for a in open_ if same_plan(a, b)]
        open_.append(b)
    return pairs


def plan_problems(placed: Sequence[Placed]) -> list[Problem]:
    """The rules that span subnets: overlaps within a plan, pool IDs used once per plan, a
    shared name one pool. Only what involves a subnet that is ``fresh`` is reported."""
    problems: list[Problem] = []
    for a, b in overlapping(placed):
        if not (a.fresh or b.fresh):
            continue
        first, second = (b, a) if a.fresh and not b.fresh else (a, b)
        problems.append(
            Problem(
                Rule.NO_OVERLAP,
                second.where,
                f"{second.subnet.cidr} overlaps {first.subnet.cidr}{first.label} "
                f"in address space {second.space}",
            )
        )
    named: dict[tuple[str, str], Placed] = {}
    shared_names: dict[str, tuple[str, Placed]] = {}
    for p in sorted(placed, key=lambda p: p.fresh):  # a clash is reported at the fresh one
        for pool_id in p.pool_ids:
            before = named.get((p.owner, pool_id))
            if before is not None and before is not p and p.fresh:
                problems.append(
                    Problem(
                        Rule.POOL_ID,
                        p.where,
                        f"pool {pool_id!r:.200} is a pool of {before.subnet.cidr}{before.label} "
                        "already",
                    )
                )
            named.setdefault((p.owner, pool_id), p)
            if p.owner != SHARED or not pool_id.startswith("shared/"):
                continue
            name = pool_id.split("/")[1]
            other = shared_names.setdefault(name, (pool_id, p))
            if other[0] != pool_id and (p.fresh or other[1].fresh):
                problems.append(
                    Problem(
                        Rule.POOL_ID,
                        p.where,
                        f"shared name {name!r:.80} is pool {other[0]}{other[1].label} already: "
                        "a shared name is one pool",
                    )
                )
    return problems


def held_in_both(a: Placed, b: Placed, addresses: Iterable[int]) -> list[Problem]:
    """The addresses two overlapping subnets both hold, as one problem (none when there are
    none)."""
    both = sorted(set(addresses))
    if not both:
        return []
    v = a.subnet.version
    if len(both) == 1:
        what = f"{show(both[0], v)} is"
    else:
        shown = ", ".join(show(x, v) for x in both[:SHOWN])
        what = f"{len(both)} addresses ({shown}{', ...' if len(both) > SHOWN else ''}) are"
    return [
        Problem(
            Rule.ONE_HOLDER,
            b.where,
            f"{what} held in both {a.subnet.cidr} and {b.subnet.cidr}",
        )
    ]
