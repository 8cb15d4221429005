"""The operator commands of ``ipledger``: see, reserve, move and reclaim addresses.

A thin click layer: each command calls :mod:`driver.usecases.admin` or :mod:`driver.usecases.gc`
and renders what comes back. They work on the database the plugin uses (``--db`` or
``IPLEDGER_DB``), also while it serves Docker.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from driver.config import Settings, SettingsError
from driver.domain.cni import event_attachment, event_pod, holder_shown
from driver.domain.errors import IpamError
from driver.domain.moments import as_utc
from driver.domain.pools import LOCAL_OWNER, LOCAL_SPACE, SPACES
from driver.domain.text import printable, shown
from driver.usecases.admin import Admin

if TYPE_CHECKING:
    from driver.usecases.admin import Admin
    from driver.usecases.reports import AddressLine

DB_HELP = "SQLAlchemy database URL [IPLEDGER_DB; default sqlite:////var/lib/ipledger/ipledger.db]"
BAR_WIDTH = 20


class Group(click.Group):
    """``ipledger``'s command group: every error a command ends with is printed as one line
    without passwords (:func:`driver.domain.text.shown`), whatever it names."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as e:
            e.message = shown(e.message)  # type: ignore[misc]  # escaped in place, kept whole
            raise
        except SystemExit as e:
            if isinstance(e.code, str):
                raise SystemExit(shown(e.code)) from None
            raise


def say(text: str) -> None:
    """Print a line of plain output, what it names escaped onto the one line."""
    click.echo(printable(text))


def settings_from_env(**overrides: Any) -> Settings:
    """The settings, or a clean exit naming the setting that does not parse.

    ``--db`` may come before the subcommand (``ipledger --db URL pools``) or after it.
    """
    context = click.get_current_context(silent=True)
    root = context.find_root().obj if context is not None else None
    if overrides.get("db_url") is None and isinstance(root, dict):
        overrides["db_url"] = root.get("db_url")
    try:
        return Settings.from_env(**overrides)
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def seconds(text: str, what: str) -> int:
    """An age option with its unit (``45s``, ``15m``, ``12h``, ``7d``) in seconds, or a clean
    exit; a bare number is refused, naming the fix."""
    from driver.domain.addresses import parse_age

    try:
        return parse_age(text, what)
    except IpamError as e:
        raise click.ClickException(e.message) from None


def db_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--db", "db_url", help=DB_HELP)(command)


def space_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--space",
        type=click.Choice(SPACES),
        default=LOCAL_SPACE,
        show_default=True,
        help="Address space of the network.",
    )(command)


