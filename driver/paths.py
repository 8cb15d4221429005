"""Where things are by default; imported by the ``ipledger-cni`` process too, so no imports."""

DEFAULT_SOCKET = "/run/docker/plugins/ipledger.sock"
