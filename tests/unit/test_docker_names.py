"""The container behind a Docker lease made without its name (pure, no Docker)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from driver.adapters.docker_state import DockerUnavailable, endpoints
from driver.domain.docker_names import (
    Resolution,
    WantedName,
    endpoints_by_pool,
    resolve,
)
from driver.domain.reconcile import DockerNetwork, Endpoint, IpamConfig

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
PATIENCE = timedelta(seconds=30)
POOL = "LocalDefault/192.0.2.0/24"
MAC = "02:42:c0:00:02:02"


def network(*endpoints: Endpoint, configs=None, options=None, scope="local") -> DockerNetwork:
    return DockerNetwork(
        "web",
        scope,
        configs or [IpamConfig("192.0.2.0/24", None, "192.0.2.1")],
        list(endpoints),
        options or {},
    )


def wanted(address="192.0.2.2", mac=MAC, since=NOW, pool=POOL) -> WantedName:
    return WantedName(pool, address, mac, since)


def outcomes(wants, networks, now=NOW):
    shown = endpoints_by_pool(networks)
    return [
        (r.wanted.address, r.outcome, r.container)
        for r in resolve(wants, shown, now=now, patience=PATIENCE)
    ]


def test_endpoints_are_found_by_the_pool_id_gc_gives_the_network_and_by_address():
    shown = endpoints_by_pool(
        [network(Endpoint("web_1", "192.0.2.2/24", MAC), Endpoint("my.app", "192.0.2.3/24", None))]
    )
    assert {pool: {a: e.container for a, e in held.items()} for pool, held in shown.items()} == {
        POOL: {"192.0.2.2": "web_1", "192.0.2.3": "my.app"}
    }


def test_a_dual_stack_network_shows_each_address_under_the_pool_of_its_family():
    net = network(
        Endpoint("web1", "192.0.2.2/24", MAC),
        Endpoint("web1", "2001:db8:0:0::0:2/64", MAC),
        configs=[
            IpamConfig("192.0.2.0/24", None, "192.0.2.1"),
            IpamConfig("2001:db8::/64", None, None),
        ],
    )
    shown = endpoints_by_pool([net])
    assert set(shown[POOL]) == {"192.0.2.2"}
    # the ledger spells IPv6 addresses compressed: Docker's spelling is normalised to it
    assert set(shown["LocalDefault/2001:db8::/64"]) == {"2001:db8::2"}


def test_ip_range_and_shared_networks_map_to_their_own_pool_ids():
    ranged = network(
        Endpoint("a", "192.0.2.130/24", None),
        configs=[IpamConfig("192.0.2.0/24", "192.0.2.128/25", None)],
    )
    shared = network(
        Endpoint("b", "198.51.100.5/24", None),
        configs=[IpamConfig("198.51.100.0/24", None, None)],
        options={"ipledger.shared": "lan"},
    )
    assert set(endpoints_by_pool([ranged, shared])) == {
        "LocalDefault/192.0.2.0/24/192.0.2.128/25",
        "shared/lan/LocalDefault/198.51.100.0/24",
    }


def test_a_lease_whose_endpoint_docker_shows_is_named_after_its_container():
    found = outcomes([wanted()], [network(Endpoint("web_1", "192.0.2.2/24", MAC.upper()))])
    assert found == [("192.0.2.2", Resolution.NAMED, "web_1")]


def test_a_lease_without_a_mac_is_named_by_its_address_alone():
    found = outcomes([wanted(mac=None)], [network(Endpoint("web1", "192.0.2.2/24", MAC))])
    assert found == [("192.0.2.2", Resolution.NAMED, "web1")]


def test_an_endpoint_not_shown_yet_keeps_the_lease_waiting_until_the_patience_runs_out():
    young = wanted(since=NOW - PATIENCE + timedelta(seconds=1))
    old = wanted(address="192.0.2.3", since=NOW - PATIENCE)
    found = outcomes([young, old], [network()])
    assert found == [
        ("192.0.2.2", Resolution.WAITING, None),
        ("192.0.2.3", Resolution.GIVEN_UP, None),
    ]


def test_the_same_address_held_with_another_mac_is_another_containers_and_not_taken():
    found = outcomes([wanted()], [network(Endpoint("old", "192.0.2.2/24", "02:42:00:00:00:99"))])
    assert found == [("192.0.2.2", Resolution.WAITING, None)]


def test_an_address_in_another_network_with_the_same_subnet_of_another_pool_is_not_taken():
    elsewhere = network(
        Endpoint("other", "192.0.2.2/24", MAC),
        configs=[IpamConfig("192.0.2.0/24", None, None)],
        options={"ipledger.shared": "lan"},
    )
    assert outcomes([wanted()], [elsewhere]) == [("192.0.2.2", Resolution.WAITING, None)]


def test_a_naive_moment_from_sqlite_is_taken_as_utc():
    since = (NOW - PATIENCE).replace(tzinfo=None)
    assert outcomes([wanted(since=since)], [network()]) == [
        ("192.0.2.2", Resolution.GIVEN_UP, None)
    ]


def test_an_endpoint_with_an_address_docker_garbled_is_skipped_not_fatal():
    net = network(Endpoint("bad", "not-an-ip/24", None), Endpoint("web1", "192.0.2.2/24", MAC))
    assert outcomes([wanted()], [net]) == [("192.0.2.2", Resolution.NAMED, "web1")]


def test_the_name_rule_imports_neither_docker_nor_flask_nor_sqlalchemy():
    code = (
        "import sys, driver.domain.docker_names; print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('docker', 'flask', 'sqlalchemy', 'werkzeug')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_docker_that_does_not_answer_is_an_error_naming_where_it_was_looked_for(tmp_path):
    socket = f"unix://{tmp_path}/none.sock"
    with pytest.raises(DockerUnavailable, match=r"cannot reach Docker at unix://.*none\.sock"):
        endpoints(socket, {"ipledger"}, timeout=2)


class HangingDocker:
    """A unix socket that answers Docker's version negotiation and then nothing: a Docker that
    hangs on the networks' call."""

    def __init__(self, path) -> None:
        import socket as sockets
        import threading

        self.server = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.held: list[object] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        body = b'{"ApiVersion": "1.41", "Version": "20.10.24"}'
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.held.append(connection)
            request = connection.recv(65536)
            if b"/version" in request.split(b"\r\n")[0]:
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("answers_version", [False, True], ids=["silent", "hangs-later"])
def test_a_docker_that_does_not_answer_is_an_error_within_the_timeout(tmp_path, answers_version):
    import socket as sockets
    import time

    path = tmp_path / "docker.sock"
    if answers_version:
        docker = HangingDocker(path)
    else:
        docker = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        docker.bind(str(path))
        docker.listen(8)
    try:
        started = time.monotonic()
        with pytest.raises(DockerUnavailable, match=r"cannot read Docker's networks at unix://"):
            endpoints(f"unix://{path}", {"ipledger"}, timeout=1)
        assert time.monotonic() - started < 30, "bounded by the timeout, not the SDK's 60 s"
    finally:
        docker.close()
