"""``ipledger serve``, ``ui``, ``install-service`` and ``install-cni``: running ipledger and
putting it in place."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from driver.config import SETTINGS, Settings, setting_help
from driver.entrypoints.cli.ledger import admin
from driver.entrypoints.cli.options import DB_HELP, settings_from_env


def _configure_logging(settings: Settings) -> None:
    import logging.config

    from driver.observability.logs import logging_config

    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))


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


@click.command(epilog=_settings_epilog())
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


@click.command("install-service")
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


@click.command()
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


@click.command("install-cni")
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
