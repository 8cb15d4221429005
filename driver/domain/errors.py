"""Every error ipledger reports, to Docker and to CNI runtimes.

The tree, with the HTTP status each one is answered with (and the CNI error code, where it is
not the plugin's catch-all 999)::

    IpamError (500)
    ├── InvalidRequest (400, CNI 7)  a body Docker would never send, a value or config that does
    │                                not parse
    ├── PoolNotFound (404)           a PoolID this ledger does not hold
    ├── PoolOverlap (409)            an explicit pool that overlaps one already held
    ├── PoolsExhausted (409)         no default subnet of the asked size is left
    ├── AddressInUse (409)           a static address that is leased or reserved
    │   └── GatewayInUse (409, CNI 7)   a CNI config's gateway that a container holds
    ├── AddressOutOfRange (400)      an address outside the pool
    ├── NoAvailableAddress (409, CNI 100)  the pool (or its ip-range) is full
    ├── AttachmentNotFound (404, CNI 3)    a CNI attachment that holds no lease
    ├── NetworkInUse (409)           a CNI network to retire that attachments still use
    ├── HostNotFound (404)           a host the ledger does not know
    ├── HostSeenRecently (409)       a host to retire whose heartbeat is recent (no --force)
    ├── HostRetired (403)            a call of a host an operator retired: admit it first
    ├── StorageUnavailable (503, CNI 11)   the database cannot be read or written right now
    └── Unfinished (503, CNI 11)     a call that did part of its work within its bound, kept it,
                                     and is to be made again for the rest (a large CNI GC)

The messages of AddressInUse, AddressOutOfRange, NoAvailableAddress and PoolOverlap start with
the built-in IPAM's own words, so that users can search for them.
"""

from __future__ import annotations


class IpamError(Exception):
    """Base of every error that is answered to Docker as ``{"Err": message}``."""

    status = 500
    # the CNI error code a CNI runtime is answered with (100 and up are the plugin's own)
    cni_code = 999

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(IpamError):
    status = 400
    cni_code = 7  # invalid network configuration


class PoolNotFound(IpamError):
    status = 404

    def __init__(self, pool_id: str) -> None:
        super().__init__(f"pool {pool_id!r} not found")


class PoolOverlap(IpamError):
    status = 409

    def __init__(self, pool: str, other: str, space: str, held_by: str | None = None) -> None:
        super().__init__(
            f"Pool overlaps with other one on this address space: {pool} overlaps {other} "
            f"in address space {space}" + (f": {held_by}" if held_by else "")
        )


class PoolsExhausted(IpamError):
    status = 409


class AddressInUse(IpamError):
    status = 409

    def __init__(self, address: str, why: str) -> None:
        super().__init__(f"Address already in use: {address} ({why})")


class GatewayInUse(AddressInUse):
    """A CNI network's ``gateway`` that is leased to a container: answering it as the gateway
    would give one address two holders. The config is wrong, so CNI's code is 7."""

    cni_code = 7


class AddressOutOfRange(IpamError):
    status = 400

    def __init__(self, address: str, pool: str) -> None:
        super().__init__(f"requested address is out of range: {address} is not in pool {pool}")


class NoAvailableAddress(IpamError):
    status = 409
    cni_code = 100

    def __init__(self, where: str) -> None:
        super().__init__(f"no available addresses on this pool: {where} is full")


class StorageUnavailable(IpamError):
    status = 503
    cni_code = 11  # try again later


class AttachmentNotFound(IpamError):
    """CHECK of a CNI attachment that holds no lease."""

    status = 404
    cni_code = 3  # container unknown or does not exist


class NetworkInUse(IpamError):
    status = 409


class Unfinished(IpamError):
    """A call that committed part of its work within its bound; the next call does the rest."""

    status = 503
    cni_code = 11  # try again later: each try gets further


class HostNotFound(IpamError):
    status = 404

    def __init__(self, host: str) -> None:
        super().__init__(f"no host {host!r} in the ledger (ipledger hosts lists them)")


class HostSeenRecently(IpamError):
    """A host to retire that beat within the staleness bound: likely alive."""

    status = 409

    def __init__(self, host: str, age_s: float, bound_s: float) -> None:
        super().__init__(
            f"host {host} was seen {age_s:.0f} s ago (within {bound_s:.0f} s): it looks alive, "
            "and retiring it would release addresses its containers still use; stop its "
            "ipledger serve first, or add --force"
        )


class HostRetired(IpamError):
    """A call of a host an operator retired: its leases were released, and it may hand out
    nothing (addresses its containers still use may be another's now) until admitted again."""

    status = 403

    def __init__(self, host_id: str, name: str) -> None:
        label = host_id if name == host_id else f"{name} ({host_id})"
        super().__init__(
            f"host {label} was retired from the ledger, its leases in shared pools released: "
            "it may not change the ledger until an operator re-admits it with: "
            f"ipledger hosts admit {host_id}"
        )
