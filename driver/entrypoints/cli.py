"""The ``ipledger`` command: a thin click layer over the library."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from driver.config import SETTINGS, Settings, setting_help
from driver.entrypoints.cli_cni import cni
from driver.entrypoints.cli_dns import dns
from driver.entrypoints.cli_ops import DB_HELP, Group, register, settings_from_env


def _configure_logging(settings: Settings) -> None:
    import logging.config

    from driver.observability.logs import logging_config

    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))


@click.group(cls=Group)
@click.version_option(package_name="ipledger", prog_name="ipledger", message="%(prog)s %(version)s")
@click.option("--db", "db_url", help=DB_HELP + " (also accepted after the subcommand)")
@click.pass_context
def main(context: click.Context, db_url: str | None) -> None:
    """ipledger: a Docker IPAM driver that keeps every lease in a database."""
    context.obj = {"db_url": db_url}


def _flag_help(field_name: str) -> str:
    setting = setting_help(field_name)
    return f"{setting.meaning} [{setting.variable}; default {setting.default}]"


def _settings_epilog() -> str:
    """Every setting of serve, flag or not, from driver/config.py."""
    lines = ["Settings (a flag overrides its variable):", "", "\b"]
    for setting in SETTINGS:
        flag = f" ({setting.flag})" if setting.flag else ""
        lines.append(f"{setting.variable}{flag}, default {setting.default}")
        lines.append(f"    {setting.meaning}")
    return "\n".join(lines)


@main.command(epilog=_settings_epilog())
@click.option("--socket", help=_flag_help("socket"))
@click.option("--db", "db_url", help=_flag_help("db_url"))
@click.option("--workers", type=click.IntRange(min=1), help=_flag_help("workers"))
@click.option("--threads", type=click.IntRange(min=1), help=_flag_help("threads"))
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help=_flag_help("log_level"),
)
def serve(
    socket: str | None,
    db_url: str | None,
    workers: int | None,
    threads: int | None,
    log_level: str | None,
) -> None:
    """Serve Docker's IpamDriver API on a unix socket."""
    from driver.entrypoints.server import serve as run

    settings = settings_from_env(
        socket=socket, db_url=db_url, workers=workers, threads=threads, log_level=log_level
    )
    _configure_logging(settings)
    run(settings)


@main.command("install-service")
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/etc/systemd/system"),
    show_default=True,
    help="Where to put ipledger.socket and ipledger.service.",
)
@click.option(
    "--start/--no-start",
    default=True,
    show_default=True,
    help="Reload systemd and enable --now ipledger.socket, when systemd runs.",
)
def install_service(unit_dir: Path, start: bool) -> None:
    """Install ipledger as a systemd service, socket-activated and ordered before Docker."""
    from driver.entrypoints.install import InstallError, install_units

    try:
        written = install_units(unit_dir)
    except InstallError as e:
        raise click.ClickException(str(e)) from None
    for path in written:
        click.echo(f"wrote {path}")
    if not start:
        return
    if not Path("/run/systemd/system").is_dir():
        click.echo(
            "systemd is not running here: run 'systemctl daemon-reload && "
            "systemctl enable --now ipledger.socket' on the host that boots with it"
        )
        return
    for command in (
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "ipledger.socket"],
    ):
        subprocess.run(command, check=True)
        click.echo(" ".join(command))


@main.command()
@click.option(
    "--listen",
    default="127.0.0.1:9466",
    show_default=True,
    help="HOST:PORT (or PORT, on 127.0.0.1) to serve the status page on.",
)
@click.option("--db", "db_url", help=DB_HELP)
def ui(listen: str, db_url: str | None) -> None:
    """Serve the status page alone, read-only, against a ledger."""
    from driver.config import SettingsError, parse_listen_addr
    from driver.entrypoints.cli_ops import admin
    from driver.entrypoints.listener import listen as make_listener
    from driver.entrypoints.ui.app import create_ui_app
    from driver.usecases.status import StatusViews

    try:
        host, port = parse_listen_addr("--listen", listen)
    except SettingsError as e:
        raise click.ClickException(str(e)) from None
    with admin(db_url, reads=True) as a:
        server = make_listener(create_ui_app(StatusViews(a.store, a.host_id)), host, port)
        where = f"[{host}]" if ":" in host else host
        click.echo(f"ipledger status page on http://{where}:{port}/ (Ctrl-C stops it)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@main.command("install-cni")
@click.argument("plugin_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--name",
    default="ipledger",
    show_default=True,
    help='The plugin\'s file name: the "type" of the IPAM section that names it.',
)
@click.option(
    "--self-contained",
    is_flag=True,
    help="Copy a Python runtime beside the plugin (DIR/.NAME-runtime-*), for a host that does "
    "not have this installation: a Kubernetes node, from the DaemonSet's init container.",
)
def install_cni(plugin_dir: Path, name: str, self_contained: bool) -> None:
    """Put the CNI IPAM plugin into a CNI plugin directory (e.g. /opt/cni/bin, /usr/lib/cni)."""
    if self_contained:
        from driver.entrypoints.cni_bundle import BundleError, install_self_contained

        try:
            path = install_self_contained(plugin_dir, name)
        except (BundleError, OSError) as e:
            raise click.ClickException(
                f"cannot install the plugin into {plugin_dir}: {e}"
            ) from None
    else:
        from driver.entrypoints.install import install_cni_plugin

        path = install_cni_plugin(plugin_dir, name)
    click.echo(f"wrote {path}")


@main.command()
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
    from driver.entrypoints.bench import run, run_postgres

    if dns:
        from driver.entrypoints.bench_dns import run_dns

        run_dns(quick, dns_server, dns_tsig, zone=dns_zone)
    elif ui:
        from driver.entrypoints.bench_ui import run_ui

        run_ui(quick)
    elif cni:
        from driver.entrypoints.bench_cni import run_cni

        run_cni(quick)
    elif postgres_url:
        run_postgres(postgres_url, quick)
    else:
        run(quick)


register(main)
main.add_command(cni)
main.add_command(dns)
