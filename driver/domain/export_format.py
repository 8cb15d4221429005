"""The shape of an ``ipledger export``, checked before anything of it is imported.

:func:`validate` names the first field that is wrong (``subnets[0].leases[2].address: ...``), so
that a malformed file is refused with a clear error and an import never stops half-way on bad
data; whatever fails after it is a bug, and is not dressed up as a malformed export.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from driver.domain import addresses as allocator
from driver.domain.addresses import Subnet
from driver.domain.errors import InvalidRequest
from driver.domain.pools import LeaseKind, Reuse

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


TEXT = _type(str, "a string")
OPTIONAL_TEXT = _type(str, "a string", optional=True)
INTEGER = _type(int, "an integer")
NUMBER = _type((int, float), "a number")
OBJECT = _type(dict, "an object")


def _timestamp(value: Any, path: str) -> None:
    TEXT(value, path)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise malformed(path, f"invalid timestamp {value!r:.40}") from None


def _cidr(value: Any, path: str) -> None:
    TEXT(value, path)
    try:
        allocator.parse_cidr(value, "subnet")
    except InvalidRequest:
        raise malformed(path, f"invalid subnet {value!r:.60}") from None


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
    "id": TEXT,
    "subpool": _optional(_cidr),
    "options": OBJECT,
    "reuse": _one_of(tuple(Reuse)),
    "quarantine_s": INTEGER,
    "hold_s": INTEGER,
    "host_id": OPTIONAL_TEXT,
    "created_at": _timestamp,
}
LEASE = {
    "address": TEXT,
    "pool_id": TEXT,
    "kind": _one_of(tuple(LeaseKind)),
    "mac": OPTIONAL_TEXT,
    "name": OPTIONAL_TEXT,
    "host_id": OPTIONAL_TEXT,
    "created_at": _timestamp,
}
RESERVATION = {"first": TEXT, "last": TEXT, "label": TEXT, "created_at": _timestamp}
PARKED = {
    "address": TEXT,
    "pool_id": TEXT,
    "mac": OPTIONAL_TEXT,
    "name": OPTIONAL_TEXT,
    "until": NUMBER,
}
EVENT = {
    "at": _timestamp,
    "host_id": TEXT,
    "action": TEXT,
    "pool_id": TEXT,
    "address": TEXT,
    "kind": OPTIONAL_TEXT,
    "mac": OPTIONAL_TEXT,
    "name": OPTIONAL_TEXT,
    "detail": OPTIONAL_TEXT,
}
SUBNET = {
    "space": TEXT,
    "cidr": _cidr,
    "cursor": OPTIONAL_TEXT,
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
    """Refuse anything an export of this format cannot hold, naming where it is."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InvalidRequest(f'not an ipledger export: expected "format": "{EXPORT_FORMAT}"')
    for i, entry in enumerate(_items(data.get("subnets"), "subnets")):
        parsed_subnet(entry, f"subnets[{i}]")
    for i, event in enumerate(_items(data.get("history"), "history")):
        _record(event, f"history[{i}]", EVENT)


def parsed_subnet(entry: Any, path: str) -> None:
    _record(entry, path, SUBNET)
    OPTIONAL_TEXT(entry.get("owner"), f"{path}.owner")
    subnet = Subnet(allocator.parse_cidr(entry["cidr"], "subnet"))

    def address(text: str, where: str) -> int:
        try:
            value = int(allocator.parse_address(text))
        except InvalidRequest:
            raise malformed(where, f"invalid address {text!r:.60}") from None
        if not subnet.contains(value) or subnet.reserved(value):
            raise malformed(where, f"{text} cannot be held in {subnet.cidr}")
        return value

    if entry["cursor"] is not None:
        address(entry["cursor"], f"{path}.cursor")
    pool_ids = set()
    for i, pool in enumerate(entry["pools"]):
        _record(pool, f"{path}.pools[{i}]", POOL)
        pool_ids.add(pool["id"])
    held: set[int] = set()
    for kind, fields in (("leases", LEASE), ("parked", PARKED)):
        for i, row in enumerate(entry[kind]):
            where = f"{path}.{kind}[{i}]"
            _record(row, where, fields)
            OPTIONAL_TEXT(row.get("cni_attachment"), f"{where}.cni_attachment")
            value = address(row["address"], f"{where}.address")
            if value in held:
                raise malformed(f"{where}.address", f"{row['address']} is held twice")
            held.add(value)
            if row["pool_id"] not in pool_ids:
                raise malformed(
                    f"{where}.pool_id", f"{row['pool_id']!r:.80} is not a pool of {subnet.cidr}"
                )
    for i, reservation in enumerate(entry["reservations"]):
        where = f"{path}.reservations[{i}]"
        _record(reservation, where, RESERVATION)
        first = address(reservation["first"], f"{where}.first")
        if address(reservation["last"], f"{where}.last") < first:
            raise malformed(where, "last comes before first")
