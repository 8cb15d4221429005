"""HTTP: Docker's ``IpamDriver`` plugin API. Parses, calls a use case, serialises; nothing else.

Bodies are read by :mod:`driver.entrypoints.bodies`; CNI's endpoints are in
:mod:`driver.entrypoints.api_cni`. Every answer is JSON. Errors are answered with a non-200
status and ``{"Err": message}``: that is what Docker's plugin client shows the user. The same
message also goes under ``Error``, the key the IPAM proxy reads on 200 answers, for clients that
look there; on CNI's endpoints, its CNI error code under ``CniCode``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from driver.config import Settings
from driver.domain.cni_spec import INVALID_CONFIG, MAX_GC_BODY
from driver.domain.errors import IpamError
from driver.domain.pools import GLOBAL_SPACE, LOCAL_SPACE
from driver.entrypoints.api_cni import CNI_PREFIX, cni_routes
from driver.entrypoints.bodies import MAX_BODY, decode, reply
from driver.entrypoints.wire import (
    AddressGrant,
    AddressRelease,
    AddressRequest,
    AddressSpaces,
    Capabilities,
    Done,
    Implements,
    NoFields,
    PoolGrant,
    PoolRelease,
    PoolRequest,
)
from driver.storage.store import open_configured
from driver.usecases.cni import CniCalls
from driver.usecases.ipam import Ipam

if TYPE_CHECKING:
    from driver.observability.metrics import Metrics

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, ipam: Ipam | None = None, metrics: Metrics | None = None
) -> Flask:
    """Build the WSGI app; the engine is made here, never at import time."""
    if ipam is None:
        store = open_configured(settings, bounded=True, serving=True)
        ipam = Ipam(store, settings.default_pools, settings.host_id)
    if metrics is None and settings.metrics_addr is not None:
        # imported here: prometheus-client reads PROMETHEUS_MULTIPROC_DIR when first imported
        from driver.observability.metrics import Metrics

        metrics = Metrics()
    if metrics is not None:
        ipam.store.observe_with(metrics)
    app = Flask("ipledger")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    # the paths whose bodies may be larger (read whole by the worker before a thread answers)
    app.config["IPLEDGER_BODY_LIMITS"] = {"/Cni.Gc": MAX_GC_BODY}
    app.extensions["ipledger"] = ipam
    _handshake_routes(app)
    _routes(app, ipam, metrics)
    cni = CniCalls(ipam.store, ipam.default_pools, ipam.host_id)
    cni_routes(app, cni, metrics, settings.cni_spool)
    _error_handlers(app, metrics)
    if metrics is not None:
        _timing(app, metrics)
    return app


def _timing(app: Flask, metrics: Metrics) -> None:
    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            metrics.observe(request.path, time.perf_counter() - started)
        return response


def _handshake_routes(app: Flask) -> None:
    """The calls that carry no fields: a body, if any, must still be an object."""

    @app.post("/Plugin.Activate")
    def activate() -> Response:
        decode(NoFields, required=False)
        return reply(Implements(["IpamDriver"]))

    @app.post("/IpamDriver.GetCapabilities")
    def capabilities() -> Response:
        decode(NoFields, required=False)
        return reply(Capabilities(requires_mac_address=True, requires_request_replay=False))

    @app.post("/IpamDriver.GetDefaultAddressSpaces")
    def default_address_spaces() -> Response:
        decode(NoFields, required=False)
        return reply(AddressSpaces(LOCAL_SPACE, GLOBAL_SPACE))


def _routes(app: Flask, ipam: Ipam, metrics: Metrics | None) -> None:
    # every use case is answered within the call's bound (IPLEDGER_CALL_TIMEOUT)
    bounded = ipam.store.bounded

    @app.post("/IpamDriver.RequestPool")
    def request_pool() -> Response:
        body = decode(PoolRequest)
        grant = bounded(
            lambda: ipam.request_pool(
                body.address_space,
                body.pool or "",
                body.sub_pool or "",
                body.options or {},
                bool(body.v6),
            )
        )
        return reply(PoolGrant(grant.pool_id, grant.pool))

    @app.post("/IpamDriver.ReleasePool")
    def release_pool() -> Response:
        body = decode(PoolRelease)
        bounded(lambda: ipam.release_pool(body.pool_id))
        return reply(Done())

    @app.post("/IpamDriver.RequestAddress")
    def request_address() -> Response:
        body = decode(AddressRequest)
        wanted, options = body.address or "", body.options or {}
        address = bounded(lambda: ipam.request_address(body.pool_id, wanted, options))
        if metrics is not None:
            metrics.allocations.labels(body.pool_id).inc()
        return reply(AddressGrant(address))

    @app.post("/IpamDriver.ReleaseAddress")
    def release_address() -> Response:
        body = decode(AddressRelease)
        if bounded(lambda: ipam.release_address(body.pool_id, body.address)) and metrics:
            metrics.releases.labels(body.pool_id).inc()
        return reply(Done())


def _error_handlers(app: Flask, metrics: Metrics | None) -> None:
    def error(message: str, status: int, kind: str, cni_code: int = IpamError.cni_code) -> Response:
        if metrics is not None:
            metrics.error(request.path, kind)
        answer: dict[str, Any] = {"Err": message, "Error": message}
        if request.path.startswith(CNI_PREFIX):
            answer["CniCode"] = cni_code
        return reply(answer, status)

    @app.errorhandler(IpamError)
    def ipam_error(e: IpamError) -> Response:
        log.warning("%s rejected: %s", request.path, e.message)
        return error(e.message, e.status, type(e).__name__, e.cni_code)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        status = e.code or 500
        cni_code = IpamError.cni_code
        if status == 413:
            bound = request.max_content_length or MAX_BODY
            message = f"request body too large: at most {bound} bytes"
            cni_code = INVALID_CONFIG  # permanent: the same body is as large on every retry
        elif status == 404:
            message = f"unknown endpoint {request.path!r:.100}: not an IpamDriver call"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path!r:.100}: use POST"
        else:
            message = f"{e.name}: {e.description}"
        log.warning("%s rejected: %s", request.path, message)
        return error(message, status, f"HTTP{status}", cni_code)

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        log.error("%s failed", request.path, exc_info=e)
        return error(
            f"internal error in ipledger ({type(e).__name__}); see the plugin's log",
            500,
            "InternalError",
        )
