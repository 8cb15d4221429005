"""ipledger under gunicorn as a legacy plugin, driven by a real dockerd and the docker CLI.

These tests create real bridges, whose subnets become host routes: they use 198.51.100.0/24,
203.0.113.0/24 and 2001:db8::/32 only, since CI machines may sit on 192.0.2.0/24 themselves.
"""

from __future__ import annotations

import signal

import netaddr
import pytest

pytestmark = pytest.mark.docker

IMAGE = "busybox-local:latest"


def run(dockerd, name, network, *extra):
    dockerd.docker("run", "-d", "--name", name, "--network", network, *extra, IMAGE, "sleep", "600")
    return dockerd.container_addresses(name)[network]


def test_a_network_without_a_subnet_gets_one_from_the_default_pools(dockerd, plugin, names):
    dockerd.docker("network", "create", "--ipam-driver", plugin.name, f"{names}-a")
    dockerd.docker("network", "create", "--ipam-driver", plugin.name, f"{names}-b")
    configs = [dockerd.network_ipam(f"{names}-{n}")[0] for n in "ab"]
    subnets = [netaddr.IPNetwork(c["Subnet"]) for c in configs]
    # Docker skips (and gives back) a subnet that overlaps a host route, so which /24 each
    # network gets depends on the host; what it must be is a distinct /24 of 10.128.0.0/9.
    assert subnets[0] != subnets[1]
    assert all(s.prefixlen == 24 and s in netaddr.IPNetwork("10.128.0.0/9") for s in subnets)
    assert [c["Gateway"] for c in configs] == [str(s[1]) for s in subnets]
    assert run(dockerd, f"{names}-c", f"{names}-a")[0] == str(subnets[0][2])
    assert plugin.leases() == {
        str(subnets[0]): {str(subnets[0][1]), str(subnets[0][2])},
        str(subnets[1]): {str(subnets[1][1])},
    }


def test_subnet_gateway_ip_range_and_aux_addresses_are_honoured(dockerd, plugin, names):
    net = f"{names}-full"
    dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "203.0.113.0/24",
        "--gateway",
        "203.0.113.254",
        "--ip-range",
        "203.0.113.128/25",
        "--aux-address",
        "host1=203.0.113.10",
        net,
    )
    assert run(dockerd, f"{names}-1", net)[0] == "203.0.113.128"
    assert run(dockerd, f"{names}-2", net, "--ip", "203.0.113.50")[0] == "203.0.113.50"
    assert run(dockerd, f"{names}-3", net)[0] == "203.0.113.129"
    assert plugin.leases()["203.0.113.0/24"] == {
        "203.0.113.254",
        "203.0.113.10",
        "203.0.113.128",
        "203.0.113.50",
        "203.0.113.129",
    }
    # conflicts: taken by a container, by the gateway, by an aux address, outside the subnet
    for taken in ("203.0.113.50", "203.0.113.254", "203.0.113.10"):
        error = dockerd.fails("run", "--rm", "--network", net, "--ip", taken, IMAGE, "true")
        assert f"IpamDriver.RequestAddress: Address already in use: {taken}" in error
    error = dockerd.fails("run", "--rm", "--network", net, "--ip", "198.51.100.7", IMAGE, "true")
    assert "198.51.100.7" in error
    # docker rm gives the address back; the lowest free one is handed out next
    dockerd.docker("rm", "-f", f"{names}-1")
    assert "203.0.113.128" not in plugin.leases()["203.0.113.0/24"]
    assert run(dockerd, f"{names}-4", net)[0] == "203.0.113.128"
    # network rm releases the gateway, the aux address and the pool itself
    dockerd.docker("rm", "-f", f"{names}-2", f"{names}-3", f"{names}-4")
    dockerd.docker("network", "rm", net)
    assert "203.0.113.0/24" not in plugin.leases()


