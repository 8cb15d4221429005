"""`ipledger serve`: the real gunicorn on a real unix socket."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess

import pytest

from driver.storage.engine import make_engine
from driver.storage.schema import migrate
from driver.storage.store import open_store
from driver.usecases.admin import Admin
from tests.e2e.harness import PluginProcess, need


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


def second_server(first: PluginProcess, tmp_path, name: str = "ipl-second") -> PluginProcess:
    """Another server on the same socket path, with a ledger of its own."""
    return PluginProcess(name, f"sqlite:///{tmp_path}/{name}.db", tmp_path, socket=first.socket)


def test_a_second_server_refuses_a_socket_that_answers_and_the_first_stays_reachable(
    server, tmp_path
):
    server.start()
    inode = os.stat(server.socket).st_ino
    second = second_server(server, tmp_path)
    second.start(wait=False)
    assert second.process is not None
    assert second.process.wait(30) == 1
    output = second.log_path.read_text()
    assert f"ipledger: {server.socket} is served by another process" in output
    assert "Traceback" not in output
    assert os.stat(server.socket).st_ino == inode
    assert server.client.call("GetCapabilities")[0] == 200


def test_a_stopping_server_leaves_a_socket_path_that_another_server_holds_now(server, tmp_path):
    server.start()
    os.unlink(server.socket)  # an operator removed it; a second server takes the path
    second = second_server(server, tmp_path)
    second.start()
    try:
        inode = os.stat(server.socket).st_ino
        server.stop()
        assert os.stat(server.socket).st_ino == inode
        assert second.client.call("GetCapabilities")[0] == 200
    finally:
        second.stop()
    assert not os.path.exists(server.socket), "a server removes its own socket when it stops"


def test_a_metrics_port_in_use_stops_serve_before_it_binds_the_plugin_socket(server, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    server.env["IPLEDGER_METRICS_ADDR"] = str(port)
    try:
        with pytest.raises(RuntimeError) as refused:
            server.start()
    finally:
        busy.close()
    output = server.log_path.read_text()
    assert f"ipledger: cannot listen on 127.0.0.1:{port} (IPLEDGER_METRICS_ADDR)" in output
    assert "in use" in str(refused.value)
    assert "Traceback" not in output
    assert not os.path.exists(server.socket)


@pytest.fixture
def read_only_dir(tmp_path):
    """``(data, ro)``: a directory, and the same directory mounted read-only (root only)."""
    need(os.geteuid() == 0 and shutil.which("mount") is not None, "a read-only mount needs root")
    data, ro = tmp_path / "data", tmp_path / "ro"
    data.mkdir()
    ro.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(data), str(ro)], check=True)
    try:
        yield data, ro
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def refused_start(process: PluginProcess) -> str:
    """Start a server that must refuse to start; its whole output."""
    process.start(wait=False)
    assert process.process is not None
    assert process.process.wait(30) == 1
    output = process.log_path.read_text()
    assert "Traceback" not in output and "Errno" not in output, output
    return output


def test_serve_on_a_read_only_ledger_says_the_ledger_is_read_only(read_only_dir, tmp_path):
    data, ro = read_only_dir
    engine = make_engine(f"sqlite:///{data}/ledger.db")
    migrate(engine)
    engine.dispose()
    process = PluginProcess(
        "ipl-ro", f"sqlite:///{ro}/ledger.db", tmp_path, socket=str(tmp_path / "ipl.sock")
    )
    assert refused_start(process).strip() == (
        f"ipledger: the ledger {ro}/ledger.db is on a read-only file system, and this writes "
        "to it: remount it read-write (pools, leases, usage, history, export and check only read)"
    )
    assert not os.path.exists(tmp_path / "ipl.sock")


def test_serve_with_its_socket_on_a_read_only_file_system_says_so(read_only_dir, tmp_path):
    _, ro = read_only_dir
    process = PluginProcess(
        "ipl-ro", f"sqlite:///{tmp_path}/ledger.db", tmp_path, socket=str(ro / "ipl.sock")
    )
    assert (
        refused_start(process)
        .strip()
        .endswith(
            f"ipledger: cannot create the socket {ro}/ipl.sock: it is on a read-only file system"
        )
    )
    process = PluginProcess(
        "ipl-ro2", f"sqlite:///{tmp_path}/ledger.db", tmp_path, socket=str(ro / "sub" / "x.sock")
    )
    assert (
        refused_start(process)
        .strip()
        .endswith(
            f"ipledger: cannot create the socket's directory {ro}/sub: it is on a read-only file system"
        )
    )


def test_serve_records_in_the_ledger_the_driver_name_it_serves_for_gc(server, tmp_path):
    server.env.pop("IPLEDGER_SOCKET", None)
    server.env["IPLEDGER_HOST_ID"] = "host-h"
    server.start()
    store = open_store(server.db_url)
    try:
        assert Admin(store, "host-h").reports.served_drivers() == ["ipl-test"]
        assert Admin(store, "host-other").reports.served_drivers() == []
    finally:
        store.dispose()
