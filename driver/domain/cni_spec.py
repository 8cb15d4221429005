"""The CNI protocol's constants, without imports: the ``ipledger-cni`` process reads them at
every call, and must start fast."""

SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
# versions whose IP configs still carry a "version" ("4" or "6")
VERSIONED_IPS = ("0.3.0", "0.3.1", "0.4.0")

# error codes of the CNI spec
INCOMPATIBLE_VERSION = 1
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
UNDECODABLE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50  # STATUS: the plugin cannot serve ADD now

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
