"""``ipledger gc``: parses, asks Docker, calls :mod:`driver.usecases.gc`, prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from driver.domain.text import printable
from driver.entrypoints.cli.ledger import admin, progress, require_ledger
from driver.entrypoints.cli.options import db_option, seconds, settings_from_env
from driver.entrypoints.cli.render import say, table

if TYPE_CHECKING:
    from driver.domain.reconcile import Finding
    from driver.usecases.gc import Gc, Judgement, NoNetworkSeen, Repair


@click.command()
@db_option
@click.option(
    "--docker-host",
    # not envvar=DOCKER_HOST: the docker SDK reads it (with DOCKER_TLS_VERIFY and the rest), and
    # an error then says the address came from DOCKER_HOST
    help="Docker's API [DOCKER_HOST; default unix:///var/run/docker.sock]",
)
@click.option(
    "--driver",
    "drivers",
    multiple=True,
    help="IPAM driver name the networks use [the names ipledger is served under: those "
    "ipledger serve recorded in the ledger for this host (else IPLEDGER_SOCKET's name), and "
    "each managed ipledger plugin as NAME:TAG]; repeat for several.",
)
@click.option(
    "--grace",
    default="10m",
    show_default=True,
    help="Only leases and pools older than this are reclaimed.",
)
@click.option("--apply", is_flag=True, help="Release the leaks found (default: only report).")
@click.option(
    "--all-networks-gone",
    is_flag=True,
    help="Docker really has no network of the driver left: let --apply release "
    "every pool (refused otherwise, as a likely wrong --driver).",
)
def gc(
    db_url: str | None,
    docker_host: str | None,
    drivers: tuple[str, ...],
    grace: str,
    apply: bool,
    all_networks_gone: bool,
) -> None:
    """Find leases and pools no Docker network uses, and addresses Docker uses unrecorded."""
    from driver.adapters.docker_state import DockerUnavailable, read_docker
    from driver.usecases.gc import ApplyRefused

    grace_s = seconds(grace, "--grace")
    require_ledger(settings_from_env(db_url=db_url))
    with _gc(db_url) as run:
        served_as = set() if drivers else run.served_as(settings_from_env().driver_name)
        try:
            view = read_docker(docker_host, set(drivers) or None, served_as)
        except DockerUnavailable as e:
            raise click.ClickException(str(e)) from None
        judged = run.judge(
            view,
            now=datetime.now(UTC),
            grace=timedelta(seconds=grace_s),
            all_networks_gone=all_networks_gone,
        )
        if judged.doubt is not None and not apply:
            click.echo(f"warning: {printable(_doubt_shown(judged.doubt))}", err=True)
        with _reclaiming(judged, apply) as step:
            try:
                outcome = run.settle(judged, applying=apply, progress=step)
            except ApplyRefused as e:
                raise click.ClickException(f"refusing --apply: {_doubt_shown(e.why)}") from None
    click.echo(
        f"{len(view.networks)} Docker networks use {', '.join(sorted(view.drivers))}; "
        f"{judged.pools} pools and {judged.leases} leases in the ledger"
    )
    if judged.unjudged:
        click.echo(f"{judged.unjudged} global pools not judged: {view.swarm.why_not}")
    _findings(judged.findings, outcome)
    if not apply and judged.findings:
        say(f"report only: run with --apply to reclaim what is older than {grace}")


@contextmanager
def _gc(db_url: str | None) -> Iterator[Gc]:
    from driver.usecases.gc import Gc
    from driver.usecases.ipam import Ipam

    settings = settings_from_env(db_url=db_url)
    with admin(db_url) as a:
        yield Gc(a, Ipam(a.store, settings.default_pools, a.host_id))


def _reclaiming(judged: Judgement, apply: bool) -> AbstractContextManager[Callable[[int], None]]:
    """A progress bar while repairs run; none for a report."""
    if apply and judged.findings and judged.doubt is None:
        return progress(len(judged.findings), "reclaiming")
    return nullcontext(lambda _n: None)


def _doubt_shown(doubt: NoNetworkSeen) -> str:
    return (
        f"Docker shows no network of the IPAM driver {', '.join(sorted(doubt.drivers))}, "
        f"but the ledger holds {doubt.pools} pools; the IPAM drivers "
        f"Docker's networks use: {', '.join(sorted(doubt.ipam_drivers)) or 'none'}. "
        "Name ipledger's with --driver, or, if "
        "every network of it is really gone, add --all-networks-gone"
    )


def _findings(findings: list[Finding], outcome: dict[Finding, Repair]) -> None:
    if not findings:
        click.echo("no leaks: the ledger and Docker agree")
        return
    table(
        ["WHAT", "POOL", "ADDRESS", "OLD ENOUGH", "OUTCOME", "WHY"],
        [
            [
                f.what,
                f.pool_id,
                f.address or "-",
                "yes" if f.due else "no",
                str(outcome[f]),
                f.detail,
            ]
            for f in findings
        ],
    )
