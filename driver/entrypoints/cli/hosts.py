"""``ipledger hosts``: the hosts of the ledger, retiring a dead one and admitting it back.

Parses, calls :mod:`driver.usecases.hosts`, prints.
"""

from __future__ import annotations

import json
import os
import pwd
from datetime import UTC, datetime

import click

from driver.domain.hosts import STALE_AFTER_S, age_shown
from driver.entrypoints.cli.ledger import admin
from driver.entrypoints.cli.options import Group, db_option, json_option, settings_from_env
from driver.entrypoints.cli.render import count, say, table, when
from driver.entrypoints.host_json import host_json
from driver.usecases.hosts import HostReport


@click.group(cls=Group, invoke_without_command=True)
@db_option
@json_option
@click.pass_context
def hosts(context: click.Context, db_url: str | None, as_json: bool) -> None:
    """The hosts whose ipledger serve uses the ledger: name, version, last heartbeat, state,
    leases. 'ipledger hosts retire HOST' releases a dead host's leases."""
    if context.invoked_subcommand is not None:
        return
    with admin(db_url, reads=True) as a:
        reports = a.hosts.reports()
    now = datetime.now(UTC)
    if as_json:
        click.echo(json.dumps([host_json(r, now) for r in reports], indent=2))
        return
    if not reports:
        click.echo("no hosts: no ipledger serve has used this ledger yet")
        return
    table(
        ["HOST", "NAME", "VERSION", "LAST SEEN", "STATE", "LEASES", "DRIVERS", "CNI NETWORKS"],
        [
            [
                r.host.id,
                r.host.name,
                r.host.version or "-",
                _seen(r, now),
                _state(r),
                count(r.leases),
                ",".join(r.drivers) or "-",
                ",".join(r.cni_networks) or "-",
            ]
            for r in reports
        ],
    )


def _seen(report: HostReport, now: datetime) -> str:
    age = report.host.age(now)
    return "never" if age is None else f"{age_shown(age)} ago"


def _state(report: HostReport) -> str:
    host = report.host
    if host.retired:
        return f"retired {when(host.retired_at)} by {host.retired_by or '-'}"
    return "active" if report.host.seen_recently(datetime.now(UTC)) else "active, silent"


def _operator() -> str:
    """Who runs the command, as a retired host records it: user@host name."""
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    return f"{user}@{settings_from_env().host_name}"


@hosts.command()
@db_option
@click.argument("host")
@click.option("--apply", is_flag=True, help="Retire it (default: only say what would be done).")
@click.option(
    "--force",
    is_flag=True,
    help=f"Retire it even though its heartbeat is recent (within {STALE_AFTER_S:.0f} s).",
)
def retire(db_url: str | None, host: str, apply: bool, force: bool) -> None:
    """Release the leases of HOST (an id, or a name), a host that is gone for good.

    Its leases in the shared pools are released as their pools' reuse policies say, it leaves
    the shared pools it used, and it is marked retired; the leases of its own pools stay (no
    other host draws from them): its ipledger serve, if it comes back, changes nothing until
    'ipledger hosts admit HOST'. Refused while HOST was seen within the last
    three heartbeats, unless --force. Without --apply, only says what would be done.
    """
    with admin(db_url) as a:
        if not apply:
            report, now = a.hosts.report(host), datetime.now(UTC)
            report.host.check_retirable(now, force)
            say(
                f"would retire host {report.host.label}, last seen {_seen(report, now)}"
                f", and release those of its {count(report.leases)} leases in shared pools"
                " (the leases of its own pools are kept)"
            )
            say("report only: run with --apply to retire it")
            return
        done = a.hosts.retire(host, _operator(), force=force)
    say(
        f"retired host {done.host.label}: {count(done.released)} leases released, "
        f"{len(done.detached)} shared pools left"
        + (f", {done.kept} shared gateways kept for the other hosts" if done.kept else "")
        + (
            f"; {count(done.own_kept)} leases in its own pools kept: no other host draws from them"
            if done.own_kept
            else ""
        )
    )


@hosts.command()
@db_option
@click.argument("host")
def admit(db_url: str | None, host: str) -> None:
    """Admit HOST (an id, or a name) again after 'ipledger hosts retire': its calls are served.

    It is attached again to the shared pools its retiring took it off. Its leases in them were
    released: containers it still runs hold addresses the ledger may have given to others.
    Restart them (or run 'ipledger gc' on it) once it is admitted.
    """
    with admin(db_url) as a:
        done = a.hosts.admit(host)
    say(
        f"admitted host {done.host.label}: its ipledger serve hands out addresses again"
        + (f", attached again to {len(done.attached)} shared pools" if done.attached else "")
    )
