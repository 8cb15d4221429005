"""A minimal client for the plugin socket, speaking to ipledger the way Docker does."""

from __future__ import annotations

import http.client
import json
import socket
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

    One connection per call and no retries: a call that fails in flight has an unknown outcome,
    and the caller (a crash test, say) must be able to tell.
    """

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, method: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """POST ``/IpamDriver.<method>`` (or a full path); the status and the JSON answer."""
        path = method if method.startswith("/") else f"/IpamDriver.{method}"
        payload = b"" if body is None else json.dumps(body).encode()
        connection = UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            connection.request("POST", path, body=payload, headers={"Accept": ACCEPT})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()
