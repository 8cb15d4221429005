"""Settings: read from the environment here and nowhere else."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import netaddr

from driver.domain.addresses import DefaultPool, parse_cidr
from driver.domain.errors import InvalidRequest
from driver.domain.hosts import HOST_NAME_LENGTH, check_host_name
from driver.domain.text import printable
from driver.paths import DEFAULT_CNI_SPOOL, DEFAULT_SOCKET

DEFAULT_DB = "sqlite:////var/lib/ipledger/ipledger.db"
# Outside Docker's own defaults (172.17.0.0/16-172.31.0.0/16, 192.168.0.0/16) so that networks
# of both kinds can live side by side; the IPv6 base is a unique local (RFC 4193) prefix.
DEFAULT_POOLS = '[{"base":"10.128.0.0/9","size":24},{"base":"fd42:1edb::/32","size":64}]'


class SettingsError(ValueError):
    """A setting that does not parse; the message names it."""


def parse_default_pools(text: str) -> tuple[DefaultPool, ...]:
    """Parse pools in the format of Docker's ``default-address-pools``."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(f"IPLEDGER_DEFAULT_POOLS is not JSON: {e}") from None
    if not isinstance(entries, list) or not entries:
        raise SettingsError("IPLEDGER_DEFAULT_POOLS must be a non-empty JSON list")
    pools = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"base", "size"}:
            raise SettingsError(
                f'IPLEDGER_DEFAULT_POOLS entry {entry!r} must be {{"base": CIDR, "size": N}}'
            )
        try:
            base = parse_cidr(entry["base"], "default pool base")
        except InvalidRequest as e:
            raise SettingsError(f"IPLEDGER_DEFAULT_POOLS: {e.message}") from None
        size = entry["size"]
        bits = 32 if base.version == 4 else 128
        if type(size) is not int or not base.prefixlen <= size <= bits:
            raise SettingsError(
                f"IPLEDGER_DEFAULT_POOLS entry {entry!r}: size must be an integer between "
                f"{base.prefixlen} and {bits}"
            )
        pools.append(DefaultPool(base=netaddr.IPNetwork(str(base)), size=size))
    return tuple(pools)


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key as ``tsig-keygen`` writes it: ``key "NAME" { algorithm ALG; secret "B64"; };``"""

    name: str
    algorithm: str
    secret: str
    path: str

    def __repr__(self) -> str:
        return f"TsigKey({self.name!r}, {self.algorithm!r}, from {self.path!r})"  # no secret


_KEY_BLOCK = re.compile(r'key\s+"?([A-Za-z0-9._-]+)"?\s*\{(.*?)\}\s*;', re.DOTALL)
_KEY_FIELD = re.compile(r'(algorithm|secret)\s+"?([^";\s]+)"?\s*;')
TSIG_ALGORITHMS = (
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
)


def read_tsig_key(path: str) -> TsigKey:
    """The key in a file ``tsig-keygen`` wrote; a :class:`SettingsError` naming the file and
    what is wrong with it otherwise."""
    try:
        with open(path) as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read(65536)
    except OSError as e:
        raise SettingsError(
            f"IPLEDGER_DNS_TSIG: cannot read the key file {path!r}: {e.strerror or e}"
        ) from None
    except UnicodeDecodeError:
        raise SettingsError(f"IPLEDGER_DNS_TSIG: {path!r} is not a text key file") from None
    if mode & stat.S_IROTH:
        # as ssh with a private key: the secret signs every change of the zones
        raise SettingsError(
            f"IPLEDGER_DNS_TSIG: the key file {path!r} is readable by every user of this host "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path} (or 640 for a group)"
        )
    # comments dropped, not what is quoted: a base64 secret may hold "//"
    text = re.sub(r'("[^"\n]*")|(?:#|//)[^\n]*', lambda m: m.group(1) or "", text)
    blocks = _KEY_BLOCK.findall(text)
    if len(blocks) != 1:
        raise SettingsError(
            f"IPLEDGER_DNS_TSIG: {path!r} must hold one key as tsig-keygen writes it "
            f'(key "NAME" {{ algorithm hmac-sha256; secret "BASE64"; }};), found {len(blocks)}'
        )
    name, body = blocks[0]
    fields = dict(_KEY_FIELD.findall(body))
    algorithm = fields.get("algorithm", "").lower()
    if algorithm not in TSIG_ALGORITHMS:
        raise SettingsError(
            f"IPLEDGER_DNS_TSIG: key {name!r} in {path!r} has algorithm "
            f"{algorithm or 'none'!r}; expected one of {', '.join(TSIG_ALGORITHMS)}"
        )
    secret = fields.get("secret", "")
    try:
        if not secret or not base64.b64decode(secret, validate=True):
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"IPLEDGER_DNS_TSIG: key {name!r} in {path!r} has no valid base64 secret"
        ) from None
    return TsigKey(name, algorithm, secret, path)


def _dns_settings(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if env.get("IPLEDGER_DNS_SERVER"):
        values["dns_server"] = parse_dns_server(env["IPLEDGER_DNS_SERVER"])
    if env.get("IPLEDGER_DNS_TSIG"):
        values["dns_tsig"] = read_tsig_key(env["IPLEDGER_DNS_TSIG"])
    if "IPLEDGER_DNS_TTL" in env:
        ttl = env["IPLEDGER_DNS_TTL"].strip()
        if not ttl.isdigit() or not 0 <= int(ttl) <= 2147483647:
            raise SettingsError(
                f"IPLEDGER_DNS_TTL must be a number of seconds 0 or more, not {ttl!r:.40}"
            )
        values["dns_ttl"] = int(ttl)
    return values


_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?"
)


def parse_dns_server(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address; port 53 by default. A
    host is an address or a name (resolved at each connection, docs/dns.md)."""
    text = text.strip()
    host, port, bracketed = text, "53", text.startswith("[")
    if bracketed:
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            host = ""
        port = rest.removeprefix(":") if rest else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if ":" in host or bracketed:
        valid = netaddr.valid_ipv6(host)
    else:
        valid = bool(_HOST_NAME.fullmatch(host))
    if not valid or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(
            f"IPLEDGER_DNS_SERVER {text!r:.80} must be HOST, HOST:PORT or [IPV6]:PORT (HOST a "
            "name or an address, PORT 1-65535)"
        )
    return host, int(port)


