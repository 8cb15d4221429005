"""A minimal client for the plugin socket, speaking to ipledger the way Docker does."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

ACCEPT = "application/vnd.docker.plugins.v1.2+json"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class PluginClient:
    """Posts bodies as Docker does: JSON without a Content-Type, Docker's Accept header.

    With ``keepalive`` the connection is reused, as Docker's Go client does; it is renewed
    before it has been idle for a second, so that it never meets gunicorn's keep-alive timeout
    (2 s) half-way. Nothing is retried: a call that fails in flight has an unknown outcome, and
    the caller (a crash test, say) must be able to tell.
    """

    IDLE_RENEW = 1.0

    def __init__(self, socket_path: str, timeout: float = 30.0, keepalive: bool = False) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.keepalive = keepalive
        self._connection: UnixHTTPConnection | None = None
        self._last_used = 0.0

    def call(self, method: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """POST ``/IpamDriver.<method>`` (or a full path); the status and the JSON answer."""
        path = method if method.startswith("/") else f"/IpamDriver.{method}"
        payload = b"" if body is None else json.dumps(body).encode()
        connection = self._connection
        if connection is None or time.monotonic() - self._last_used > self.IDLE_RENEW:
            self.close()
            connection = UnixHTTPConnection(self.socket_path, self.timeout)
        keep = False
        try:
            connection.request("POST", path, body=payload, headers={"Accept": ACCEPT})
            response = connection.getresponse()
            answer = json.loads(response.read())
            keep = self.keepalive and not response.will_close
            return response.status, answer
        finally:
            if keep:
                self._connection = connection
                self._last_used = time.monotonic()
            else:
                connection.close()
                self._connection = None

    def __enter__(self) -> PluginClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
