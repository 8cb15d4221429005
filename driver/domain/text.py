"""Text as ipledger prints it: names escaped, passwords hidden. Pure: no Flask, no SQLAlchemy.

Names come from outside (Docker's endpoint names, CNI pod names, an operator's labels) and may
hold any character. Wherever they are printed, on one line of a log, a table row or an error,
:func:`printable` escapes what would start a new line or move the cursor, so that a name can
neither forge a line nor split a row. :func:`mask_secrets` hides the password of every database
URL in a message, whatever the scheme, and any ``password=`` parameter.
"""

from __future__ import annotations

import re

MASK = "***"

# Characters that end a line or steer a terminal: C0 and C1 controls and DEL (Cc), the Unicode
# line and paragraph separators (Zl, Zp), and the bidirectional overrides and isolates, which
# reorder what a line shows.
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029" + "".join(sorted(_BIDI)) + "]",
)

# scheme://user:password@  (SQLAlchemy's own URL pattern takes anything but '@' as the password)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):[^@\s]*@")
# password=... in a URL's query or a libpq connection string
_PARAM_PASSWORD = re.compile(r"(?i)(?P<key>\b(?:password|passwd|pwd)\s*=\s*)[^&\s'\",;]*")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` on one line: every control character escaped as Python writes it (``\\n``,
    ``\\x1b``, ``\\u2028``); anything else, any script included, as it is."""
    return _UNSAFE.sub(_escape, text)


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:password@``) and every
    ``password=`` parameter replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    return _PARAM_PASSWORD.sub(lambda m: f"{m.group('key')}{MASK}", text)


def shown(text: str) -> str:
    """``text`` as ipledger prints any message: passwords hidden, on one line."""
    return printable(mask_secrets(text))
