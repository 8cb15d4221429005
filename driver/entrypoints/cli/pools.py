"""``ipledger pools`` and ``ipledger usage``: the pools and subnets with how full they are."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from driver.domain.pools import LOCAL_OWNER, SPACES
from driver.entrypoints.cli.ledger import admin
from driver.entrypoints.cli.options import db_option, json_option
from driver.entrypoints.cli.render import bar, count, table

if TYPE_CHECKING:
    from driver.domain.addresses import Subnet
    from driver.storage.inventory import Usage
    from driver.usecases.reports import PoolReport

    SubnetLine = tuple[str, Subnet, int, Usage]


@click.command()
@db_option
@json_option
def pools(db_url: str | None, as_json: bool) -> None:
    """Every pool (one per Docker network subnet) with its usage."""
    with admin(db_url, reads=True) as a:
        reports = a.reports.pools()
    if as_json:
        click.echo(json.dumps([_pool_json(r) for r in reports], indent=2))
    elif not reports:
        click.echo("no pools: no network uses ipledger yet")
    else:
        _pool_table(reports)


def _usage_cells(u: Usage) -> list[str]:
    return [
        count(u.size),
        count(u.leased),
        count(u.reserved),
        count(u.parked),
        count(u.free),
        bar(u.utilisation),
    ]


def _usage_json(u: Usage) -> dict[str, object]:
    return {
        "size": u.size,
        "leased": u.leased,
        "reserved": u.reserved,
        "parked": u.parked,
        "free": u.free,
        "utilisation": round(u.utilisation, 6),
    }


def _pool_json(r: PoolReport) -> dict[str, object]:
    return {
        "pool": r.pool.id,
        "owner": r.pool.owner,
        "subnet": r.pool.subnet.cidr,
        "range": r.pool.subpool,
        **_usage_json(r.usage),
        "reuse": r.pool.policy.reuse,
        "quarantine_s": r.pool.policy.quarantine_s,
        "hold_s": r.pool.policy.hold_s,
        "host": r.pool.host_id,
    }


def _pool_table(reports: list[PoolReport]) -> None:
    rows = [[r.pool.id, *_usage_cells(r.usage)] for r in reports]
    headers = ["POOL", "SIZE", "LEASED", "RESERVED", "PARKED", "FREE", "UTILISATION"]
    if any(r.pool.owner != LOCAL_OWNER for r in reports):
        # a shared ledger: the same PoolID may be several hosts' own pool
        headers.insert(1, "OWNER")
        for row, r in zip(rows, reports, strict=True):
            row.insert(1, r.pool.owner)
    table(headers, rows)


USAGE_HEADERS = ["SPACE", "SUBNET", "POOLS", "SIZE", "LEASED", "RESERVED", "PARKED", "FREE"]


@click.command()
@db_option
@json_option
@click.option(
    "--warn",
    type=click.FloatRange(0, 100),
    default=80,
    show_default=True,
    help="Flag subnets used at or above this percentage.",
)
def usage(db_url: str | None, as_json: bool, warn: float) -> None:
    """Usage per subnet (shared by its ip-range pools) and per address space."""
    with admin(db_url, reads=True) as a:
        rows = a.reports.subnets()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"space": space, "subnet": subnet.cidr, "pools": refs, **_usage_json(u)}
                    for space, subnet, refs, u in rows
                ],
                indent=2,
            )
        )
        return
    table(
        [*USAGE_HEADERS, "UTILISATION", ""],
        [
            [
                space,
                subnet.cidr,
                str(refs),
                *_usage_cells(u),
                "<- running out" if u.utilisation * 100 >= warn else "",
            ]
            for space, subnet, refs, u in rows
        ],
    )
    _totals(rows)


def _totals(rows: list[SubnetLine]) -> None:
    """A line per address space and IP version: how many subnets, and what they hold."""
    for space in SPACES:
        for version in (4, 6):
            mine = [u for s, subnet, _, u in rows if s == space and subnet.version == version]
            if mine:
                click.echo(
                    f"{space} IPv{version}: {len(mine)} subnets, "
                    f"{count(sum(u.leased for u in mine))} leased, "
                    f"{count(sum(u.reserved for u in mine))} reserved, "
                    f"{count(sum(u.parked for u in mine))} parked"
                )
