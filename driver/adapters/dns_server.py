"""A DNS server that takes RFC 2136 updates signed with TSIG, through dnspython over TCP.

Each failure is judged as :class:`~driver.domain.dns.DnsFailure` (retry later, or fix the
configuration): see docs/dns.md and the table in :func:`failure_of`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
import netaddr

from driver.domain.dns import DnsAction, DnsChange, DnsFailure

TIMEOUT_S = 2.0


class DnsRejected(Exception):
    """The server did not take a change (or could not be reached): why, and its words."""

    def __init__(self, failure: DnsFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


@dataclass(frozen=True)
class ZoneRecord:
    """One A, AAAA, PTR or TXT record of a zone, as a transfer shows it."""

    name: str  # full, no final dot; of a PTR: the name it points at
    rdtype: str
    value: str  # an address; of a PTR: the address its owner stands for


_RCODE_FAILURES = {
    dns.rcode.SERVFAIL: DnsFailure.SERVFAIL,
    dns.rcode.REFUSED: DnsFailure.REFUSED,
    dns.rcode.NOTAUTH: DnsFailure.NOTAUTH,
}


def failure_of(error: BaseException) -> DnsFailure:
    """How an exception of a request to the server is judged."""
    if isinstance(error, dns.tsig.PeerBadKey):
        return DnsFailure.BAD_KEY
    if isinstance(error, dns.tsig.PeerBadSignature):
        return DnsFailure.BAD_SIGNATURE
    if isinstance(error, dns.tsig.PeerBadTime):
        return DnsFailure.BAD_TIME
    if isinstance(error, (dns.exception.Timeout, socket.timeout, TimeoutError)):
        return DnsFailure.TIMEOUT
    if isinstance(error, (OSError, EOFError, dns.exception.FormError)):
        return DnsFailure.UNREACHABLE
    return DnsFailure.OTHER


class DnsServer:
    """Updates and transfers to one server, signed with one key (or none)."""

    def __init__(
        self,
        host: str,
        port: int,
        key: tuple[str, str, str] | None,
        ttl: int,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self.host, self.port, self.ttl, self.timeout = host, port, ttl, timeout
        self.where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._tsig: dict[str, Any] = {}
        if key is not None:
            name, algorithm, secret = key
            self._tsig = {
                "keyring": dns.tsigkeyring.from_text({name: (algorithm, secret)}),
                "keyname": name,
                "keyalgorithm": algorithm,
            }
        self._zones: dict[str, str] = {}
        self._lock = threading.Lock()

    def publish(self, change: DnsChange) -> None:
        """Send one change: its A/AAAA record, then its PTR; raises :class:`DnsRejected`."""
        target = f"{change.name}."
        if change.forward:
            self._update(change.zone, change.action, target, change.rdtype, change.address)
        if change.reverse:
            owner = dns.reversename.from_address(change.address).to_text()
            self._update(self.zone_of(owner), change.action, owner, "PTR", target)

    def _update(self, zone: str, action: DnsAction, owner: str, rdtype: str, value: str) -> None:
        update = dns.update.Update(zone, **self._tsig)
        if action == DnsAction.ADD:
            update.add(owner, self.ttl, rdtype, value)
        else:
            # only while the record still holds this value: a name someone re-pointed stays
            update.present(owner, rdtype, value)
            update.delete(owner, rdtype, value)
        rcode = self._ask(update).rcode()
        if action == DnsAction.REMOVE and rcode == dns.rcode.NXRRSET:
            # RFC 2136's value-dependent prerequisite wants the whole RRset to be this value:
            # a name that holds other addresses too (another network's, someone else's) fails
            # it. The delete of this one value alone cannot touch any other value; NXRRSET
            # again, or NOERROR, leaves the record gone, as a removal wants.
            only = dns.update.Update(zone, **self._tsig)
            only.delete(owner, rdtype, value)
            rcode = self._ask(only).rcode()
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXRRSET):
            return
        failure = _RCODE_FAILURES.get(rcode, DnsFailure.OTHER)
        raise DnsRejected(
            failure,
            f"{self.where} answered {dns.rcode.to_text(rcode)} to the update of {owner} "
            f"{rdtype} in zone {zone}{_hint(failure)}",
        )

    def _ask(self, message: dns.message.Message) -> dns.message.Message:
        """The server's answer, from the first of its addresses that answers."""
        addresses = self.addresses()
        for i, address in enumerate(addresses):
            try:
                return dns.query.tcp(message, address, port=self.port, timeout=self.timeout)
            except Exception as e:
                failure = failure_of(e)
                if failure == DnsFailure.UNREACHABLE and i + 1 < len(addresses):
                    continue  # e.g. localhost's ::1 while the server listens on 127.0.0.1
                raise DnsRejected(
                    failure, f"{self.where}: {_described(e)}{_hint(failure)}"
                ) from None
        raise AssertionError("addresses() returns at least one")

    def addresses(self) -> list[str]:
        """The server's addresses: its host's, resolved now (a name may move), within the
        timeout; a name that does not resolve is a failure retried with backoff."""
        if netaddr.valid_ipv4(self.host) or netaddr.valid_ipv6(self.host):
            return [self.host]
        found: dict[str, Any] = {}

        def resolve() -> None:
            try:
                found["infos"] = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as e:
                found["error"] = e

        # getaddrinfo takes no timeout: a resolver that does not answer is waited for no longer
        # than a server (the thread ends when the resolver gives up)
        thread = threading.Thread(target=resolve, name="ipledger-dns-resolve", daemon=True)
        thread.start()
        thread.join(self.timeout)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found.get("infos", ())))
        if addresses:
            return addresses
        error = found.get("error")
        why = (getattr(error, "strerror", None) or _described(error)) if error else None
        raise DnsRejected(
            DnsFailure.UNREACHABLE,
            f"{self.where}: {self.host} does not resolve: "
            f"{why or f'no answer within {self.timeout:g} s'}{_hint(DnsFailure.UNREACHABLE)}",
        )

    def zone_of(self, owner: str) -> str:
        """The zone the server holds ``owner`` in (its SOA's owner), e.g. a reverse zone."""
        parent = owner.partition(".")[2]
        with self._lock:
            known = self._zones.get(parent)
        if known is not None:
            return known
        query = dns.message.make_query(owner, "SOA")
        query.flags &= ~dns.flags.RD
        if self._tsig:
            query.use_tsig(
                self._tsig["keyring"],
                keyname=self._tsig["keyname"],
                algorithm=self._tsig["keyalgorithm"],
            )
        answer = self._ask(query)
        for rrset in (*answer.answer, *answer.authority):
            if rrset.rdtype == dns.rdatatype.SOA:
                zone = rrset.name.to_text().rstrip(".")
                with self._lock:
                    self._zones[parent] = zone
                return zone
        raise DnsRejected(
            DnsFailure.NO_ZONE,
            f"{self.where} holds no zone for {owner} ({dns.rcode.to_text(answer.rcode())}): "
            "give it the reverse zone, or drop ipledger.dns_reverse",
        )

    def transfer(self, zone: str) -> Iterator[ZoneRecord]:
        """The A, AAAA, PTR and TXT records of a zone, by AXFR."""
        try:
            held = dns.zone.from_xfr(
                dns.query.xfr(
                    self.addresses()[0],
                    zone,
                    port=self.port,
                    timeout=self.timeout,
                    lifetime=30,
                    relativize=False,
                    **self._tsig,
                ),
                relativize=False,
            )
        except DnsRejected:
            raise
        except Exception as e:
            failure = failure_of(e)
            if isinstance(e, dns.xfr.TransferError):
                failure = _RCODE_FAILURES.get(e.rcode, DnsFailure.OTHER)
            raise DnsRejected(
                failure,
                f"{self.where}: the transfer of {zone} failed: {_described(e)}{_hint(failure)}",
            ) from None
        for name, rdataset in held.iterate_rdatasets():
            kind = dns.rdatatype.to_text(rdataset.rdtype)
            for rdata in rdataset:
                if kind in ("A", "AAAA"):
                    yield ZoneRecord(name.to_text().rstrip("."), kind, str(rdata.address))
                elif kind == "PTR":
                    with contextlib.suppress(dns.exception.SyntaxError):
                        address = dns.reversename.to_address(name)
                        yield ZoneRecord(rdata.target.to_text().rstrip("."), kind, address)

    def reverse_zone_of(self, address: str) -> str:
        return self.zone_of(dns.reversename.from_address(address).to_text())


def _described(error: BaseException) -> str:
    """An exception in words: its type, and its text without a final full stop (a hint
    follows it)."""
    text = str(error).strip().rstrip(".")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _hint(failure: DnsFailure) -> str:
    hints = {
        DnsFailure.BAD_KEY: ": the server does not know the key (IPLEDGER_DNS_TSIG)",
        DnsFailure.BAD_SIGNATURE: ": the key's secret differs from the server's",
        DnsFailure.BAD_TIME: ": this host's clock and the server's differ",
        DnsFailure.REFUSED: ": the server's update-policy does not let this key (or an "
        "unsigned update) change the zone",
        DnsFailure.NOTAUTH: ": the server is not authoritative for the zone, or the key is "
        "not allowed",
        DnsFailure.UNREACHABLE: ": retried with backoff",
        DnsFailure.TIMEOUT: ": retried with backoff",
        DnsFailure.SERVFAIL: ": retried with backoff",
    }
    return hints.get(failure, "")
