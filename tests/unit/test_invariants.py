"""The ledger's invariants, rule by rule, on contents built here (no database)."""

from __future__ import annotations

import math

import netaddr
import pytest

from driver.domain.addresses import Subnet
from driver.domain.invariants import (
    RULES,
    HeldFacts,
    Placed,
    PoolFacts,
    ReservedFacts,
    Rule,
    Stored,
    SubnetFacts,
    expected_free,
    held_in_both,
    overlapping,
    plan_problems,
    subnet_problems,
)

CIDR = "198.51.100.0/24"
POOL = f"LocalDefault/{CIDR}"


def ip(text: str) -> int:
    return int(netaddr.IPAddress(text))


def facts(
    cidr: str = CIDR,
    pools: list[PoolFacts] | None = None,
    held: list[HeldFacts] | None = None,
    reservations: list[ReservedFacts] | None = None,
    owner: str = "local",
    space: str = "LocalDefault",
    **more,
) -> SubnetFacts:
    return SubnetFacts(
        owner=owner,
        space=space,
        subnet=Subnet(netaddr.IPNetwork(cidr)),
        where="s",
        label=" (s)",
        pools=[PoolFacts(f"{space}/{cidr}", None, 0, 0, "p")] if pools is None else pools,
        held=held or [],
        reservations=reservations or [],
        **more,
    )


def lease(address: str, pool_id: str = POOL, where: str = "l") -> HeldFacts:
    return HeldFacts(ip(address), pool_id, where)


def rules(problems) -> list[Rule]:
    return [p.rule for p in problems]


def test_every_rule_is_described_in_words():
    assert set(RULES) == set(Rule)


def test_a_subnet_with_its_pool_leases_reservations_and_parked_addresses_keeps_every_rule():
    s = facts(
        held=[lease("198.51.100.1"), HeldFacts(ip("198.51.100.2"), POOL, "k", until=1e9)],
        reservations=[ReservedFacts(ip("198.51.100.10"), ip("198.51.100.19"), "r", "r")],
        cursor=ip("198.51.100.255"),
    )
    assert subnet_problems(s) == []


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("203.0.113.9", "203.0.113.9 cannot be held in 198.51.100.0/24"),
        ("198.51.100.0", "198.51.100.0 cannot be held in 198.51.100.0/24: it is the network"),
        ("198.51.100.255", "cannot be held in 198.51.100.0/24: it is the broadcast address"),
    ],
)
def test_a_lease_outside_its_subnet_or_on_an_address_it_never_hands_out_breaks_held_in_subnet(
    address, says
):
    [problem] = subnet_problems(facts(held=[lease(address)]))
    assert problem.rule == Rule.HELD_IN_SUBNET and says in problem.message
    assert str(problem).startswith("l: ") and str(problem).endswith("[held-in-subnet]")


def test_an_address_leased_twice_or_leased_and_parked_breaks_one_holder():
    twice = facts(held=[lease("198.51.100.5", where="a"), lease("198.51.100.5", where="b")])
    [problem] = subnet_problems(twice)
    assert problem.rule == Rule.ONE_HOLDER
    assert str(problem) == "b: 198.51.100.5 is leased twice (a) [one-holder]"
    both = facts(
        held=[lease("198.51.100.5", where="a"), HeldFacts(ip("198.51.100.5"), POOL, "b", 5.0)]
    )
    assert "both leased and parked" in str(subnet_problems(both)[0])


def test_a_lease_naming_no_pool_of_its_subnet_breaks_lease_pool():
    [problem] = subnet_problems(facts(held=[lease("198.51.100.5", "LocalDefault/gone")]))
    assert problem.rule == Rule.LEASE_POOL
    assert "names pool 'LocalDefault/gone', which is not a pool of 198.51.100.0/24" in str(problem)


def test_an_ip_range_outside_its_subnet_or_not_a_range_breaks_pool_in_subnet():
    outside = PoolFacts(f"{POOL}/203.0.113.0/25", "203.0.113.0/25", 0, 0, "p")
    assert Rule.POOL_IN_SUBNET in rules(subnet_problems(facts(pools=[outside])))
    bad = PoolFacts(f"{POOL}/nonsense", "nonsense", 0, 0, "p")
    assert Rule.POOL_IN_SUBNET in rules(subnet_problems(facts(pools=[bad])))
    drifted = PoolFacts(POOL, None, 0, 0, "p", draws=(ip("203.0.113.1"), ip("203.0.113.9")))
    [problem] = subnet_problems(facts(pools=[drifted]))
    assert problem.rule == Rule.POOL_IN_SUBNET and "draws from outside the subnet" in str(problem)


