"""HTTP: ipledger's own endpoints for the ``ipledger-cni`` plugin, on the plugin socket.

``POST /Cni.Add`` (``Del``, ``Check``, ``Gc``, ``Status``) with ``{"config": the network config
the runtime gave, "containerId", "ifname", "args": CNI_ARGS}``. Answers ``{"result": ...}`` (the
CNI result, ready to print) or, through the app's error handlers, ``{"Err": ..., "CniCode": n}``.
Parses, calls a use case, serialises; nothing else.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from driver.adapters.spool import Spool, SpooledRelease
from driver.domain.cni import (
    Attachment,
    CniNetwork,
    cni_result,
    hold_key,
    parse_args,
    parse_network,
    pod_of,
)
from driver.domain.cni_spec import MAX_GC_BODY
from driver.domain.errors import InvalidRequest, Unfinished
from driver.entrypoints.bodies import decode, reply
from driver.entrypoints.wire_cni import AddCall, AttachmentCall, NetworkCall
from driver.usecases.cni import CniAddress, CniCalls

if TYPE_CHECKING:
    from driver.observability.metrics import Metrics


log = logging.getLogger(__name__)

CNI_PREFIX = "/Cni."
# the spooled releases a call applies at most (the server's start applies all): some 0.6 s of
# its bound, at 3 ms a release measured on a 2-core machine with SQLite
SPOOL_BATCH = 200


def cni_routes(app: Flask, cni: CniCalls, metrics: Metrics | None, spool: str) -> None:
    _attachment_routes(app, cni, metrics, spool)
    _network_routes(app, cni, metrics)


def _attachment_routes(app: Flask, cni: CniCalls, metrics: Metrics | None, spool: str) -> None:
    """ADD, DEL and CHECK: one attachment of one network."""
    bounded = cni.store.bounded

    @app.post("/Cni.Add")
    def add() -> Response:
        body = decode(AddCall)
        network, attachment = _network(body), _attachment(body)
        cni_args = parse_args(body.args or "")
        holder, pod = hold_key(network, attachment.container_id, cni_args), pod_of(cni_args)
        # DELs of this network spooled while the server was down: applied first, in the ADD's
        # transaction; their files removed once it committed (claimed ones stay until then)
        directory, spooled = _claim(body.config, spool, network.name, str(attachment))
        releases = [(r.attachment, r.deleted_at) for r in spooled]
        addresses = bounded(lambda: cni.add(network, attachment, holder, releases, pod))
        _applied(directory, spooled, network.name, metrics)
        if metrics is not None:
            for address in addresses:
                metrics.allocations.labels(f"cni/{network.name}/v{address.version}").inc()
        return reply({"result": _result(network, addresses)})

    @app.post("/Cni.Del")
    def delete() -> Response:
        body = decode(AttachmentCall)
        network, attachment = _network(body), _attachment(body)
        directory, spooled = _claim(body.config, spool, network.name, str(attachment))
        releases = [(r.attachment, r.deleted_at) for r in spooled]
        released = bounded(lambda: cni.delete(attachment, releases))
        _applied(directory, spooled, network.name, metrics)
        if metrics is not None and released:
            metrics.releases.labels(f"cni/{network.name}").inc(released)
        return reply({})

    @app.post("/Cni.Check")
    def check() -> Response:
        body = decode(AttachmentCall)
        network, attachment = _network(body), _attachment(body)
        bounded(lambda: cni.check(network, attachment))
        return reply({})


def _network_routes(app: Flask, cni: CniCalls, metrics: Metrics | None) -> None:
    """GC and STATUS: a whole network, no attachment."""
    bounded = cni.store.bounded

    @app.post("/Cni.Gc")
    def collect() -> Response:
        # the one large body: the runtime's valid attachments, some 100 bytes each
        request.max_content_length = MAX_GC_BODY
        body = decode(NetworkCall)
        network = _network(body)
        valid = _valid_attachments(body.config)
        released, left = bounded(lambda: cni.collect(network.name, valid))
        if metrics is not None and released:
            metrics.releases.labels(f"cni/{network.name}").inc(released)
        if left:
            raise Unfinished(
                f"GC released {released:,} stale leases of network {network.name} within the "
                f"call's bound (IPLEDGER_CALL_TIMEOUT) and has {left:,} left: run it again"
            )
        return reply({})

    @app.post("/Cni.Status")
    def status() -> Response:
        _network(decode(NetworkCall))
        bounded(cni.status)
        return reply({})


def _claim(
    config: dict[str, Any], default: str, network: str, attachment: str
) -> tuple[Spool, list[SpooledRelease]]:
    """The spool the call's config names (or the server's), and the network's releases in it,
    claimed; a file that is no release is moved aside and logged, never refused. At most
    SPOOL_BATCH of them, the call's own attachment's first, so that a call applies them within
    its bound; the others stay claimed, and the next calls of the network apply them."""
    directory = Spool(_spool_of(config, default))
    try:
        spooled, bad = directory.claim(network)
    except OSError as e:
        log.warning("cannot read the CNI spool %s: %s", directory.directory, e.strerror or e)
        return directory, []
    for line in bad:
        log.warning("spooled CNI release %s", line)
    spooled.sort(key=lambda r: r.attachment != attachment)
    return directory, spooled[:SPOOL_BATCH]


def _applied(
    directory: Spool, spooled: list[SpooledRelease], network: str, metrics: Metrics | None
) -> None:
    """The claimed releases are in the ledger: their files go."""
    if not spooled:
        return
    try:
        directory.done(spooled)
    except OSError as e:  # applied again later: that changes nothing
        log.warning("cannot remove applied CNI releases from %s: %s", directory.directory, e)
    log.info("applied %d spooled CNI releases of network %s", len(spooled), network)
    if metrics is not None:
        metrics.spooled_releases.inc(len(spooled))


def _spool_of(config: dict[str, Any], default: str) -> str:
    """The spool directory a conflist names (ipam.ipledger.spool), else the server's."""
    own = config.get("ipam", {}).get("ipledger", {})
    spool = own.get("spool") if isinstance(own, dict) else None
    if spool is None:
        return default
    if not isinstance(spool, str) or not spool.startswith("/") or "\0" in spool:
        raise InvalidRequest(
            f"ipam.ipledger.spool: expected the absolute path of a directory, not {spool!r:.80}"
        )
    return spool


def _network(body: NetworkCall) -> CniNetwork:
    return parse_network(body.config)


def _attachment(body: AttachmentCall) -> Attachment:
    network = body.config["name"]
    for name, value in (("CNI_CONTAINERID", body.container_id), ("CNI_IFNAME", body.ifname)):
        if "/" in value:
            raise InvalidRequest(f"{name}: {value!r:.80} may not contain '/'")
    return Attachment(network, body.container_id, body.ifname)


def _valid_attachments(config: dict[str, Any]) -> set[tuple[str, str]]:
    entries = config.get("cni.dev/valid-attachments")
    if not isinstance(entries, list):
        raise InvalidRequest("cni.dev/valid-attachments: expected a list")
    valid = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("containerID", "ifname")
        ):
            raise InvalidRequest(
                f'cni.dev/valid-attachments[{i}]: expected {{"containerID": ..., "ifname": ...}}'
            )
        valid.add((entry["containerID"], entry["ifname"]))
    return valid


def _result(network: CniNetwork, addresses: list[CniAddress]) -> dict[str, Any]:
    """ADD's result, in the network's CNI version."""
    return cni_result(network, [(a.address, a.gateway) for a in addresses])
