"""ipledger against Docker's built-in IPAM: the same docker CLI steps, the same outcome.

Each scenario runs twice on the same daemon, once with the built-in IPAM and once with
`--ipam-driver <ipledger>`, and the normalised outcomes (see differential.py) must be equal.
Where ipledger differs on purpose, KNOWN_DIFFERENCES says why and what ipledger does instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from tests.e2e.differential import Scenario
from tests.e2e.harness import PluginProcess

pytestmark = pytest.mark.docker

V4 = "198.51.100.0/24"


def allocation_order(s: Scenario) -> None:
    s.create("n", "--subnet", V4)
    for c in "abc":
        s.run(c, "n")


def lowest_free_reuse(s: Scenario) -> None:
    s.create("n", "--subnet", V4)
    for c in "abcd":
        s.run(c, "n")
    s.rm("b")
    s.rm("c")
    s.run("e", "n")
    s.run("f", "n")
    s.run("g", "n")


def ip_range(s: Scenario) -> None:
    s.create("n", "--subnet", V4, "--ip-range", "198.51.100.64/27")
    s.run("a", "n")
    s.run("b", "n", "--ip", "198.51.100.200")
    s.run("c", "n", "--ip", "198.51.100.70")
    s.run("d", "n")
    s.run("e", "n", "--ip", "198.51.100.200")
    s.run("f", "n", "--ip", "198.51.100.66")


def static_conflicts(s: Scenario) -> None:
    s.create("n", "--subnet", V4)
    s.run("a", "n", "--ip", "198.51.100.20")
    s.run("b", "n", "--ip", "198.51.100.20")
    s.run("c", "n", "--ip", "198.51.100.1")
    s.run("d", "n", "--ip", "203.0.113.5")
    s.run("e", "n", "--ip", "198.51.100.0")
    s.run("f", "n", "--ip", "198.51.100.255")
    s.run("g", "n")


def exhaustion_and_recovery(s: Scenario) -> None:
    s.create("n", "--subnet", "198.51.100.0/29")
    for c in "abcdef":
        s.run(c, "n")
    s.rm("c")
    s.run("g", "n")
    s.run("h", "n")


def gateway_and_aux(s: Scenario) -> None:
    s.create(
        "n",
        "--subnet",
        V4,
        "--gateway",
        "198.51.100.254",
        "--aux-address",
        "a1=198.51.100.1",
        "--aux-address",
        "a2=198.51.100.3",
    )
    s.run("a", "n")
    s.run("b", "n")
    s.run("c", "n", "--ip", "198.51.100.3")
    s.run("d", "n", "--ip", "198.51.100.254")


def invalid_gateway_and_range(s: Scenario) -> None:
    s.create("g", "--subnet", V4, "--gateway", "203.0.113.1")
    s.create("r", "--subnet", V4, "--ip-range", "203.0.113.0/28")
    s.create("w", "--subnet", V4, "--ip-range", "198.51.100.0/23")


def overlap_and_reuse(s: Scenario) -> None:
    s.create("a", "--subnet", V4)
    s.create("b", "--subnet", "198.51.100.128/25")
    s.create("c", "--subnet", "198.51.0.0/16")
    s.netrm("a")
    s.create("d", "--subnet", "198.51.100.128/25")
    s.run("x", "d")


def dual_stack(s: Scenario) -> None:
    s.create("n", "--ipv6", "--subnet", V4, "--subnet", "2001:db8:1::/64")
    s.run("a", "n")
    s.run("b", "n", "--ip6", "2001:db8:1::99")
    s.run("c", "n", "--ip", "198.51.100.99", "--ip6", "2001:db8:1::99")
    s.run("d", "n", "--ip6", "2001:db8:1::1")
    s.run("e", "n")


def ipv6_ip_range(s: Scenario) -> None:
    s.create(
        "n",
        "--ipv6",
        "--subnet",
        V4,
        "--subnet",
        "2001:db8:2::/64",
        "--ip-range",
        "2001:db8:2::100/120",
    )
    s.run("a", "n")
    s.run("b", "n", "--ip6", "2001:db8:2::5")
    s.run("c", "n")


def large_ipv6_subnet(s: Scenario) -> None:
    s.create("n", "--ipv6", "--subnet", V4, "--subnet", "2001:db8:100::/48")
    s.run("a", "n")
    s.run("b", "n", "--ip6", "2001:db8:100:ffff:ffff:ffff:ffff:fffe")
    s.run("c", "n")


def without_subnet(s: Scenario) -> None:
    s.create("a")
    s.create("b")
    s.run("x", "a")
    s.run("y", "b")
    s.run("z", "a")


def restart(s: Scenario) -> None:
    s.create("n", "--subnet", V4)
    s.run("a", "n")
    s.run("b", "n")
    s.restart("a")
    s.run("c", "n")
    s.restart("b")


def small_subnets(s: Scenario) -> None:
    s.create("t", "--subnet", "203.0.113.0/30")
    s.run("a", "t")
    s.run("b", "t")
    s.create("o", "--subnet", "203.0.113.8/31")
    s.run("c", "o")
    s.run("d", "o")


def connect_disconnect(s: Scenario) -> None:
    s.create("m", "--subnet", V4)
    s.create("n", "--subnet", "203.0.113.0/24")
    s.run("a", "m")
    s.connect("n", "a")
    s.run("b", "n")
    s.disconnect("n", "a")
    s.run("c", "n")
    s.connect("n", "a", "--ip", "203.0.113.50")
    s.connect("n", "c")


def ipv6_only(s: Scenario) -> None:
    s.create("n", "--ipv4=false", "--ipv6", "--subnet", "2001:db8:9::/64")
    s.run("a", "n")
    s.run("b", "n", "--ip6", "2001:db8:9::9")
    s.run("c", "n")


MAC = "02:42:c6:33:64:07"


def one_mac_for_two_containers(s: Scenario) -> None:
    s.create("n", "--subnet", V4)
    s.run("a", "n", mac=MAC)
    s.run("b", "n", mac=MAC)
    s.rm("a")
    s.run("c", "n")
    s.run("d", "n", mac=MAC)
    s.rm("b")
    s.run("e", "n", mac=MAC)


def connect_with_ip_to_running_containers(s: Scenario) -> None:
    s.create("m", "--subnet", V4)
    s.create("n", "--subnet", "203.0.113.0/24")
    s.run("a", "m")
    s.run("b", "m")
    s.connect("n", "a", "--ip", "203.0.113.50")
    s.connect("n", "b", "--ip", "203.0.113.50")
    s.disconnect("n", "a")
    s.connect("n", "b", "--ip", "203.0.113.50")
    s.connect("n", "a")
    s.disconnect("n", "b")
    s.connect("n", "b")
    s.disconnect("n", "a")
    s.connect("n", "a", "--ip", "203.0.113.51")


def compose_scale_down_and_recreate(s: Scenario) -> None:
    s.compose("n", V4, "up", "-d", "--scale", "web=3")
    s.compose("n", V4, "up", "-d", "--scale", "web=5")
    s.compose("n", V4, "up", "-d", "--scale", "web=2", exact=False)
    s.compose("n", V4, "up", "-d", "--scale", "web=4")
    s.compose("n", V4, "up", "-d", "--force-recreate", "--scale", "web=4")
    s.compose("n", V4, "down")
    s.compose("n", V4, "up", "-d", "--scale", "web=2")
    s.compose("n", V4, "down")


def sibling_networks(s: Scenario, parents: tuple[str, str]) -> None:
    """Two networks on one subnet with different ip-ranges share its addresses. The bridge
    driver refuses a second network on a subnet ("networks have overlapping IPv4"); macvlan
    allows it on another parent link (and, from Docker 28, on the same one)."""
    for net, parent, ip_range in (
        ("a", parents[0], "198.51.100.0/25"),
        ("b", parents[1], "198.51.100.128/25"),
    ):
        s.create(
            net, "-d", "macvlan", "-o", f"parent={parent}", "--subnet", V4, "--ip-range", ip_range
        )
    s.run("a1", "a")
    s.run("b1", "b")
    s.run("a2", "a", "--ip", "198.51.100.129")  # b1's, through b
    s.run("a3", "a", "--ip", "198.51.100.200")  # a's, inside b's ip-range
    s.run("b2", "b", "--ip", "198.51.100.200")
    s.rm("a3")  # released through a, the pool that holds it
    s.run("b3", "b", "--ip", "198.51.100.200")
    s.rm("b1")
    s.run("b4", "b")
    s.run("a4", "a")


SCENARIOS: dict[str, Callable[[Scenario], None]] = {
    f.__name__: f
    for f in (
        allocation_order,
        lowest_free_reuse,
        ip_range,
        static_conflicts,
        exhaustion_and_recovery,
        gateway_and_aux,
        invalid_gateway_and_range,
        overlap_and_reuse,
        dual_stack,
        ipv6_ip_range,
        large_ipv6_subnet,
        without_subnet,
        restart,
        small_subnets,
        connect_disconnect,
        ipv6_only,
        one_mac_for_two_containers,
        connect_with_ip_to_running_containers,
        compose_scale_down_and_recreate,
    )
}


# Docker's own default-address-pools: with them, ipledger must pick the very subnets Docker picks.
DOCKER_DEFAULT_POOLS = json.dumps(
    [{"base": f"172.{n}.0.0/16", "size": 16} for n in range(17, 32)]
    + [{"base": "192.168.0.0/16", "size": 20}]
)
SCENARIO_ENV = {"without_subnet": {"IPLEDGER_DEFAULT_POOLS": DOCKER_DEFAULT_POOLS}}

Outcomes = list[tuple[Any, ...]]

# (scenario, Docker version prefix) -> why ipledger differs, and what it does instead, given the
# built-in's outcomes.
KNOWN_DIFFERENCES: dict[tuple[str, str], tuple[str, Callable[[Outcomes], Outcomes]]] = {
    ("invalid_gateway_and_range", "20.10"): (
        "Docker 20.10's IPAM accepts an ip-range wider than its subnet; ipledger refuses it, "
        "as Docker 26 and 28 do",
        lambda b: [*b[:2], ("create", "w", "failed", "out of range")],
    ),
    ("large_ipv6_subnet", "20.10"): (
        "Docker before 28 keeps only 64 host bits, so in a /48 it hands out "
        "2001:db8:100::ffff:ffff:ffff:fffe for --ip6 2001:db8:100:ffff:ffff:ffff:ffff:fffe; "
        "ipledger gives the address asked for, as Docker 28 does",
        lambda b: [*b[:2], ("run", "b", "ok", {"n": (3, (1 << 80) - 2)}), *b[3:]],
    ),
    ("small_subnets", "20.10"): (
        "Docker 20.10 reserves the two addresses of a /31; ipledger follows RFC 3021 like "
        "Docker 23 and later: both are usable, the first goes to the gateway",
        lambda b: [
            *b[:3],
            ("create", "o", "ok", [(4, 31, None, None)]),
            ("run", "c", "ok", {"o": (1, None)}),
            ("run", "d", "failed", "full"),
        ],
    ),
}
KNOWN_DIFFERENCES[("large_ipv6_subnet", "26.1")] = KNOWN_DIFFERENCES[("large_ipv6_subnet", "20.10")]


@pytest.mark.parametrize("name", SCENARIOS)
def test_ipledger_behaves_like_the_builtin_ipam(dockerd, names, tmp_path, name):
    if name == "ipv6_only" and dockerd.major_minor < (28, 0):
        pytest.skip("--ipv4=false exists from Docker 28 on")
    compare(dockerd, names, tmp_path, name, SCENARIOS[name])


def test_sibling_networks_share_a_subnet_as_with_the_builtin_ipam(
    dockerd, names, tmp_path, parent_links
):
    compare(
        dockerd,
        names,
        tmp_path,
        "sibling_networks",
        partial(sibling_networks, parents=parent_links),
    )


def compare(dockerd, names, tmp_path, name: str, scenario: Callable[[Scenario], None]) -> None:
    """Run ``scenario`` with the built-in IPAM, then with ipledger; the outcomes must be equal."""
    builtin = Scenario(dockerd, None, f"b{names}", tmp_path)
    scenario(builtin)
    dockerd.remove_all()

    plugin = PluginProcess(
        f"ipl-{names}",
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        extra_env=SCENARIO_ENV.get(name),
    )
    plugin.start()
    try:
        ours = Scenario(dockerd, plugin.name, f"i{names}", tmp_path)
        scenario(ours)
        dockerd.remove_all()
        # after every network is gone, ipledger holds nothing: no lease leaked
        assert plugin.leases() == {}
    finally:
        plugin.stop()

    expected = builtin.outcomes
    known = KNOWN_DIFFERENCES.get((name, ".".join(dockerd.version.split(".")[:2])))
    if known is not None:
        print(f"ipledger differs on purpose here: {known[0]}")
        expected = known[1](builtin.outcomes)
    print("builtin:", builtin.outcomes, builtin.errors, sep="\n")
    print("ipledger:", ours.outcomes, ours.errors, sep="\n")
    assert ours.outcomes == expected
