"""ipledger: an IP address manager for containers that keeps every lease in a database."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # read lazily: importlib.metadata costs the ipledger-cni process, which starts at every call
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            # the one version number is pyproject.toml's, from the installed package's metadata
            return version("ipledger")
        except PackageNotFoundError:  # run from a checkout that was never installed
            return "0+unknown"
    raise AttributeError(name)
