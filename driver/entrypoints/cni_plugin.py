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
import stat
import sys

from driver.domain.cni_spec import (
    COMMANDS,
    INCOMPATIBLE_VERSION,
    INTRODUCED,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    IO_FAILURE,
    MAX_CALL_BODY,
    MAX_GC_BODY,
    NOT_AVAILABLE,
    SUPPORTED_VERSIONS,
    TRY_AGAIN_LATER,
    UNDECODABLE,
    UNEXPECTED,
    UNVERSIONED,
    has_command,
)
from driver.paths import DEFAULT_CNI_SPOOL, DEFAULT_SOCKET

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


# CNI_CONTAINERID and CNI_IFNAME as the spec (and libcni) allows them
_CONTAINER_ID = "an alphanumeric, then alphanumerics, '_', '.' or '-'"
_IFNAME = "1 to 15 characters, none of them '/', ':' or a space, and not '.' or '..'"
# the longest path a unix socket can have (sun_path, with its NUL)
_MAX_SOCKET_PATH = 107
# the largest resolv.conf read: glibc reads a few kilobytes of it
_MAX_RESOLV_CONF = 1024 * 1024


def main() -> None:
    """Run one CNI command. Every failure, unexpected ones too, is CNI's error object with a code,
    on stdout (on stderr when stdout is closed), and exit status 1; never a traceback."""
    sys.exit(_run())


def _run() -> int:
    version = SUPPORTED_VERSIONS[-1]
    try:
        if sys.stdout is None:
            # checked first: a lease whose result cannot be printed would be a lease nobody knows
            raise CniFailure(
                IO_FAILURE,
                "stdout is closed: ipledger-cni has nowhere to print its result",
                "the runtime runs plugins with stdout open; nothing was asked of the ledger",
            )
        raw = _stdin()
        command = _environment("CNI_COMMAND")
        if command not in COMMANDS:
            raise CniFailure(
                INVALID_ENVIRONMENT,
                f"CNI_COMMAND: {command!r:.40} is not one of {', '.join(COMMANDS)}",
            )
        config = _config(raw, command)
        asked = config.get("cniVersion")
        if command == "VERSION":
            echoed = asked if isinstance(asked, str) and asked else version
            _print({"cniVersion": echoed, "supportedVersions": list(SUPPORTED_VERSIONS)})
            return 0
        if asked is None or asked == "":
            asked = UNVERSIONED  # as libcni reads a config without one
        if asked not in SUPPORTED_VERSIONS:
            raise CniFailure(
                INCOMPATIBLE_VERSION,
                f"cniVersion {asked!r:.20} is not supported",
                f"ipledger speaks {', '.join(SUPPORTED_VERSIONS)}",
            )
        version = asked  # every answer from here on is in the request's version
        if not has_command(version, command):
            # as libcni's plugins answer it (code 1); a libcni runtime never asks
            raise CniFailure(
                INCOMPATIBLE_VERSION,
                f"{command} is not in CNI {version}: it came with {INTRODUCED[command]}",
                f"the config's cniVersion must be {INTRODUCED[command]} or later for {command}",
            )
        result = _call(command, config)
        if result:
            _print(result)
        return 0
    except CniFailure as e:
        failure = e
    except Exception as e:  # the last guard: still CNI's error object, never a traceback
        failure = CniFailure(
            UNEXPECTED,
            f"internal error in ipledger-cni ({type(e).__name__})",
            f"{e!s:.300}",
        )
    error = {
        "cniVersion": version,
        "code": failure.code,
        "msg": failure.msg,
        "details": failure.details,
    }
    try:
        _print(error)
    except CniFailure:
        _warn(error)
    return 1


def _stdin() -> str:
    """The network config the runtime wrote on stdin; empty when stdin is closed."""
    stream = sys.stdin
    if stream is None:
        return ""
    try:
        data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode()
    except (OSError, ValueError) as e:
        raise CniFailure(IO_FAILURE, "cannot read the network config on stdin", str(e)) from None
    try:
        return str(data.decode())
    except UnicodeDecodeError as e:
        raise CniFailure(UNDECODABLE, "the network config on stdin is not UTF-8", str(e)) from None