def test_a_cni_range_inside_its_subnet_is_a_valid_ip_range():
    cni = PoolFacts(
        f"{POOL}/198.51.100.10-198.51.100.20",
        "198.51.100.10-198.51.100.20",
        0,
        0,
        "p",
        draws=(ip("198.51.100.10"), ip("198.51.100.20")),
    )
    assert subnet_problems(facts(pools=[cni])) == []


@pytest.mark.parametrize(
    ("first", "last", "rule"),
    [
        ("198.51.100.0", "198.51.100.3", Rule.HELD_IN_SUBNET),  # the network address
        ("198.51.100.15", "198.51.100.25", Rule.RESERVATIONS_APART),
        ("198.51.100.9", "198.51.100.8", Rule.HELD_IN_SUBNET),
    ],
)
def test_reservations_that_overlap_or_leave_the_usable_addresses_are_refused(first, last, rule):
    s = facts(
        reservations=[
            ReservedFacts(ip("198.51.100.10"), ip("198.51.100.19"), "a", "r0"),
            ReservedFacts(ip(first), ip(last), "b", "r1"),
        ]
    )
    assert rules(subnet_problems(s)) == [rule]


@pytest.mark.parametrize(
    ("pool_id", "owner", "says"),
    [
        ("GlobalDefault/198.51.100.0/24", "local", "names address space 'GlobalDefault'"),
        ("LocalDefault/203.0.113.0/24", "local", "names subnet '203.0.113.0/24'"),
        ("LocalDefault/198.51.100.0/24/198.51.100.0/25", "local", "names ip-range"),
        ("shared/lan/LocalDefault/198.51.100.0/24", "local", "its owner is not 'shared'"),
        ("LocalDefault/198.51.100.0/24", "shared", "its owner is 'shared'"),
        ("shared/a b/LocalDefault/198.51.100.0/24", "shared", "names a shared pool no network"),
        ("whatever", "local", "is not one ipledger makes"),
    ],
)
def test_a_pool_id_that_disagrees_with_its_owner_space_or_subnet_breaks_pool_id(
    pool_id, owner, says
):
    s = facts(pools=[PoolFacts(pool_id, None, 0, 0, "p")], owner=owner)
    [problem] = subnet_problems(s)
    assert problem.rule == Rule.POOL_ID and says in problem.message


def test_pools_share_a_subnet_only_through_ip_ranges_of_a_hosts_own():
    ranged = [
        PoolFacts(f"{POOL}/198.51.100.0/25", "198.51.100.0/25", 0, 0, "p0"),
        PoolFacts(f"{POOL}/198.51.100.128/25", "198.51.100.128/25", 0, 0, "p1"),
    ]
    assert subnet_problems(facts(pools=ranged)) == []
    whole_too = [*ranged, PoolFacts(POOL, None, 0, 0, "p2")]
    assert subnet_problems(facts(pools=whole_too)) == []  # RequestPool lets ip-ranges join
    whole_twice = [*whole_too, PoolFacts(POOL, None, 0, 0, "p3")]
    assert Rule.SUBNET_SHARING in rules(subnet_problems(facts(pools=whole_twice)))
    shared = [
        PoolFacts(f"shared/lan/{POOL}/198.51.100.0/25", "198.51.100.0/25", 0, 0, "p0"),
        PoolFacts(f"shared/lan/{POOL}/198.51.100.128/25", "198.51.100.128/25", 0, 0, "p1"),
    ]
    assert Rule.SUBNET_SHARING in rules(subnet_problems(facts(pools=shared, owner="shared")))
    assert rules(subnet_problems(facts(pools=[]))) == [Rule.SUBNET_SHARING]
    named_twice = [ranged[0], ranged[0]]
    assert Rule.POOL_ID in rules(subnet_problems(facts(pools=named_twice)))


@pytest.mark.parametrize(
    ("quarantine", "hold"), [(-1, 0), (0, 2**31), (0, 10**30), (-(10**400), 0)]
)
def test_a_duration_below_zero_or_beyond_the_columns_range_breaks_durations(quarantine, hold):
    s = facts(pools=[PoolFacts(POOL, None, quarantine, hold, "p")])
    assert rules(subnet_problems(s)) == [Rule.DURATIONS]


def test_an_address_parked_for_ever_breaks_durations():
    s = facts(held=[HeldFacts(ip("198.51.100.5"), POOL, "k", until=math.inf)])
    assert rules(subnet_problems(s)) == [Rule.DURATIONS]


def test_an_unknown_address_space_breaks_space():
    s = facts(space="Elsewhere", pools=[PoolFacts(f"Elsewhere/{CIDR}", None, 0, 0, "p")])
    assert rules(subnet_problems(s)) == [Rule.SPACE]


def test_a_cursor_beyond_the_subnet_breaks_held_in_subnet_but_one_past_its_end_does_not():
    assert subnet_problems(facts(cursor=ip("198.51.101.0"))) == []
    assert rules(subnet_problems(facts(cursor=ip("198.51.101.1")))) == [Rule.HELD_IN_SUBNET]


