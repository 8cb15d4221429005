"""Docker containers in a real BIND 9 by name, on Docker 20.10, 26.1 and 28.5: engines that do not
send the container's name, which ipledger reads from Docker's API once the endpoint exists and
publishes by RFC 2136 (TSIG-signed); `dig` finds the address `docker inspect` shows, and the PTR;
the container removed, its records are removed."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, select

from driver.storage.models import leases
from tests.dns_servers import ZONE, DnsServer
from tests.e2e.harness import PluginProcess, need

pytestmark = [pytest.mark.full, pytest.mark.docker]

IMAGE = "busybox-local"
SUBNET, SUBNET6 = "192.0.2.0/24", "2001:db8:23::/64"  # the zones of tests/dns_servers.py


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, why: Callable[[], str] = str
) -> None:
    """Wait until ``condition`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g} s\n{why()}")
        time.sleep(0.2)


@pytest.fixture
def bind() -> Iterator[DnsServer]:
    need(shutil.which("named") is not None, "BIND 9 not installed (apt-get install bind9)")
    need(shutil.which("dig") is not None, "dig not installed (apt-get install bind9-dnsutils)")
    server = DnsServer("bind")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def publishing_plugin(tmp_path, bind, dockerd) -> Iterator[PluginProcess]:
    """ipledger serving Docker, publishing to ``bind``, reading names from ``dockerd``'s API."""
    server = PluginProcess(
        f"ipl-dns-{uuid.uuid4().hex[:6]}",
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        extra_env={
            "IPLEDGER_DNS_SERVER": bind.address,
            "IPLEDGER_DNS_TSIG": str(bind.key_path),
            "DOCKER_HOST": f"unix://{dockerd.socket}",
        },
    )
    server.start()
    yield server
    dockerd.remove_all()  # while ipledger still serves: Docker tells it of every release
    server.stop()


def lease_names(plugin: PluginProcess) -> dict[str | None, str | None]:
    """The endpoint name Docker sent with each lease -> the DNS name it was published under."""
    engine = create_engine(plugin.db_url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                select(leases.c.name, leases.c.dns_name).where(leases.c.kind == "endpoint")
            ).all()
    finally:
        engine.dispose()
    return {dns_name: name for name, dns_name in rows}


def test_a_containers_name_is_in_dns_with_the_address_docker_inspect_shows_until_it_is_removed(
    dockerd, bind, publishing_plugin
):
    plugin, net = publishing_plugin, f"dns-{uuid.uuid4().hex[:6]}"
    dockerd.docker(
        "network", "create", "--ipam-driver", plugin.name,
        "--ipam-opt", f"ipledger.dns_zone={ZONE}", "--ipam-opt", "ipledger.dns_reverse=true",
        "--ipv6", "--subnet", SUBNET, "--subnet", SUBNET6, net,
    )  # fmt: skip
    for container in ("web1", "my_app.2"):
        dockerd.docker("run", "-d", "--name", container, "--network", net, IMAGE, "sleep", "600")
        if container == "web1":
            started = time.monotonic()
    address, address6 = dockerd.container_addresses("web1")[net]
    other = dockerd.container_addresses("my_app.2")[net][0]

    name, other_name = f"web1.{ZONE}", f"my-app-2.{ZONE}"
    why = plugin.log_tail
    wait_for(lambda: bind.dig(name, "A") == [address], 30, f"{name} A {address}", why)
    print(f"Docker {dockerd.version}: {name} in DNS {time.monotonic() - started:.2f} s after run")
    # each address is a lease of its own, named and published on its own
    for query, wanted in (
        ((name, "AAAA"), [address6]),
        ((address, "PTR"), [name]),
        ((address6, "PTR"), [name]),
    ):
        wait_for(lambda q=query, w=wanted: bind.dig(*q) == w, 30, f"{query} {wanted}", why)
    # a name that is not a DNS label is made one (docs/dns.md's rule)
    wait_for(lambda: bind.dig(other_name, "A") == [other], 30, other_name, why)
    # the engine did not send the name: it came from Docker's API
    assert lease_names(plugin) == {name: None, other_name: None}

    dockerd.docker("rm", "-f", "web1")
    for query in ((name, "A"), (name, "AAAA"), (address, "PTR"), (address6, "PTR")):
        wait_for(lambda q=query: bind.dig(*q) == [], 30, f"removal of {query}", why)
    assert bind.dig(other_name, "A") == [other], "the other container keeps its name"
