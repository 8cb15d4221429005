"""Serving: gunicorn with the Flask app on a unix socket (or on sockets systemd hands over)."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
import socket
import stat
import tempfile
from typing import Any
from wsgiref.simple_server import WSGIServer

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from sqlalchemy.exc import DBAPIError

from driver.config import Settings, socket_passed_by_systemd
from driver.domain.errors import IpamError
from driver.entrypoints.api import create_app
from driver.entrypoints.dns_publisher import Publisher
from driver.entrypoints.worker import worker_class
from driver.observability.logs import logging_config
from driver.storage.engine import make_engine, masked_url
from driver.storage.schema import migrate
from driver.storage.store import first_line
from driver.storage.units import StoreUnits

log = logging.getLogger(__name__)


class PluginServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's arbiter and workers around :func:`driver.entrypoints.api.create_app`."""

    def __init__(
        self,
        settings: Settings,
        plugin_socket: PluginSocket | None = None,
        metrics: WSGIServer | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.settings = settings
        self.plugin_socket = plugin_socket
        self.metrics = metrics
        self.publisher = publisher
        super().__init__()

    def run(self) -> None:
        plugin_socket = self.plugin_socket
        publisher = self.publisher

        class _Arbiter(Arbiter):  # type: ignore[misc]
            def stop(self, graceful: bool = True) -> None:
                # gunicorn would unlink the path whatever it holds now: ipledger closes its
                # socket and removes the path only while it is still this socket
                if plugin_socket is not None:
                    listeners: list[Any] = getattr(self, "LISTENERS", [])
                    for listener in listeners:
                        listener.close()
                    setattr(self, "LISTENERS", [])  # noqa: B010 (gunicorn's, untyped)
                    plugin_socket.release()
                if publisher is not None:
                    publisher.stop()
                super().stop(graceful)

        try:
            _Arbiter(self).run()
        except RuntimeError as e:
            raise SystemExit(f"ipledger: {e}") from None

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": [
                self.plugin_socket.bind
                if self.plugin_socket is not None
                else f"unix:{self.settings.socket}"
            ],
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

        if self.metrics is not None or self.publisher is not None:
            self.cfg.set("when_ready", _when_ready(self.settings, self.metrics, self.publisher))
        if self.metrics is not None:
            self.cfg.set("child_exit", _forget_worker_metrics)

    def load(self) -> Any:
        return create_app(self.settings)


def _when_ready(
    settings: Settings, listener: WSGIServer | None, publisher: Publisher | None
) -> Any:
    """What the master process starts once it serves: the DNS publisher, the listener."""
    start_listener = (
        _start_metrics_listener(settings, listener, publisher) if listener is not None else None
    )

    def when_ready(arbiter: Any) -> None:
        if publisher is not None:
            publisher.start()
        if start_listener is not None:
            start_listener(arbiter)

    return when_ready


def _start_metrics_listener(
    settings: Settings, listener: WSGIServer, publisher: Publisher | None
) -> Any:
    def when_ready(_arbiter: Any) -> None:
        from driver.entrypoints.listener import metrics_view, serve_in_background
        from driver.entrypoints.ui.app import create_ui_app
        from driver.observability.metrics import database_state, scrape_registry
        from driver.storage.store import open_configured
        from driver.usecases.admin import Admin
        from driver.usecases.status import StatusViews

        assert settings.metrics_addr is not None
        host, port = settings.metrics_addr
        # a scrape or a page during an outage answers soon (ipledger_ledger_up 0)
        store = open_configured(settings, outage_bound=2.0)
        registry = scrape_registry(
            Admin(store, settings.host_id),
            (lambda: publisher.failures()) if publisher is not None else None,
        )
        listener.set_app(
            create_ui_app(
                StatusViews(store, settings.host_id),
                metrics_view(registry),
                database_state,
            )
        )
        serve_in_background(listener)
        where = f"[{host}]" if ":" in host else host
        log.info("status page on http://%s:%d/ and metrics on /metrics", where, port)

    return when_ready


