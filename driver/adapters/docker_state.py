"""What Docker itself says is in use, read through the Docker Engine API (the docker SDK).

Only ``ipledger gc`` and the DNS publisher (looking up the names of containers that older
engines do not send) call this, never a plugin request: Docker holds its own locks while it
waits for an IPAM answer, and a plugin that called back into Docker then could deadlock it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from driver.domain.docker_names import endpoints_by_pool
from driver.domain.reconcile import DockerNetwork, Endpoint, IpamConfig, SwarmRole


class DockerUnavailable(Exception):
    """Docker's API could not be read; the message says why."""


def _plain(address: str | None) -> str | None:
    return address.split("/")[0] if address else None


# What a managed ipledger plugin declares in its config.json (see the repository's config.json).
PLUGIN_SOCKET = "ipledger.sock"
IPAM_PLUGIN_TYPE = "docker.ipamdriver/1.0"


@dataclass(frozen=True)
class DockerView:
    """What Docker shows: the networks of the IPAM drivers judged, and every IPAM driver that
    any network uses (to tell an operator who named the wrong driver)."""

    drivers: frozenset[str]
    networks: list[DockerNetwork]
    ipam_drivers: frozenset[str]
    swarm: SwarmRole = SwarmRole.NONE


def swarm_role(info: dict[str, Any]) -> SwarmRole:
    """What ``docker info`` says this node is in a swarm."""
    swarm = info.get("Swarm") or {}
    if swarm.get("ControlAvailable"):
        return SwarmRole.MANAGER
    return SwarmRole.WORKER if swarm.get("LocalNodeState") == "active" else SwarmRole.NONE


def docker_address(base_url: str | None) -> str:
    """Where Docker's API is looked for, in words for an error."""
    if base_url:
        return base_url
    if os.environ.get("DOCKER_HOST"):
        return f"{os.environ['DOCKER_HOST']} (DOCKER_HOST)"
    return "unix:///var/run/docker.sock (the default: set DOCKER_HOST or --docker-host)"


def _probe(base_url: str | None) -> None:
    """A unix socket that does not answer, as a :class:`DockerUnavailable` naming it; checked
    here because the docker SDK leaves the socket of a failed connect open."""
    url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not url.startswith(("unix://", "/")):
        return
    path = url.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(path)
        except OSError as e:
            raise DockerUnavailable(
                f"cannot reach Docker at {docker_address(base_url)}: {e.strerror or e}"
            ) from None


def plugin_names(plugins: list[dict[str, Any]]) -> set[str]:
    """The names Docker knows managed ipledger plugins by: ``NAME:TAG``, and ``NAME`` for the
    ``latest`` tag, which ``--ipam-driver NAME`` also means."""
    names: set[str] = set()
    for plugin in plugins:
        config = plugin.get("Config") or {}
        interface = config.get("Interface") or {}
        types = {
            f"{t.get('Prefix')}.{t.get('Capability')}/{t.get('Version')}"
            if isinstance(t, dict)
            else str(t)
            for t in interface.get("Types") or []
        }
        if interface.get("Socket") != PLUGIN_SOCKET or IPAM_PLUGIN_TYPE not in types:
            continue
        name = str(plugin.get("Name") or "")
        if name:
            names.add(name)
            if name.endswith(":latest"):
                names.add(name.removesuffix(":latest"))
    return names


# the docker SDK's own default: how long one call to Docker's API may take
API_TIMEOUT = 60.0


def _client(base_url: str | None, timeout: float) -> Any:
    import docker

    if base_url:
        return docker.APIClient(base_url=base_url, timeout=timeout)
    return docker.from_env(timeout=timeout).api


def read_docker(
    base_url: str | None,
    drivers: set[str] | None,
    served_as: set[str],
    progress: Any = None,
    timeout: float = API_TIMEOUT,
) -> DockerView:
    """The networks whose IPAM driver is ipledger, with their endpoints' addresses.

    ``drivers`` names them; None means the names ipledger is served under: ``served_as`` (the
    legacy plugin's names) and the managed ipledger plugins installed.
    """
    from docker.errors import DockerException
    from requests import RequestException

    _probe(base_url)
    try:
        client = _client(base_url, timeout)
        if drivers is None:
            drivers = served_as | plugin_names(client.plugins())
        role = swarm_role(client.info())
        # a manager lists the swarm's networks too, with those of its own node
        summaries = client.networks()
        networks = []
        for summary in summaries:
            if (summary.get("IPAM") or {}).get("Driver") not in drivers:
                continue
            networks.append(_network(client.inspect_network(summary["Id"])))
            if progress is not None:
                progress(1)
        client.close()
    except (DockerException, RequestException) as e:
        # a Docker that stops answering mid-way: the SDK leaves requests' timeout unwrapped
        raise DockerUnavailable(
            f"cannot read Docker's networks at {docker_address(base_url)}: {e}"
        ) from None
    in_use = frozenset(str((n.get("IPAM") or {}).get("Driver") or "default") for n in summaries)
    return DockerView(frozenset(drivers), networks, in_use, role)


def endpoints(
    base_url: str | None, served_as: set[str], timeout: float
) -> dict[str, dict[str, Endpoint]]:
    """Every endpoint Docker shows in ipledger's networks, by the PoolID its address is leased
    from and by address: where a lease made without its container's name finds the name.

    Runs outside any plugin request and any ledger transaction (see the module's docstring).
    """
    view = read_docker(base_url, None, served_as, timeout=timeout)
    return endpoints_by_pool(view.networks)


def network_named(name: str, base_url: str | None = None) -> DockerNetwork | None:
    """The Docker network called ``name`` (or with that id), None when there is none."""
    from docker.errors import DockerException, NotFound
    from requests import RequestException

    _probe(base_url)
    try:
        client = _client(base_url, API_TIMEOUT)
        try:
            return _network(client.inspect_network(name))
        except NotFound:
            return None
        finally:
            client.close()
    except (DockerException, RequestException) as e:
        raise DockerUnavailable(
            f"cannot read Docker's networks at {docker_address(base_url)}: {e}"
        ) from None


def _network(detail: dict[str, Any]) -> DockerNetwork:
    configs = [
        IpamConfig(
            subnet=c["Subnet"],
            ip_range=c.get("IPRange") or None,
            gateway=_plain(c.get("Gateway")),
            aux=dict(c.get("AuxiliaryAddresses") or {}),
        )
        for c in (detail.get("IPAM") or {}).get("Config") or []
        if c.get("Subnet")
    ]
    endpoints = []
    for container in (detail.get("Containers") or {}).values():
        for key in ("IPv4Address", "IPv6Address"):
            address = _plain(container.get(key))
            if address:
                endpoints.append(
                    Endpoint(
                        container.get("Name") or "?", address, container.get("MacAddress") or None
                    )
                )
    return DockerNetwork(
        detail.get("Name", "?"),
        detail.get("Scope", "local"),
        configs,
        endpoints,
        dict((detail.get("IPAM") or {}).get("Options") or {}),
    )