@dataclass(frozen=True)
class Settings:
    """Everything ipledger can be told; built once, by :meth:`from_env` or by a test."""

    socket: str = DEFAULT_SOCKET
    db_url: str = DEFAULT_DB
    workers: int = 2
    threads: int = 4
    log_level: str = "info"
    default_pools: tuple[DefaultPool, ...] = field(
        default_factory=lambda: parse_default_pools(DEFAULT_POOLS)
    )
    sqlite_synchronous: str = "NORMAL"
    busy_timeout_ms: int = 5000
    # Every plugin call is answered within this many seconds: its result, or a 503.
    call_timeout: float = 5.0
    # Recorded on pools, leases and history; several hosts may share one PostgreSQL ledger.
    host_id: str = field(default_factory=lambda: default_host_id())
    log_format: str = "text"
    # host:port (a bare port means 127.0.0.1) for Prometheus; None keeps metrics off.
    metrics_addr: tuple[str, int] | None = None
    # where ipledger-cni records the DELs it could not hand over; applied at start and on ADD
    cni_spool: str = DEFAULT_CNI_SPOOL
    # this host's human name in the ledger (``ipledger hosts``, the status page)
    host_name: str = field(default_factory=lambda: os.uname().nodename or "localhost")
    # the DNS server that takes the leases' RFC 2136 updates (host, port); None: none published
    dns_server: tuple[str, int] | None = None
    # the TSIG key the updates are signed with, as read from IPLEDGER_DNS_TSIG; None: unsigned
    dns_tsig: TsigKey | None = None
    dns_ttl: int = 60

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``IPLEDGER_*`` variables; non-None ``overrides`` (CLI flags) win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if "IPLEDGER_SOCKET" in env:
            values["socket"] = env["IPLEDGER_SOCKET"]
        if "IPLEDGER_DB" in env:
            values["db_url"] = env["IPLEDGER_DB"]
        for name, key in (
            ("workers", "IPLEDGER_WORKERS"),
            ("threads", "IPLEDGER_THREADS"),
            ("busy_timeout_ms", "IPLEDGER_BUSY_TIMEOUT_MS"),
        ):
            if key in env:
                values[name] = _positive_int(key, env[key])
        if "IPLEDGER_CALL_TIMEOUT" in env:
            values["call_timeout"] = _positive_seconds(
                "IPLEDGER_CALL_TIMEOUT", env["IPLEDGER_CALL_TIMEOUT"]
            )
        if "IPLEDGER_LOG_LEVEL" in env:
            values["log_level"] = env["IPLEDGER_LOG_LEVEL"]
        if "IPLEDGER_DEFAULT_POOLS" in env:
            values["default_pools"] = parse_default_pools(env["IPLEDGER_DEFAULT_POOLS"])
        if "IPLEDGER_SQLITE_SYNCHRONOUS" in env:
            values["sqlite_synchronous"] = env["IPLEDGER_SQLITE_SYNCHRONOUS"]
        if env.get("IPLEDGER_HOST_ID"):
            values["host_id"] = env["IPLEDGER_HOST_ID"]
        if "IPLEDGER_LOG_FORMAT" in env:
            values["log_format"] = env["IPLEDGER_LOG_FORMAT"]
        if env.get("IPLEDGER_METRICS_ADDR"):
            values["metrics_addr"] = parse_listen_addr(
                "IPLEDGER_METRICS_ADDR", env["IPLEDGER_METRICS_ADDR"]
            )
        if env.get("IPLEDGER_CNI_SPOOL"):
            values["cni_spool"] = env["IPLEDGER_CNI_SPOOL"]
        if env.get("IPLEDGER_HOST_NAME"):
            values["host_name"] = env["IPLEDGER_HOST_NAME"]
        values.update(_dns_settings(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    def validated(self) -> Settings:
        level = self.log_level.lower()
        if level not in ("debug", "info", "warning", "error", "critical"):
            raise SettingsError(f"IPLEDGER_LOG_LEVEL {self.log_level!r} is not a log level")
        sync = self.sqlite_synchronous.upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise SettingsError(
                f"IPLEDGER_SQLITE_SYNCHRONOUS {self.sqlite_synchronous!r} "
                "must be OFF, NORMAL, FULL or EXTRA"
            )
        if not self.socket:
            raise SettingsError("IPLEDGER_SOCKET must not be empty")
        log_format = self.log_format.lower()
        if log_format not in ("text", "json"):
            raise SettingsError(f"IPLEDGER_LOG_FORMAT {self.log_format!r} must be text or json")
        if not self.host_id or len(self.host_id) > 64:
            raise SettingsError("IPLEDGER_HOST_ID must be 1 to 64 characters")
        if printable(self.host_id) != self.host_id:
            # it is a label of the metrics, a column of every listing and a line of the logs
            raise SettingsError(
                f"IPLEDGER_HOST_ID '{printable(self.host_id)}' must not hold control characters"
            )
        if not os.path.isabs(self.cni_spool) or "\0" in self.cni_spool:
            raise SettingsError(
                f"IPLEDGER_CNI_SPOOL {self.cni_spool!r:.80} must be the absolute path of a "
                "directory"
            )
        try:
            check_host_name(self.host_name)
        except InvalidRequest:
            raise SettingsError(
                f"IPLEDGER_HOST_NAME {self.host_name!r:.80} must be 1 to {HOST_NAME_LENGTH} "
                "characters, without NUL"
            ) from None
        check_db_url(self.db_url)
        return replace(self, log_level=level, sqlite_synchronous=sync, log_format=log_format)

    @property
    def driver_name(self) -> str:
        """The name Docker knows the plugin by: the socket's file name without ``.sock``."""
        name = os.path.basename(self.socket)
        return name.removesuffix(".sock")


@dataclass(frozen=True)
class SettingHelp:
    """How one field of :class:`Settings` is set and what it means, for ``serve --help``."""

    field: str
    variable: str
    default: str
    meaning: str
    flag: str | None = None


# One entry per field of Settings, in its order (a test compares them, and each variable with
# what from_env reads).
SETTINGS = (
    SettingHelp(
        "socket",
        "IPLEDGER_SOCKET",
        DEFAULT_SOCKET,
        "the plugin socket; the driver's name is its file name without .sock",
        "--socket",
    ),
    SettingHelp("db_url", "IPLEDGER_DB", DEFAULT_DB, "SQLAlchemy URL of the ledger", "--db"),
    SettingHelp("workers", "IPLEDGER_WORKERS", "2", "gunicorn worker processes", "--workers"),
    SettingHelp("threads", "IPLEDGER_THREADS", "4", "threads per worker", "--threads"),
    SettingHelp(
        "log_level", "IPLEDGER_LOG_LEVEL", "info", "debug, info, warning or error", "--log-level"
    ),
    SettingHelp(
        "default_pools",
        "IPLEDGER_DEFAULT_POOLS",
        DEFAULT_POOLS,
        "where subnets come from when Docker asks for none, as Docker's default-address-pools",
    ),
    SettingHelp(
        "sqlite_synchronous",
        "IPLEDGER_SQLITE_SYNCHRONOUS",
        "NORMAL",
        "SQLite's synchronous: NORMAL survives any crash of ipledger, FULL a power loss too",
    ),
    SettingHelp(
        "busy_timeout_ms",
        "IPLEDGER_BUSY_TIMEOUT_MS",
        "5000",
        "milliseconds a write waits for SQLite's write lock at most",
    ),
    SettingHelp(
        "call_timeout",
        "IPLEDGER_CALL_TIMEOUT",
        "5",
        "seconds within which every plugin call is answered (or 503s), and a connection "
        "must deliver a whole request",
    ),
    SettingHelp(
        "host_id",
        "IPLEDGER_HOST_ID",
        "/etc/machine-id",
        "this host's name in the ledger, on pools, leases and history",
    ),
    SettingHelp("log_format", "IPLEDGER_LOG_FORMAT", "text", "text, or json: one object a line"),
    SettingHelp(
        "metrics_addr",
        "IPLEDGER_METRICS_ADDR",
        "off",
        "PORT (on 127.0.0.1) or HOST:PORT to serve the status page and /metrics on",
    ),
    SettingHelp(
        "cni_spool",
        "IPLEDGER_CNI_SPOOL",
        DEFAULT_CNI_SPOOL,
        "the spool of CNI DELs made while ipledger was down (ipam.ipledger.spool in a "
        "conflist): applied at start and before a network's ADD",
    ),
    SettingHelp(
        "host_name",
        "IPLEDGER_HOST_NAME",
        "the host name",
        f"this host's human name in the ledger (ipledger hosts, the status page), 1 to "
        f"{HOST_NAME_LENGTH} characters",
    ),
    SettingHelp(
        "dns_server",
        "IPLEDGER_DNS_SERVER",
        "off",
        "HOST[:PORT] of the DNS server that takes RFC 2136 updates of the leases of pools "
        "with ipledger.dns_zone (docs/dns.md)",
    ),
    SettingHelp(
        "dns_tsig",
        "IPLEDGER_DNS_TSIG",
        "off",
        "a key file as tsig-keygen writes it: the updates and zone transfers are signed with it",
    ),
    SettingHelp("dns_ttl", "IPLEDGER_DNS_TTL", "60", "the TTL of the records published"),
)


def setting_help(field_name: str) -> SettingHelp:
    return next(s for s in SETTINGS if s.field == field_name)


def check_db_url(url: str) -> None:
    """A database URL that SQLAlchemy can parse and whose driver is installed, or a
    :class:`SettingsError` that says what is wrong or what to install."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    example = (
        "sqlite:////var/lib/ipledger/ipledger.db or "
        "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
    )
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise SettingsError(
            f"invalid database URL {url!r:.120} ({e}): expected {example}"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(
            f"invalid database URL {url!r:.120}: ipledger keeps its ledger in "
            f"SQLite or PostgreSQL, e.g. {example}"
        )
    try:
        dialect.import_dbapi()
    except ImportError:
        if parsed.get_backend_name() == "postgresql":
            raise SettingsError(
                "a PostgreSQL ledger needs the psycopg driver: pip install 'ipledger[postgres]', "
                "and use a postgresql+psycopg:// URL"
            ) from None
        raise SettingsError(
            f"the database driver for {parsed.drivername} is not installed"
        ) from None


def socket_passed_by_systemd(env: Mapping[str, str] | None = None) -> bool:
    """Whether systemd passed the listening socket (socket activation: ``LISTEN_FDS``); not a
    setting, so not in :class:`Settings`: systemd tells it, an operator does not."""
    return "LISTEN_FDS" in (os.environ if env is None else env)


def default_host_id() -> str:
    """The machine id (as systemd keeps it), else the host name."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as f:
                machine_id = f.read().strip()
        except OSError:
            continue
        if machine_id:
            return machine_id
    return os.uname().nodename or "localhost"


def parse_listen_addr(key: str, text: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1), ``HOST:PORT`` or ``[V6]:PORT``."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{key} {text!r} must be PORT or HOST:PORT with a port 1-65535")
    return host, int(port)


def _positive_seconds(key: str, text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 3600:
        raise SettingsError(f"{key} must be a number of seconds from 0.1 to 3600, not {text!r}")
    return seconds


def _positive_int(key: str, text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise SettingsError(f"{key} must be a positive integer, not {text!r}")
    return int(text)
