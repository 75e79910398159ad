"""Writing a run folder safely: atomic replacement, appended lines, a full disk, file locks, deletes.

A full disk never shows as a raw OSError or SQLite's "database or disk is full": writes here raise
:class:`DiskFull` ("no space left on device while writing ...") and leave what was written before
intact, and an active run holds back a little disk (`hold_reserve`) that it gives up just before its
final status, so that even a full disk records why a run ended. Locks are OS file locks taken through
``filelock`` (flock on Linux and macOS, LockFileEx on Windows): the system drops them when their process
ends, so a killed process never holds one.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import IO, Any

import filelock
import psutil

from ..errors import RunError
from .layout import DELETING_PREFIX, RESERVE_FILE

RESERVE_BYTES = 128 * 1024  # an event line, run.json and a few index pages: a final status, with room to spare


class DiskFull(RunError):
    """A write to the run store ran out of disk; what was written before is intact."""


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC (or a quota), as the file system or SQLite reports it."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def no_space(what: str, where: Path, exc: BaseException) -> DiskFull:
    """ftkit's one message for a full disk, naming what was being written and where."""
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return DiskFull(f"no space left on device while writing {what} in {where} ({type(exc).__name__}: {detail}). "
                    "Free some space there (or set output.dir to a bigger disk) and resume the run; "
                    "what was written before is intact")


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written as `write_bytes_atomic` writes."""
    write_bytes_atomic(path, json.dumps(data, indent=1, default=str).encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a temporary file of its own (unique per process, thread and call), fsync it and rename it
    over ``path``: readers see the old file or the new one, never half, and a crash leaves one whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise no_space(path.name, path.parent, exc) from None
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the file system lets a folder be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


HELD_LOCKS = threading.local()  # the run and index locks this thread holds (both re-entrant within a thread)


def lock(handle: IO, wait: bool = True) -> bool:
    """Lock ``handle``'s file for this open handle alone (NFS carries it to other machines as a byte-range
    lock); False when another handle holds it and ``wait`` is off. Closing the handle releases it."""
    return filelock.lock_descriptor(handle.fileno(), blocking=wait, poll_interval=0.005)


SHARED_STORE_VARIABLE = "FTKIT_SHARED_STORE"  # 1: a team's store: group-readable, used from several machines
# File systems several machines mount: SQLite's WAL (shared memory beside the database) is unsafe there.
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph",
                                 "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.ceph", "9p", "afs", "panfs"})


def shared_by_environment() -> bool:
    return os.environ.get(SHARED_STORE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def folder_mode() -> int:
    """How run folders are made: the owner's alone (0700), unless FTKIT_SHARED_STORE says the store is shared (0750)."""
    return 0o750 if shared_by_environment() else 0o700


def filesystem_of(path: Path) -> str:
    """The type of the file system ``path`` is on (``ext4``, ``nfs4``...), "" when unknown."""
    where, found = str(Path(path).resolve()), ("", "")
    for partition in psutil.disk_partitions(all=True):
        mount = partition.mountpoint.rstrip("/") or "/"
        inside = where == mount or where.startswith(mount if mount == "/" else mount + "/")
        if inside and len(mount) > len(found[0]):
            found = (mount, partition.fstype)
    return found[1]


def make_private(path: Path) -> None:
    """Give a file the owner alone (0600; 0640 in a shared store): for the index, whose rows name every run."""
    try:
        os.chmod(path, 0o600 if folder_mode() == 0o700 else 0o640)
    except OSError:
        pass  # a file system without modes (some network shares): nothing to tighten


def is_locked(path: Path) -> bool:
    """Whether a process holds ``path``'s lock (here, or on another machine where the shared file system's locks
    reach): a probe that takes it lets go at once; another reader's probe holds it for an instant only."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return False
    with handle:
        for _ in range(5):
            if lock(handle, wait=False):
                return False
            time.sleep(0.01)
        return True


def append_line(path: Path, event: dict[str, Any]) -> None:
    """Append ``event`` as one line, written through. After a writer killed mid-line the line starts
    afresh; a line the disk cannot take is cut back off, so the lines before it stay as they were."""
    line = json.dumps(event, default=str).encode("utf-8") + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a writer killed mid-line (kill -9, full disk)
            line = b"\n" + line
        written = 0
        try:
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError as exc:
            if written and os.fstat(fd).st_size == size + written:  # nobody wrote after it: take it back
                os.ftruncate(fd, size)
            if is_disk_full(exc):
                raise no_space(path.name, path.parent, exc) from None
            raise
    finally:
        os.close(fd)


def hold_reserve(folder: Path) -> None:
    """Set `RESERVE_BYTES` of disk aside for the run's final status, written as data (a sparse file
    would hold nothing back)."""
    path = folder / RESERVE_FILE
    if path.exists():
        return
    try:
        with open(path, "wb") as f:
            f.write(bytes(RESERVE_BYTES))
    except OSError as exc:
        path.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise no_space(RESERVE_FILE, folder, exc) from None
        raise


def set_aside(folder: Path) -> Path:
    """Rename ``folder`` to a hidden name beside it, where nothing lists or loads it: the one atomic step
    of a delete before anything is removed."""
    doomed = folder.with_name(f"{DELETING_PREFIX}{folder.name}-{secrets.token_hex(3)}")
    try:
        os.rename(folder, doomed)
    except OSError as exc:
        raise RunError(f"could not delete {folder} ({exc}); nothing was removed") from None
    return doomed


def remove_set_aside(doomed: Path, what: str) -> None:
    try:
        shutil.rmtree(doomed)
    except OSError as exc:
        raise RunError(f"{what} is deleted, but some of its files could not be removed ({exc}); "
                       f"remove {doomed} by hand") from None
