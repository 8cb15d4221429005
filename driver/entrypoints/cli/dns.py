"""``ipledger dns``: the outbox of DNS changes, and the zones against the leases.

Parses, calls :mod:`driver.usecases.dns`, prints.
"""

from __future__ import annotations

import json
import time

import click

from driver.domain.text import printable
from driver.entrypoints.cli.ledger import admin
from driver.entrypoints.cli.options import Group, db_option, json_option, settings_from_env
from driver.entrypoints.cli.render import say, table
from driver.usecases.dns import DnsStatus, DnsSync


@click.group(cls=Group)
def dns() -> None:
    """Leases in DNS: what waits to be published, and the zones against the leases."""


@dns.command()
@db_option
@json_option
def status(db_url: str | None, as_json: bool) -> None:
    """Per zone: changes queued, the oldest one's age, and the last error met."""
    settings = settings_from_env(db_url=db_url)
    with admin(db_url, reads=True) as a:
        zones = DnsStatus(a.store).zones()
    now = time.time()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "zone": z.zone,
                        "pending": z.pending,
                        "oldest_seconds": round(now - z.oldest_at, 1) if z.oldest_at else None,
                        "failing": z.failing,
                        "failure": z.failure,
                        "last_error": z.last_error,
                    }
                    for z in zones
                ],
                indent=2,
            )
        )
        return
    if settings.dns_server is None:
        say("IPLEDGER_DNS_SERVER is not set here: this host publishes nothing")
    if not zones:
        say("nothing queued: every change was published")
        return
    table(
        ["ZONE", "PENDING", "OLDEST", "FAILING", "LAST ERROR"],
        [
            [
                z.zone,
                str(z.pending),
                f"{now - z.oldest_at:.0f}s" if z.oldest_at else "-",
                str(z.failing),
                f"{z.failure}: {z.last_error}" if z.failure else "-",
            ]
            for z in zones
        ],
    )


@dns.command()
@db_option
def names(db_url: str | None) -> None:
    """Each lease's DNS name, its address, and whether it is published."""
    with admin(db_url, reads=True) as a:
        found = DnsStatus(a.store).names()
    if not found:
        say("no lease has a DNS name: no pool has ipledger.dns_zone, or no lease a name")
        return
    table(["NAME", "ADDRESS", "DNS"], [list(row) for row in found])


@dns.command()
@db_option
@click.option(
    "--apply", is_flag=True, help="Queue the changes that converge the zones (serve sends them)."
)
def sync(db_url: str | None, apply: bool) -> None:
    """Compare what the zones hold (AXFR) with the leases, for the names ipledger manages.

    Prints each difference: '+' a record a lease wants and the zone lacks, '-' a record
    ipledger published that no lease holds any more. A record someone else put at a managed
    name is shown as not ipledger's and left alone; names ipledger never published are not
    looked at. A zone that cannot be transferred is reported (exit status 1) and the others
    are compared still.
    """
    from driver.adapters.dns_server import DnsRejected
    from driver.entrypoints.dns_publisher import dns_server

    settings = settings_from_env(db_url=db_url)
    if settings.dns_server is None:
        raise click.ClickException("IPLEDGER_DNS_SERVER is not set: no server to compare with")
    server = dns_server(settings)
    with admin(db_url, reads=not apply) as a:
        sync_ = DnsSync(a.store)
        plan = sync_.plan(server, DnsRejected)
        for change in plan.changes:
            sign = "+" if change.action == "add" else "-"
            say(f"{sign} {change.name} {change.records} {change.address}")
        for name, rdtype, value in plan.foreign:
            say(f"  {name} {rdtype} {value}: not ipledger's, left alone")
        queued = sync_.apply(plan) if apply and plan.changes else 0
    say(
        f"{len(plan.changes)} difference{'' if len(plan.changes) == 1 else 's'} in "
        f"{', '.join(plan.zones) or 'no zone'} ({plan.managed} names managed)"
        + (f"; {queued} changes queued for the publisher" if apply else "")
    )
    for zone, why in plan.failed:
        click.echo(printable(f"ipledger: {zone} not compared: {why}"), err=True)
    if plan.failed:
        raise SystemExit(1)