def _environment(name: str) -> str:
    """A ``CNI_*`` variable, as text; "" when it is not set."""
    value = os.environ.get(name, "")
    try:
        value.encode()
    except UnicodeEncodeError:  # bytes that are not UTF-8, as Python decodes them
        raise CniFailure(INVALID_ENVIRONMENT, f"{name}: {value!r:.60} is not UTF-8 text") from None
    return value


def _config(raw: str, command: str) -> dict[str, Any]:
    if command == "VERSION" and not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise CniFailure(
            UNDECODABLE, "the network config on stdin is not JSON", f"{e!s:.200}"
        ) from None
    if not isinstance(config, dict):
        raise CniFailure(UNDECODABLE, "the network config on stdin is not a JSON object")
    return config


def _identity() -> tuple[str, str]:
    """CNI_CONTAINERID and CNI_IFNAME, checked as the spec says (CNI code 4 when wrong)."""
    container_id, ifname = _environment("CNI_CONTAINERID"), _environment("CNI_IFNAME")
    for name, value, rule in (
        ("CNI_CONTAINERID", container_id, _CONTAINER_ID),
        ("CNI_IFNAME", ifname, _IFNAME),
    ):
        if not value:
            raise CniFailure(INVALID_ENVIRONMENT, f"{name} is not set")
        if not _valid(name, value):
            raise CniFailure(INVALID_ENVIRONMENT, f"{name}: {value!r:.80} is not {rule}")
    return container_id, ifname


def _valid(name: str, value: str) -> bool:
    if name == "CNI_IFNAME":
        return (
            len(value) <= 15
            and value not in (".", "..")
            and not any(c in "/:" or c.isspace() for c in value)
        )
    return (
        value[0].isascii()
        and value[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "_.-") for c in value)
    )


def _call(command: str, config: dict[str, Any]) -> dict[str, Any] | None:
    ipam = config.get("ipam")
    own = ipam.get("ipledger", {}) if isinstance(ipam, dict) else {}
    socket = own.get("socket", DEFAULT_SOCKET) if isinstance(own, dict) else DEFAULT_SOCKET
    if (
        not isinstance(socket, str)
        or not socket
        or "\0" in socket
        or len(socket.encode(errors="surrogateescape")) > _MAX_SOCKET_PATH
    ):
        raise CniFailure(
            INVALID_CONFIG,
            f"ipam.ipledger.socket: expected the path of a unix socket, not {socket!r:.80}",
        )
    if isinstance(ipam, dict) and ipam.get("resolvConf") and not ipam.get("dns"):
        ipam["dns"] = _resolv_conf(ipam["resolvConf"])
    container_id, ifname = "", ""
    if command in ("ADD", "DEL", "CHECK"):
        container_id, ifname = _identity()
    body = {
        "config": config,
        "containerId": container_id,
        "ifname": ifname,
        "args": _environment("CNI_ARGS") if command == "ADD" else "",
    }
    try:
        payload = json.dumps(body).encode()
    except (ValueError, RecursionError) as e:
        raise CniFailure(UNDECODABLE, "the network config cannot be sent", f"{e!s:.200}") from None
    bound = MAX_GC_BODY if command == "GC" else MAX_CALL_BODY
    if len(payload) > bound:
        # permanent: the same config is as large on every retry, so not 11 (try again later)
        raise CniFailure(
            INVALID_CONFIG,
            f"the network config is too large: {command} would send {len(payload):,} bytes, "
            f"and ipledger takes at most {bound:,} on {command}",
            f"ipledger takes {MAX_CALL_BODY:,} bytes on ADD, DEL, CHECK and STATUS, "
            f"and {MAX_GC_BODY:,} on GC",
        )
    try:
        status, answer = _post(socket, f"/Cni.{command.capitalize()}", payload)
    except (OSError, ValueError) as e:  # _socket.timeout is an OSError
        if command == "DEL":
            _spool(own, config, container_id, ifname, f"not reachable at {socket}", e)
            return None
        code = NOT_AVAILABLE if command == "STATUS" else TRY_AGAIN_LATER
        raise CniFailure(
            code,
            f"ipledger is not reachable at {socket}: is 'ipledger serve' running?",
            f"{type(e).__name__}: {e}",
        ) from None
    if status != 200:
        given = answer.get("CniCode")
        if command == "DEL" and (status == 503 or given == TRY_AGAIN_LATER):
            reason = str(answer.get("Err") or f"answered {status}")
            _spool(own, config, container_id, ifname, f"at {socket} could not: {reason}", None)
            return None
        code = given if type(given) is int else TRY_AGAIN_LATER if status == 503 else UNEXPECTED
        if command == "STATUS":
            code = NOT_AVAILABLE
        raise CniFailure(code, str(answer.get("Err") or f"ipledger answered {status}"))
    result = answer.get("result")
    return result if isinstance(result, dict) else None


