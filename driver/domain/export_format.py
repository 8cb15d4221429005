"""The shape of an ``ipledger export``, checked before anything of it is imported.

:func:`validate` names the first field that is wrong (``subnets[0].leases[2].address: ...``), so
that a malformed file is refused with a clear error; :func:`subnet_facts` then gives each subnet
to :mod:`driver.domain.invariants`, which refuses what breaks a rule of the ledger. An import
never stops half-way on bad data: whatever fails after both is a bug, and is not dressed up as
a malformed export.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from driver.domain import addresses as allocator
from driver.domain import invariants
from driver.domain.addresses import Subnet
from driver.domain.errors import InvalidRequest
from driver.domain.pools import DETAIL_LENGTH, HOLDER_NAME_LENGTH, LeaseKind, Reuse

EXPORT_FORMAT = "ipledger-export/1"

Check = Callable[[Any, str], None]


def malformed(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"malformed export: {path}: {message}")


def _type(expected: type | tuple[type, ...], words: str, optional: bool = False) -> Check:
    def check(value: Any, path: str) -> None:
        if value is None and optional:
            return
        if not isinstance(value, expected) or isinstance(value, bool):
            raise malformed(path, f"expected {words}, not {type(value).__name__}")

    return check


def _text(longest: int, optional: bool = False) -> Check:
    """A string of at most ``longest`` characters (what its column holds on every database)."""
    string = _type(str, "a string", optional)

    def check(value: Any, path: str) -> None:
        string(value, path)
        if value is not None and len(value) > longest:
            raise malformed(path, f"longer than {longest} characters")

    return check


TEXT = _type(str, "a string")
INTEGER = _type(int, "an integer")
OBJECT = _type(dict, "an object")


def _number(value: Any, path: str) -> None:
    _type((int, float), "a number")(value, path)
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        shown = value if isinstance(value, float) else f"a {len(str(abs(value)))}-digit number"
        raise malformed(path, f"expected a finite number, not {shown}")


def _label(value: Any, path: str) -> None:
    _text(255)(value, path)
    if not value.strip():
        raise malformed(path, "a reservation needs a label")


def _options(value: Any, path: str) -> None:
    """Docker's options of a pool: strings by name, as Docker sends them."""
    OBJECT(value, path)
    for key, option in value.items():
        TEXT(option, f"{path}.{key:.80}")


def _timestamp(value: Any, path: str) -> None:
    _text(64)(value, path)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise malformed(path, f"invalid timestamp {value!r:.40}") from None


def _cidr(value: Any, path: str) -> None:
    _text(64)(value, path)
    try:
        allocator.parse_cidr(value, "subnet")
    except InvalidRequest:
        raise malformed(path, f"invalid subnet {value!r:.60}") from None


def _subpool(value: Any, path: str) -> None:
    """An ip-range: Docker's (a CIDR) or a CNI range's (FIRST-LAST)."""
    _text(64)(value, path)
    if invariants.subpool_bounds(value) is None:
        raise malformed(path, f"invalid ip-range {value!r:.60}: expected a CIDR or FIRST-LAST")


def _address(value: Any, path: str) -> None:
    _text(64)(value, path)
    try:
        allocator.parse_address(value)
    except InvalidRequest:
        raise malformed(path, f"invalid address {value!r:.60}") from None


def _optional(check: Check) -> Check:
    def optional(value: Any, path: str) -> None:
        if value is not None:
            check(value, path)

    return optional


def _one_of(choices: tuple[str, ...]) -> Check:
    def one_of(value: Any, path: str) -> None:
        if value not in choices:
            raise malformed(path, f"expected one of {', '.join(choices)}, not {value!r:.40}")

    return one_of


