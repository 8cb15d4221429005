"""Serving: gunicorn with the Flask app on a unix socket (or on sockets systemd hands over)."""

from __future__ import annotations

import logging
import math
import os
import shutil
import stat
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication
from sqlalchemy.exc import DBAPIError

from driver.config import Settings
from driver.entrypoints.api import create_app
from driver.entrypoints.worker import worker_class
from driver.observability.logs import logging_config
from driver.storage.engine import make_engine, masked_url
from driver.storage.schema import migrate

log = logging.getLogger(__name__)


class PluginServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's arbiter and workers around :func:`driver.api.create_app`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": [f"unix:{self.settings.socket}"],
            "workers": self.settings.workers,
            # gthread's threads, fed only requests that have arrived whole: a connection that
            # stalls holds no thread, and is closed at the call bound (see worker.py)
            "worker_class": worker_class(self.settings.call_timeout),
            "threads": self.settings.threads,
            # Only root (Docker) may connect: the socket is created with mode 0600.
            "umask": 0o177,
            # A worker that stops answering its arbiter (stopped, swapped out) is replaced after
            # this, which frees any lock it held; calls answered meanwhile get 503s.
            "timeout": max(10, math.ceil(3 * self.settings.call_timeout)),
            "graceful_timeout": 10,
            "loglevel": self.settings.log_level,
            "logconfig_dict": logging_config(self.settings.log_level, self.settings.log_format),
            "proc_name": f"ipledger:{self.settings.driver_name}",
        }
        # gunicorn 23+ opens a control socket under $HOME by default; ipledger listens nowhere
        # but its plugin socket.
        if "control_socket_disable" in self.cfg.settings:
            options["control_socket_disable"] = True
        for key, value in options.items():
            self.cfg.set(key, value)

        if self.settings.metrics_addr is not None:
            self.cfg.set("when_ready", _start_metrics_listener(self.settings))
            self.cfg.set("child_exit", _forget_worker_metrics)

    def load(self) -> Any:
        return create_app(self.settings)


def _start_metrics_listener(settings: Settings) -> Any:
    def when_ready(_arbiter: Any) -> None:
        from driver.entrypoints.listener import listen, metrics_view, serve_in_background
        from driver.entrypoints.ui.app import create_ui_app
        from driver.observability.metrics import scrape_registry
        from driver.storage.store import open_store
        from driver.usecases.admin import Admin
        from driver.usecases.status import StatusViews

        assert settings.metrics_addr is not None
        host, port = settings.metrics_addr
        store = open_store(
            settings.db_url,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_ms=settings.busy_timeout_ms,
        )
        registry = scrape_registry(Admin(store, settings.host_id))
        app = create_ui_app(StatusViews(store, settings.host_id), metrics_view(registry))
        serve_in_background(listen(app, host, port))
        where = f"[{host}]" if ":" in host else host
        log.info("status page on http://%s:%d/ and metrics on /metrics", where, port)

    return when_ready


def _forget_worker_metrics(_arbiter: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


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
    engine = make_engine(
        settings.db_url,
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.busy_timeout_ms,
    )
    try:
        migrate(engine)
    except DBAPIError as e:
        raise SystemExit(
            f"ipledger: database unavailable at {masked_url(settings.db_url)}: "
            f"{str(e.orig).strip().splitlines()[0] if e.orig else e}"
        ) from None
    finally:
        engine.dispose()
    if "LISTEN_FDS" in os.environ:
        where = "the socket systemd passed (LISTEN_FDS)"
    else:
        prepare_socket_path(settings.socket)
        where = settings.socket
    log.info(
        "ipledger serving driver %r on %s with database %s",
        settings.driver_name,
        where,
        masked_url(settings.db_url),
    )
    metrics_dir = None
    if settings.metrics_addr is not None:
        # before prometheus-client is imported anywhere: it reads this once, on import
        metrics_dir = tempfile.mkdtemp(prefix="ipledger-metrics.")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        PluginServer(settings).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
