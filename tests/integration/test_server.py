"""`ipledger serve`: the real gunicorn on a real unix socket."""

from __future__ import annotations

import socket
import stat

import pytest

from tests.e2e.harness import PluginProcess


@pytest.fixture
def server(tmp_path):
    sock_dir = tmp_path / "plugins"
    process = PluginProcess(
        "ipl-test",
        f"sqlite:///{tmp_path}/var/lib/ledger.db",
        tmp_path,
        socket=str(sock_dir / "ipl-test.sock"),
    )
    yield process
    process.stop()


def test_serve_creates_a_root_only_socket_and_a_private_database(server, tmp_path):
    server.start()
    assert stat.S_IMODE((tmp_path / "plugins" / "ipl-test.sock").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "var" / "lib" / "ledger.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "var" / "lib").stat().st_mode) == 0o700
    assert server.client.call("GetCapabilities") == (
        200,
        {"RequiresMACAddress": True, "RequiresRequestReplay": False},
    )


def test_serve_replaces_a_stale_socket_left_by_a_crash(server, tmp_path):
    (tmp_path / "plugins").mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(server.socket)
    stale.close()
    server.start()
    assert server.client.call("/Plugin.Activate") == (200, {"Implements": ["IpamDriver"]})


def test_serve_refuses_to_replace_a_file_that_is_not_a_socket(server, tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "ipl-test.sock").write_text("precious")
    with pytest.raises(RuntimeError, match="exists and is not a socket"):
        server.start()
    assert (tmp_path / "plugins" / "ipl-test.sock").read_text() == "precious"


def test_leases_survive_a_sigkill_of_master_and_workers(server):
    server.start()
    body = {
        "AddressSpace": "LocalDefault",
        "Pool": "2001:db8::/32",
        "SubPool": "",
        "Options": {},
        "V6": True,
    }
    assert server.client.call("RequestPool", body)[0] == 200
    got = [
        server.client.call(
            "RequestAddress", {"PoolID": "LocalDefault/2001:db8::/32", "Address": ""}
        )[1]["Address"]
        for _ in range(5)
    ]
    server.kill()
    server.start()
    after = server.client.call(
        "RequestAddress", {"PoolID": "LocalDefault/2001:db8::/32", "Address": ""}
    )[1]
    assert got == [f"2001:db8::{i}/32" for i in range(1, 6)]
    assert after == {"Address": "2001:db8::6/32", "Data": {}}


def test_a_bad_setting_stops_serve_with_a_message_naming_it(server, tmp_path):
    server.env["IPLEDGER_DEFAULT_POOLS"] = '[{"base": "10.0.0.0/8", "size": 4}]'
    with pytest.raises(RuntimeError, match="IPLEDGER_DEFAULT_POOLS entry"):
        server.start()