def require_ledger(settings: Settings) -> None:
    """Refuse an SQLite ledger that does not exist: a mistyped --db must not make an empty one."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.db_url)
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path.startswith((":memory:", "file:")):
        return
    if not os.path.lexists(path):  # a symbolic link is refused, saying so, when opened
        raise click.ClickException(
            f"no ledger at {path}: check --db or IPLEDGER_DB "
            "(ipledger serve creates the ledger on first start)"
        )


@contextmanager
def admin(db_url: str | None, *, create: bool = False, reads: bool = False) -> Iterator[Admin]:
    """The :class:`driver.usecases.admin.Admin` of the configured database, migrated to the newest
    schema; only ``create`` makes a new SQLite ledger. A command that only ``reads`` also works
    on an SQLite ledger on a read-only file system: opened as it is, when its schema is current."""
    from sqlalchemy.exc import DBAPIError

    from driver.storage.engine import masked_url
    from driver.storage.schema import migrate, pending_migration
    from driver.storage.store import Conflict, open_store
    from driver.usecases.admin import Admin

    settings = settings_from_env(db_url=db_url)
    if not create:
        require_ledger(settings)
    try:
        store = open_store(
            settings.db_url,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_ms=settings.busy_timeout_ms,
            read_only=reads,
        )
    except IpamError as e:
        raise click.ClickException(e.message) from None
    try:
        if store.read_only:
            stale = pending_migration(store.engine)
            if stale is not None:
                raise click.ClickException(
                    f"the ledger {masked_url(settings.db_url)} is on a read-only file system "
                    f"and its schema (revision {stale[0] or 'none'}) is older than this "
                    f"ipledger's ({stale[1]}): run ipledger once where it is writable, which "
                    "migrates it"
                )
        else:
            migrate(store.engine)
        yield Admin(store, settings.host_id)
    except DBAPIError as e:
        raise click.ClickException(
            f"database unavailable at {masked_url(settings.db_url)}: "
            f"{str(e.orig).strip().splitlines()[0]}"
        ) from None
    except IpamError as e:
        raise click.ClickException(e.message) from None
    except Conflict as e:
        raise click.ClickException(
            f"database busy: a conflicting update ({e}); try again"
        ) from None
    finally:
        store.dispose()


@contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal, advanced by the callback."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


def count(n: int) -> str:
    """Counts as they read: exact up to a billion, then in powers (IPv6 pools are vast)."""
    return f"{n:,}" if n < 10**9 else f"{n:.2e}"


def bar(ratio: float) -> str:
    filled = round(ratio * BAR_WIDTH)
    if ratio > 0 and filled == 0:
        filled = 1
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {ratio * 100:5.1f}%"


def table(headers: list[str], rows: list[list[str]]) -> None:
    """Rows under their headers; a name from outside cannot break a row (it is escaped)."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def register(main: click.Group) -> None:
    for command in (
        pools,
        leases,
        usage,
        history,
        reserve,
        unreserve,
        export,
        import_,
        check,
        gc,
        migrate_db,
        prune_history,
    ):
        main.add_command(command)


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def pools(db_url: str | None, as_json: bool) -> None:
    """Every pool (one per Docker network subnet) with its usage."""
    with admin(db_url, reads=True) as a:
        reports = a.reports.pools()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "pool": r.pool.id,
                        "owner": r.pool.owner,
                        "subnet": r.pool.subnet.cidr,
                        "range": r.pool.subpool,
                        "size": r.usage.size,
                        "leased": r.usage.leased,
                        "reserved": r.usage.reserved,
                        "parked": r.usage.parked,
                        "free": r.usage.free,
                        "utilisation": round(r.usage.utilisation, 6),
                        "reuse": r.pool.policy.reuse,
                        "quarantine_s": r.pool.policy.quarantine_s,
                        "hold_s": r.pool.policy.hold_s,
                        "host": r.pool.host_id,
                    }
                    for r in reports
                ],
                indent=2,
            )
        )
        return
    if not reports:
        click.echo("no pools: no network uses ipledger yet")
        return
    rows = [
        [
            r.pool.id,
            count(r.usage.size),
            count(r.usage.leased),
            count(r.usage.reserved),
            count(r.usage.parked),
            count(r.usage.free),
            bar(r.usage.utilisation),
        ]
        for r in reports
    ]
    headers = ["POOL", "SIZE", "LEASED", "RESERVED", "PARKED", "FREE", "UTILISATION"]
    if any(r.pool.owner != LOCAL_OWNER for r in reports):
        # a shared ledger: the same PoolID may be several hosts' own pool
        headers.insert(1, "OWNER")
        for row, r in zip(rows, reports, strict=True):
            row.insert(1, r.pool.owner)
    table(headers, rows)


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


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
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
                    {
                        "space": space,
                        "subnet": subnet.cidr,
                        "pools": refs,
                        "size": u.size,
                        "leased": u.leased,
                        "reserved": u.reserved,
                        "parked": u.parked,
                        "free": u.free,
                        "utilisation": round(u.utilisation, 6),
                    }
                    for space, subnet, refs, u in rows
                ],
                indent=2,
            )
        )
        return
    table(
        [
            "SPACE",
            "SUBNET",
            "POOLS",
            "SIZE",
            "LEASED",
            "RESERVED",
            "PARKED",
            "FREE",
            "UTILISATION",
            "",
        ],
        [
            [
                space,
                subnet.cidr,
                str(refs),
                count(u.size),
                count(u.leased),
                count(u.reserved),
                count(u.parked),
                count(u.free),
                bar(u.utilisation),
                "<- running out" if u.utilisation * 100 >= warn else "",
            ]
            for space, subnet, refs, u in rows
        ],
    )
    for space in SPACES:
        for version in (4, 6):
            mine = [u for s, subnet, _, u in rows if s == space and subnet.version == version]
            if mine:
                leased = sum(u.leased for u in mine)
                click.echo(
                    f"{space} IPv{version}: {len(mine)} subnets, {count(leased)} leased, "
                    f"{count(sum(u.reserved for u in mine))} reserved, "
                    f"{count(sum(u.parked for u in mine))} parked"
                )


@click.command()
@db_option
@click.argument("address", required=False)
@click.option("--pool", "pool_id", help="Only this pool's events.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="The newest N events.",
)
def history(db_url: str | None, address: str | None, pool_id: str | None, limit: int) -> None:
    """Who had ADDRESS (or what happened in --pool) and when: allocations, releases, gc."""
    if address is None and pool_id is None:
        raise click.UsageError("give an ADDRESS, --pool POOL_ID, or both")
    with admin(db_url, reads=True) as a:
        events = a.reports.history(address=address, pool_id=pool_id, limit=limit)
        names = a.hosts.names()
    if not events:
        click.echo("no history for that")
        return
    table(
        ["WHEN", "HOST", "ACTION", "ADDRESS", "POOL", "KIND", "MAC/ATTACHMENT", "NAME", "DETAIL"],
        [
            [
                when(as_utc(e.at)),
                names.get(e.host_id, e.host_id[:12]),
                e.action,
                e.address,
                e.pool_id,
                e.kind or "-",
                holder_shown(
                    e.mac,
                    event_attachment(e.kind, e.detail),
                    e.name,
                    event_pod(e.kind, e.detail),
                )
                or "-",
                e.name or "-",
                e.detail or "",
            ]
            for e in events
        ],
    )


