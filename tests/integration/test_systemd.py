"""The host service: systemd units and socket activation, as far as they run without systemd."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from driver.adapters.plugin_client import PluginClient
from driver.entrypoints.cli import main
from driver.entrypoints.install import UNITS, installation_paths, render_units
from tests.waiting import wait_until


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: tests/run.sh installs Debian's systemd")
    return path


@pytest.fixture(autouse=True)
def a_checkout_under_tmp_is_taken_as_installed_elsewhere(request, monkeypatch):
    """CI may clone the checkout, and so install this ipledger, under /tmp, which install-service
    rightly refuses (its own test below): the other tests check the units' shape, so there they
    take it as installed elsewhere."""
    if request.node.name.startswith("test_install_service_refuses_an_installation_under_tmp"):
        return
    import driver.entrypoints.install as install

    if any(install._under(os.path.abspath(p), install.PRIVATE_TMP) for p in installation_paths()):
        monkeypatch.setattr(install, "PRIVATE_TMP", ())


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
        wait_until(sock.exists, 10, f"systemd-socket-activate to create {sock}", 0.02)
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


def bound_read_only(service: str) -> list[str]:
    return [
        path
        for line in service.splitlines()
        if line.startswith("BindReadOnlyPaths=")
        for path in line.removeprefix("BindReadOnlyPaths=").split()
    ]


def test_a_unit_for_an_installation_in_a_home_directory_lets_the_service_read_that_much_of_it():
    service = render_units(
        "/home/u/venv/bin/python",
        paths=[
            "/home/u/venv/bin/python",
            "/home/u/.pyenv/versions/3.11.7/bin/python3.11",
            "/home/u/venv",
            "/home/u/venv/lib/python3.11/site-packages",
            "/usr/lib/python3.11",
        ],
    )["ipledger.service"]
    lines = service.splitlines()
    assert "ProtectHome=yes" not in lines
    assert "ProtectHome=tmpfs" in lines
    assert bound_read_only(service) == ["/home/u/.pyenv/versions/3.11.7", "/home/u/venv"]
    plain = render_units("/opt/ipledger/bin/python", paths=["/opt/ipledger", "/usr/lib/python3.11"])
    assert "ProtectHome=yes" in plain["ipledger.service"].splitlines()
    assert bound_read_only(plain["ipledger.service"]) == []


def test_the_unit_for_this_installation_lets_the_service_read_all_it_runs_from():
    service = render_units()["ipledger.service"]
    bound = bound_read_only(service)
    for path in installation_paths():
        path = os.path.realpath(path) if os.path.islink(path) else path
        if path.startswith(("/home/", "/root/", "/run/user/")):
            assert any(path == b or path.startswith(b + "/") for b in bound), (path, bound)
            assert "ProtectHome=tmpfs" in service.splitlines()


def test_install_service_refuses_an_installation_under_tmp_saying_why(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    top = Path(__file__).resolve().parents[2]
    site = [p for p in sys.path if p.endswith("site-packages")]
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "driver",
            "install-service",
            "--unit-dir",
            str(tmp_path / "units"),
            "--no-start",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(top), *site])),
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: ipledger is installed under {venv}: the service gets a private /tmp "
        "(PrivateTmp=yes) and /tmp does not survive a reboot; install it elsewhere, "
        "e.g. python3 -m venv /opt/ipledger && /opt/ipledger/bin/pip install ."
    )
    assert not (tmp_path / "units").exists()


def test_the_units_in_plugin_systemd_are_the_shipped_ones():
    top = Path(__file__).resolve().parents[2]
    for name in UNITS:
        shipped = resources.files("driver.entrypoints.units").joinpath(name).read_text()
        assert (top / "plugin" / "systemd" / name).read_text() == shipped


def test_serve_records_the_driver_name_of_the_socket_systemd_passes(tmp_path):
    from driver.storage.store import open_store
    from driver.usecases.admin import Admin

    sock = tmp_path / "ipl-sd.sock"
    db_url = f"sqlite:///{tmp_path}/l.db"
    process = subprocess.Popen(
        [
            need("systemd-socket-activate"),
            "-l",
            str(sock),
            "-E",
            f"IPLEDGER_DB={db_url}",
            "-E",
            "IPLEDGER_HOST_ID=host-sd",
            sys.executable,
            "-m",
            "driver",
            "serve",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(sock.exists, 10, f"systemd-socket-activate to create {sock}", 0.02)
        client = PluginClient(str(sock), timeout=15)
        assert client.call("/Plugin.Activate") == (200, {"Implements": ["IpamDriver"]})
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert "ipledger serving driver 'ipl-sd'" in output
    store = open_store(db_url)
    try:
        assert Admin(store, "host-sd").reports.served_drivers() == ["ipl-sd"]
    finally:
        store.dispose()
