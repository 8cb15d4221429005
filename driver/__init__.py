"""ipledger: a Docker remote IPAM driver that keeps every address lease in a database."""

__version__ = "0.1.0"
