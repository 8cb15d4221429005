"""``ipledger reserve`` and ``ipledger unreserve``: addresses kept from dynamic requests."""

from __future__ import annotations

import click

from driver.entrypoints.cli.ledger import admin
from driver.entrypoints.cli.options import db_option, shared_option, space_option
from driver.entrypoints.cli.render import say


@click.command()
@db_option
@space_option
@shared_option
@click.argument("addresses")
@click.option("--label", required=True, help="Why the addresses are set aside.")
def reserve(db_url: str | None, space: str, shared: bool, addresses: str, label: str) -> None:
    """Keep ADDRESSES (an address, FIRST-LAST or a CIDR) from dynamic requests.

    Docker can still get them with --ip; a leased one stays leased, and is kept back when
    released.
    """
    with admin(db_url) as a:
        done = a.reservations.reserve(addresses, label, space, shared)
    say(f"reserved {done} ({label})")


@click.command()
@db_option
@space_option
@shared_option
@click.argument("addresses")
def unreserve(db_url: str | None, space: str, shared: bool, addresses: str) -> None:
    """Drop the reservation covering ADDRESSES; its unleased addresses become free."""
    with admin(db_url) as a:
        done = a.reservations.unreserve(addresses, space, shared)
    say(f"unreserved {done}")
