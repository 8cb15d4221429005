"""Docker's IpamDriver bodies as declared structs, decoded and validated by msgspec.

Field names are Docker's (``PoolID``, ``AddressSpace``...). Docker sends no Content-Type, adds
fields as it grows (Docker 29's endpoint name) and sends ``"Options": null``: unknown fields are
ignored, null is the field's absence, and Options is a map of strings. A body that does not fit
is refused with the texts the hand-written checks gave before, worked out from the struct's
declared field types (:func:`driver.entrypoints.bodies.decode`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Docker's identifiers and addresses are short: a longer one is a mistake, not a name
TEXT_LIMIT = 255
Text = Annotated[str, msgspec.Meta(max_length=TEXT_LIMIT)]
Needed = Annotated[str, msgspec.Meta(min_length=1, max_length=TEXT_LIMIT)]
Options = dict[str, str] | None


class NoFields(msgspec.Struct):
    """Activate, GetCapabilities and GetDefaultAddressSpaces: a body, if any, is an object."""


class PoolRequest(msgspec.Struct, rename="pascal"):
    address_space: Needed
    pool: Text | None = None
    sub_pool: Text | None = None
    options: Options = None
    v6: bool | None = msgspec.field(default=None, name="V6")


class PoolRelease(msgspec.Struct):
    pool_id: Needed = msgspec.field(name="PoolID")


class AddressRequest(msgspec.Struct, rename="pascal"):
    pool_id: Needed = msgspec.field(name="PoolID")
    address: Text | None = None
    options: Options = None


class AddressRelease(msgspec.Struct, rename="pascal"):
    pool_id: Needed = msgspec.field(name="PoolID")
    address: Needed


class Implements(msgspec.Struct, rename="pascal"):
    implements: list[str]


class Capabilities(msgspec.Struct, rename="pascal"):
    requires_mac_address: bool = msgspec.field(name="RequiresMACAddress")
    requires_request_replay: bool


class AddressSpaces(msgspec.Struct, rename="pascal"):
    local_default_address_space: str
    global_default_address_space: str


class PoolGrant(msgspec.Struct, rename="pascal"):
    pool_id: str = msgspec.field(name="PoolID")
    pool: str
    data: dict[str, str] = msgspec.field(default_factory=dict)


class AddressGrant(msgspec.Struct, rename="pascal"):
    address: str
    data: dict[str, str] = msgspec.field(default_factory=dict)


class Done(msgspec.Struct):
    """ReleasePool's and ReleaseAddress's answer: ``{}``."""
