"""Real DNS servers for the tests: BIND 9 (``named -g``) and Knot DNS (``knotd``), each in a
directory of its own under /tmp/ipldns-*, on a loopback port of 25300-25399, with a TSIG key
and TSIG-signed dynamic zones: apps.example.test, 2.0.192.in-addr.arpa and the reverse zone
of 2001:db8:23::/64."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ZONE = "apps.example.test"
REVERSE4 = "2.0.192.in-addr.arpa"
REVERSE6 = "0.0.0.0.3.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa"  # 2001:db8:23::/64
ZONES = (ZONE, REVERSE4, REVERSE6)
KEY_NAME = "ipledger-key"
PORTS = range(25300, 25400)
SOA = (
    "$TTL 60\n@ IN SOA ns.apps.example.test. hostmaster.apps.example.test. "
    "( 1 60 60 3600 60 )\n  IN NS ns.apps.example.test.\n"
)


def free_port() -> int:
    """A port of this helper's range free on 127.0.0.1 for TCP and UDP alike."""
    for port in PORTS:
        with contextlib.ExitStack() as stack:
            try:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = stack.enter_context(socket.socket(socket.AF_INET, kind))
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 25300-25399")


def write_key(path: Path, name: str = KEY_NAME, secret: bytes | None = None) -> str:
    """A key file as tsig-keygen writes it; its secret (base64)."""
    if secret is None:
        text = subprocess.run(
            ["tsig-keygen", "-a", "hmac-sha256", name], check=True, capture_output=True, text=True
        ).stdout
        path.write_text(text)
        path.chmod(0o600)  # ipledger refuses a key every user may read
        found = re.search(r'secret "([^"]+)"', text)
        assert found
        return found.group(1)
    encoded = base64.b64encode(secret).decode()
    path.write_text(f'key "{name}" {{\n\talgorithm hmac-sha256;\n\tsecret "{encoded}";\n}};\n')
    path.chmod(0o600)
    return encoded


class DnsServer:
    """One server process; ``kind`` is ``bind`` or ``knot``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.dir = Path(tempfile.mkdtemp(prefix=f"ipldns-{kind}-"))
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.key_path = self.dir / "ipledger-key.conf"
        self.secret = write_key(self.key_path)
        self.log_path = self.dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_zones()
        self._write_config()

    @property
    def _dig(self) -> list[str]:
        return ["dig", "@127.0.0.1", "-p", str(self.port)]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _zone_file(self, zone: str) -> Path:
        folder = self.dir / "zones" if self.kind == "knot" else self.dir
        folder.mkdir(exist_ok=True)
        return folder / f"{zone}.zone"

    def _write_zones(self) -> None:
        for zone in ZONES:
            extra = "ns IN A 127.0.0.1\n" if zone == ZONE else ""
            self._zone_file(zone).write_text(SOA + extra)

    def _write_config(self) -> None:
        d = self.dir
        if self.kind == "bind":
            zones = "".join(
                f'zone "{z}" {{ type primary; file "{z}.zone"; '
                f"update-policy {{ grant {KEY_NAME} zonesub ANY; }}; }};\n"
                for z in ZONES
            )
            (d / "named.conf").write_text(
                f'include "{self.key_path}";\n'
                f'options {{ directory "{d}"; pid-file "{d}/named.pid"; '
                f'session-keyfile "{d}/session.key"; managed-keys-directory "{d}";\n'
                f"  listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n"
                "  recursion no; dnssec-validation no; notify no;\n"
                f"  allow-transfer {{ key {KEY_NAME}; }}; }};\n"
                "controls { };\n"
                "logging { category update { default_stderr; }; };\n" + zones
            )
            return
        (d / "run").mkdir(exist_ok=True)
        (d / "db").mkdir(exist_ok=True)
        zones = "".join(f"  - domain: {z}\n" for z in ZONES)
        (d / "knot.conf").write_text(
            f"server:\n  listen: [127.0.0.1@{self.port}]\n  rundir: {d}/run\n"
            f"log:\n  - target: stderr\n    any: info\n"
            f"database:\n  storage: {d}/db\n"
            f"key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {self.secret}\n"
            f"acl:\n  - id: ipledger\n    key: {KEY_NAME}\n    action: [update, transfer]\n"
            f"template:\n  - id: default\n    storage: {d}/zones\n"
            '    file: "%s.zone"\n    acl: ipledger\n    zonefile-sync: -1\n'
            f"zone:\n{zones}"
        )

    def start(self) -> None:
        command = (
            ["named", "-g", "-c", str(self.dir / "named.conf")]
            if self.kind == "bind"
            else ["knotd", "-c", str(self.dir / "knot.conf")]
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not answer within 15 s: {self.log_tail()}")

    def _answers(self) -> bool:
        result = subprocess.run(
            [*self._dig, "+tcp", "+short", "+time=1", "+tries=1", ZONE, "SOA"],
            capture_output=True,
            text=True,
        )
        return result.returncode == 0 and "hostmaster" in result.stdout

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def dig(self, name: str, rdtype: str = "A") -> list[str]:
        """What the server answers for ``name`` (``dig +short``)."""
        extra = ["-x", name] if rdtype == "PTR" else [name, rdtype]
        result = subprocess.run(
            [*self._dig, "+tcp", "+short", "+time=2", *extra],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(line.rstrip(".") for line in result.stdout.split())

    def records(self, zone: str = ZONE) -> set[tuple[str, str, str]]:
        """(name, type, value) of the zone's A, AAAA and PTR records, by a signed AXFR."""
        result = subprocess.run(
            [*self._dig, "-k", str(self.key_path), "+noall", "+answer", zone, "AXFR"],
            capture_output=True,
            text=True,
            check=True,
        )
        found = set()
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[3] in ("A", "AAAA", "PTR") and parts[0] != f"ns.{ZONE}.":
                found.add((parts[0].rstrip("."), parts[3], parts[4].rstrip(".")))
        return found

    def update_log(self) -> list[str]:
        """BIND's lines of each record an update added or deleted."""
        text = self.log_path.read_text(errors="replace")
        return re.findall(r"updating zone '[^']+': ((?:adding|deleting) an RR at .*)", text)
