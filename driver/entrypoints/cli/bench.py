"""``ipledger bench``: parses which benchmark to run, and runs it (:mod:`driver.bench`)."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--quick", is_flag=True, help="Small counts (1,000 and 10,000 leases), as CI runs it."
)
@click.option(
    "--postgres",
    "postgres_url",
    metavar="URL",
    help="Instead: three instances on this (empty) PostgreSQL database.",
)
@click.option(
    "--cni",
    is_flag=True,
    help="Instead: CNI ADD and DEL as plugin processes, ipledger beside host-local.",
)
@click.option("--ui", is_flag=True, help="Instead: the status page's answer times.")
@click.option(
    "--dns",
    is_flag=True,
    help="Instead: named calls with DNS publishing off and on, side by side, and their ratio.",
)
@click.option(
    "--dns-server",
    metavar="HOST:PORT",
    help="With --dns: the DNS server to publish to (else none answers: changes wait queued).",
)
@click.option("--dns-tsig", metavar="FILE", help="With --dns: the TSIG key file for it.")
@click.option(
    "--dns-zone",
    default="bench.example.test",
    show_default=True,
    help="With --dns: the zone the pool publishes in (the server must take updates to it).",
)
def bench(
    quick: bool,
    postgres_url: str | None,
    cni: bool,
    ui: bool,
    dns: bool,
    dns_server: str | None,
    dns_tsig: str | None,
    dns_zone: str,
) -> None:
    """Measure the real server under a Docker-like client and print the tables."""
    from driver.bench.ipam import run, run_postgres

    if dns:
        from driver.bench.dns import run_dns

        run_dns(quick, dns_server, dns_tsig, zone=dns_zone)
    elif ui:
        from driver.bench.ui import run_ui

        run_ui(quick)
    elif cni:
        from driver.bench.cni import run_cni

        run_cni(quick)
    elif postgres_url:
        run_postgres(postgres_url, quick)
    else:
        run(quick)
