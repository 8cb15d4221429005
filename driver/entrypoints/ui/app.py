"""The status page's HTTP side: four pages, each with a JSON twin (``?format=json``).

Read-only (GET and HEAD only), server-rendered with Jinja (which escapes every value: names and
labels are user input), no script at all, styles from one file of its own; every answer carries
a Content-Security-Policy that allows nothing else. Served beside ``/metrics`` on the metrics
listener by ``ipledger serve``, or alone by ``ipledger ui``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from driver.domain.cni import event_attachment, event_pod, holder_shown
from driver.domain.errors import IpamError
from driver.domain.hosts import age_shown
from driver.domain.status import ALMOST_FULL_FREE_RATIO
from driver.domain.text import printable
from driver.entrypoints.host_json import host_json
from driver.storage.inventory import HistoryEvent, LeaseRow
from driver.usecases.operator import show
from driver.usecases.reports import PoolReport
from driver.usecases.status import SORTS, DatabaseState, Overview, PoolPage, StatusViews

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
COLUMNS = [
    ("pool", "pool", False),
    ("owner", "owner", False),
    ("size", "size", True),
    ("leased", "leased", True),
    ("reserved", "reserved", True),
    ("parked", "parked", True),
    ("free", "free", True),
    ("utilisation", "used", True),
]
MAX_HISTORY = 1000


def create_ui_app(
    views: StatusViews,
    metrics: Callable[[], Response] | None = None,
    database: Callable[[], DatabaseState] | None = None,
) -> Flask:
    """The page's app; with ``metrics``, also ``/metrics`` (the scrape, answered beside it);
    with ``database``, the overview shows the server the instance is on and its outage counts."""
    app = Flask("ipledger.ui", root_path=__file__.rsplit("/", 1)[0])
    app.jinja_env.globals.update(
        lease_holder=_lease_holder,
        event_holder=_event_holder,
        printable=printable,
        fmt=_count,
        fill_bucket=_fill_bucket,
        host_id=views.host_id,
        host=lambda host_id: _host(views, host_id),
        age_shown=age_shown,
        almost_full=round(ALMOST_FULL_FREE_RATIO * 100),
    )

    @app.get("/favicon.ico")
    def favicon() -> Any:
        return app.send_static_file("favicon.svg")

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.get("/")
    def overview() -> Any:
        sort = request.args.get("sort", "utilisation")
        sort = sort if sort in SORTS else "utilisation"
        descending = request.args.get("order", "desc") != "asc"
        found = views.overview(sort, descending)
        state = database() if database is not None else None
        if _wants_json():
            answer = _overview_json(found)
            if state is not None:
                answer["database"] = state.__dict__
            return jsonify(answer)
        return render_template(
            "overview.html",
            overview=found,
            sort=sort,
            descending=descending,
            columns=COLUMNS,
            database=state,
        )

    @app.get("/pool/<path:pool_id>")
    def pool(pool_id: str) -> Any:
        page = views.pool(pool_id, request.args.get("after") or None)
        if _wants_json():
            return jsonify(_pool_json(page, views.host_names()))
        version = page.status.pool.subnet.version
        return render_template("pool.html", page=page, show=lambda a: show(a, version))

    @app.get("/history")
    def history() -> Any:
        pool_id = request.args.get("pool") or None
        address = request.args.get("address") or None
        limit = _limit(request.args.get("limit", "100"))
        events = views.history(pool_id, address, limit)
        if _wants_json():
            names = views.host_names()
            return jsonify({"events": [_event_json(e, names) for e in events]})
        return render_template(
            "history.html", events=events, pool=pool_id, address=address, limit=limit
        )

    @app.get("/hosts")
    def hosts() -> Any:
        reports = views.hosts()
        now = datetime.now(UTC)
        if _wants_json():
            return jsonify({"hosts": [host_json(r, now) for r in reports]})
        return render_template("hosts.html", reports=reports, now=now)

    if metrics is not None:
        app.add_url_rule("/metrics", "metrics", metrics)

    @app.errorhandler(IpamError)
    def ipam_error(e: IpamError) -> Any:
        return _error(e.status, e.message)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Any:
        return _error(e.code or 500, e.description or e.name)

    return app


def _host(views: StatusViews, host_id: str | None) -> Markup:
    """A host as every view shows it: its human name (escaped onto one line), its id in the
    tooltip; an owner that is no host ("local", "shared") as it is. The names are read once
    per page."""
    if host_id is None:
        return Markup("")
    if "host_names" not in g:
        g.host_names = views.host_names()
    name = g.host_names.get(host_id, host_id)
    return Markup('<span class="host" title="{}">{}</span>').format(
        printable(host_id), printable(name)
    )


def _error(status: int, message: str) -> Any:
    if _wants_json():
        return jsonify({"error": message}), status
    return render_template("error.html", status=status, message=message), status


def _wants_json() -> bool:
    return request.args.get("format") == "json"


def _limit(text: str) -> int:
    return max(1, min(MAX_HISTORY, int(text))) if text.isdigit() else 100


def _count(n: int) -> str:
    """A count as people read it: 254, 65,534, 1.84e+19."""
    return f"{n:,}" if n < 10**12 else f"{n:.3g}"


def _fill_bucket(fill: float) -> int:
    """0 for an empty block, then 1 to 4 by quarters."""
    return 0 if fill <= 0 else min(4, 1 + int(fill * 4))


def _status_json(p: PoolReport) -> dict[str, Any]:
    return {
        "pool": p.pool.id,
        "owner": p.pool.owner,
        "space": p.pool.space,
        "subnet": p.pool.subnet.cidr,
        "range": p.pool.subpool,
        "size": p.usage.size,
        "leased": p.usage.leased,
        "reserved": p.usage.reserved,
        "parked": p.usage.parked,
        "free": p.usage.free,
        "utilisation": round(p.usage.utilisation, 6),
        "level": p.level,
    }


def _overview_json(found: Overview) -> dict[str, Any]:
    return {
        "pools": [_status_json(p) for p in found.pools],
        "totals": [t.__dict__ for t in found.totals],
    }


def _lease_holder(lease: LeaseRow) -> str | None:
    """The MAC, or a CNI lease's attachment and pod, on one line."""
    shown = holder_shown(lease.mac, lease.cni_attachment, lease.name, lease.pod)
    return printable(shown) if shown is not None else None