POOL = {
    "id": _text(200),
    "subpool": _optional(_subpool),
    "options": _options,
    "reuse": _one_of(tuple(Reuse)),
    "quarantine_s": INTEGER,
    "hold_s": INTEGER,
    "host_id": _text(64, optional=True),
    "created_at": _timestamp,
}
LEASE = {
    "address": _address,
    "pool_id": _text(200),
    "kind": _one_of(tuple(LeaseKind)),
    "mac": _text(32, optional=True),
    "name": _text(HOLDER_NAME_LENGTH, optional=True),
    "host_id": _text(64, optional=True),
    "created_at": _timestamp,
}
RESERVATION = {"first": _address, "last": _address, "label": _label, "created_at": _timestamp}
PARKED = {
    "address": _address,
    "pool_id": _text(200),
    "mac": _text(32, optional=True),
    "name": _text(HOLDER_NAME_LENGTH, optional=True),
    "until": _number,
}
EVENT = {
    "at": _timestamp,
    "host_id": _text(64),
    "action": _text(16),
    "pool_id": _text(200),
    "address": _text(64),
    "kind": _text(16, optional=True),
    "mac": _text(32, optional=True),
    "name": _text(HOLDER_NAME_LENGTH, optional=True),
    "detail": _text(DETAIL_LENGTH, optional=True),
}
SUBNET = {
    "space": _text(64),
    "cidr": _cidr,
    "cursor": _optional(_address),
    "created_at": _timestamp,
    "pools": list,
    "leases": list,
    "reservations": list,
    "parked": list,
}


def _record(value: Any, path: str, fields: dict[str, Any]) -> dict[str, Any]:
    OBJECT(value, path)
    for key, check in fields.items():
        if key not in value:
            raise malformed(path, f"missing {key!r}")
        if check is list:
            _items(value[key], f"{path}.{key}")
        else:
            check(value[key], f"{path}.{key}")
    return dict(value)


def _items(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise malformed(path, f"expected a list, not {type(value).__name__}")
    return value


def validate(data: Any) -> None:
    """Refuse anything an export of this format cannot hold, naming where it is.

    This is the file's shape: every field there, of its type and length, every address and
    subnet one. What the values must keep to together is :mod:`driver.domain.invariants`'.
    """
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InvalidRequest(f'not an ipledger export: expected "format": "{EXPORT_FORMAT}"')
    for i, entry in enumerate(_items(data.get("subnets"), "subnets")):
        _valid_subnet(entry, f"subnets[{i}]")
    for i, event in enumerate(_items(data.get("history"), "history")):
        _record(event, f"history[{i}]", EVENT)


def _valid_subnet(entry: Any, path: str) -> None:
    _record(entry, path, SUBNET)
    _text(64, optional=True)(entry.get("owner"), f"{path}.owner")
    for kind, fields in (
        ("pools", POOL),
        ("leases", LEASE),
        ("parked", PARKED),
        ("reservations", RESERVATION),
    ):
        for i, row in enumerate(entry[kind]):
            where = f"{path}.{kind}[{i}]"
            _record(row, where, fields)
            if kind == "leases":
                _text(400, optional=True)(row.get("cni_attachment"), f"{where}.cni_attachment")
                _text(HOLDER_NAME_LENGTH, optional=True)(row.get("pod"), f"{where}.pod")


def subnet_facts(entry: dict[str, Any], path: str, owner: str) -> invariants.SubnetFacts:
    """A subnet entry of a valid export (:func:`validate`), as the invariants see it; ``owner``
    is whose plan it goes into in the importing ledger."""
    subnet = Subnet(allocator.parse_cidr(entry["cidr"], "subnet"))

    def address(text: str, where: str) -> int:
        # checked by validate() already; the standard library reads it faster than netaddr
        try:
            value = ipaddress.ip_address(text)
        except ValueError:
            raise malformed(where, f"invalid address {text!r:.60}") from None
        if value.version != subnet.version:
            raise malformed(where, f"{text} is not an IPv{subnet.version} address")
        return int(value)

    return invariants.SubnetFacts(
        owner=owner,
        space=entry["space"],
        subnet=subnet,
        where=path,
        label=f" ({path})",
        pools=[
            invariants.PoolFacts(
                p["id"], p["subpool"], p["quarantine_s"], p["hold_s"], f"{path}.pools[{i}]"
            )
            for i, p in enumerate(entry["pools"])
        ],
        held=[
            invariants.HeldFacts(
                address(h["address"], f"{path}.{kind}[{i}].address"),
                h["pool_id"],
                f"{path}.{kind}[{i}]",
                h["until"] if kind == "parked" else None,
            )
            for kind in ("leases", "parked")
            for i, h in enumerate(entry[kind])
        ],
        reservations=[
            invariants.ReservedFacts(
                address(r["first"], f"{path}.reservations[{i}].first"),
                address(r["last"], f"{path}.reservations[{i}].last"),
                r["label"],
                f"{path}.reservations[{i}]",
            )
            for i, r in enumerate(entry["reservations"])
        ],
        cursor=address(entry["cursor"], f"{path}.cursor") if entry["cursor"] else None,
    )
