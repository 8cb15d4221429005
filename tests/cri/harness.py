"""containerd's CRI plugin driven over gRPC as kubelet drives it.

`Cri` is a minimal CRI client: the messages of cri_v1.proto (this directory), compiled with
grpcio-tools when the tests first need them, sent with grpcio on containerd's socket.
`Containerd` is a containerd of the test's own (root, state, socket under /tmp/h-cri-*, never
the system's /run/containerd), whose CRI plugin finds its CNI network config and plugins in
directories of the test.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from tests.cri.versions import Release

PROTO = Path(__file__).with_name("cri_v1.proto")
SERVICE = "/runtime.v1.RuntimeService/"
SANDBOX_IMAGE = "localhost/pause:test"
REFERENCE_PLUGINS = Path("/usr/lib/cni")


@functools.cache
def messages() -> ModuleType:
    """The Python classes of cri_v1.proto, generated now (nothing generated is kept)."""
    from grpc_tools import protoc  # grpcio-tools: only the CRI tests need it

    with tempfile.TemporaryDirectory(prefix="h-cri-gen-") as out:
        include = str(Path(protoc.__file__).parent / "_proto")
        status = protoc.main(
            ["protoc", f"-I{PROTO.parent}", f"-I{include}", f"--python_out={out}", PROTO.name]
        )
        if status != 0:
            raise RuntimeError(f"protoc could not compile {PROTO}")
        spec = importlib.util.spec_from_file_location("cri_v1_pb2", Path(out) / "cri_v1_pb2.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


class Cri:
    """RuntimeService calls on a CRI socket, each bounded by ``timeout`` seconds."""

    def __init__(self, address: str, timeout: float = 120) -> None:
        self.api = messages()
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.timeout = timeout

    def call(self, method: str, request: Any, reply: str) -> Any:
        stub = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=getattr(self.api, reply).FromString,
        )
        return stub(request, timeout=self.timeout)

    def version(self) -> Any:
        return self.call("Version", self.api.VersionRequest(version="v1"), "VersionResponse")

    def run(self, name: str, namespace: str = "default", uid: str | None = None) -> str:
        """RunPodSandbox for pod ``namespace/name``; the sandbox's ID."""
        api = self.api
        metadata = api.PodSandboxMetadata(
            name=name, namespace=namespace, uid=uid or str(uuid.uuid4()), attempt=0
        )
        config = api.PodSandboxConfig(metadata=metadata, hostname=name, labels={"app": "h-cri"})
        request = api.RunPodSandboxRequest(config=config)
        return str(self.call("RunPodSandbox", request, "RunPodSandboxResponse").pod_sandbox_id)

    def stop(self, sandbox: str) -> None:
        request = self.api.StopPodSandboxRequest(pod_sandbox_id=sandbox)
        self.call("StopPodSandbox", request, "StopPodSandboxResponse")

    def remove(self, sandbox: str) -> None:
        request = self.api.RemovePodSandboxRequest(pod_sandbox_id=sandbox)
        self.call("RemovePodSandbox", request, "RemovePodSandboxResponse")

    def delete(self, sandbox: str) -> None:
        """What kubelet does when a pod is deleted: stop, then remove its sandbox."""
        self.stop(sandbox)
        self.remove(sandbox)

    def status(self, sandbox: str) -> Any:
        request = self.api.PodSandboxStatusRequest(pod_sandbox_id=sandbox)
        return self.call("PodSandboxStatus", request, "PodSandboxStatusResponse").status

    def ip(self, sandbox: str) -> str:
        """The pod's address, as PodSandboxStatus reports it to kubelet."""
        return str(self.status(sandbox).network.ip)

    def sandboxes(self) -> list[Any]:
        request = self.api.ListPodSandboxRequest()
        return list(self.call("ListPodSandbox", request, "ListPodSandboxResponse").items)

    def conditions(self) -> dict[str, bool]:
        """RuntimeReady and NetworkReady, as kubelet polls them."""
        reply = self.call("Status", self.api.StatusRequest(), "StatusResponse")
        return {c.type: c.status for c in reply.status.conditions}

    def close(self) -> None:
        self.channel.close()


