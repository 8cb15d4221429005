"""Docker containers in a real BIND 9 by name, on Docker 20.10, 26.1 and 28.5: engines that do not
send the container's name, which ipledger reads from Docker's API once the endpoint exists and
publishes by RFC 2136 (TSIG-signed); `dig` finds the address `docker inspect` shows, and the PTR;
the container removed, its records are removed."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from driver.storage.models import leases
from tests.e2e.harness import PluginProcess, need

pytestmark = [pytest.mark.full, pytest.mark.docker]

IMAGE = "busybox-local"
ZONE = "apps.example.test"
SUBNET, SUBNET6 = "192.0.2.0/24", "2001:db8:23::/64"
REVERSE = "2.0.192.in-addr.arpa"
REVERSE6 = "0.0.0.0.0.0.0.0.3.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
KEY = "ipledger-key"
PORTS = range(25400, 25500)  # this test's range: other suites' servers use others


def _free_port() -> int:
    """A port of this test's range free on 127.0.0.1 and ::1, for both TCP and UDP."""
    for port in PORTS:
        with contextlib.ExitStack() as held:
            try:
                for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                        s = held.enter_context(socket.socket(family, kind))
                        s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


ZONE_FILE = """$TTL 60
@ IN SOA ns.{zone}. hostmaster.{zone}. ( 1 60 60 3600 60 )
  IN NS ns.apps.example.test.
"""


class Bind:
    """A BIND 9 of its own (docs/dns.md's setup): the forward zone and the reverse zones of
    192.0.2.0/24 and 2001:db8:23::/64, dynamic, updated only with the TSIG key."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ipldnsd-", dir="/tmp"))
        self.port = _free_port()
        self.key = self.dir / "ipledger-key.conf"
        self.process: subprocess.Popen[bytes] | None = None

    def write(self) -> None:
        d = self.dir
        self.key.write_text(
            subprocess.run(
                ["tsig-keygen", "-a", "hmac-sha256", KEY], capture_output=True, text=True
            ).stdout
        )
        zones = []
        for zone in (ZONE, REVERSE, REVERSE6):
            text = ZONE_FILE.format(zone=ZONE)
            if zone == ZONE:
                text += "ns IN A 127.0.0.1\n"
            (d / f"{zone}.zone").write_text(text)
            zones.append(
                f'zone "{zone}" {{ type primary; file "{zone}.zone"; '
                f"update-policy {{ grant {KEY} zonesub ANY; }}; }};"
            )
        (d / "named.conf").write_text(
            f'include "{self.key}";\n'
            f'options {{ directory "{d}"; pid-file "{d}/named.pid"; '
            f'session-keyfile "{d}/session.key"; managed-keys-directory "{d}"; '
            f"listen-on port {self.port} {{ 127.0.0.1; }}; "
            f"listen-on-v6 port {self.port} {{ ::1; }}; "
            f"recursion no; dnssec-validation no; notify no; "
            f"allow-transfer {{ key {KEY}; }}; }};\n"
            "controls { };\n" + "\n".join(zones) + "\n"
        )
        subprocess.run(
            ["named-checkconf", "-z", str(d / "named.conf")], check=True, capture_output=True
        )

    def start(self) -> None:
        self.write()
        with open(self.dir / "named.log", "ab") as log:
            self.process = subprocess.Popen(
                ["named", "-g", "-c", str(self.dir / "named.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: self.dig(ZONE, "SOA") != "", 15, "BIND to answer", self.log_tail)

    def dig(self, *query: str) -> str:
        result = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(self.port), "+short", "+time=1", "+tries=1", *query],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.dir / "named.log").read_text().splitlines()[-20:])
        return ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


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
def bind() -> Iterator[Bind]:
    need(shutil.which("named") is not None, "BIND 9 not installed (apt-get install bind9)")
    need(shutil.which("dig") is not None, "dig not installed (apt-get install bind9-dnsutils)")
    server = Bind()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def publishing_plugin(tmp_path, bind, dockerd) -> Iterator[PluginProcess]:
    """ipledger serving Docker, publishing to ``bind``, reading names from ``dockerd``'s API."""
    server = PluginProcess(
        f"ipl-dns-{uuid.uuid4().hex[:6]}",
        f"sqlite:///{tmp_path}/ledger.db",
        tmp_path,
        extra_env={
            "IPLEDGER_DNS_SERVER": f"127.0.0.1:{bind.port}",
            "IPLEDGER_DNS_TSIG": str(bind.key),
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
    address, address6 = dockerd.container_addresses("web1")[net]
    other = dockerd.container_addresses("my_app.2")[net][0]

    name = f"web1.{ZONE}"
    wait_for(lambda: bind.dig(name, "A") == address, 30, f"{name} A {address}", plugin.log_tail)
    assert bind.dig(name, "AAAA") == address6
    assert bind.dig("-x", address) == f"{name}."
    assert bind.dig("-x", address6) == f"{name}."
    # a name that is not a DNS label is made one (docs/dns.md's rule)
    wait_for(lambda: bind.dig(f"my-app-2.{ZONE}", "A") == other, 30, "my-app-2", plugin.log_tail)
    # the engine did not send the name: it came from Docker's API
    assert lease_names(plugin) == {name: None, f"my-app-2.{ZONE}": None}

    dockerd.docker("rm", "-f", "web1")
    wait_for(lambda: bind.dig(name, "A") == "", 30, f"removal of {name}", plugin.log_tail)
    assert bind.dig(name, "AAAA") == ""
    assert bind.dig("-x", address) == ""
    assert bind.dig(f"my-app-2.{ZONE}", "A") == other, "the other container keeps its name"
