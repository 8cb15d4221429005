"""The CNI protocol's constants, without imports: the ``ipledger-cni`` process reads them at
every call, and must start fast."""

# every version of the spec, oldest first: deployed conflists still say 0.3.1, some 0.2.0
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
# a config without cniVersion is 0.1.0, as libcni (and so every reference plugin) reads it
UNVERSIONED = "0.1.0"
# versions whose result is {"ip4": {"ip", "gateway", "routes"}, "ip6": ..., "dns"}
IP4_IP6_RESULT = ("0.1.0", "0.2.0")
# versions whose IP configs still carry a "version" ("4" or "6")
VERSIONED_IPS = ("0.3.0", "0.3.1", "0.4.0")
# the commands that came after 0.1.0's ADD, DEL (and VERSION), and the version each came with
INTRODUCED = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}

# error codes of the CNI spec
INCOMPATIBLE_VERSION = 1
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
UNDECODABLE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50  # STATUS: the plugin cannot serve ADD now
UNEXPECTED = 999  # ipledger's own: a failure no other code names

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")


def has_command(version: str, command: str) -> bool:
    """Whether CNI ``version`` (one of SUPPORTED_VERSIONS) has ``command``."""
    since = INTRODUCED.get(command)
    return since is None or SUPPORTED_VERSIONS.index(version) >= SUPPORTED_VERSIONS.index(since)


# The largest request body ipledger serve reads on a call: ADD, DEL, CHECK and STATUS carry one
# network config; GC carries the runtime's valid attachments too (about 100 bytes each in JSON,
# so 32 MiB is some 300,000 of them).
MAX_CALL_BODY = 64 * 1024
MAX_GC_BODY = 32 * 1024 * 1024