def test_stored_counts_and_free_ranges_must_match_what_the_subnet_holds():
    s = facts(held=[lease("198.51.100.5")])
    right = Stored(1, 0, expected_free(s))
    assert right.free == [
        (ip("198.51.100.1"), ip("198.51.100.4")),
        (ip("198.51.100.6"), ip("198.51.100.254")),
    ]
    assert subnet_problems(facts(held=[lease("198.51.100.5")], stored=right)) == []
    wrong = Stored(2, 1, [(ip("198.51.100.1"), ip("198.51.100.254"))])
    found = subnet_problems(facts(held=[lease("198.51.100.5")], stored=wrong))
    assert rules(found) == [Rule.COUNTS, Rule.COUNTS, Rule.FREE_RANGES]
    assert "marked free but not expected: 198.51.100.1-198.51.100.254" in str(found[2])


def placed(cidr: str, where: str, owner: str = "local", fresh: bool = True, *pools: str) -> Placed:
    return Placed(
        owner,
        "LocalDefault",
        Subnet(netaddr.IPNetwork(cidr)),
        where,
        f" ({where})",
        pools or (f"LocalDefault/{cidr}",),
        fresh,
    )


def test_overlapping_subnets_of_one_plan_break_no_overlap_naming_both():
    [problem] = plan_problems([placed("198.51.100.0/24", "s0"), placed("198.51.100.128/25", "s1")])
    assert str(problem) == (
        "s1: 198.51.100.128/25 overlaps 198.51.100.0/24 (s0) in address space LocalDefault "
        "[no-overlap]"
    )


def test_a_hosts_own_subnet_and_a_shared_one_are_one_plan_two_hosts_own_are_not():
    own, shared = placed("2001:db8::/32", "a"), placed("2001:db8:1::/64", "b", "shared")
    assert rules(plan_problems([own, shared])) == [Rule.NO_OVERLAP]
    other_host = placed("2001:db8:1::/64", "c", "host-b")
    assert plan_problems([own, other_host]) == []


def test_subnets_in_other_spaces_or_families_never_overlap():
    v4 = placed("0.0.0.0/8", "a")
    v6 = placed("::/104", "b")  # the same integers as 0.0.0.0/8
    assert overlapping([v4, v6]) == []
    other_space = Placed("local", "GlobalDefault", v4.subnet, "g", "", ("x",))
    assert overlapping([v4, other_space]) == []


def test_the_same_subnet_twice_overlaps_and_only_clashes_with_a_fresh_subnet_are_reported():
    twice = plan_problems([placed(CIDR, "a"), placed(CIDR, "b")])
    assert rules(twice) == [Rule.NO_OVERLAP, Rule.POOL_ID]  # and its pool ID twice
    old = [placed(CIDR, "a", "local", False), placed(CIDR, "b", "local", False)]
    assert plan_problems(old) == []
    found = plan_problems([*old, placed("198.51.100.64/26", "new", "shared")])
    assert [p.where for p in found] == ["new", "new"]


def test_a_shared_name_is_one_pool_and_a_pool_id_is_used_once_in_its_plan():
    a = placed(CIDR, "a", "shared", True, "shared/lan/LocalDefault/198.51.100.0/24")
    b = placed("203.0.113.0/24", "b", "shared", True, "shared/lan/LocalDefault/203.0.113.0/24")
    [problem] = plan_problems([a, b])
    assert problem.rule == Rule.POOL_ID and "shared name 'lan' is pool" in problem.message
    c = placed("203.0.113.0/24", "c", "local", True, POOL)
    d = placed(CIDR, "d", "local", True, POOL)
    assert Rule.POOL_ID in rules(plan_problems([c, d]))


def test_addresses_two_overlapping_subnets_hold_are_one_problem():
    a, b = placed(CIDR, "a"), placed("198.51.100.128/25", "b")
    assert held_in_both(a, b, []) == []
    [one] = held_in_both(a, b, [ip("198.51.100.130")])
    assert str(one) == (
        "b: 198.51.100.130 is held in both 198.51.100.0/24 and 198.51.100.128/25 [one-holder]"
    )
    [many] = held_in_both(a, b, [ip(f"198.51.100.{n}") for n in range(130, 140)])
    assert "10 addresses (198.51.100.130, " in str(many) and ", ...)" in str(many)


def test_a_fresh_pool_id_already_in_the_ledger_is_reported_at_the_fresh_subnet():
    old = placed(CIDR, "ledger", "local", False, POOL)
    new = placed("203.0.113.0/24", "subnets[0]", "local", True, POOL)
    for order in ([old, new], [new, old]):
        [problem] = plan_problems(order)
        assert problem.rule == Rule.POOL_ID and problem.where == "subnets[0]"
