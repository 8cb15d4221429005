"""Run one docker CLI scenario with the built-in IPAM and with ipledger, and normalise outcomes.

An outcome is what a user could observe: whether each step succeeded, the kind of error when it
did not, and every address Docker shows as an offset in its subnet (so that ipledger's default
pools, which differ from Docker's on purpose, compare equal to the built-in ones).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import netaddr

from tests.e2e.engines import compose
from tests.e2e.harness import DockerDaemon

IMAGE = "busybox-local:latest"

ERROR_KINDS = (
    ("in use", ("already in use", "already allocated")),
    (
        "out of range",
        (
            "out of range",
            "does not belong",
            "no matching subnet",
            "not in subnet",
            "is not contained",
            "not inside",
        ),
    ),
    ("full", ("no available addresses", "no available ip")),
    ("overlap", ("overlap",)),
    (
        "no pool",
        ("could not find an available", "no available network", "no available pool", "no free"),
    ),
)


def error_kind(stderr: str) -> str:
    text = stderr.lower()
    for kind, phrases in ERROR_KINDS:
        if any(p in text for p in phrases):
            return kind
    return "error"


class Scenario:
    """The steps of one scenario against one daemon, with one IPAM driver."""

    def __init__(
        self, daemon: DockerDaemon, driver: str | None, prefix: str, workdir: Path | None = None
    ) -> None:
        self.daemon = daemon
        self.driver = driver
        self.ipam = ["--ipam-driver", driver] if driver else []
        self.workdir = workdir
        self.prefix = prefix
        self.outcomes: list[tuple[Any, ...]] = []
        self.subnets: dict[str, list[netaddr.IPNetwork]] = {}
        self.errors: list[str] = []

    def _name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def _offset(self, net: str, address: str) -> int | None:
        if not address:
            return None
        ip = netaddr.IPAddress(address.split("/")[0])
        for subnet in self.subnets.get(net, []):
            if ip in subnet:
                return int(ip) - int(subnet.first)
        return None

    def _docker(self, step: tuple[Any, ...], *args: str, cli: str | None = None) -> bool:
        result = self.daemon.docker(*args, check=False, cli=cli)
        return self._outcome(step, result)

    def _outcome(self, step: tuple[Any, ...], result: subprocess.CompletedProcess[str]) -> bool:
        if result.returncode == 0:
            return True
        self.errors.append(result.stderr.strip())
        self.outcomes.append((*step, "failed", error_kind(result.stderr)))
        return False

    def create(self, net: str, *args: str) -> None:
        if not self._docker(
            ("create", net), "network", "create", *self.ipam, *args, self._name(net)
        ):
            return
        configs = self.daemon.network_ipam(self._name(net))
        self.subnets[net] = [netaddr.IPNetwork(c["Subnet"]) for c in configs]
        shape = []
        for c, subnet in zip(configs, self.subnets[net], strict=True):
            gateway = c.get("Gateway")
            shape.append(
                (
                    subnet.version,
                    subnet.prefixlen,
                    self._offset(net, gateway) if gateway else None,
                    self._range(subnet, c.get("IPRange")),
                )
            )
        self.outcomes.append(("create", net, "ok", sorted(shape, key=str)))

    @staticmethod
    def _range(subnet: netaddr.IPNetwork, ip_range: str | None) -> tuple[int, int] | None:
        if not ip_range:
            return None
        r = netaddr.IPNetwork(ip_range)
        return int(r.first) - int(subnet.first), r.prefixlen

    def addresses(self, ctr: str) -> dict[str, tuple[int | None, int | None]]:
        seen = self.daemon.container_addresses(self._name(ctr))
        return {
            name.removeprefix(f"{self.prefix}-"): (
                self._offset(name.removeprefix(f"{self.prefix}-"), v4),
                self._offset(name.removeprefix(f"{self.prefix}-"), v6),
            )
            for name, (v4, v6) in seen.items()
        }

    def run(self, ctr: str, net: str, *args: str, mac: str | None = None) -> None:
        flags = ["--mac-address", mac] if mac else []
        ok = self._docker(
            ("run", ctr),
            "run",
            "-d",
            "--name",
            self._name(ctr),
            "--network",
            self._name(net),
            *flags,
            *args,
            IMAGE,
            "sleep",
            "600",
            cli=self.daemon.mac_cli if mac else None,
        )
        if ok:
            self.outcomes.append(("run", ctr, "ok", self.addresses(ctr)))
        else:
            # a container that failed to start stays behind as "Created": remove it either way
            self.daemon.docker("rm", "-f", self._name(ctr), check=False)

    def rm(self, ctr: str) -> None:
        if self._docker(("rm", ctr), "rm", "-f", self._name(ctr)):
            self.outcomes.append(("rm", ctr, "ok"))

    def restart(self, ctr: str) -> None:
        if self._docker(("restart", ctr), "restart", "-t", "0", self._name(ctr)):
            self.outcomes.append(("restart", ctr, "ok", self.addresses(ctr)))

    def connect(self, net: str, ctr: str, *args: str) -> None:
        if self._docker(
            ("connect", net, ctr), "network", "connect", *args, self._name(net), self._name(ctr)
        ):
            self.outcomes.append(("connect", net, ctr, "ok", self.addresses(ctr)))

    def disconnect(self, net: str, ctr: str) -> None:
        if self._docker(
            ("disconnect", net, ctr), "network", "disconnect", self._name(net), self._name(ctr)
        ):
            self.outcomes.append(("disconnect", net, ctr, "ok", self.addresses(ctr)))

    def netrm(self, net: str) -> None:
        if self._docker(("netrm", net), "network", "rm", self._name(net)):
            self.outcomes.append(("netrm", net, "ok"))

    # --- docker compose ------------------------------------------------------------------

    def compose(self, net: str, subnet: str, *args: str, exact: bool = True) -> None:
        """``docker compose`` on a project with one service, ``web``, on network ``net``.

        Compose starts scaled containers in parallel and picks which to remove when it scales
        down, so after a scale-down (``exact=False``) only how many containers run, and that
        their addresses are distinct, can be compared.
        """
        assert self.workdir is not None, "compose needs a workdir"
        ipam: dict[str, Any] = {"config": [{"subnet": subnet}]}
        if self.driver:
            ipam["driver"] = self.driver
        project = {
            "services": {"web": {"image": IMAGE, "command": ["sleep", "600"], "networks": [net]}},
            "networks": {net: {"name": self._name(net), "ipam": ipam}},
        }
        path = self.workdir / f"{self.prefix}-compose.json"
        path.write_text(json.dumps(project))
        result = subprocess.run(
            [compose(), "-p", self._name("p"), "-f", str(path), *args],
            env=self.daemon.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if not self._outcome(("compose", *args), result):
            return
        if net not in self.subnets and args[0] == "up":
            self.subnets[net] = [
                netaddr.IPNetwork(c["Subnet"]) for c in self.daemon.network_ipam(self._name(net))
            ]
        if args[0] == "down":
            self.subnets.pop(net, None)
        found = self._project_addresses(net)
        offsets = [offset for _, offset in found]
        assert len(set(offsets)) == len(offsets), f"one address on two containers: {found}"
        self.outcomes.append(("compose", *args, "ok", found if exact else len(found)))

    def _project_addresses(self, net: str) -> list[tuple[str, int | None]]:
        """(container, offset) of every container of the project: which numbers compose gave
        them is its business, so only the set of offsets per state is compared."""
        names = self.daemon.docker(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self._name('p')}",
            "--format",
            "{{.Names}} {{.State}}",
        ).stdout.split("\n")
        found = []
        for line in filter(None, names):
            name, state = line.split()
            seen = self.daemon.container_addresses(name).get(self._name(net), ("", ""))
            found.append((state, self._offset(net, seen[0])))
        return sorted(found, key=str)
