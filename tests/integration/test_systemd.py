"""The host service: systemd units and socket activation, as far as they run without systemd."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from driver.adapters.plugin_client import PluginClient
from driver.entrypoints.cli import main
from driver.entrypoints.install import render_units


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: tests/run.sh installs Debian's systemd")
    return path


def test_install_service_writes_both_units_running_this_python(tmp_path):
    result = CliRunner().invoke(
        main, ["install-service", "--unit-dir", str(tmp_path), "--no-start"]
    )
    assert result.exit_code == 0, result.output
    service = (tmp_path / "ipledger.service").read_text()
    assert f"ExecStart={sys.executable} -m driver serve" in service.splitlines()
    assert (tmp_path / "ipledger.socket").stat().st_mode & 0o777 == 0o644


def test_the_units_pass_systemd_analyze_verify_without_a_warning(tmp_path):
    CliRunner().invoke(main, ["install-service", "--unit-dir", str(tmp_path), "--no-start"])
    result = subprocess.run(
        [
            need("systemd-analyze"),
            "verify",
            str(tmp_path / "ipledger.socket"),
            str(tmp_path / "ipledger.service"),
        ],
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path):
    broken = render_units()["ipledger.service"].replace("Type=simple", "Type=simpel")
    (tmp_path / "ipledger.service").write_text(broken)
    result = subprocess.run(
        [need("systemd-analyze"), "verify", str(tmp_path / "ipledger.service")],
        capture_output=True,
        text=True,
    )
    assert "Failed to parse service type" in result.stderr


def test_the_units_order_before_docker_and_harden_the_service():
    units = render_units()
    socket_lines = units["ipledger.socket"].splitlines()
    service_lines = units["ipledger.service"].splitlines()
    for line in (
        "ListenStream=/run/docker/plugins/ipledger.sock",
        "SocketMode=0600",
        "Before=docker.service",
    ):
        assert line in socket_lines
    for line in (
        "Before=docker.service",
        "Requires=ipledger.socket",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ipledger",
        "NoNewPrivileges=yes",
        "UMask=0077",
    ):
        assert line in service_lines


def test_serve_takes_the_listening_socket_systemd_passes(tmp_path):
    sock = tmp_path / "ipledger.sock"
    process = subprocess.Popen(
        [
            need("systemd-socket-activate"),
            "-l",
            str(sock),
            "-E",
            f"IPLEDGER_DB=sqlite:///{tmp_path}/l.db",
            sys.executable,
            "-m",
            "driver",
            "serve",
            "--socket",
            str(sock),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        inode = sock.stat().st_ino
        # the first call reaches the socket before ipledger runs: systemd holds it meanwhile
        client = PluginClient(str(sock), timeout=15)
        assert client.call("/Plugin.Activate") == (200, {"Implements": ["IpamDriver"]})
        assert (
            client.call("RequestPool", {"AddressSpace": "LocalDefault", "Pool": "192.0.2.0/24"})[0]
            == 200
        )
        assert sock.stat().st_ino == inode
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert "the socket systemd passed (LISTEN_FDS)" in output
    assert process.returncode == 0
