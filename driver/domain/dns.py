"""Leases in DNS: which pools publish, the name a lease is published under, the changes the
outbox holds, and how a DNS server's failures are judged. Pure: no Flask, no SQLAlchemy, no
dnspython.

The name rule (docs/dns.md): a name is made a DNS label by lower-casing it, turning every run of
characters other than ``a-z``, ``0-9`` and ``-`` into one ``-``, dropping ``-`` at both ends and
cutting it to 63 characters; a name left empty, or a full name longer than 253 characters, is
not published (a warning says so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from driver.domain.errors import InvalidRequest

ZONE_OPTION = "ipledger.dns_zone"
REVERSE_OPTION = "ipledger.dns_reverse"
DNS_OPTIONS = (ZONE_OPTION, REVERSE_OPTION)
LABEL_LENGTH = 63
NAME_LENGTH = 253
# an RFC 1035 label as ipledger writes it (the zone an operator names may hold '_' too)
_ZONE_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class DnsPolicy:
    """Where a pool's leases are published: the forward zone, and whether PTR records too."""

    zone: str
    reverse: bool = False


def parse_zone(text: str, what: str) -> str:
    """A zone name as ipledger keeps it: lower case, without the final dot."""
    zone = text.strip().lower().removesuffix(".")
    labels = zone.split(".")
    if not zone or len(zone) > NAME_LENGTH or not all(_ZONE_LABEL.fullmatch(x) for x in labels):
        raise InvalidRequest(
            f"invalid {what} {text!r:.80}: expected a DNS zone such as apps.example.test "
            "(labels of letters, digits and '-', at most 63 characters each)"
        )
    return zone


def parse_flag(text: str, what: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise InvalidRequest(f"invalid {what} {text!r:.40}: expected true or false")
    return value in ("true", "1", "yes")


def dns_policy(options: Mapping[str, str]) -> DnsPolicy | None:
    """A pool's DNS options (``ipledger.dns_zone``, ``ipledger.dns_reverse``); None when it
    publishes nothing. Malformed ones are refused."""
    zone_text = options.get(ZONE_OPTION)
    reverse_text = options.get(REVERSE_OPTION)
    reverse = parse_flag(reverse_text, REVERSE_OPTION) if reverse_text is not None else False
    if zone_text is None or not zone_text.strip():
        if reverse:
            raise InvalidRequest(f"{REVERSE_OPTION}=true needs {ZONE_OPTION}: the PTR's target")
        return None
    return DnsPolicy(parse_zone(zone_text, ZONE_OPTION), reverse)


def recorded_policy(options_json: str) -> DnsPolicy | None:
    """The DNS policy of a pool from the options it recorded (JSON); None when none or
    unreadable (a pool made before the options were checked publishes nothing)."""
    if ZONE_OPTION not in options_json:
        return None  # the hot path's common case: no JSON parsed
    try:
        options = json.loads(options_json)
        return dns_policy(options) if isinstance(options, dict) else None
    except (ValueError, InvalidRequest):
        return None


def dns_label(text: str) -> str | None:
    """``text`` made one DNS label by the rule above; None when nothing is left of it."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")
    label = label[:LABEL_LENGTH].rstrip("-")
    return label or None


@dataclass(frozen=True)
class NameSource:
    """What a lease's DNS name can come from; at most one is set."""

    container: str | None = None  # Docker's endpoint name (the container's name)
    pod: str | None = None  # a CNI lease's pod, "NAMESPACE/NAME"
    label: str | None = None  # a reservation's label


def lease_dns_name(policy: DnsPolicy | None, source: NameSource) -> str | None:
    """THE place where a lease's DNS name is decided: its full name (no final dot) in the
    pool's zone, or None when the pool publishes nothing or the name cannot be one.

    A container is published under its name, a pod as ``POD.NAMESPACE``, a reservation under
    its label; each part made a label by :func:`dns_label`.
    """
    if policy is None:
        return None
    if source.pod:
        namespace, _, pod = source.pod.partition("/")
        parts = [dns_label(pod), dns_label(namespace)]
    elif source.container:
        parts = [dns_label(source.container.lstrip("/"))]
    elif source.label:
        parts = [dns_label(source.label)]
    else:
        return None
    if not all(parts):
        return None
    name = ".".join([*(p for p in parts if p), policy.zone])
    return name if len(name) <= NAME_LENGTH else None


class DnsAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class DnsChange:
    """One change the outbox holds: a name's address added or removed (its A/AAAA record when
    ``forward``, its PTR when ``reverse``).

    A lease's change is queued as two (:meth:`parts`), each ordered only after the earlier
    changes of the same name and part: a PTR the server cannot take (no reverse zone) never
    holds back the name's A record, nor its removal.
    """

    action: DnsAction
    name: str
    zone: str
    address: str
    reverse: bool
    forward: bool = True

    @property
    def rdtype(self) -> str:
        return "AAAA" if ":" in self.address else "A"

    @property
    def records(self) -> str:
        """What it changes, as printed: ``A``, ``PTR`` or ``A and PTR``."""
        kinds = [self.rdtype] * self.forward + ["PTR"] * self.reverse
        return " and ".join(kinds)

    def parts(self) -> tuple[DnsChange, ...]:
        """The forward change and the PTR change (when ``reverse``), to be queued apart."""
        if not (self.forward and self.reverse):
            return (self,)
        return (replace(self, reverse=False), replace(self, forward=False))


class DnsFailure(StrEnum):
    """Why a change could not be published, as the metrics and ``dns status`` name it."""

    UNREACHABLE = "unreachable"  # connection refused, reset, no route
    TIMEOUT = "timeout"
    SERVFAIL = "servfail"  # e.g. the server cannot write its journal
    REFUSED = "refused"  # the server refuses this key (or an unsigned update)
    NOTAUTH = "notauth"  # the zone is not served there, or the key is not allowed
    BAD_KEY = "bad-key"  # the server does not know the key
    BAD_SIGNATURE = "bad-signature"  # the secret differs
    BAD_TIME = "bad-time"  # the clocks differ too much
    NO_ZONE = "no-reverse-zone"  # no zone on the server holds the PTR's name
    OTHER = "other"

    @property
    def retryable(self) -> bool:
        """Whether trying again soon can succeed; otherwise the configuration must change."""
        return self in (DnsFailure.UNREACHABLE, DnsFailure.TIMEOUT, DnsFailure.SERVFAIL)


# backoff of retryable failures: 1 s doubling to 5 min; a failure that needs a configuration
# change is retried every 10 min (and at once when ipledger restarts with new settings)
FIRST_RETRY_S = 1.0
LONGEST_RETRY_S = 300.0
CONFIG_RETRY_S = 600.0


def retry_delay(attempts: int, failure: DnsFailure) -> float:
    """Seconds until a change that failed ``attempts`` times is tried again."""
    if not failure.retryable:
        return CONFIG_RETRY_S
    return min(LONGEST_RETRY_S, FIRST_RETRY_S * float(2 ** min(20, max(0, attempts - 1))))
