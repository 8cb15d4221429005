"""Where things are by default; imported by the ``ipledger-cni`` process too, so no imports."""

DEFAULT_SOCKET = "/run/docker/plugins/ipledger.sock"
# where ipledger-cni records a DEL it could not hand to the server (persistent: not under /run)
DEFAULT_CNI_SPOOL = "/var/lib/ipledger/cni-spool"
