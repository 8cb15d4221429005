"""How every ``ipledger`` command prints: plain lines, counts, bars, dates and tables."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from driver.domain.text import printable

BAR_WIDTH = 20


def say(text: str) -> None:
    """Print a line of plain output, what it names escaped onto the one line."""
    click.echo(printable(text))


def count(n: int) -> str:
    """Counts as they read: exact up to a billion, then in powers (IPv6 pools are vast)."""
    return f"{n:,}" if n < 10**9 else f"{n:.2e}"


def bar(ratio: float) -> str:
    filled = round(ratio * BAR_WIDTH)
    if ratio > 0 and filled == 0:
        filled = 1
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {ratio * 100:5.1f}%"


def table(headers: list[str], rows: list[list[str]]) -> None:
    """Rows under their headers; a name from outside cannot break a row (it is escaped)."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"
