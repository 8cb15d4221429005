"""``ipledger history`` and ``ipledger prune-history``: who had an address when, and dropping
old events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from driver.domain.cni import event_attachment, event_pod, holder_shown
from driver.domain.moments import as_utc
from driver.entrypoints.cli.ledger import admin
from driver.entrypoints.cli.options import db_option, seconds
from driver.entrypoints.cli.render import count, say, table, when

if TYPE_CHECKING:
    from driver.storage.inventory import HistoryEvent


@click.command()
@db_option
@click.argument("address", required=False)
@click.option("--pool", "pool_id", help="Only this pool's events.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="The newest N events.",
)
def history(db_url: str | None, address: str | None, pool_id: str | None, limit: int) -> None:
    """Who had ADDRESS (or what happened in --pool) and when: allocations, releases, gc."""
    if address is None and pool_id is None:
        raise click.UsageError("give an ADDRESS, --pool POOL_ID, or both")
    with admin(db_url, reads=True) as a:
        events = a.reports.history(address=address, pool_id=pool_id, limit=limit)
        names = a.hosts.names()
    if not events:
        click.echo("no history for that")
        return
    table(
        ["WHEN", "HOST", "ACTION", "ADDRESS", "POOL", "KIND", "MAC/ATTACHMENT", "NAME", "DETAIL"],
        [_event_row(e, names) for e in events],
    )


def _event_row(e: HistoryEvent, names: dict[str, str]) -> list[str]:
    holder = holder_shown(
        e.mac, event_attachment(e.kind, e.detail), e.name, event_pod(e.kind, e.detail)
    )
    return [
        when(as_utc(e.at)),
        names.get(e.host_id, e.host_id[:12]),
        e.action,
        e.address,
        e.pool_id,
        e.kind or "-",
        holder or "-",
        e.name or "-",
        e.detail or "",
    ]


@click.command("prune-history")
@db_option
@click.option(
    "--older-than",
    "age",
    required=True,
    help="An age with its unit (90d, 12h, 30m, 45s): the events older than this.",
)
@click.option("--apply", is_flag=True, help="Drop them (default: only say what would be dropped).")
def prune_history(db_url: str | None, age: str, apply: bool) -> None:
    """Drop history events older than --older-than (export first to keep them).

    Without --apply, only shows how many events that is, and the oldest and newest of them.
    """
    age_s = seconds(age, "--older-than")
    with admin(db_url) as a:
        before = datetime.now(UTC) - timedelta(seconds=age_s)
        span = a.housekeeping.history_before(before)
        if not span.count:
            say(f"no history events older than {age} (before {when(before)})")
            return
        what = (
            f"{count(span.count)} history events older than {age}, "
            f"from {when(span.oldest)} to {when(span.newest)}"
        )
        if not apply:
            say(f"would drop {what}")
            say("report only: run with --apply to drop them ('ipledger export' first keeps them)")
            return
        say(f"dropping {what}")
        dropped = a.housekeeping.prune_history(before)
    say(f"dropped {count(dropped)} history events older than {age}")
