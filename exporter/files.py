"""Reading files that a user names (the config, TLS material): regular files only, and a bounded amount of them.

A named pipe would block a plain read forever and a device like /dev/zero would never end, so the
file's type is checked before any byte is read, on the open file (a pipe put in place since a
check opens at once, without blocking), and no more than the bound is read.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

_NOT_REGULAR = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is not a regular file (a named pipe)"),
    (stat.S_ISCHR, "is not a regular file (a character device)"),
    (stat.S_ISBLK, "is not a regular file (a block device)"),
    (stat.S_ISSOCK, "is not a regular file (a socket)"),
)


class UnreadableFileError(Exception):
    """A file that must not be read: not a regular file, or larger than its bound; the text says which."""


def check_regular(status: os.stat_result, limit: int, too_large: str) -> None:
    """Raise UnreadableFileError unless `status` is a regular file's of at most `limit` bytes (`too_large` says so)."""
    for test, text in _NOT_REGULAR:
        if test(status.st_mode):
            raise UnreadableFileError(text)
    if not stat.S_ISREG(status.st_mode):
        raise UnreadableFileError("is not a regular file")
    if status.st_size > limit:
        raise UnreadableFileError(too_large)


def read_regular(path: Path | str, limit: int, too_large: str) -> bytes:
    """A regular file's bytes, at most `limit` of them; raises UnreadableFileError or OSError."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        check_regular(os.fstat(fd), limit, too_large)  # before Python's file object, which refuses a directory itself
    except BaseException:
        os.close(fd)
        raise
    with open(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew since
        raise UnreadableFileError(too_large)
    return data


# A file changed less than this long ago may change again within its mtime's granularity (a few
# milliseconds on some filesystems) without its stamp changing: read it rather than trust the stamp.
_SETTLED_AFTER = 2.0  # seconds

Stamp = tuple[int, int, int, int] | str


def stamp(path: Path | str) -> Stamp:
    """What tells a file's versions apart without reading it: (device, inode, size, mtime in ns), or its error."""
    try:
        status = os.stat(path)
    except OSError as exc:
        return f"unreadable: {exc.errno}"
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def settled(seen: Stamp) -> bool:
    """Whether a file with this stamp is the same file whenever the stamp is the same (see _SETTLED_AFTER)."""
    return not isinstance(seen, str) and time.time() - seen[3] / 1e9 > _SETTLED_AFTER
