"""The ipledger-cni process as a runtime runs it, with no server behind it: what it answers by
itself, and the CNI error it gives for everything else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driver.entrypoints.cni_plugin import _resolv_conf


def run(command: str | None, stdin: str, **env: str) -> tuple[int, dict[str, Any]]:
    environment = {"PATH": "/usr/bin:/bin", **env}
    if command is not None:
        environment["CNI_COMMAND"] = command
    done = subprocess.run(
        [sys.executable, "-m", "driver.entrypoints.cni_plugin"],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
    )
    return done.returncode, json.loads(done.stdout)


def config(tmp_path: Path, version: str = "1.0.0") -> str:
    return json.dumps(
        {
            "cniVersion": version,
            "name": "lan",
            "type": "bridge",
            "ipam": {
                "type": "ipledger",
                "ranges": [[{"subnet": "203.0.113.0/24"}]],
                "ipledger": {"socket": str(tmp_path / "nobody.sock")},
            },
        }
    )


def test_version_is_answered_without_a_server():
    assert run("VERSION", '{"cniVersion": "0.4.0"}') == (
        0,
        {
            "cniVersion": "0.4.0",
            "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
        },
    )


def test_add_without_a_server_is_try_again_later_naming_the_socket(tmp_path):
    code, answer = run("ADD", config(tmp_path), CNI_CONTAINERID="c1", CNI_IFNAME="eth0")
    assert (code, answer["code"]) == (1, 11)
    assert str(tmp_path / "nobody.sock") in answer["msg"]


def test_status_without_a_server_is_code_50(tmp_path):
    code, answer = run("STATUS", config(tmp_path, "1.1.0"))
    assert (code, answer["code"]) == (1, 50)


@pytest.mark.parametrize(
    ("command", "stdin", "env", "expected"),
    [
        (None, "{}", {}, 4),
        ("ADD", "not json", {}, 6),
        ("ADD", '["a list"]', {}, 6),
        ("ADD", '{"cniVersion": "0.5.0"}', {"CNI_CONTAINERID": "c", "CNI_IFNAME": "e"}, 1),
        ("ADD", '{"cniVersion": "1.0.0"}', {"CNI_IFNAME": "eth0"}, 4),
    ],
)
def test_what_the_plugin_can_tell_wrong_by_itself_gets_cnis_code(command, stdin, env, expected):
    code, answer = run(command, stdin, **env)
    assert (code, answer["code"]) == (1, expected)
    assert answer["msg"]


def test_a_resolv_conf_reads_as_host_local_reads_it(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# a comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"
        "domain example.org\nsearch a.example.org b.example.org\noptions ndots:2 rotate\n"
    )
    assert _resolv_conf(str(resolv)) == {
        "nameservers": ["192.0.2.53", "2001:db8::53"],
        "domain": "example.org",
        "search": ["a.example.org", "b.example.org"],
        "options": ["ndots:2", "rotate"],
    }
