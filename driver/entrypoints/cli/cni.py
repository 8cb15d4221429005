"""``ipledger cni``: the CNI networks of the ledger, and retiring one no runtime uses.

Parses, calls :mod:`driver.usecases.cni_networks`, prints.
"""

from __future__ import annotations

import json

import click

from driver.entrypoints.cli.ledger import admin
from driver.entrypoints.cli.options import Group, db_option, json_option
from driver.entrypoints.cli.render import say, table, when
from driver.usecases.cni_networks import CniNetworks


@click.group(cls=Group)
def cni() -> None:
    """The CNI networks that drew addresses from the ledger."""


@cni.command()
@db_option
@json_option
def networks(db_url: str | None, as_json: bool) -> None:
    """Each CNI network: its attachments, its last ADD (as the history holds it), its pools."""
    with admin(db_url, reads=True) as a:
        reports = CniNetworks(a.store, (), a.host_id).networks()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "network": r.name,
                        "attachments": r.attachments,
                        "last_add": r.last_add.isoformat() if r.last_add else None,
                        "pools": list(r.pools),
                    }
                    for r in reports
                ],
                indent=2,
            )
        )
        return
    if not reports:
        click.echo("no CNI networks: no conflist uses ipledger yet, or all were retired")
        return
    table(
        ["NETWORK", "ATTACHMENTS", "LAST ADD", "POOLS"],
        [[r.name, str(r.attachments), when(r.last_add), " ".join(r.pools)] for r in reports],
    )


@cni.command()
@db_option
@click.argument("network")
def retire(db_url: str | None, network: str) -> None:
    """Retire NETWORK's pools, with their gateway leases, once it has no attachments.

    Refused while a pod still holds an address of it. A later ADD for NETWORK makes its pools
    again.
    """
    with admin(db_url) as a:
        retired = CniNetworks(a.store, (), a.host_id).retire(network)
    for pool_id in retired:
        say(f"retired {pool_id} (CNI network {network})")
