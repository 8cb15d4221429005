"""Serving: gunicorn with the Flask app on a unix socket (or on sockets systemd hands over)."""

from __future__ import annotations

import logging
import os
import stat
from typing import Any

from gunicorn.app.base import BaseApplication
from sqlalchemy.exc import DBAPIError

from driver.api import create_app
from driver.config import Settings
from driver.schema import migrate
from driver.store import make_engine, masked_url

log = logging.getLogger(__name__)


LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def logging_config(level: str) -> dict[str, Any]:
    """One format, on stdout, for ipledger's and gunicorn's own messages alike.

    stdout because Docker logs everything a managed plugin writes to stderr as an error.
    """
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
               "formatter": "plain"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {"stdout": handler},
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            # one access line per call only when debugging: the state changes are logged anyway
            "gunicorn.access": {"level": "DEBUG" if level == "debug" else "WARNING",
                                "handlers": [], "propagate": True},
        },
    }


class PluginServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's arbiter and workers around :func:`driver.api.create_app`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": [f"unix:{self.settings.socket}"],
            "workers": self.settings.workers,
            "worker_class": "gthread",
            "threads": self.settings.threads,
            # Only root (Docker) may connect: the socket is created with mode 0600.
            "umask": 0o177,
            "timeout": 30,
            "graceful_timeout": 10,
            "loglevel": self.settings.log_level,
            "logconfig_dict": logging_config(self.settings.log_level),
            "proc_name": f"ipledger:{self.settings.driver_name}",
        }
        # gunicorn 23+ opens a control socket under $HOME by default; ipledger listens nowhere
        # but its plugin socket.
        if "control_socket_disable" in self.cfg.settings:
            options["control_socket_disable"] = True
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.settings)


def prepare_socket_path(path: str) -> None:
    """Create the socket's directory and remove a stale socket left by a crash."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SystemExit(f"ipledger: {path} exists and is not a socket; refusing to replace it")
    os.unlink(path)


def serve(settings: Settings) -> None:
    """Migrate the database, then serve until SIGTERM/SIGINT."""
    engine = make_engine(settings.db_url, synchronous=settings.sqlite_synchronous,
                         busy_timeout_ms=settings.busy_timeout_ms)
    try:
        migrate(engine)
    except DBAPIError as e:
        raise SystemExit(f"ipledger: database unavailable at {masked_url(settings.db_url)}: "
                         f"{str(e.orig).strip().splitlines()[0] if e.orig else e}") from None
    finally:
        engine.dispose()
    if "LISTEN_FDS" in os.environ:
        where = "the socket systemd passed (LISTEN_FDS)"
    else:
        prepare_socket_path(settings.socket)
        where = settings.socket
    log.info("ipledger serving driver %r on %s with database %s", settings.driver_name, where,
             masked_url(settings.db_url))
    PluginServer(settings).run()
