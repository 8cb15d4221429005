"""Running CNI plugins as a runtime does: a network namespace per container, the plugin executed
with the config on stdin and the ``CNI_*`` environment."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REFERENCE_PLUGINS = Path("/usr/lib/cni")


@dataclass
class Outcome:
    code: int  # the process's exit status
    answer: dict[str, Any]  # what it printed (the result, or CNI's error object)

    @property
    def error_code(self) -> int | None:
        return self.answer.get("code") if self.code else None


@dataclass
class Runtime:
    """Executes plugins from ``plugin_dirs`` for containers in namespaces it creates."""

    plugin_dirs: list[Path]
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def netns(self) -> str:
        name = f"iplcni-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.namespaces.append(name)
        return name

    def run(
        self,
        plugin: str,
        command: str,
        config: dict[str, Any],
        container: str,
        netns: str | None = None,
        ifname: str = "eth0",
        args: str = "",
    ) -> Outcome:
        env = {
            "PATH": os.environ["PATH"],
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": f"/var/run/netns/{netns}" if netns else "",
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
            "CNI_PATH": ":".join(str(d) for d in self.plugin_dirs),
        }
        executable = next(d / plugin for d in self.plugin_dirs if (d / plugin).exists())
        done = subprocess.run(
            [str(executable)],
            input=json.dumps(config),
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        answer = json.loads(done.stdout) if done.stdout.strip() else {}
        return Outcome(done.returncode, answer)

    def addresses_in(self, netns: str, ifname: str = "eth0") -> list[str]:
        """The global addresses the container's interface has."""
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "ip", "-j", "addr", "show", ifname],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [
            f"{a['local']}/{a['prefixlen']}"
            for link in json.loads(out)
            for a in link["addr_info"]
            if a.get("scope") == "global"
        ]

    def cleanup(self) -> None:
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)


@contextlib.contextmanager
def runtime(*plugin_dirs: Path) -> Iterator[Runtime]:
    done = Runtime(list(plugin_dirs))
    try:
        yield done
    finally:
        done.cleanup()


def bridge_config(
    name: str, bridge: str, ranges: list[list[dict[str, Any]]], version: str = "1.0.0", **own: Any
) -> dict[str, Any]:
    """A bridge network whose IPAM is ipledger, as a user writes it after host-local's."""
    ipam: dict[str, Any] = {"type": "ipledger", "ranges": ranges, "routes": [{"dst": "0.0.0.0/0"}]}
    if own:
        ipam["ipledger"] = own
    return {
        "cniVersion": version,
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "ipam": ipam,
    }
