"""The ``ipledger`` group: the options every command shares."""

from __future__ import annotations

import click

from driver.entrypoints.cli.options import DB_HELP, Group


@click.group(cls=Group)
@click.version_option(package_name="ipledger", prog_name="ipledger", message="%(prog)s %(version)s")
@click.option("--db", "db_url", help=DB_HELP + " (also accepted after the subcommand)")
@click.pass_context
def main(context: click.Context, db_url: str | None) -> None:
    """ipledger: a Docker IPAM driver that keeps every lease in a database."""
    context.obj = {"db_url": db_url}
