"""Operators' tools against a real dockerd: gc of leaks made on purpose, stable and quarantined addresses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.docker

IMAGE = "busybox-local"


def ipledger(
    plugin, dockerd, *args: str, ok: bool = True, env: dict[str, str] | None = None
) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "driver", *args[:1], "--db", plugin.db_url, *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**plugin.env, "DOCKER_HOST": f"unix://{dockerd.socket}", **(env or {})},
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout if ok else result.stdout + result.stderr


def gc(plugin, dockerd, *args: str) -> list[list[str]]:
    """gc's table, as rows of (what, pool, address, old enough, outcome)."""
    out = ipledger(plugin, dockerd, "gc", "--driver", plugin.name, *args)
    lines = out.splitlines()
    if not any(line.startswith("WHAT") for line in lines):
        return []
    start = next(i for i, line in enumerate(lines) if line.startswith("WHAT"))
    return [
        line.split()[:5]
        for line in lines[start + 1 :]
        if line and not line.startswith("report only")
    ]


def test_gc_finds_a_lease_leaked_while_ipledger_was_down_and_reclaims_it_only_with_apply(
    dockerd, plugin, names
):
    net = f"{names}-n"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "198.51.100.0/24", net
    )
    for c in ("a", "b"):
        dockerd.docker(
            "run", "-d", "--name", f"{names}-{c}", "--network", net, IMAGE, "sleep", "600"
        )
    addresses = dockerd.running_addresses(net)
    leaked = addresses[f"{names}-a"]

    plugin.kill(signal.SIGKILL)
    # Docker removes the container even though it cannot tell the IPAM driver: the lease leaks
    dockerd.docker("rm", "-f", f"{names}-a", timeout=180)
    plugin.start()
    pool = "LocalDefault/198.51.100.0/24"
    assert leaked in plugin.leases()["198.51.100.0/24"]

    assert gc(plugin, dockerd) == [["lease", pool, leaked, "no", "reported"]]
    assert gc(plugin, dockerd, "--grace", "0s") == [["lease", pool, leaked, "yes", "reported"]]
    assert leaked in plugin.leases()["198.51.100.0/24"], "without --apply nothing changes"
    assert gc(plugin, dockerd, "--grace", "0s", "--apply") == [
        ["lease", pool, leaked, "yes", "released"]
    ]
    assert plugin.leases()["198.51.100.0/24"] == {"198.51.100.1", addresses[f"{names}-b"]}
    assert gc(plugin, dockerd, "--grace", "0s") == []
    history = ipledger(plugin, dockerd, "history", leaked)
    assert "gc-release" in history
    # the reclaimed address is handed out again
    dockerd.docker("run", "-d", "--name", f"{names}-c", "--network", net, IMAGE, "sleep", "600")
    assert dockerd.running_addresses(net)[f"{names}-c"] == leaked
    assert "consistent" in ipledger(plugin, dockerd, "check")


def test_gc_reclaims_the_pool_of_a_network_removed_while_ipledger_was_down(dockerd, plugin, names):
    net = f"{names}-gone"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "203.0.113.0/24", net
    )
    plugin.kill(signal.SIGKILL)
    dockerd.docker("network", "rm", net, timeout=180)
    plugin.start()
    pool = "LocalDefault/203.0.113.0/24"
    # the last network of the driver is gone: gc cannot tell that from a wrong --driver
    assert "refusing --apply" in ipledger(
        plugin, dockerd, "gc", "--driver", plugin.name, "--grace", "0s", "--apply", ok=False
    )
    assert gc(plugin, dockerd, "--grace", "0s", "--apply", "--all-networks-gone") == [
        ["pool", pool, "-", "yes", "released"]
    ]
    assert plugin.leases() == {}
    # the subnet can be used again
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "203.0.113.0/24", net
    )


def test_gc_judges_the_networks_of_the_socket_ipledger_serves_on_without_being_told(
    dockerd, plugin, names
):
    net = f"{names}-live"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "198.51.100.0/24", net
    )
    dockerd.docker("run", "-d", "--name", f"{names}-a", "--network", net, IMAGE, "sleep", "600")
    out = ipledger(
        plugin, dockerd, "gc", "--grace", "0s", "--apply", env={"IPLEDGER_SOCKET": plugin.socket}
    )
    assert f"1 Docker networks use {plugin.name};" in out
    assert "no leaks" in out
    assert plugin.leases()["198.51.100.0/24"] == {"198.51.100.1", "198.51.100.2"}