def _forget_worker_metrics(_arbiter: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class PluginSocket:
    """The plugin's unix socket, bound by ipledger rather than by gunicorn: refused while another
    server answers on its path, and removed on exit only while the path is still this socket
    (gunicorn removes whatever is at the path)."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except OSError as e:
            raise SystemExit(_cannot(f"create the socket's directory {directory}", e)) from None
        _refuse_live_or_remove_stale(path)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)  # only root (Docker) may connect: mode 0600
        try:
            self.socket.bind(path)
        except OSError as e:
            self.socket.close()
            if e.errno == errno.EADDRINUSE:  # another server bound it since the check
                raise SystemExit(_served_elsewhere(path)) from None
            raise SystemExit(_cannot(f"create the socket {path}", e)) from None
        finally:
            os.umask(umask)
        self.socket.listen(2048)
        bound = os.stat(path)
        self.identity = (bound.st_dev, bound.st_ino)

    @property
    def bind(self) -> str:
        """gunicorn's address for it: the bound file descriptor."""
        return f"fd://{self.socket.fileno()}"

    def release(self) -> None:
        """Remove the path if it is still this socket (another server may hold it now)."""
        try:
            found = os.stat(self.path)
        except OSError:
            return
        if (found.st_dev, found.st_ino) == self.identity:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        else:
            log.warning("%s is another process's socket now: left in place", self.path)


def _refuse_live_or_remove_stale(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SystemExit(f"ipledger: {path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nobody listens: a socket left by a crash
    except OSError:
        raise SystemExit(_served_elsewhere(path)) from None  # a listener too busy to accept
    else:
        raise SystemExit(_served_elsewhere(path))
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SystemExit(_cannot(f"remove the stale socket {path}", e)) from None


def _served_elsewhere(path: str) -> str:
    return (
        f"ipledger: {path} is served by another process (a second ipledger serve?): "
        "stop it first, or serve on another --socket"
    )


def _cannot(what: str, e: OSError) -> str:
    """One line for an OSError at start, saying what could not be done and why."""
    reason = e.strerror or str(e)
    if e.errno == errno.EROFS:
        return f"ipledger: cannot {what}: it is on a read-only file system"
    return f"ipledger: cannot {what}: {reason}"


def _metrics_listener(settings: Settings) -> WSGIServer:
    """The status page's and /metrics' listener, bound before anything else (its app is set
    once gunicorn runs)."""
    from driver.entrypoints.listener import listen

    assert settings.metrics_addr is not None
    host, port = settings.metrics_addr
    try:
        return listen(None, host, port)
    except OSError as e:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = "the address is in use" if e.errno == errno.EADDRINUSE else e.strerror or e
        raise SystemExit(
            f"ipledger: cannot listen on {where} (IPLEDGER_METRICS_ADDR): {reason}"
        ) from None


def _open_ledger(settings: Settings) -> None:
    """Create (SQLite) and migrate the ledger; a one-line exit if it cannot be written."""
    try:
        engine = make_engine(
            settings.db_url,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_ms=settings.busy_timeout_ms,
        )
    except IpamError as e:  # a ledger path someone else could read or redirect
        raise SystemExit(f"ipledger: {e.message}") from None
    except OSError as e:
        where = e.filename or masked_url(settings.db_url)
        raise SystemExit(
            _cannot(f"open the ledger {where}", e)
            + (" (ipledger serve writes to it: mount it read-write)" if _read_only(e) else "")
        ) from None
    try:
        migrate(engine)
    except DBAPIError as e:
        detail = first_line(e)
        if "readonly" in detail.replace("-", "").replace(" ", ""):
            detail += " (ipledger serve writes to the ledger: mount it read-write)"
        raise SystemExit(
            f"ipledger: database unavailable at {masked_url(settings.db_url)}: {detail}"
        ) from None
    finally:
        engine.dispose()


def driver_name(socket_path: str) -> str:
    """The name Docker knows a legacy plugin by: its socket's file name without ``.sock``."""
    return os.path.basename(socket_path).removesuffix(".sock")


def _passed_socket_path() -> str | None:
    """The path of the (first) socket systemd passed, if it is a unix socket with one."""
    try:
        with socket.socket(fileno=os.dup(3)) as passed:  # SD_LISTEN_FDS_START
            name = passed.getsockname()
    except OSError:
        return None
    return name if isinstance(name, str) and name.startswith("/") else None


def _record_served(settings: Settings, driver: str, path: str) -> None:
    """Record in the ledger that this host serves it as ``driver``: ``ipledger gc`` judges the
    networks of that driver when it is not told which."""
    from driver.domain.errors import IpamError
    from driver.storage.store import open_configured
    from driver.usecases.housekeeping import Housekeeping

    store = open_configured(settings)
    try:
        Housekeeping(StoreUnits(store), settings.host_id).record_served(driver, path)
    except IpamError as e:
        log.warning("could not record the driver name %r in the ledger: %s", driver, e.message)
    finally:
        store.dispose()


def _start_heartbeat(settings: Settings) -> Any:
    """This host's row in the ledger, kept fresh by a thread of this (the master) process. A
    retired host is served all the same, so that each call is answered with the fix (ipledger
    hosts admit) rather than met by a socket nobody listens on; its calls change nothing."""
    from driver.entrypoints.heartbeat import Heartbeat

    heartbeat = Heartbeat(settings)
    heartbeat.start()
    return heartbeat


def _apply_spool(settings: Settings) -> None:
    """Apply the CNI releases ``ipledger-cni`` spooled while no server answered, before serving.
    A file that is no release is moved aside and logged; a ledger that cannot take them now
    leaves them for the next ADD of their network (or the next start): never a refusal to
    serve."""
    from driver.adapters.spool import Spool
    from driver.storage.store import open_configured
    from driver.usecases.cni import CniCalls

    spool = Spool(settings.cni_spool)
    try:
        spooled, bad = spool.claim()
    except OSError as e:
        log.warning("cannot read the CNI spool %s: %s", settings.cni_spool, e.strerror or e)
        return
    for line in bad:
        log.warning("spooled CNI release %s", line)
    if not spooled:
        return
    store = open_configured(settings, serving=True)
    try:
        released = CniCalls(store, settings.default_pools, settings.host_id).apply_spooled(
            [(r.attachment, r.deleted_at) for r in spooled]
        )
        spool.done(spooled)
    except (IpamError, OSError) as e:
        reason = e.message if isinstance(e, IpamError) else str(e)
        log.warning(
            "%d spooled CNI releases in %s are left for later: %s",
            len(spooled),
            settings.cni_spool,
            reason,
        )
        return
    finally:
        store.dispose()
    log.info(
        "applied %d spooled CNI releases from %s (%d leases released)",
        len(spooled),
        settings.cni_spool,
        released,
    )


def _read_only(e: OSError) -> bool:
    return e.errno == errno.EROFS


def serve(settings: Settings) -> None:
    """Check the socket path, open the ledger, bind, then serve until SIGTERM/SIGINT."""
    systemd = socket_passed_by_systemd()
    if not systemd:
        # refused before the ledger is touched: the path is another server's
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(settings.socket).st_mode):
                _refuse_live_or_remove_stale(settings.socket)
    _open_ledger(settings)
    metrics = _metrics_listener(settings) if settings.metrics_addr is not None else None
    plugin_socket = None if systemd else PluginSocket(settings.socket)
    where = "the socket systemd passed (LISTEN_FDS)" if systemd else settings.socket
    path = (_passed_socket_path() if systemd else None) or settings.socket
    driver = driver_name(path)
    log.info(
        "ipledger serving driver %r on %s with database %s",
        driver,
        where,
        masked_url(settings.db_url),
    )
    _record_served(settings, driver, path)
    heartbeat = _start_heartbeat(settings)
    _apply_spool(settings)
    metrics_dir = None
    if metrics is not None:
        # before prometheus-client is imported anywhere: it reads this once, on import
        metrics_dir = tempfile.mkdtemp(prefix="ipledger-metrics.")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    publisher = Publisher(settings) if settings.dns_server is not None else None
    try:
        PluginServer(settings, plugin_socket, metrics, publisher).run()
    finally:
        heartbeat.stop()
        if plugin_socket is not None:
            plugin_socket.release()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
