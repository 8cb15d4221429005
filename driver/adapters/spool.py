"""The node's spool of CNI releases: DELs ``ipledger-cni`` answered while ``ipledger serve``
could not be reached, for the server to apply when it is back.

One file per attachment, ``<network hash>-<attachment hash>.del``: the names are hashes, so a
network, container ID or ifname of any text cannot name a path outside the directory, and the
files of one network share a prefix. Each is written whole or not at all (a temporary file,
fsync, rename, fsync of the directory): a node that reboots right after DEL answered still has
it. A DEL of the same attachment again replaces it (the newest DEL's time is kept).

An applier first claims a file by renaming it to a name of its own (``....applying``), so that
a DEL spooled again meanwhile is never removed unapplied, and removes it once the ledger
committed the release. A file that cannot be read as a release is moved into ``bad/``.

Imported by the ``ipledger-cni`` process (on the DEL path only): the standard library alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

SUFFIX = ".del"
CLAIMED = ".applying"
BAD = "bad"
TEMPORARY = ".tmp-"
# a temporary file older than this was left by a plugin that died before renaming it (and so
# answered nothing: the runtime calls DEL again)
STALE_TEMPORARY = 600.0
# the largest spool file read: a few hundred bytes are written
MAX_ENTRY = 64 * 1024
FORMAT = 1


class SpoolError(Exception):
    """A spool file that is not a release; the message says why."""


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode(errors="surrogateescape")).hexdigest()[:length]


def network_prefix(network: str) -> str:
    """The prefix of the names of one network's spool files."""
    return _digest(network, 16) + "-"


def entry_name(network: str, container_id: str, ifname: str) -> str:
    key = json.dumps([network, container_id, ifname])
    return network_prefix(network) + _digest(key, 40) + SUFFIX


def spool_release(directory: str, network: str, container_id: str, ifname: str) -> str:
    """Record durably that the attachment was deleted now; the file's path. OSError if it
    cannot be written."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        # the new directory's own entry, in its parent: without it a reboot could lose it all
        _sync_directory(os.path.dirname(os.path.abspath(directory)))
    name = entry_name(network, container_id, ifname)
    record = {
        "format": FORMAT,
        "network": network,
        "containerId": container_id,
        "ifname": ifname,
        "deletedAt": time.time(),
    }
    data = json.dumps(record).encode(errors="surrogateescape")
    temporary = os.path.join(directory, f"{TEMPORARY}{os.getpid()}-{time.monotonic_ns()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        path = os.path.join(directory, name)
        os.rename(temporary, path)
    except BaseException:
        try:  # noqa: SIM105
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _sync_directory(directory)
    return path


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpooledRelease:
    """One spooled DEL: the attachment, when it was deleted, and the file that holds it."""

    __slots__ = ("container_id", "deleted_at", "ifname", "network", "path")

    def __init__(
        self, network: str, container_id: str, ifname: str, deleted_at: float, path: str
    ) -> None:
        self.network, self.container_id, self.ifname = network, container_id, ifname
        self.deleted_at, self.path = deleted_at, path

    @property
    def attachment(self) -> str:
        """The ledger's key of the attachment: NETWORK/CONTAINER-ID/IFNAME."""
        return f"{self.network}/{self.container_id}/{self.ifname}"


def read_entry(path: str) -> SpooledRelease:
    """The release a spool file holds; SpoolError when it holds none (torn, foreign, renamed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            data = os.read(fd, MAX_ENTRY + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SpoolError(f"cannot be read: {e.strerror or e}") from None
    if len(data) > MAX_ENTRY:
        raise SpoolError(f"is larger than {MAX_ENTRY:,} bytes")
    try:
        record = json.loads(data.decode(errors="surrogateescape"))
    except ValueError as e:
        raise SpoolError(f"is not a spooled release (not JSON: {e})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SpoolError(f"is not a spooled release of format {FORMAT}")
    fields = [record.get(k) for k in ("network", "containerId", "ifname")]
    deleted_at = record.get("deletedAt")
    if not all(isinstance(f, str) and f for f in fields) or type(deleted_at) not in (int, float):
        raise SpoolError("lacks network, containerId, ifname or deletedAt")
    network, container_id, ifname = (str(f) for f in fields)
    assert isinstance(deleted_at, (int, float))
    expected = entry_name(network, container_id, ifname).removesuffix(SUFFIX)
    if not os.path.basename(path).startswith(expected):
        raise SpoolError(f"holds the release of {network}/{container_id}/{ifname}, not its own")
    return SpooledRelease(network, container_id, ifname, float(deleted_at), path)


class Spool:
    """A spool directory, as the server applies it."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def claim(self, network: str | None = None) -> tuple[list[SpooledRelease], list[str]]:
        """Claim the releases of ``network`` (of every network when None): each file renamed to
        a name of this claim's; with them, the claims other appliers left (applying a release
        twice changes nothing). The releases, and one line for each file moved into ``bad/``."""
        prefix = network_prefix(network) if network is not None else ""
        tag = f".{os.getpid()}-{time.monotonic_ns()}{CLAIMED}"
        claimed: list[str] = []
        for name in self._names():
            if not name.startswith(prefix):
                continue
            path = os.path.join(self.directory, name)
            if name.endswith(SUFFIX):
                try:
                    os.rename(path, path + tag)
                except FileNotFoundError:
                    continue  # another applier claimed it
                claimed.append(path + tag)
            elif name.endswith(CLAIMED):
                claimed.append(path)
            elif name.startswith(TEMPORARY) and network is None:
                self._remove_stale(path)
        releases, bad = [], []
        for path in claimed:
            try:
                releases.append(read_entry(path))
            except FileNotFoundError:
                continue  # applied and removed by another applier meanwhile
            except SpoolError as e:
                bad.append(self._move_aside(path, str(e)))
        return releases, bad

    def pending(self) -> list[SpooledRelease]:
        """Every release the spool holds, read only (for ``ipledger leases``)."""
        found = []
        try:
            names = self._names()
        except OSError:  # not readable by this user: nothing it can show
            return []
        for name in names:
            if name.endswith((SUFFIX, CLAIMED)):
                try:
                    found.append(read_entry(os.path.join(self.directory, name)))
                except (OSError, SpoolError):
                    continue
        return found

    def done(self, releases: list[SpooledRelease]) -> None:
        """Remove the files of releases the ledger has committed."""
        for release in releases:
            try:  # noqa: SIM105
                os.unlink(release.path)
            except FileNotFoundError:
                pass
        if releases:
            _sync_directory(self.directory)

    def _move_aside(self, path: str, reason: str) -> str:
        aside = os.path.join(self.directory, BAD)
        name = os.path.basename(path)
        try:
            os.makedirs(aside, mode=0o700, exist_ok=True)
            os.rename(path, os.path.join(aside, name))
        except OSError as e:
            return f"{path} {reason}; it could not be moved into {aside}: {e.strerror or e}"
        return f"{path} {reason}: moved into {aside}"

    def _remove_stale(self, path: str) -> None:
        try:
            if time.time() - os.lstat(path).st_mtime > STALE_TEMPORARY:
                os.unlink(path)
        except OSError:
            pass
