"""The node's spool of CNI releases (driver/adapters/spool.py) on a real directory: one file per
attachment, written whole, named so that no network or container name reaches outside it, and
read back by the server, which moves aside what is not a release."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from driver.adapters import spool as spooling
from driver.adapters.spool import Spool, spool_release


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def test_a_release_is_one_file_holding_the_attachment_and_the_time_of_the_del(tmp_path):
    before = time.time()
    path = spool_release(str(tmp_path / "spool"), "lan", "c1", "eth0")
    assert Path(path).parent == tmp_path / "spool"
    record = json.loads(Path(path).read_text())
    assert (record["network"], record["containerId"], record["ifname"]) == ("lan", "c1", "eth0")
    assert before <= record["deletedAt"] <= time.time()
    assert os.stat(tmp_path / "spool").st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_del_repeated_for_one_attachment_keeps_one_file_with_the_newest_time(tmp_path):
    first = spool_release(str(tmp_path), "lan", "c1", "eth0")
    deleted = json.loads(Path(first).read_text())["deletedAt"]
    second = spool_release(str(tmp_path), "lan", "c1", "eth0")
    assert first == second and files(tmp_path) == [Path(first).name]
    assert json.loads(Path(second).read_text())["deletedAt"] >= deleted


@pytest.mark.parametrize(
    ("network", "container", "ifname"),
    [
        ("../../etc", "../../../tmp/x", "eth0"),
        ("/absolute", "c", "e"),
        ("a" * 5000, "b" * 5000, "c" * 300),
        ("net\nwork", "c\0d", "\udcff"),
        ("lan", "c1/eth0", "x"),
    ],
)
def test_a_crafted_name_cannot_reach_outside_the_spool_and_reads_back_as_given(
    tmp_path, network, container, ifname
):
    directory = tmp_path / "spool"
    path = spool_release(str(directory), network, container, ifname)
    assert Path(path).parent == directory and len(Path(path).name) < 80
    assert list(tmp_path.iterdir()) == [directory]
    [release], bad = Spool(str(directory)).claim()
    assert bad == []
    assert (release.network, release.container_id, release.ifname) == (network, container, ifname)


def test_attachments_that_differ_only_in_how_they_split_get_files_of_their_own(tmp_path):
    spool_release(str(tmp_path), "a/b", "c", "d")
    spool_release(str(tmp_path), "a", "b/c", "d")
    assert len(files(tmp_path)) == 2


def test_claiming_one_network_leaves_the_others(tmp_path):
    for network in ("lan", "wan", "lan2"):
        spool_release(str(tmp_path), network, "c1", "eth0")
    releases, bad = Spool(str(tmp_path)).claim("lan")
    assert [r.network for r in releases] == ["lan"] and bad == []
    assert sum(name.endswith(".del") for name in files(tmp_path)) == 2


def test_a_release_spooled_again_while_one_is_applied_is_not_removed_unapplied(tmp_path):
    spool = Spool(str(tmp_path))
    spool_release(str(tmp_path), "lan", "c1", "eth0")
    claimed, _ = spool.claim("lan")
    spool_release(str(tmp_path), "lan", "c1", "eth0")  # the DEL again, meanwhile
    spool.done(claimed)
    again, _ = spool.claim("lan")
    assert len(again) == 1 and again[0].deleted_at >= claimed[0].deleted_at


def test_a_claim_another_applier_left_is_applied_again(tmp_path):
    spool_release(str(tmp_path), "lan", "c1", "eth0")
    left, _ = Spool(str(tmp_path)).claim("lan")  # an applier that died before it committed
    again, _ = Spool(str(tmp_path)).claim("lan")
    assert [r.path for r in again] == [r.path for r in left]
    Spool(str(tmp_path)).done(again)
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"format": 1, "network": "lan", "contai',
        b"\xff\xfe not json",
        b"[1, 2]",
        b'{"format": 2, "network": "lan", "containerId": "c1", "ifname": "eth0", "deletedAt": 1}',
        b'{"format": 1, "network": "lan", "containerId": "c1", "ifname": "eth0"}',
        b'{"format": 1, "network": "lan", "containerId": "", "ifname": "eth0", "deletedAt": 1}',
        b" " * (spooling.MAX_ENTRY + 1),
    ],
    ids=["empty", "torn", "binary", "list", "format", "no time", "empty id", "huge"],
)
def test_a_file_that_is_no_release_is_moved_aside_and_named_and_the_rest_is_applied(
    tmp_path, content
):
    good = spool_release(str(tmp_path), "lan", "c1", "eth0")
    name = spooling.entry_name("lan", "c2", "eth0")
    (tmp_path / name).write_bytes(content)
    releases, bad = Spool(str(tmp_path)).claim("lan")
    assert [r.container_id for r in releases] == ["c1"]
    assert len(bad) == 1 and name in bad[0] and "moved into" in bad[0]
    assert [p.name.startswith(name) for p in (tmp_path / "bad").iterdir()] == [True]
    Spool(str(tmp_path)).done(releases)
    assert not Path(good).exists()


def test_a_release_under_another_attachments_name_is_moved_aside(tmp_path):
    """A file renamed (or written by hand) under the name of another attachment could release
    that one's name's leases: its name must be its own content's."""
    path = spool_release(str(tmp_path), "lan", "c1", "eth0")
    os.rename(path, tmp_path / spooling.entry_name("lan", "c2", "eth0"))
    releases, bad = Spool(str(tmp_path)).claim()
    assert releases == [] and "not its own" in bad[0]