def test_a_dual_stack_network_with_static_ipv4_and_ipv6(dockerd, plugin, names):
    net = f"{names}-dual"
    dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--ipv6",
        "--subnet",
        "198.51.100.0/24",
        "--subnet",
        "2001:db8:1::/64",
        net,
    )
    # Docker keeps the user's IPAM config as given; the gateways it asked for are in the ledger
    assert plugin.leases() == {
        "198.51.100.0/24": {"198.51.100.1"},
        "2001:db8:1::/64": {"2001:db8:1::1"},
    }
    assert run(dockerd, f"{names}-1", net) == ("198.51.100.2", "2001:db8:1::2")
    assert run(dockerd, f"{names}-2", net, "--ip", "198.51.100.77", "--ip6", "2001:db8:1::99") == (
        "198.51.100.77",
        "2001:db8:1::99",
    )
    error = dockerd.fails("run", "--rm", "--network", net, "--ip6", "2001:db8:1::99", IMAGE, "true")
    assert "Address already in use: 2001:db8:1::99" in error
    assert plugin.leases()["2001:db8:1::/64"] == {
        "2001:db8:1::1",
        "2001:db8:1::2",
        "2001:db8:1::99",
    }


def test_an_overlapping_subnet_is_refused_and_reusable_after_network_rm(dockerd, plugin, names):
    dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "203.0.113.0/24",
        f"{names}-1",
    )
    error = dockerd.fails(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "203.0.113.0/25",
        f"{names}-2",
    )
    assert "Pool overlaps with other one on this address space" in error
    dockerd.docker("network", "rm", f"{names}-1")
    dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "203.0.113.0/25",
        f"{names}-2",
    )


def test_state_survives_a_sigkill_of_the_whole_plugin(dockerd, plugin, names):
    net = f"{names}-k"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "203.0.113.0/28", net
    )
    before = {run(dockerd, f"{names}-{i}", net)[0] for i in range(3)}
    plugin.kill(signal.SIGKILL)
    # while it is down, Docker's error is clear and nothing is half-done
    error = dockerd.fails("run", "--rm", "--name", f"{names}-down", "--network", net, IMAGE, "true")
    assert "IpamDriver.RequestAddress" in error
    assert f"dial unix /run/docker/plugins/{plugin.name}.sock: connect" in error
    assert f"{names}-down" not in dockerd.docker("ps", "-a", "--format", "{{.Names}}").stdout
    plugin.start()
    assert plugin.leases()["203.0.113.0/28"] == before | {"203.0.113.1"}
    new = run(dockerd, f"{names}-new", net)[0]
    assert new not in before and new == "203.0.113.5"
    docker_view = {dockerd.container_addresses(f"{names}-{i}")[net][0] for i in (0, 1, 2, "new")}
    assert plugin.leases()["203.0.113.0/28"] == docker_view | {"203.0.113.1"}


def test_a_release_through_a_sibling_network_never_frees_the_others_address(
    dockerd, plugin, names, parent_links
):
    # Docker releases an address through the network that holds it (measured on 20.10, 26.1 and
    # 28.5, where no docker command did otherwise); a client that releases it through a sibling
    # network, same subnet and another ip-range, is refused and the address stays held
    for net, parent, ip_range in (
        ("a", parent_links[0], "198.51.100.0/25"),
        ("b", parent_links[1], "198.51.100.128/25"),
    ):
        dockerd.docker(
            "network",
            "create",
            "-d",
            "macvlan",
            "-o",
            f"parent={parent}",
            "--ipam-driver",
            plugin.name,
            "--subnet",
            "198.51.100.0/24",
            "--ip-range",
            ip_range,
            f"{names}-{net}",
        )
    assert run(dockerd, f"{names}-b1", f"{names}-b")[0] == "198.51.100.129"
    status, answer = plugin.client.call(
        "ReleaseAddress",
        {"PoolID": "LocalDefault/198.51.100.0/24/198.51.100.0/25", "Address": "198.51.100.129"},
    )
    assert status == 409
    assert "pool LocalDefault/198.51.100.0/24/198.51.100.0/25 does not hold it" in answer["Err"]
    assert run(dockerd, f"{names}-b2", f"{names}-b")[0] == "198.51.100.130"
    assert "Address already in use" in dockerd.fails(
        "run", "--rm", "--network", f"{names}-a", "--ip", "198.51.100.129", IMAGE, "true"
    )
    dockerd.docker("rm", "-f", f"{names}-b1")
    assert run(dockerd, f"{names}-b3", f"{names}-b")[0] == "198.51.100.129"
