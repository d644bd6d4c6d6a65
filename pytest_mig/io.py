"""Bottom-layer file access: atomic writes, safe reads and appends, for every layer.

This module imports nothing of pytest-mig but `errors`; any layer may import it.

Rules for writes:
- A file is replaced atomically: the new bytes go to a temporary file beside it (same
  directory, so the same file system), which is then moved over it with `os.replace`. A run
  killed at any moment leaves the previous file or the new one, never half of either; on any
  error the temporary file is removed and the error propagates.
- Options, each a keyword argument of `write_atomic`/`write_json_atomic`/`atomic_path`:
  `fsync` (default on) flushes the bytes to disk before the rename, so a crash of the machine
  cannot leave an empty file; switch it off for state rewritten many times a second (the
  simulator's state, the MIG ownership file) where that cost matters more. `mode` is the
  permission of the new file: 0o600 by default (owner only, as `tempfile.mkstemp`), 0o666 for
  "as `open()` would", the umask applying in every case.
- A caller that holds a lock (the simulator's flock) holds it around the write; these helpers
  take no lock of their own.

Rules for reads and appends:
- Appends never follow a symlink (O_NOFOLLOW) and only ever extend a regular file.
- Files a workload wrote are read only if they are regular files (never a FIFO, a device or
  /dev/zero behind a symlink), only up to a size cap, and never block (O_NONBLOCK).
- Every refusal is an UnsafeFile (a MigError) whose one line names the path and the reason.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator

from pytest_mig.errors import MigError

# A LoadGen summary is a few KiB, a detail log some MiB; a results.json of a big run some MiB.
MAX_READ_BYTES = 64 << 20


class UnsafeFile(MigError):
    """A file pytest-mig refuses to read or write (symlink, FIFO, device, too large)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path, cap: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file of at most `cap` bytes; UnsafeFile otherwise, OSError
    (FileNotFoundError, PermissionError) when it cannot be opened at all."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO without writer, a socket
            raise UnsafeFile(f"{path}: refused to read it: not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path}: refused to read it: it is {_kind(st.st_mode)}, "
                             "not a regular file")
        if st.st_size > cap:
            raise UnsafeFile(f"{path}: refused to read it: {st.st_size} bytes, more than the "
                             f"{cap >> 20} MiB cap")
        chunks, total = [], 0
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            total += len(data)
            if total > cap:  # grew while we read
                raise UnsafeFile(f"{path}: refused to read it: more than the {cap >> 20} MiB cap")
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: Path, cap: int = MAX_READ_BYTES) -> str:
    """read_bytes decoded as UTF-8, undecodable bytes replaced (never an exception)."""
    return read_bytes(path, cap).decode("utf-8", "replace")


def read_tail(path: Path, limit: int) -> tuple[bytes, int]:
    """The last `limit` bytes of a regular file and its size; the same refusals as
    read_bytes (a FIFO, a device, /dev/zero behind a symlink), never blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UnsafeFile(f"{path}: refused to read it: not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path}: refused to read it: it is {_kind(st.st_mode)}, "
                             "not a regular file")
        os.lseek(fd, max(0, st.st_size - limit), os.SEEK_SET)
        chunks, total = [], 0
        while total < limit:
            data = os.read(fd, min(1 << 20, limit - total))
            if not data:
                break
            total += len(data)
            chunks.append(data)
        return b"".join(chunks), st.st_size
    finally:
        os.close(fd)


def open_append(path: Path) -> int:
    """An O_APPEND descriptor on a regular file, created if missing; never through a symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_NOCTTY, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path}: refused to append: it is a symlink; pytest-mig "
                             "appends only to plain files (remove the link)") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeFile(f"{path}: refused to append: it is {_kind(st.st_mode)}, not a "
                         "regular file")
    return fd


def is_regular(path: Path) -> bool:
    """A regular file itself (not a symlink to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    """An exclusively created, empty temporary file beside `path`: its descriptor and name."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


@contextlib.contextmanager
def atomic_path(path: Path | str, *, mode: int = 0o600, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that wants a file name (matplotlib's
    savefig); when the block ends without error it replaces `path`, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path, mode)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path | str, data: str | bytes, *, mode: int = 0o600,
                 fsync: bool = True) -> None:
    """Replace `path` with `data` (text is written as UTF-8) atomically; see the rules above."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path | str, data: Any, *, indent: int = 2, mode: int = 0o600,
                      fsync: bool = True) -> None:
    """`data` as sorted, indented JSON plus a newline (values JSON cannot hold as str)."""
    write_atomic(path, json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n",
                 mode=mode, fsync=fsync)
