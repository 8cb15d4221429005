"""ipledger: an IP address manager for containers that keeps every lease in a database."""

from importlib.metadata import PackageNotFoundError, version

try:
    # the one version number is pyproject.toml's, read from the installed package's metadata
    __version__ = version("ipledger")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
