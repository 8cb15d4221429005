"""The HTTP listener for people and Prometheus: the status page and ``/metrics``.

A thread per connection, so that a slow browser or a large page never holds up a scrape; run
in the background of ``ipledger serve``'s master process, or in the foreground by ``ipledger ui``.
"""

from __future__ import annotations

import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Response

log = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("listener: %s", format % args)


def listen(app: Any, host: str, port: int) -> WSGIServer:
    """A server for ``app`` on ``host:port``, not yet serving (see :func:`serve_in_background`)."""
    server_class = _Server6 if ":" in host else _Server
    return make_server(host, port, app, server_class=server_class, handler_class=_Handler)


def serve_in_background(server: WSGIServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="ipledger-listener", daemon=True)
    thread.start()
    return thread


def metrics_view(registry: Any) -> Any:
    """``/metrics``: the registry in Prometheus's text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    def scrape() -> Response:
        # as given: a mimetype would get a second "; charset=utf-8" from werkzeug
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return scrape
