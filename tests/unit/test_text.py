"""How ipledger prints text from outside: control characters escaped, passwords hidden."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driver.domain.text import mask_secrets, printable, shown


@pytest.mark.parametrize(
    ("raw", "printed"),
    [
        ("web-1", "web-1"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("c1\x9b", "c1\\x9b"),
        ("line\u2028sep", "line\\u2028sep"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("café Ωμέγα 名前", "café Ωμέγα 名前"),
    ],
)
def test_printable_escapes_what_would_break_a_line_and_keeps_any_script(raw, printed):
    assert printable(raw) == printed


@given(st.text())
def test_printable_text_never_holds_a_line_break_or_an_escape(raw):
    out = printable(raw)
    assert out.splitlines() in ([out], [])
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        ("postgres://u:pw@host/x", "postgres://u:***@host/x"),
        ("postgresql://u:pw@host/x", "postgresql://u:***@host/x"),
        (
            "postgresql+psycopg://ipledger:s3cr%40t@db:5432/ipam",
            "postgresql+psycopg://ipledger:***@db:5432/ipam",
        ),
        ("mysql://root:hunter2@127.0.0.1/z", "mysql://root:***@127.0.0.1/z"),
        ("mysql+pymysql://u:p:w/x@h/z", "mysql+pymysql://u:***@h/z"),
        ("whatever+thing://u:pw@h/z", "whatever+thing://u:***@h/z"),
        (
            "invalid database URL 'foo://u:pw@h/x' (Can't load plugin)",
            "invalid database URL 'foo://u:***@h/x' (Can't load plugin)",
        ),
        (
            "postgresql://h/x?password=pw&sslmode=require",
            "postgresql://h/x?password=***&sslmode=require",
        ),
        ("host=db user=u password=pw dbname=x", "host=db user=u password=*** dbname=x"),
        ("PASSWORD=pw", "PASSWORD=***"),
        ("postgresql://u@host:5432/x", "postgresql://u@host:5432/x"),
        (
            "postgresql://host:5432/x, ask admin@example.org",
            "postgresql://host:5432/x, ask admin@example.org",
        ),
        ("sqlite:////var/lib/ipledger/ipledger.db", "sqlite:////var/lib/ipledger/ipledger.db"),
        ("a://u:one@h and b://v:two@k", "a://u:***@h and b://v:***@k"),
    ],
)
def test_mask_secrets_hides_every_password_whatever_the_scheme(message, masked):
    assert mask_secrets(message) == masked


@given(
    st.from_regex(r"[a-z][a-z0-9+]{0,12}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9!$%^&*()_=~;,]{1,20}", fullmatch=True),
)
def test_no_password_survives_masking(scheme, password):
    secret = f"Z{password}"
    url = f"{scheme}://user:{secret}@db.example/ledger"
    out = mask_secrets(f"cannot open {url!r}: refused")
    assert secret not in out and "user:***@db.example" in out


def test_shown_masks_then_escapes():
    assert shown("at postgres://u:pw@h/x\nforged") == "at postgres://u:***@h/x\\nforged"
