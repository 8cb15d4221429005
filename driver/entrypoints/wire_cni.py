"""The bodies ``ipledger-cni`` posts to ``/Cni.*``, as declared structs decoded by msgspec.

The network config (``config``) stays the runtime's JSON: :func:`driver.domain.cni.parse_network`
reads it and names what is wrong in the spec's terms (``ipam.ranges[0][0].gateway``...).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from driver.entrypoints.wire import Needed

# CNI_ARGS: Kubernetes alone gives some 500 characters (a pod name may have 253)
MAX_ARGS = 4096


class NetworkCall(msgspec.Struct, kw_only=True):
    """GC's and STATUS's body: the network config alone (GC's with its valid attachments)."""

    config: Any = None


class AttachmentCall(NetworkCall, kw_only=True):
    """DEL's and CHECK's body: the config and the attachment the runtime named."""

    container_id: Needed = msgspec.field(name="containerId")
    ifname: Needed


class AddCall(AttachmentCall, kw_only=True):
    """ADD's body: CNI_ARGS besides (``K8S_POD_NAME=...;...``)."""

    args: Annotated[str, msgspec.Meta(max_length=MAX_ARGS)] | None = None