def sandbox_image(workdir: Path) -> Path:
    """A docker-archive tarball of a pause image made of busybox-static: it sleeps forever."""
    root = workdir / "pause-root"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    image = workdir / "pause-image"
    image.mkdir()
    subprocess.run(["tar", "-C", str(root), "-cf", str(image / "layer.tar"), "."], check=True)
    digest = subprocess.run(
        ["sha256sum", str(image / "layer.tar")], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest}"]},
    }
    (image / "config.json").write_text(json.dumps(config))
    manifest = [{"Config": "config.json", "RepoTags": [SANDBOX_IMAGE], "Layers": ["layer.tar"]}]
    (image / "manifest.json").write_text(json.dumps(manifest))
    tar = workdir / "pause.tar"
    subprocess.run(
        ["tar", "-C", str(image), "-cf", str(tar), "manifest.json", "config.json", "layer.tar"],
        check=True,
    )
    shutil.rmtree(root)
    shutil.rmtree(image)
    return tar


def cni_bin_dir(directory: Path) -> Path:
    """A CNI bin dir as a node has: the reference plugins, and ipledger put in by install-cni."""
    directory.mkdir(parents=True)
    for plugin in REFERENCE_PLUGINS.iterdir():
        (directory / plugin.name).symlink_to(plugin)
    subprocess.run(
        [sys.executable, "-m", "driver", "install-cni", str(directory)],
        check=True,
        capture_output=True,
    )
    return directory


def conflist(name: str, bridge: str, subnet: str, socket: str, **own: Any) -> dict[str, Any]:
    """A pod network: the bridge plugin with ipledger as its IPAM, as a node's conflist says."""
    ipam: dict[str, Any] = {
        "type": "ipledger",
        "ranges": [[{"subnet": subnet}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "ipledger": {"socket": socket, **own},
    }
    bridge_plugin = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "ipam": ipam,
    }
    return {"cniVersion": "1.0.0", "name": name, "plugins": [bridge_plugin]}


class Containerd:
    """A containerd of its own with the CRI plugin, its CNI config in ``cni_conf``."""

    def __init__(self, release: Release, cni_bin: Path, cni_conf: Path, image: Path) -> None:
        self.release = release
        # a unix socket's path has at most 107 bytes: pytest's tmp_path can be longer
        self.workdir = Path(tempfile.mkdtemp(prefix="h-cri-", dir="/tmp"))
        self.address = str(self.workdir / "containerd.sock")
        self.config = self.workdir / "config.toml"
        self.log = self.workdir / "containerd.log"
        self.config.write_text(
            f"""version = 2
root = "{self.workdir}/root"
state = "{self.workdir}/state"
[grpc]
  address = "{self.address}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  # runc cannot set oom_score_adj below its parent's on these VMs
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""
        )
        self.env = dict(os.environ, PATH=f"{release.bin_dir}:{os.environ['PATH']}")
        self.process: subprocess.Popen[bytes] | None = None
        self.cri = Cri(self.address)
        try:
            self.start()
            self.import_image(image)
        except BaseException:
            self.cleanup()
            raise

    def import_image(self, image: Path) -> None:
        """No registry is reachable: the sandbox image is imported, as `ctr` does offline.

        containerd 2's ctr imports through the transfer service, which unpacks for no platform
        unless configured: ``--local`` imports as 1.x does."""
        command = [str(self.release.bin_dir / "ctr"), "--address", self.address, "-n", "k8s.io"]
        command += ["images", "import", "--snapshotter", "native"]
        if not self.release.version.startswith("1."):
            command.append("--local")
        done = subprocess.run(
            [*command, str(image)], env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"ctr could not import {image}: {done.stderr.strip()}")

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.release.bin_dir / "containerd"), "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.log_tail()}")
            with contextlib.suppress(grpc.RpcError):
                if Cri(self.address, timeout=2).version().runtime_api_version:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"containerd's CRI did not answer within 30 s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop containerd itself; the pods' shims and pause processes keep running."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _leftover_processes(self) -> list[int]:
        """The shims this containerd started (their command names its socket) and their
        children (the pods' pause processes)."""
        parents: dict[int, int] = {}
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if str(self.workdir).encode() in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        return sorted(found | {pid for pid, parent in parents.items() if parent in found})

    def cleanup(self) -> None:
        """Every pod stopped and removed (so that CNI DEL runs), containerd stopped, its shims
        and mounts gone, its directory removed."""
        if self.process is not None:
            with contextlib.suppress(grpc.RpcError), ThreadPoolExecutor(4) as pool:
                for sandbox in self.cri.sandboxes():
                    pool.submit(self.cri.delete, sandbox.id)  # an error is left to the below
        self.stop()
        for pid in self._leftover_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        for mount in reversed(mounts):
            point = mount.split()[1]
            if point.startswith(str(self.workdir)):
                subprocess.run(["umount", "-l", point], capture_output=True)
        self.cri.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