def shared_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--shared", is_flag=True, help="In a shared pool (ipledger.shared), for every host."
    )(command)


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
    leased = sum(len(s["leases"]) for s in data["subnets"])
    click.echo(
        f"exported {len(data['subnets'])} subnets, {leased} leases, "
        f"{len(data['history'])} history events",
        err=True,
    )


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
    from driver.domain import reconcile as reconciler
    from driver.usecases import gc as repairs
    from driver.usecases.ipam import Ipam

    grace_s = seconds(grace, "--grace")
    settings = settings_from_env(db_url=db_url)
    require_ledger(settings)
    served_as = {settings.driver_name}
    if not drivers:
        # the names this host's ipledger serve recorded: what it really serves, whatever
        # IPLEDGER_SOCKET says in this shell
        with admin(db_url) as a:
            served_as = set(a.reports.served_drivers()) or served_as
    try:
        view = read_docker(docker_host, set(drivers) or None, served_as)
    except DockerUnavailable as e:
        raise click.ClickException(str(e)) from None
    networks = view.networks
    names = set(view.drivers)
    now = datetime.now(UTC)
    with admin(db_url) as a:
        ledger_pools, ledger_leases = a.reports.gc_inputs()
        findings = reconciler.reconcile(
            ledger_pools,
            ledger_leases,
            networks,
            owner=a.owner,
            host_id=a.host_id,
            now=now,
            grace=timedelta(seconds=grace_s),
            swarm=view.swarm,
        )
        unjudged = view.swarm.why_not and reconciler.global_pools(ledger_pools, a.owner)
        if not networks and not all_networks_gone and any(f.what == "pool" for f in findings):
            # Most likely the wrong driver name, not every network gone: never release live
            # pools on that guess.
            shown = ", ".join(sorted(view.ipam_drivers)) or "none"
            warning = (
                f"Docker shows no network of the IPAM driver {', '.join(sorted(names))}, "
                f"but the ledger holds {len(ledger_pools)} pools; the IPAM drivers "
                f"Docker's networks use: {shown}. Name ipledger's with --driver, or, if "
                "every network of it is really gone, add --all-networks-gone"
            )
            if apply:
                raise click.ClickException(f"refusing --apply: {warning}")
            click.echo(f"warning: {printable(warning)}", err=True)
        outcome = {f: repairs.REPORTED for f in findings}
        if apply and findings:
            ipam = Ipam(a.store, settings.default_pools, a.host_id)
            with progress(len(findings), "reclaiming") as step:
                outcome.update(
                    repairs.apply(
                        ipam, findings, now=now, grace=timedelta(seconds=grace_s), progress=step
                    )
                )
        a.housekeeping.record_findings(
            [f for f, done in outcome.items() if not done.outcome.resolved]
        )
    click.echo(
        f"{len(networks)} Docker networks use {', '.join(sorted(names))}; "
        f"{len(ledger_pools)} pools and {len(ledger_leases)} leases in the ledger"
    )
    if unjudged:
        click.echo(f"{len(unjudged)} global pools not judged: {view.swarm.why_not}")
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
    if not apply:
        say(f"report only: run with --apply to reclaim what is older than {grace}")


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


@click.command("prune-history")
@db_option
@click.option(
    "--older-than",
    "age",
    required=True,
    help="An age with its unit (90d, 12h, 30m, 45s): the events older than this.",
)
@click.option("--apply", is_flag=True, help="Drop them (default: only say what would be dropped).")
def prune_history(db_url: str | None, age: str, apply: bool) -> None:
    """Drop history events older than --older-than (export first to keep them).

    Without --apply, only shows how many events that is, and the oldest and newest of them.
    """
    age_s = seconds(age, "--older-than")
    with admin(db_url) as a:
        before = datetime.now(UTC) - timedelta(seconds=age_s)
        span = a.housekeeping.history_before(before)
        if not span.count:
            say(f"no history events older than {age} (before {when(before)})")
            return
        what = (
            f"{count(span.count)} history events older than {age}, "
            f"from {when(span.oldest)} to {when(span.newest)}"
        )
        if not apply:
            say(f"would drop {what}")
            say("report only: run with --apply to drop them ('ipledger export' first keeps them)")
            return
        say(f"dropping {what}")
        dropped = a.housekeeping.prune_history(before)
    say(f"dropped {count(dropped)} history events older than {age}")
