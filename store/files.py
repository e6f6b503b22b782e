"""Files auditseal creates: owner-only whatever the umask, and written whole or not at all.

Everything auditseal writes may be sensitive: the store and spool hold event values, state
files name keys, key files are keys. So each file it creates is 0600 and each directory it
creates is 0700, set explicitly (a mode given to open or mkdir only loses bits to the umask,
and a umask of 0 would leave group and others what the default gives). An existing directory
keeps its mode: it is the operator's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "create_private", "open_private", "private_dir", "write_atomic"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create the directory ``path`` and its missing parents, each 0700; return it. Raises
    OSError (for instance when a part of it is a file)."""
    target = Path(path)
    missing: list[Path] = []
    at = target
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process: its mode is its own
        os.chmod(folder, DIR_MODE)  # mkdir's mode went through the umask
    return target


def create_private(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` as an empty 0600 file (and its folders, 0700) unless it exists; True if
    this call made it. An existing file is left as it is. Raises OSError."""
    target = Path(path)
    private_dir(target.parent)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def open_private(path: str | os.PathLike[str], flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """A descriptor of ``path`` opened with ``flags``, creating it (and its folders) owner-only.
    A file auditseal created earlier, under another umask or an older version, is made 0600
    too. Raises OSError."""
    target = Path(path)
    private_dir(target.parent)
    fd = os.open(target, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = FILE_MODE) -> Path:
    """Write ``data`` to ``path`` through a synced temporary file in the same directory and a
    rename, creating parent folders (0700): a reader sees the old file or the new one, never
    half of it, and a crash leaves no partial file behind. The file gets ``mode`` (owner-only
    unless the caller says otherwise). Raises OSError."""
    target = Path(path)
    private_dir(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target
