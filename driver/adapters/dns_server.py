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
        try:
            return dns.query.tcp(message, self.host, port=self.port, timeout=self.timeout)
        except Exception as e:
            failure = failure_of(e)
            raise DnsRejected(
                failure,
                f"{self.where}: {type(e).__name__}: {e or 'no answer'}{_hint(failure)}",
            ) from None

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
                    self.host,
                    zone,
                    port=self.port,
                    timeout=self.timeout,
                    lifetime=30,
                    relativize=False,
                    **self._tsig,
                ),
                relativize=False,
            )
        except Exception as e:
            failure = failure_of(e)
            if isinstance(e, dns.xfr.TransferError):
                failure = _RCODE_FAILURES.get(e.rcode, DnsFailure.OTHER)
            raise DnsRejected(
                failure, f"{self.where}: the transfer of {zone} failed: {e}{_hint(failure)}"
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
