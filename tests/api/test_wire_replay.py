"""Replay the exact request bodies Docker 20.10, 26.1 and 28.5 sent (tests/api/wire).

The recordings were made against a stub plugin, so its PoolIDs and the addresses it handed out
appear in later requests. The replay maps each stub PoolID to the pool ipledger granted, models
the stub's own allocator (lowest free from the subnet's start) to know which stub address a
release means, and sends the translated bodies raw, as Docker sent them.
"""

from __future__ import annotations

import json
from pathlib import Path

import netaddr
import pytest

# Copied from the recordings the project was given, so that a fresh clone replays them too; a
# missing file fails the test, it never skips it.
WIRE = Path(__file__).resolve().parent / "wire"
RECORDINGS = [WIRE / f"docker-{version}.jsonl" for version in ("20.10.24", "26.1.5", "28.5.2")]


class StubPool:
    """What the recording's stub did for one of its pools, and which of our pool it stands for."""

    def __init__(self, stub_id: str, ours_id: str, ours_cidr: str) -> None:
        self.stub = netaddr.IPNetwork(stub_id.split("-", 1)[1])
        self.ours_id = ours_id
        self.ours = netaddr.IPNetwork(ours_cidr)
        self.held: set[int] = set()
        self.to_ours: dict[int, str] = {}

    def translate(self, stub_address: str) -> str:
        offset = int(netaddr.IPAddress(stub_address)) - int(self.stub.first)
        return str(netaddr.IPAddress(int(self.ours.first) + offset, self.ours.version))

    def stub_lowest_free(self) -> int:
        candidate = int(self.stub.first) + 1
        while candidate in self.held:
            candidate += 1
        return candidate


def replay(plugin, path: Path) -> list[tuple[str, dict, dict]]:
    pending: list[tuple[str, str]] = []
    pools: dict[str, StubPool] = {}
    answers = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        method = record["path"].rsplit(".", 1)[1]
        body = record["body"]
        assert record["content_type"] is None
        if body is not None and "AddressSpace" in body:
            body["AddressSpace"] = {"local": "LocalDefault", "global": "GlobalDefault"}[
                body["AddressSpace"]
            ]
        stub = None
        if body is not None and "PoolID" in body:
            stub_id = body["PoolID"]
            if stub_id not in pools:
                pools[stub_id] = StubPool(stub_id, *pending.pop(0))
            stub = pools[stub_id]
            body["PoolID"] = stub.ours_id
        if method == "RequestAddress" and stub is not None:
            stub_address = (
                int(netaddr.IPAddress(body["Address"]))
                if body["Address"]
                else stub.stub_lowest_free()
            )
            if body["Address"]:
                body["Address"] = stub.translate(body["Address"])
        if method == "ReleaseAddress" and stub is not None:
            stub_address = int(netaddr.IPAddress(body["Address"]))
            body["Address"] = stub.to_ours.pop(stub_address)
            stub.held.discard(stub_address)
        raw = b"" if body is None else json.dumps(body).encode()
        status, answer = plugin.raw(record["path"], raw)
        assert status == 200, (record["path"], body, answer)
        answers.append((method, body, answer))
        if method == "RequestPool":
            pending.append((answer["PoolID"], answer["Pool"]))
        if method == "RequestAddress" and stub is not None:
            stub.held.add(stub_address)
            stub.to_ours[stub_address] = answer["Address"].split("/")[0]
    assert pending == []
    return answers


@pytest.mark.parametrize("recording", RECORDINGS, ids=lambda p: p.stem)
def test_every_recorded_docker_call_succeeds_and_leaves_nothing_behind(plugin, engine, recording):
    answers = replay(plugin, recording)
    leased = [answer["Address"] for method, _, answer in answers if method == "RequestAddress"]
    # dynamic requests in w-full come from its ip-range 192.0.2.128/25, the gateway is static
    assert leased[:2] == ["10.128.0.1/24", "192.0.2.254/24"]
    assert "192.0.2.128/24" in leased
    assert "2001:db8:1::99/64" in leased
    assert all("/" in a for a in leased)
    from tests.integration.test_ledger import snapshot

    leftovers = {
        name: rows
        for name, rows in snapshot(engine).items()
        if name not in ("alembic_version", "history") and rows
    }
    assert leftovers == {}


def test_the_recordings_are_in_the_repository():
    assert sorted(p.name for p in WIRE.glob("docker-*.jsonl")) == [p.name for p in RECORDINGS]