def _event_holder(e: HistoryEvent) -> str | None:
    shown = holder_shown(
        e.mac, event_attachment(e.kind, e.detail), e.name, event_pod(e.kind, e.detail)
    )
    return printable(shown) if shown is not None else None


def _lease_json(lease: LeaseRow, version: int, names: dict[str, str]) -> dict[str, Any]:
    return {
        "address": show(lease.address, version),
        "pool": lease.pool_id,
        "kind": lease.kind,
        "mac": lease.mac,
        "name": lease.name,
        "attachment": lease.cni_attachment,
        "pod": lease.pod,
        "holder": _lease_holder(lease),
        "host": lease.host_id,
        "host_name": names.get(lease.host_id) if lease.host_id else None,
        "since": lease.created_at.isoformat(),
    }


def _pool_json(page: PoolPage, names: dict[str, str]) -> dict[str, Any]:
    version = page.status.pool.subnet.version
    return {
        **_status_json(page.status),
        "map": {
            "block_size": 2**page.layout.block_bits,
            "counts": dict(page.counts),
            "cells": [
                {
                    "first": c.first,
                    "last": c.last,
                    "state": c.state,
                    "leased": c.leased,
                    "reserved": c.reserved,
                    "parked": c.parked,
                    "holder": c.holder,
                }
                for c in page.cells
            ],
        },
        "owner_name": names.get(page.status.pool.owner),
        "leases": [_lease_json(lease, version, names) for lease in page.leases],
        "more_after": page.more_after,
        "last_24_hours": [
            {"hour": h.start.isoformat(), "allocations": h.allocations, "releases": h.releases}
            for h in page.hours
        ],
    }


def _event_json(e: HistoryEvent, names: dict[str, str]) -> dict[str, Any]:
    return {
        "at": e.at.isoformat(),
        "host": e.host_id,
        "host_name": names.get(e.host_id),
        "action": e.action,
        "address": e.address,
        "pool": e.pool_id,
        "kind": e.kind,
        "mac": e.mac,
        "holder": _event_holder(e),
        "name": e.name,
        "detail": e.detail,
    }