def test_gc_judges_the_networks_of_the_driver_the_server_serves_whatever_ipledger_socket_says(
    dockerd, plugin, names
):
    net = f"{names}-live"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "198.51.100.0/24", net
    )
    dockerd.docker("run", "-d", "--name", f"{names}-a", "--network", net, IMAGE, "sleep", "600")
    # the server was started with --socket; this shell has the default socket, or none
    for env in ({"IPLEDGER_SOCKET": "/run/docker/plugins/ipledger.sock"}, {}):
        out = ipledger(plugin, dockerd, "gc", "--grace", "0s", "--apply", env=env)
        assert f"1 Docker networks use {plugin.name};" in out
        assert "no leaks" in out
    assert plugin.leases()["198.51.100.0/24"] == {"198.51.100.1", "198.51.100.2"}


def test_gc_refuses_to_apply_when_docker_shows_no_network_of_the_driver_named(
    dockerd, plugin, names
):
    net = f"{names}-live"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "198.51.100.0/24", net
    )
    error = ipledger(
        plugin, dockerd, "gc", "--driver", "ipledger", "--grace", "0s", "--apply", ok=False
    )
    assert "refusing --apply" in error
    assert "Docker shows no network of the IPAM driver ipledger" in error
    assert plugin.name in error, "it lists the IPAM drivers Docker's networks use"
    assert "198.51.100.0/24" in plugin.leases(), "the live network's pool stays"
    report = ipledger(plugin, dockerd, "gc", "--driver", "ipledger", "--grace", "0s")
    assert "report only" in report


def test_gc_names_where_it_looked_for_docker_when_docker_does_not_answer(plugin, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "driver", "gc", "--db", plugin.db_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**plugin.env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"},
    )
    assert result.returncode == 1
    assert f"unix://{tmp_path}/no-docker.sock (DOCKER_HOST)" in result.stderr
    assert "Traceback" not in result.stderr


def test_leases_takes_a_docker_network_name_where_a_pool_id_is_wanted(dockerd, plugin, names):
    net = f"{names}-named"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "198.51.100.0/24", net
    )
    dockerd.docker("run", "-d", "--name", f"{names}-a", "--network", net, IMAGE, "sleep", "600")
    out = ipledger(plugin, dockerd, "leases", net)
    assert "198.51.100.1" in out and "198.51.100.2" in out
    assert "no pool nonexistent-net" in ipledger(
        plugin, dockerd, "leases", "nonexistent-net", ok=False
    )


def run_with_mac(dockerd, name: str, net: str, mac: str) -> None:
    dockerd.docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        net,
        "--mac-address",
        mac,
        IMAGE,
        "sleep",
        "600",
        cli=dockerd.mac_cli,
    )


def test_a_container_recreated_with_its_mac_within_the_hold_time_gets_its_address_back(
    dockerd, plugin, names
):
    net = f"{names}-hold"
    dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "198.51.100.0/24",
        "--ipam-opt",
        "ipledger.hold=10m",
        net,
    )
    mac = "02:42:c6:33:64:aa"
    run_with_mac(dockerd, f"{names}-db", net, mac)
    first = dockerd.running_addresses(net)[f"{names}-db"]
    dockerd.docker("rm", "-f", f"{names}-db")
    # another container meanwhile: the held address is not handed to it
    dockerd.docker("run", "-d", "--name", f"{names}-web", "--network", net, IMAGE, "sleep", "600")
    assert dockerd.running_addresses(net)[f"{names}-web"] != first
    run_with_mac(dockerd, f"{names}-db", net, mac)
    assert dockerd.running_addresses(net)[f"{names}-db"] == first
    rows = ipledger(plugin, dockerd, "leases", "LocalDefault/198.51.100.0/24")
    assert [first, "leased", "endpoint", mac] in [line.split()[:4] for line in rows.splitlines()]


def test_with_a_quarantine_docker_does_not_get_a_just_released_address_again(
    dockerd, plugin, names
):
    net = f"{names}-q"
    dockerd.docker(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "203.0.113.0/24",
        "--ipam-opt",
        "ipledger.quarantine=1h",
        net,
    )
    dockerd.docker("run", "-d", "--name", f"{names}-1", "--network", net, IMAGE, "sleep", "600")
    first = dockerd.running_addresses(net)[f"{names}-1"]
    dockerd.docker("rm", "-f", f"{names}-1")
    dockerd.docker("run", "-d", "--name", f"{names}-2", "--network", net, IMAGE, "sleep", "600")
    assert dockerd.running_addresses(net)[f"{names}-2"] != first
    parked = json.loads(ipledger(plugin, dockerd, "pools", "--json"))
    assert [(p["leased"], p["parked"]) for p in parked] == [(2, 1)]


def test_a_bad_ipledger_option_fails_docker_network_create_with_its_name(dockerd, plugin, names):
    error = dockerd.fails(
        "network",
        "create",
        "--ipam-driver",
        plugin.name,
        "--subnet",
        "198.51.100.0/24",
        "--ipam-opt",
        "ipledger.reuse=random",
        f"{names}-bad",
    )
    assert "invalid ipledger.reuse 'random': expected lowest or serial" in error
    assert plugin.leases() == {}