def _spool(
    own: Any, config: dict[str, Any], container_id: str, ifname: str, why: str, e: Any
) -> None:
    """DEL without the server: the release recorded durably in the node's spool, which the
    server applies when it is back (at its start, and before an ADD or DEL of the network). A DEL
    must not fail: the bridge plugin has removed the veth already, and a DEL retried without it
    never removes the ipMasq NAT chain. CniFailure (11) only when the spool cannot be written."""
    spool = own.get("spool", DEFAULT_CNI_SPOOL) if isinstance(own, dict) else DEFAULT_CNI_SPOOL
    if not isinstance(spool, str) or not spool.startswith("/") or "\0" in spool:
        raise CniFailure(
            INVALID_CONFIG,
            f"ipam.ipledger.spool: expected the absolute path of a directory, not {spool!r:.80}",
        )
    network = config.get("name")
    if not isinstance(network, str) or not network:
        raise CniFailure(INVALID_CONFIG, "name: expected the network's name")
    from driver.adapters.spool import spool_release

    try:
        spool_release(spool, network, container_id, ifname)
    except OSError as failed:
        raise CniFailure(
            TRY_AGAIN_LATER,
            f"ipledger {why}, and the release could not be spooled in {spool}: "
            f"{failed.strerror or failed}",
            f"{type(e).__name__}: {e}" if e is not None else "",
        ) from None


def _post(path: str, target: str, payload: bytes) -> tuple[int, dict[str, Any]]:
    """One HTTP/1.1 POST on a unix socket, ``Connection: close``; the status and JSON answer."""
    head = (
        f"POST {target} HTTP/1.1\r\nHost: ipledger\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    chunks = []
    try:
        connection.settimeout(CALL_TIMEOUT)
        connection.connect(path)
        try:  # noqa: SIM105 (no contextlib: it is not imported, to start fast)
            connection.sendall(head + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading it all: its answer says why, if it came
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            if not chunks:
                raise
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
    if not isinstance(path, str) or "\0" in path:
        raise CniFailure(
            INVALID_CONFIG, f"ipam.resolvConf: expected a file's path, not {path!r:.80}"
        )
    try:
        # not blocking on a FIFO, and never more than a resolv.conf can be
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CniFailure(IO_FAILURE, f"ipam.resolvConf: {path} is not a regular file")
            data = os.read(fd, _MAX_RESOLV_CONF + 1)
        finally:
            os.close(fd)
    except OSError as e:
        raise CniFailure(IO_FAILURE, f"ipam.resolvConf: cannot read {path}", str(e)) from None
    if len(data) > _MAX_RESOLV_CONF:
        raise CniFailure(
            IO_FAILURE, f"ipam.resolvConf: {path} is larger than {_MAX_RESOLV_CONF:,} bytes"
        )
    try:
        if b"\0" in data:
            raise ValueError("a NUL byte")
        text = data.decode()
    except ValueError as e:
        raise CniFailure(
            UNDECODABLE, f"ipam.resolvConf: {path} is not a text file", f"{e!s:.200}"
        ) from None
    dns: dict[str, Any] = {}
    for line in text.splitlines():
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
    """Print on stdout; CniFailure (code 5) when stdout cannot be written."""
    _write(sys.stdout, document)


def _warn(document: dict[str, Any]) -> None:
    """Print on stderr, when stdout cannot take it; if stderr cannot either, nothing is left."""
    try:  # noqa: SIM105
        _write(sys.stderr, document)
    except CniFailure:
        pass


def _write(stream: Any, document: dict[str, Any]) -> None:
    try:
        if stream is None:
            raise OSError("closed")
        stream.write(json.dumps(document) + "\n")
        stream.flush()
    except (OSError, ValueError) as e:
        _drop(stream)
        raise CniFailure(IO_FAILURE, f"cannot write the answer: {e}") from None


def _drop(stream: Any) -> None:
    """Point a stream that failed at /dev/null, so that Python's exit does not try to flush what
    it holds into it again (and print that it failed)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    main()
