"""Connections that stall hold up no other call: the real gunicorn on a real unix socket.

Every request is read whole, with a deadline (IPLEDGER_CALL_TIMEOUT), before it takes one of the
workers' threads: a connection that stalls in its headers or in its body holds a file descriptor
for at most the bound, never a thread, and is then answered 408 and closed. Docker's way of
calling (a kept-alive connection, a body that may arrive after its headers, a re-sent call with
an empty body) is served as before.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from driver.adapters.plugin_client import PluginClient
from tests.e2e.harness import PluginProcess, bounded_plugin, timed
from tests.waiting import wait_until

BOUND = 2.0
# what an answer may take beyond the bound: scheduling on a shared machine, never another wait
SLACK = 0.75
STALLED = 50
POOL = {"AddressSpace": "LocalDefault", "Pool": "198.51.100.0/24"}
POOL_ID = "LocalDefault/198.51.100.0/24"


@pytest.fixture(scope="module")
def serving(tmp_path_factory) -> Iterator[PluginProcess]:
    tmp_path = tmp_path_factory.mktemp("stall")
    with bounded_plugin("ipl-stall", f"sqlite:///{tmp_path}/ledger.db", tmp_path, BOUND) as plugin:
        yield plugin


@pytest.fixture
def server(serving) -> Iterator[PluginProcess]:
    """One server for the module (its start is most of these tests' time), its pools released
    after each test."""
    yield serving
    for pool_id in (POOL_ID, "LocalDefault/203.0.113.0/24"):
        serving.client.call("ReleasePool", {"PoolID": pool_id})


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    return sock


def request_bytes(method: str, body: bytes) -> tuple[bytes, bytes]:
    """A request as Docker sends it: its head and its body."""
    head = (
        f"POST /IpamDriver.{method} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n"
        f"Content-Length: {len(body)}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n"
        "Accept-Encoding: gzip\r\n\r\n"
    ).encode()
    return head, body


def stall(path: str, n: int) -> list[socket.socket]:
    """``n`` connections, half stalled in their headers and half in their body."""
    head, body = request_bytes("RequestAddress", json.dumps({"PoolID": POOL_ID}).encode())
    stalled = []
    for i in range(n):
        sock = connect(path)
        sock.sendall(head[:40] if i % 2 else head + body[:5])
        stalled.append(sock)
    return stalled


def unaccepted(path: str) -> int:
    """How many connections wait in the accept queue of the socket listening on ``path``."""
    listening = subprocess.run(["ss", "-xlH", "src", path], capture_output=True, text=True)
    return int(listening.stdout.split()[2])  # Netid State Recv-Q: the queue's length


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_fifty_connections_stalled_in_headers_or_body_delay_no_call_and_are_closed(server):
    client = PluginClient(server.socket, timeout=30)
    assert client.call("RequestPool", POOL)[0] == 200
    opened = time.monotonic()
    stalled = stall(server.socket, STALLED)
    try:
        wait_until(
            lambda: unaccepted(server.socket) == 0, 30, "the workers to accept every connection"
        )
        for method, body in (
            ("GetCapabilities", None),
            ("RequestPool", {"AddressSpace": "LocalDefault", "Pool": "203.0.113.0/24"}),
            ("RequestAddress", {"PoolID": POOL_ID}),
            ("GetCapabilities", None),
        ):
            elapsed, status, answer = timed(client, method, body)
            print(f"{method} while {STALLED} connections stall: {elapsed * 1000:.1f} ms")
            assert status == 200, answer
            assert elapsed < BOUND / 4, (
                f"{method} waited {elapsed:.2f} s behind stalled connections"
            )
        for sock in stalled:
            answer = read_answer(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"not received whole within 2 s" in answer
        closed_after = time.monotonic() - opened
        print(f"{STALLED} stalled connections answered 408 and closed after {closed_after:.2f} s")
        assert closed_after < BOUND + SLACK
    finally:
        for sock in stalled:
            sock.close()
    assert client.call("RequestAddress", {"PoolID": POOL_ID}) == (
        200,
        {"Address": "198.51.100.2/24", "Data": {}},
    )


def test_new_stalled_connections_keep_coming_and_calls_still_pass(server):
    """Stalled connections opened faster than they expire: each call still answers at once."""
    client = PluginClient(server.socket, timeout=30)
    slowest = 0.0
    stalled: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 2 * BOUND
        while time.monotonic() < deadline:
            stalled += stall(server.socket, 10)
            elapsed, status, _ = timed(client, "GetCapabilities", {})
            assert status == 200
            slowest = max(slowest, elapsed)
            time.sleep(0.1)  # not a wait: it paces new stalled connections over the bound
        print(
            f"{len(stalled)} stalled connections over {2 * BOUND:.0f} s: slowest call {slowest * 1000:.1f} ms"
        )
        assert slowest < BOUND / 4
    finally:
        for sock in stalled:
            sock.close()


def test_a_kept_alive_connection_serves_docker_calls_in_turn_and_a_body_sent_after_its_head(
    server,
):
    sock = connect(server.socket)
    with contextlib.closing(sock):
        reader = sock.makefile("rb")
        for method, body in (
            ("RequestPool", json.dumps(POOL).encode()),
            ("RequestAddress", json.dumps({"PoolID": POOL_ID}).encode()),
            # Docker re-sends a call whose connection failed with its body already consumed
            ("RequestAddress", b""),
            ("GetCapabilities", b""),
        ):
            head, payload = request_bytes(method, body)
            sock.sendall(head)
            time.sleep(BOUND / 4)  # the body follows its head a moment later
            sock.sendall(payload)
            status_line = reader.readline()
            headers = {}
            while (line := reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            answer = json.loads(reader.read(int(headers["content-length"])))
            print(method, status_line.decode().strip(), answer)
            if body:
                assert status_line.startswith(b"HTTP/1.1 200 "), answer
            elif method == "RequestAddress":
                assert status_line.startswith(b"HTTP/1.1 400 ")
                assert answer["Err"] == "empty request body: expected a JSON object"
            assert headers.get("connection", "keep-alive").lower() != "close"


def test_two_requests_sent_in_one_write_are_both_answered_in_order(server):
    first = b"".join(request_bytes("RequestPool", json.dumps(POOL).encode()))
    second = b"".join(request_bytes("RequestAddress", json.dumps({"PoolID": POOL_ID}).encode()))
    sock = connect(server.socket)
    with contextlib.closing(sock):
        sock.sendall(first + second)
        reader = sock.makefile("rb")
        answers = []
        for _ in range(2):
            assert reader.readline().startswith(b"HTTP/1.1 200 ")
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answers.append(json.loads(reader.read(length)))
    assert answers == [
        {"PoolID": POOL_ID, "Pool": "198.51.100.0/24", "Data": {}},
        {"Address": "198.51.100.1/24", "Data": {}},
    ]


def test_a_body_larger_than_any_call_takes_is_refused_without_reading_it(server):
    sock = connect(server.socket)
    with contextlib.closing(sock):
        sock.sendall(
            b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: plugin\r\n"
            b"Content-Length: 100000000\r\n\r\n{"
        )
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"request body too large" in answer


def exchange(path: str, data: bytes) -> bytes:
    sock = connect(path)
    with contextlib.closing(sock):
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_answer(sock)


def test_a_chunked_body_is_read_whole_and_answered(server):
    body = json.dumps(POOL).encode()
    answer = exchange(
        server.socket,
        b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: plugin\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
        + f"{5:x}\r\n".encode()
        + body[:5]
        + b"\r\n"
        + f"{len(body) - 5:x}\r\n".encode()
        + body[5:]
        + b"\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    body_answered = answer.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body_answered) == {"PoolID": POOL_ID, "Pool": "198.51.100.0/24", "Data": {}}


def test_a_malformed_request_is_answered_400_at_once(server):
    started = time.monotonic()
    answer = exchange(server.socket, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert time.monotonic() - started < BOUND / 4


def test_a_client_that_waits_for_100_continue_gets_it_and_then_its_answer(server):
    body = json.dumps(POOL).encode()
    sock = connect(server.socket)
    with contextlib.closing(sock):
        sock.sendall(
            b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: plugin\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        sock.settimeout(BOUND / 2)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.settimeout(30)
        sock.sendall(body)
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.count(b"100 Continue") == 0


def test_a_client_that_goes_away_mid_request_leaves_nothing_behind(server):
    for _ in range(20):
        sock = connect(server.socket)
        sock.sendall(b"POST /IpamDriver.RequestPool HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
        sock.close()
    assert server.client.call("RequestPool", POOL)[0] == 200
