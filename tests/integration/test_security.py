"""What the socket and files permit, what listens, and what the logs never show."""

from __future__ import annotations

import subprocess
import sys

import pytest

from driver.storage.engine import masked_url
from tests.e2e.harness import PluginProcess


def test_database_passwords_are_masked_for_logs():
    assert masked_url("postgresql+psycopg://ipam:s3cret@db.example:5432/ledger") == (
        "postgresql+psycopg://ipam:***@db.example:5432/ledger"
    )


@pytest.mark.full  # needs the [postgres] extra, which the quick lane does not install
def test_a_failing_database_url_never_prints_its_password(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "driver",
            "serve",
            "--socket",
            str(tmp_path / "s.sock"),
            "--db",
            "postgresql+psycopg://ipam:s3cret@127.0.0.1:1/ledger",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "s3cret" not in result.stdout + result.stderr
    assert "database unavailable" in result.stdout + result.stderr


def test_the_server_listens_on_its_unix_socket_and_nowhere_else(tmp_path):
    server = PluginProcess(
        "ipl-sec", f"sqlite:///{tmp_path}/l.db", tmp_path, socket=str(tmp_path / "sec.sock")
    )
    server.start()
    try:
        pids = {
            str(server.process.pid),
            *subprocess.run(
                ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
            ).stdout.split(),
        }
        listening = subprocess.run(
            ["ss", "-lnpH"], capture_output=True, text=True, check=True
        ).stdout
        mine = [line for line in listening.splitlines() if any(f"pid={p}," in line for p in pids)]
        assert mine, "the server's own socket should be listed"
        assert all(line.startswith("u_str") and server.socket in line for line in mine), mine
    finally:
        server.stop()


def test_request_bodies_are_not_logged_at_info(tmp_path):
    server = PluginProcess(
        "ipl-log", f"sqlite:///{tmp_path}/l.db", tmp_path, socket=str(tmp_path / "log.sock")
    )
    server.start()
    server.client.call(
        "RequestPool",
        {
            "AddressSpace": "LocalDefault",
            "Pool": "192.0.2.0/24",
            "Options": {"secret-looking": "zz-top-secret-zz"},
        },
    )
    server.stop()
    log = server.log_path.read_text()
    assert "pool LocalDefault/192.0.2.0/24 granted" in log
    assert "zz-top-secret-zz" not in log
