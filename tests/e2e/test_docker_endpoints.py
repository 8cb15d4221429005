"""Where ipledger finds a container's name when Docker does not send it: a real dockerd of each
engine, its networks read through the adapter, compared with what ``docker inspect`` says."""

from __future__ import annotations

import json

import netaddr
import pytest
from sqlalchemy import create_engine, select

from driver.adapters.docker_state import endpoints
from driver.storage.models import leases
from driver.storage.rows import unpack

pytestmark = pytest.mark.docker

IMAGE = "busybox-local"


def inspected(dockerd, container: str, network: str) -> tuple[str, str, str]:
    """(IPv4 address, IPv6 address, MAC) of ``container`` on ``network``, as docker inspect has
    them."""
    out = dockerd.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container).stdout
    on = json.loads(out)[network]
    return on["IPAddress"], on["GlobalIPv6Address"], on["MacAddress"]


def lease_macs(plugin) -> dict[str, str | None]:
    """address -> the MAC Docker sent when it asked for it, as the ledger recorded it."""
    engine = create_engine(plugin.db_url)
    try:
        with engine.connect() as c:
            rows = c.execute(select(leases.c.address, leases.c.mac)).all()
    finally:
        engine.dispose()
    found = {}
    for address, mac in rows:
        raw = unpack(address)
        found[str(netaddr.IPAddress(raw, 4 if raw < 2**32 else 6))] = mac
    return found


def test_the_adapter_shows_every_containers_name_by_pool_and_address_as_docker_inspect_does(
    dockerd, plugin, names
):
    net, other = f"{names}-n", f"{names}-d"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--ipv6",
        "--subnet", "192.0.2.0/24", "--subnet", "2001:db8:23::/64", net,
    )  # fmt: skip
    # a network of Docker's own IPAM: not ipledger's, so not shown
    dockerd.docker("network", "create", "--subnet", "203.0.113.0/24", other)
    # names that are not DNS labels as they stand: the adapter gives them as Docker has them
    containers = [f"{names}-web_1", f"{names}-my.app", f"{names}-web1"]
    for container in containers[:2]:
        dockerd.docker("run", "-d", "--name", container, "--network", net, IMAGE, "sleep", "600")
    dockerd.docker("run", "-d", "--name", containers[2], "--network", other, IMAGE, "sleep", "600")
    dockerd.docker("network", "connect", net, containers[2])

    found = endpoints(f"unix://{dockerd.socket}", {plugin.name}, timeout=10)

    v4, v6 = "LocalDefault/192.0.2.0/24", "LocalDefault/2001:db8:23::/64"
    assert set(found) == {v4, v6}
    macs = lease_macs(plugin)
    for container in containers:
        address, address6, mac = inspected(dockerd, container, net)
        assert found[v4][address].container == container
        assert found[v6][str(netaddr.IPAddress(address6))].container == container
        # the MAC Docker shows is the one it sent with RequestAddress: what tells one
        # container's endpoint from another's that later took the same address
        assert found[v4][address].mac == mac == macs[address]
    assert len(found[v4]) == len(found[v6]) == 3


def test_a_stopped_container_shows_no_endpoint_and_a_started_one_shows_its_new_address(
    dockerd, plugin, names
):
    net, container = f"{names}-n", f"{names}-c"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name, "--subnet", "198.51.100.0/24", net
    )
    dockerd.docker("create", "--name", container, "--network", net, IMAGE, "sleep", "600")
    pool = "LocalDefault/198.51.100.0/24"
    # created, not started: Docker has asked for no address yet
    assert endpoints(f"unix://{dockerd.socket}", {plugin.name}, timeout=10)[pool] == {}
    dockerd.docker("start", container)
    address = inspected(dockerd, container, net)[0]
    shown = endpoints(f"unix://{dockerd.socket}", {plugin.name}, timeout=10)[pool]
    assert {a: e.container for a, e in shown.items()} == {address: container}
    dockerd.docker("stop", "-t", "0", container)
    assert endpoints(f"unix://{dockerd.socket}", {plugin.name}, timeout=10)[pool] == {}
