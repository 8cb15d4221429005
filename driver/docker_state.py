"""What Docker itself says is in use, read through the Docker Engine API (the docker SDK).

Only ``ipledger gc`` calls this, never a plugin request: Docker holds its own locks while it
waits for an IPAM answer, and a plugin that called back into Docker then could deadlock it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DockerUnavailable(Exception):
    """Docker's API could not be read; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    container: str
    address: str
    mac: str | None


@dataclass(frozen=True)
class IpamConfig:
    subnet: str
    ip_range: str | None
    gateway: str | None
    aux: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DockerNetwork:
    name: str
    scope: str
    configs: list[IpamConfig]
    endpoints: list[Endpoint]
    ipam_options: dict[str, str] = field(default_factory=dict)


def _plain(address: str | None) -> str | None:
    return address.split("/")[0] if address else None


def read_networks(base_url: str | None, drivers: set[str],
                  progress: Any = None) -> list[DockerNetwork]:
    """The networks whose IPAM driver is one of ``drivers``, with their endpoints' addresses."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.APIClient(base_url=base_url) if base_url else \
            docker.from_env().api
        summaries = [n for n in client.networks()
                     if (n.get("IPAM") or {}).get("Driver") in drivers]
        networks = []
        for summary in summaries:
            detail = client.inspect_network(summary["Id"])
            networks.append(_network(detail))
            if progress is not None:
                progress(1)
        client.close()
    except DockerException as e:
        raise DockerUnavailable(f"cannot read Docker's networks: {e}") from None
    return networks


def _network(detail: dict[str, Any]) -> DockerNetwork:
    configs = [
        IpamConfig(subnet=c["Subnet"], ip_range=c.get("IPRange") or None,
                   gateway=_plain(c.get("Gateway")),
                   aux=dict(c.get("AuxiliaryAddresses") or {}))
        for c in (detail.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")
    ]
    endpoints = []
    for container in (detail.get("Containers") or {}).values():
        for key in ("IPv4Address", "IPv6Address"):
            address = _plain(container.get(key))
            if address:
                endpoints.append(Endpoint(container.get("Name") or "?", address,
                                          container.get("MacAddress") or None))
    return DockerNetwork(detail.get("Name", "?"), detail.get("Scope", "local"), configs,
                         endpoints, dict((detail.get("IPAM") or {}).get("Options") or {}))
