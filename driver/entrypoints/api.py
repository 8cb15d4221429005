"""HTTP: Docker's ``IpamDriver`` plugin API. Parses, calls a use case, serialises; nothing else.

Docker sends no Content-Type, so bodies are parsed as JSON whatever the headers say, and an
empty body is an empty request. Every answer is JSON. Errors are answered with a non-200 status
and ``{"Err": message}``: that is what Docker's plugin client shows the user. The same message
also goes under ``Error``, the key the IPAM proxy reads on 200 answers, for clients that look there.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from driver.config import Settings
from driver.domain.errors import InvalidRequest, IpamError
from driver.domain.pools import GLOBAL_SPACE, LOCAL_SPACE
from driver.storage.store import open_store
from driver.usecases.ipam import Ipam

if TYPE_CHECKING:
    from driver.observability.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"


def create_app(
    settings: Settings, ipam: Ipam | None = None, metrics: Metrics | None = None
) -> Flask:
    """Build the WSGI app; the engine is made here, never at import time."""
    if ipam is None:
        store = open_store(
            settings.db_url,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_ms=settings.busy_timeout_ms,
            call_timeout=settings.call_timeout,
        )
        ipam = Ipam(store, settings.default_pools, settings.host_id)
    if metrics is None and settings.metrics_addr is not None:
        # imported here: prometheus-client reads PROMETHEUS_MULTIPROC_DIR when first imported
        from driver.observability.metrics import Metrics

        metrics = Metrics()
    app = Flask("ipledger")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["ipledger"] = ipam
    _routes(app, ipam, metrics)
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


def _reply(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype=CONTENT_TYPE)


def _body(*, required: bool) -> dict[str, Any]:
    raw = request.get_data(cache=False)
    if not raw.strip():
        if required:
            raise InvalidRequest("empty request body: expected a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise InvalidRequest(f"request body is not valid JSON: {str(e)[:120]}") from None
    if body is None and not required:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {type(body).__name__}")
    return body


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str:
    if key not in body or body[key] is None:
        if required:
            raise InvalidRequest(f"missing {key} in request body")
        return ""
    value = body[key]
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string, not {_show(value)}")
    if required and not value:
        raise InvalidRequest(f"{key} must not be empty")
    if len(value) > 255:
        raise InvalidRequest(f"{key} is too long ({len(value)} characters, at most 255)")
    return value


def _options(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("Options")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"Options must be an object of strings or null, not {_show(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequest(f"Options[{key!r:.80}] must be a string, not {_show(item)}")
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key} must be true or false, not {_show(value)}")
    return value


def _show(value: Any) -> str:
    return f"{type(value).__name__} {json.dumps(value)[:60]}"


def _routes(app: Flask, ipam: Ipam, metrics: Metrics | None) -> None:
    # every use case is answered within the call's bound (IPLEDGER_CALL_TIMEOUT)
    bounded = ipam.store.bounded

    @app.post("/Plugin.Activate")
    def activate() -> Response:
        _body(required=False)
        return _reply({"Implements": ["IpamDriver"]})

    @app.post("/IpamDriver.GetCapabilities")
    def capabilities() -> Response:
        _body(required=False)
        return _reply({"RequiresMACAddress": True, "RequiresRequestReplay": False})

    @app.post("/IpamDriver.GetDefaultAddressSpaces")
    def default_address_spaces() -> Response:
        _body(required=False)
        return _reply(
            {"LocalDefaultAddressSpace": LOCAL_SPACE, "GlobalDefaultAddressSpace": GLOBAL_SPACE}
        )

    @app.post("/IpamDriver.RequestPool")
    def request_pool() -> Response:
        body = _body(required=True)
        space, pool = _text(body, "AddressSpace", required=True), _text(body, "Pool")
        subpool, options, v6 = _text(body, "SubPool"), _options(body), _flag(body, "V6")
        grant = bounded(lambda: ipam.request_pool(space, pool, subpool, options, v6))
        return _reply({"PoolID": grant.pool_id, "Pool": grant.pool, "Data": {}})

    @app.post("/IpamDriver.ReleasePool")
    def release_pool() -> Response:
        body = _body(required=True)
        pool_id = _text(body, "PoolID", required=True)
        bounded(lambda: ipam.release_pool(pool_id))
        return _reply({})

    @app.post("/IpamDriver.RequestAddress")
    def request_address() -> Response:
        body = _body(required=True)
        pool_id = _text(body, "PoolID", required=True)
        wanted, options = _text(body, "Address"), _options(body)
        address = bounded(lambda: ipam.request_address(pool_id, wanted, options))
        if metrics is not None:
            metrics.allocations.labels(pool_id).inc()
        return _reply({"Address": address, "Data": {}})

    @app.post("/IpamDriver.ReleaseAddress")
    def release_address() -> Response:
        body = _body(required=True)
        pool_id = _text(body, "PoolID", required=True)
        address = _text(body, "Address", required=True)
        if bounded(lambda: ipam.release_address(pool_id, address)) and metrics:
            metrics.releases.labels(pool_id).inc()
        return _reply({})


def _error_handlers(app: Flask, metrics: Metrics | None) -> None:
    def error(message: str, status: int, kind: str) -> Response:
        if metrics is not None:
            metrics.error(request.path, kind)
        return _reply({"Err": message, "Error": message}, status)

    @app.errorhandler(IpamError)
    def ipam_error(e: IpamError) -> Response:
        log.warning("%s rejected: %s", request.path, e.message)
        return error(e.message, e.status, type(e).__name__)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        status = e.code or 500
        if status == 413:
            message = f"request body too large: at most {MAX_BODY} bytes"
        elif status == 404:
            message = f"unknown endpoint {request.path!r:.100}: not an IpamDriver call"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path!r:.100}: use POST"
        else:
            message = f"{e.name}: {e.description}"
        log.warning("%s rejected: %s", request.path, message)
        return error(message, status, f"HTTP{status}")

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        log.error("%s failed", request.path, exc_info=e)
        return error(
            f"internal error in ipledger ({type(e).__name__}); see the plugin's log",
            500,
            "InternalError",
        )
