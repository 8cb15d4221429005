"""How the DNS server adapter reaches a server given by name and words its failures (the
requests themselves are replaced here; tests/integration/test_dns.py sends real ones)."""

from __future__ import annotations

import socket

import dns.exception
import dns.query
import pytest

from driver.adapters.dns_server import DnsRejected, DnsServer
from driver.domain.dns import DnsAction, DnsChange, DnsFailure

CHANGE = DnsChange(DnsAction.ADD, "web1.apps.example.test", "apps.example.test", "192.0.2.5", False)


def failing(error: Exception):
    def tcp(*args, **kwargs):
        raise error

    return tcp


def test_a_server_given_by_name_is_sent_to_at_the_address_the_name_resolves_to(monkeypatch):
    asked = []
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.53", port))
        ],
    )

    def tcp(message, where, port, timeout):
        asked.append((where, port))
        raise dns.exception.Timeout

    monkeypatch.setattr(dns.query, "tcp", tcp)
    with pytest.raises(DnsRejected):
        DnsServer("ns1.example.test", 5300, None, 60).publish(CHANGE)
    assert asked == [("192.0.2.53", 5300)]


def test_a_server_name_that_does_not_resolve_is_a_retryable_failure_naming_it(monkeypatch):
    def unknown(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(DnsRejected) as rejected:
        DnsServer("ns1.example.test", 53, None, 60).publish(CHANGE)
    assert rejected.value.failure == DnsFailure.UNREACHABLE
    assert rejected.value.failure.retryable
    assert "ns1.example.test does not resolve: Name or service not known" in rejected.value.message


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (dns.exception.Timeout(), "Timeout: The DNS operation timed out: retried with backoff"),
        (ValueError(), "127.0.0.1:5300: ValueError"),
        (ValueError("  "), "127.0.0.1:5300: ValueError"),
    ],
)
def test_a_failure_is_worded_once_with_its_type_when_it_has_no_text(monkeypatch, error, said):
    monkeypatch.setattr(dns.query, "tcp", failing(error))
    with pytest.raises(DnsRejected) as rejected:
        DnsServer("127.0.0.1", 5300, None, 60).publish(CHANGE)
    message = rejected.value.message
    assert said in message
    assert ".:" not in message and not message.endswith(": ")
