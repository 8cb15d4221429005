"""Pools as Docker and ipledger name them: address spaces, owners, PoolIDs, Docker's options
and ipledger's own, and the reuse policy they set. Pure: no Flask, no SQLAlchemy."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from driver.domain import addresses as allocator
from driver.domain.errors import InvalidRequest

# The owner of pools that several hosts share (ipledger.shared): every host's plan.
SHARED = "shared"

LOCAL_SPACE = "LocalDefault"
GLOBAL_SPACE = "GlobalDefault"
SPACES = (LOCAL_SPACE, GLOBAL_SPACE)
LOCAL_OWNER = "local"

GATEWAY_TYPE = "com.docker.network.gateway"
REQUEST_ADDRESS_TYPE = "RequestAddressType"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
NAME_OPTION = "com.docker.network.endpoint.name"
SERIAL_OPTION = "com.docker.network.ipam.serial"

# ipledger's own network options (docker network create --ipam-opt ...)
REUSE_OPTION = "ipledger.reuse"
QUARANTINE_OPTION = "ipledger.quarantine"
HOLD_OPTION = "ipledger.hold"
SHARED_OPTION = "ipledger.shared"
OWN_OPTIONS = (REUSE_OPTION, QUARANTINE_OPTION, HOLD_OPTION, SHARED_OPTION)
SHARED_PREFIX = "shared/"
_SHARED_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class ReusePolicy:
    """How a pool hands released addresses out again."""

    reuse: str = "lowest"
    quarantine_s: int = 0
    hold_s: int = 0


def reuse_policy(options: Mapping[str, str]) -> ReusePolicy:
    """The ``ipledger.*`` options of a pool; anything unknown or malformed is refused."""
    unknown = sorted(k for k in options if k.startswith("ipledger.") and k not in OWN_OPTIONS)
    if unknown:
        raise InvalidRequest(
            f"unknown option {unknown[0]!r:.80}: ipledger's options are {', '.join(OWN_OPTIONS)}"
        )
    reuse = options.get(REUSE_OPTION, "lowest").strip().lower()
    if str(options.get(SERIAL_OPTION, "")).lower() == "true":
        reuse = "serial"
    if reuse not in ("lowest", "serial"):
        raise InvalidRequest(
            f"invalid {REUSE_OPTION} {options[REUSE_OPTION]!r:.40}: expected lowest or serial"
        )
    durations = [
        allocator.parse_duration(options[key], key) if key in options else 0
        for key in (QUARANTINE_OPTION, HOLD_OPTION)
    ]
    return ReusePolicy(reuse, *durations)


@dataclass(frozen=True)
class PoolGrant:
    pool_id: str
    pool: str


def pool_id_for(space: str, cidr: str, subpool: str | None, shared: str | None = None) -> str:
    """Deterministic, like the built-in ``LocalDefault/172.28.0.0/16/172.28.5.0/24``; a shared
    pool's starts with ``shared/NAME/``."""
    pool_id = f"{space}/{cidr}" + (f"/{subpool}" if subpool else "")
    return f"{SHARED_PREFIX}{shared}/{pool_id}" if shared is not None else pool_id


def own_plan(shared_ledger: bool, host_id: str) -> str:
    """The owner of this host's own pools: its id in a shared ledger; an SQLite ledger has one
    host, whose pools are ``local`` whatever its id."""
    return host_id if shared_ledger else LOCAL_OWNER


def owner_of(pool_id: str, own: str) -> str:
    """Whose plan a PoolID is in: every host's for a shared pool, else ``own``."""
    return SHARED if pool_id.startswith(SHARED_PREFIX) else own


def shared_name(options: Mapping[str, str]) -> str | None:
    """The ``ipledger.shared`` name, checked: letters, digits, ``.``, ``_`` and ``-``."""
    name = options.get(SHARED_OPTION)
    if name is None:
        return None
    if not _SHARED_NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid {SHARED_OPTION} {name!r:.80}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return name


def describe(policy: ReusePolicy, shared: str | None = None) -> str | None:
    if policy == ReusePolicy() and shared is None:
        return None
    parts = [f"reuse={policy.reuse}"] + ([f"shared={shared}"] if shared else [])
    if policy.quarantine_s:
        parts.append(f"quarantine={policy.quarantine_s}s")
    if policy.hold_s:
        parts.append(f"hold={policy.hold_s}s")
    return " ".join(parts)
