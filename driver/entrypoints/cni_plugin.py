"""``ipledger-cni``: the CNI IPAM plugin. One short process per call, as CNI runs plugins.

It reads the network config on stdin and the ``CNI_*`` environment, answers VERSION itself, and
hands every other command to the running ``ipledger serve`` over its socket (``ipam.ipledger.
socket`` in the config, or the plugin socket ``ipledger serve`` listens on by default), which
answers with the ledger's use cases. It prints the result, or CNI's error object and exits 1.

Kept to a few modules of the standard library and two import-free ones of ipledger, so that it
starts in milliseconds: HTTP is spoken on the socket directly (``http.client`` alone takes
longer to import than a whole call takes to answer).
"""

from __future__ import annotations

import _socket  # `socket` itself would cost a fifth of the start-up (its enums)
import json
import os
import sys

from driver.domain.cni_spec import (
    COMMANDS,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    IO_FAILURE,
    NOT_AVAILABLE,
    SUPPORTED_VERSIONS,
    TRY_AGAIN_LATER,
    UNDECODABLE,
)
from driver.paths import DEFAULT_SOCKET

# typing.TYPE_CHECKING, without importing typing (another tenth of the start-up)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# how long a call may take before the runtime is told to try again later; the server answers
# every call within its own bound (IPLEDGER_CALL_TIMEOUT), so this is only met when it hangs
CALL_TIMEOUT = 30.0


class CniFailure(Exception):
    """A CNI error: its code, message and details."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def main() -> None:
    version = SUPPORTED_VERSIONS[-1]
    try:
        raw = sys.stdin.read()
        command = os.environ.get("CNI_COMMAND", "")
        if command not in COMMANDS:
            raise CniFailure(
                INVALID_ENVIRONMENT,
                f"CNI_COMMAND: {command!r:.40} is not one of {', '.join(COMMANDS)}",
            )
        config = _config(raw, command)
        version = config.get("cniVersion", version)
        if command == "VERSION":
            _print({"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)})
            return
        if version not in SUPPORTED_VERSIONS:
            raise CniFailure(
                INCOMPATIBLE_VERSION,
                f"cniVersion {version!r:.20} is not supported",
                f"ipledger speaks {', '.join(SUPPORTED_VERSIONS)}",
            )
        result = _call(command, config)
        if result:
            _print(result)
    except CniFailure as failure:
        _print(
            {
                "cniVersion": version if version in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[-1],
                "code": failure.code,
                "msg": failure.msg,
                "details": failure.details,
            }
        )
        sys.exit(1)


def _config(raw: str, command: str) -> dict[str, Any]:
    if command == "VERSION" and not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise CniFailure(UNDECODABLE, "the network config on stdin is not JSON", str(e)) from None
    if not isinstance(config, dict):
        raise CniFailure(UNDECODABLE, "the network config on stdin is not a JSON object")
    return config


def _call(command: str, config: dict[str, Any]) -> dict[str, Any] | None:
    ipam = config.get("ipam")
    own = ipam.get("ipledger", {}) if isinstance(ipam, dict) else {}
    socket = own.get("socket", DEFAULT_SOCKET) if isinstance(own, dict) else DEFAULT_SOCKET
    if not isinstance(socket, str) or not socket:
        raise CniFailure(INVALID_CONFIG, "ipam.ipledger.socket: expected a path")
    if isinstance(ipam, dict) and ipam.get("resolvConf") and not ipam.get("dns"):
        ipam["dns"] = _resolv_conf(ipam["resolvConf"])
    body = {
        "config": config,
        "containerId": os.environ.get("CNI_CONTAINERID", ""),
        "ifname": os.environ.get("CNI_IFNAME", ""),
        "args": os.environ.get("CNI_ARGS", ""),
    }
    if command in ("ADD", "DEL", "CHECK"):
        for name, key in (("CNI_CONTAINERID", "containerId"), ("CNI_IFNAME", "ifname")):
            if not body[key]:
                raise CniFailure(INVALID_ENVIRONMENT, f"{name} is not set")
    try:
        status, answer = _post(socket, f"/Cni.{command.capitalize()}", body)
    except (OSError, ValueError) as e:  # _socket.timeout is an OSError
        code = NOT_AVAILABLE if command == "STATUS" else TRY_AGAIN_LATER
        raise CniFailure(
            code,
            f"ipledger is not reachable at {socket}: is 'ipledger serve' running?",
            f"{type(e).__name__}: {e}",
        ) from None
    if status != 200:
        code = int(answer.get("CniCode", TRY_AGAIN_LATER if status == 503 else 999))
        if command == "STATUS":
            code = NOT_AVAILABLE
        raise CniFailure(code, str(answer.get("Err", f"ipledger answered {status}")))
    result = answer.get("result")
    return result if isinstance(result, dict) else None


def _post(path: str, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One HTTP/1.1 POST on a unix socket, ``Connection: close``; the status and JSON answer."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {target} HTTP/1.1\r\nHost: ipledger\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.settimeout(CALL_TIMEOUT)
        connection.connect(path)
        connection.sendall(head + payload)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    finally:
        connection.close()
    response = b"".join(chunks)
    header, _, content = response.partition(b"\r\n\r\n")
    status_line = header.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ValueError(f"not an HTTP answer: {response[:60]!r}")
    if b"chunked" in header.lower():
        raise ValueError("a chunked answer")
    answer = json.loads(content) if content.strip() else {}
    return int(status_line[1]), answer if isinstance(answer, dict) else {}


def _resolv_conf(path: Any) -> dict[str, Any]:
    """A resolv.conf as CNI's DNS object, as host-local reads it."""
    try:
        with open(str(path)) as file:
            lines = file.read().splitlines()
    except OSError as e:
        raise CniFailure(IO_FAILURE, f"ipam.resolvConf: cannot read {path}", str(e)) from None
    dns: dict[str, Any] = {}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver":
            dns.setdefault("nameservers", []).append(values[0])
        elif key == "domain":
            dns["domain"] = values[0]
        elif key == "search":
            dns["search"] = values
        elif key == "options":
            dns.setdefault("options", []).extend(values)
    return dns


def _print(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