def test_a_temporary_file_a_dead_plugin_left_is_ignored_and_removed_once_old(tmp_path):
    young = tmp_path / f"{spooling.TEMPORARY}1-1"
    old = tmp_path / f"{spooling.TEMPORARY}2-2"
    young.write_bytes(b'{"format": 1, "netw')
    old.write_bytes(b'{"format": 1, "netw')
    long_ago = time.time() - spooling.STALE_TEMPORARY - 60
    os.utime(old, (long_ago, long_ago))
    assert Spool(str(tmp_path)).claim() == ([], [])
    assert files(tmp_path) == [young.name]


def test_a_spool_that_does_not_exist_holds_nothing(tmp_path):
    assert Spool(str(tmp_path / "missing")).claim() == ([], [])
    assert Spool(str(tmp_path / "missing")).pending() == []


def test_pending_reads_without_claiming(tmp_path):
    spool_release(str(tmp_path), "lan", "c1", "eth0")
    assert [r.attachment for r in Spool(str(tmp_path)).pending()] == ["lan/c1/eth0"]
    assert files(tmp_path)[0].endswith(".del")


def test_a_spool_that_cannot_be_written_is_an_os_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(OSError):
        spool_release(str(target), "lan", "c1", "eth0")
    assert files(tmp_path) == ["file"]


# -- the plugin's DEL with no server behind it


def plugin_del(tmp_path: Path, **ipledger: object) -> tuple[int, str]:
    conf = {
        "cniVersion": "1.0.0",
        "name": "lan",
        "type": "bridge",
        "ipam": {
            "type": "ipledger",
            "ranges": [[{"subnet": "203.0.113.0/24"}]],
            "ipledger": {"socket": str(tmp_path / "nobody.sock"), **ipledger},
        },
    }
    done = subprocess.run(
        [sys.executable, "-m", "driver.entrypoints.cni_plugin"],
        input=json.dumps(conf),
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "CNI_COMMAND": "DEL",
            "CNI_CONTAINERID": "c1",
            "CNI_IFNAME": "eth0",
        },
        timeout=30,
        cwd=Path(__file__).parents[2],
    )
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout


def test_a_del_without_a_server_is_spooled_and_answers_success(tmp_path):
    assert plugin_del(tmp_path, spool=str(tmp_path / "spool")) == (0, "")
    [release] = Spool(str(tmp_path / "spool")).pending()
    assert release.attachment == "lan/c1/eth0"


def test_a_del_whose_spool_cannot_be_written_is_try_again_later_naming_it(tmp_path):
    (tmp_path / "file").write_text("")
    code, out = plugin_del(tmp_path, spool=str(tmp_path / "file" / "spool"))
    answer = json.loads(out)
    assert (code, answer["code"]) == (1, 11)
    assert str(tmp_path / "file" / "spool") in answer["msg"] and "nobody.sock" in answer["msg"]


@pytest.mark.parametrize("spool", ["relative/dir", "", 7, "/a\0b"])
def test_a_spool_option_that_is_no_absolute_path_is_an_invalid_config(tmp_path, spool):
    code, out = plugin_del(tmp_path, spool=spool)
    answer = json.loads(out)
    assert (code, answer["code"]) == (1, 7) and "ipam.ipledger.spool" in answer["msg"]


def test_a_del_the_server_answers_try_again_later_is_spooled_too(tmp_path):
    """A server that is up but cannot reach its ledger (503, code 11): the DEL is spooled as
    well, since the runtime's retry would leave the NAT chain just the same."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "nobody.sock"))
    listener.listen(1)

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            body = b'{"Err": "database unavailable: the ledger is locked", "CniCode": 11}'
            connection.sendall(
                b"HTTP/1.1 503 SERVICE UNAVAILABLE\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )

    server = threading.Thread(target=answer)
    server.start()
    try:
        assert plugin_del(tmp_path, spool=str(tmp_path / "spool")) == (0, "")
    finally:
        server.join(10)
        listener.close()
    assert [r.attachment for r in Spool(str(tmp_path / "spool")).pending()] == ["lan/c1/eth0"]
