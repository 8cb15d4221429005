"""The ``ipledger`` command: a thin click layer over the library."""

from __future__ import annotations

import logging
from typing import Any

import click

from driver.config import Settings, SettingsError


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")


@click.group()
def main() -> None:
    """ipledger: a Docker IPAM driver that keeps every lease in a database."""


@main.command()
@click.option("--socket", help="Unix socket to serve on [IPLEDGER_SOCKET; "
              "default /run/docker/plugins/ipledger.sock]")
@click.option("--db", "db_url", help="SQLAlchemy database URL [IPLEDGER_DB; "
              "default sqlite:////var/lib/ipledger/ipledger.db]")
@click.option("--workers", type=click.IntRange(min=1),
              help="gunicorn workers [IPLEDGER_WORKERS; 2]")
@click.option("--threads", type=click.IntRange(min=1),
              help="threads per worker [IPLEDGER_THREADS; 4]")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="[IPLEDGER_LOG_LEVEL; info]")
def serve(socket: str | None, db_url: str | None, workers: int | None, threads: int | None,
          log_level: str | None) -> None:
    """Serve Docker's IpamDriver API on a unix socket."""
    from driver.server import serve as run

    settings = _settings(socket=socket, db_url=db_url, workers=workers, threads=threads,
                         log_level=log_level)
    _configure_logging(settings.log_level)
    run(settings)
