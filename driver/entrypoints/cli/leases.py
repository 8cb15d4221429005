"""``ipledger leases``: what a pool's subnet holds, address by address."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from driver.domain.cni import holder_shown
from driver.entrypoints.cli.ledger import admin
from driver.entrypoints.cli.options import db_option, settings_from_env
from driver.entrypoints.cli.render import say, table, when

if TYPE_CHECKING:
    from driver.usecases.reports import AddressLine


@click.command()
@db_option
@click.argument("pool_id")
def leases(db_url: str | None, pool_id: str) -> None:
    """What POOL_ID's subnet holds: leases, reservations, parked addresses.

    POOL_ID may also be a subnet (198.51.100.0/24) or the name of a Docker network.
    """
    with admin(db_url, reads=True) as a:
        pool_id = a.reports.resolve_pool(pool_id, *_network_pools(pool_id))
        lines = a.reports.addresses(pool_id)
    if not lines:
        say(f"{pool_id}: nothing leased, reserved or parked")
        return
    pending = _pending_releases()
    table(
        ["ADDRESS", "STATE", "KIND", "MAC/ATTACHMENT", "NAME", "SINCE", "DETAIL"],
        [
            [
                line.address,
                "release pending" if _pending(line, pending) else line.state,
                line.kind or "-",
                holder_shown(line.mac, line.attachment, line.name, line.pod) or "-",
                line.name or "-",
                when(line.since),
                f"until {when(line.until)}" if line.until else line.detail or "",
            ]
            for line in lines
        ],
    )


def _pending_releases() -> dict[str, float]:
    """The CNI DELs spooled on this node and not applied yet: attachment -> time of the DEL."""
    from driver.adapters.spool import Spool

    directory = settings_from_env().cni_spool
    return {r.attachment: r.deleted_at for r in Spool(directory).pending()}


def _pending(line: AddressLine, pending: dict[str, float]) -> bool:
    from driver.domain.cni import released_by_spooled_del

    deleted_at = pending.get(line.attachment or "")
    return (
        deleted_at is not None
        and line.since is not None
        and released_by_spooled_del(line.since.timestamp(), deleted_at)
    )


def _network_pools(name: str) -> tuple[list[str] | None, str | None]:
    """The PoolIDs of the Docker network called ``name`` (None when Docker has none by that
    name, and then ``name`` is only looked for as a PoolID or a subnet), and why Docker could not
    be asked, when it could not."""
    if "/" in name:
        return None, None
    from driver.adapters.docker_state import DockerUnavailable, network_named
    from driver.domain.reconcile import pool_ids

    try:
        network = network_named(name)
    except DockerUnavailable as e:
        return None, str(e)
    return (sorted(pool_ids(network)) if network is not None else None), None
