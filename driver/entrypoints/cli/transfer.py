"""``ipledger export``, ``import``, ``migrate-db`` and ``check``: the ledger as a whole."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from driver.domain.errors import IpamError
from driver.entrypoints.cli.ledger import admin, progress
from driver.entrypoints.cli.options import db_option, settings_from_env
from driver.entrypoints.cli.render import say


@click.command()
@db_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default="-",
    help="Where to write the JSON, readable by its owner only [stdout].",
)
def export(db_url: str | None, output: str) -> None:
    """The whole ledger as JSON: subnets, pools, leases, reservations, parked, history."""
    with (
        admin(db_url, reads=True) as a,
        progress(a.reports.count_subnets(), "exporting subnets") as step,
    ):
        data = a.transfer.export(step)
    text = json.dumps(data, indent=1) + "\n"
    if output == "-":
        click.echo(text, nl=False)
    else:
        _write_private(output, text)
    leased = sum(len(s["leases"]) for s in data["subnets"])
    click.echo(
        f"exported {len(data['subnets'])} subnets, {leased} leases, "
        f"{len(data['history'])} history events",
        err=True,
    )


def _write_private(output: str, text: str) -> None:
    """Write the export readable by its owner only."""
    # MACs, container names and history: as private as the database itself, and never
    # through a link or into a file someone else owns (and so can read)
    from driver.storage.engine import check_private_file

    try:
        check_private_file(output, "to write the export")
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except IpamError as e:
        raise click.ClickException(e.message) from None
    except OSError as e:
        raise click.ClickException(f"cannot write {output}: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        if os.fstat(fd).st_uid != os.geteuid():  # planted since the check
            raise click.ClickException(f"refusing to write the export: {output} changed")
        os.fchmod(fd, 0o600)
        f.truncate()
        f.write(text)


@click.command("import")
@db_option
@click.argument("source", type=click.File("r"))
def import_(db_url: str | None, source: Any) -> None:
    """Load an export (SOURCE, or - for stdin) into a ledger that holds none of its pools.

    The whole file is checked first (its fields, then every rule the ledger keeps: no
    overlapping subnets, every address held once, inside its subnet, ...); a refused file
    changes nothing, and creates no ledger file.
    """
    from driver.storage.engine import is_shared
    from driver.usecases.transfer import plan_import

    try:
        data = json.load(source)
    except RecursionError:
        raise click.ClickException(
            f"{source.name} is not an ipledger export: its JSON is nested too deeply"
        ) from None
    except ValueError as e:
        raise click.ClickException(f"{source.name} is not JSON: {e}") from None
    settings = settings_from_env(db_url=db_url)
    try:
        # before the ledger is opened: a refused file must not create one
        plan = plan_import(data, is_shared(settings.db_url), settings.host_id)
    except IpamError as e:
        raise click.ClickException(e.message) from None
    with admin(db_url, create=True) as a, progress(len(plan.subnets), "importing subnets") as step:
        leased = a.transfer.import_plan(plan, step)
    click.echo(f"imported {len(plan.subnets)} subnets and {leased} leases")


@click.command()
@db_option
def check(db_url: str | None) -> None:
    """Check the ledger's consistency: free ranges, leases, reservations, counts, the file."""
    with (
        admin(db_url, reads=True) as a,
        progress(a.reports.count_subnets(), "checking subnets") as step,
    ):
        report = a.checks.check(step)
    for problem in report.problems:
        say(f"problem: {problem}")
    if report.problems:
        raise click.ClickException(f"{len(report.problems)} problems in {report.subnets} subnets")
    click.echo(f"ok: {report.subnets} subnets and {report.leases} leases are consistent")


@click.command("migrate-db")
@db_option
@click.option(
    "--to",
    "target",
    required=True,
    help="URL of the ledger to move into, e.g. postgresql+psycopg://ipledger@db/ipam",
)
def migrate_db(db_url: str | None, target: str) -> None:
    """Copy this host's ledger (--db) into another database, e.g. SQLite into PostgreSQL.

    Stop ipledger first, then point IPLEDGER_DB at the new ledger and start it again. This
    host's pools become its own (IPLEDGER_HOST_ID) in the target, beside other hosts' pools.
    """
    from driver.storage.engine import is_shared, masked_url
    from driver.usecases.transfer import plan_import

    source_url = settings_from_env(db_url=db_url).db_url
    if source_url == target:
        raise click.ClickException("--to names the ledger being migrated")
    with admin(db_url, reads=True) as source:
        data = source.transfer.export()
    try:
        # before the target is opened: a ledger that breaks an invariant must not create one
        plan = plan_import(data, is_shared(target), settings_from_env(db_url=target).host_id)
    except IpamError as e:
        raise click.ClickException(e.message) from None
    with admin(target, create=True) as destination:
        leased = destination.transfer.import_plan(plan)
        report = destination.checks.check()
    if report.problems:
        raise click.ClickException(
            "the migrated ledger does not check clean: " + "; ".join(report.problems[:3])
        )
    click.echo(
        f"moved {len(data['subnets'])} subnets, {leased} leases and "
        f"{len(data['history'])} history events into {masked_url(target)}, "
        f"as host {destination.host_id!r}"
    )
    click.echo(f"now set IPLEDGER_DB={masked_url(target)} and restart ipledger")
