"""The ipledger-cni process on every CNI version, with no server behind it: VERSION lists them
all, a command the config's version does not have is code 1 (as libcni's plugins answer it), and
every error carries the request's cniVersion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_cni_plugin import run

ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
IDENTITY = {"CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"}


def config(tmp_path: Path, version: str | None) -> str:
    conf = {
        "name": "lan",
        "type": "bridge",
        "ipam": {
            "type": "ipledger",
            "ranges": [[{"subnet": "203.0.113.0/24"}]],
            "ipledger": {
                "socket": str(tmp_path / "nobody.sock"),
                "spool": str(tmp_path / "spool"),
            },
        },
    }
    if version is not None:
        conf["cniVersion"] = version
    return json.dumps(conf)


@pytest.mark.parametrize("version", ALL)
def test_version_lists_every_version_from_0_1_0_to_1_1_0_and_echoes_the_configs(version):
    assert run("VERSION", json.dumps({"cniVersion": version})) == (
        0,
        {"cniVersion": version, "supportedVersions": ALL},
    )


@pytest.mark.parametrize("version", ALL)
def test_add_of_every_version_reaches_for_the_server_and_the_error_says_that_version(
    tmp_path, version
):
    code, answer = run("ADD", config(tmp_path, version), **IDENTITY)
    assert code == 1 and answer["code"] != 1, answer  # not "incompatible version"
    assert answer["cniVersion"] == version


@pytest.mark.parametrize("version", ALL)
def test_del_of_every_version_without_a_server_is_spooled_and_succeeds(tmp_path, version):
    done = subprocess.run(
        [sys.executable, "-m", "driver.entrypoints.cni_plugin"],
        input=config(tmp_path, version),
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CNI_COMMAND": "DEL", **IDENTITY},
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert len(list((tmp_path / "spool").glob("*.del"))) == 1


def test_a_config_without_cni_version_is_0_1_0_as_libcni_reads_it(tmp_path):
    code, answer = run("ADD", config(tmp_path, None), **IDENTITY)
    assert (code, answer["code"], answer["cniVersion"]) == (1, 11, "0.1.0")


@pytest.mark.parametrize(
    ("command", "version", "since"),
    [
        ("CHECK", "0.1.0", "0.4.0"),
        ("CHECK", "0.2.0", "0.4.0"),
        ("CHECK", "0.3.0", "0.4.0"),
        ("CHECK", "0.3.1", "0.4.0"),
        ("GC", "1.0.0", "1.1.0"),
        ("GC", "0.3.1", "1.1.0"),
        ("STATUS", "1.0.0", "1.1.0"),
        ("STATUS", "0.4.0", "1.1.0"),
    ],
)
def test_a_command_the_configs_version_does_not_have_is_code_1_naming_the_version_it_came_with(
    tmp_path, command, version, since
):
    code, answer = run(command, config(tmp_path, version), **IDENTITY)
    assert (code, answer["code"], answer["cniVersion"]) == (1, 1, version), answer
    assert f"{command} is not in CNI {version}" in answer["msg"]
    assert since in answer["msg"]


@pytest.mark.parametrize("version", ["0.5.0", "2.0.0", "1.0"])
def test_a_version_nobody_speaks_is_code_1_listing_the_ones_ipledger_speaks(tmp_path, version):
    code, answer = run("ADD", config(tmp_path, version), **IDENTITY)
    assert (code, answer["code"]) == (1, 1)
    assert ", ".join(ALL) in answer["details"]


def test_a_cni_version_that_is_not_text_is_code_1_too(tmp_path):
    conf = json.loads(config(tmp_path, None))
    conf["cniVersion"] = 3
    code, answer = run("ADD", json.dumps(conf), **IDENTITY)
    assert (code, answer["code"]) == (1, 1)
