"""Writing files so that nothing half-written is ever left in place of an output."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
from typing import IO, Iterator


class OutputExistsError(FileExistsError):
    pass


# what a failed write says: the disk or quota is full, the file is over the size limit, the
# file system is read-only or failing
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS}


def is_write_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in WRITE_ERRNOS


def write_error(e: OSError, path: str, what: str = "nothing of it was kept") -> OSError:
    """``e`` again, naming the file it could not write and what became of it."""
    return OSError(e.errno, f"cannot write {path}: {e.strerror}; {what}")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_can_write(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to replace an existing output unless the user asked for it, and fail before any work
    when the output's directory cannot be made or written."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    d = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(d):
        d = os.path.dirname(d)
    if not os.path.isdir(d):
        raise NotADirectoryError(f"cannot write {path}: {d} is a file, not a directory")
    if not os.access(d, os.W_OK):
        raise PermissionError(f"cannot write {path}: {d} is not writable")


def _create_beside(path: str) -> tuple[int, str]:
    """A new file beside ``path`` with a name of its own, created as open() creates files (mode
    0666 less the umask, which the kernel applies; mkstemp would make it 0600)."""
    directory, base = os.path.split(path)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place on success only."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _create_beside(os.path.join(directory, os.path.basename(path)))
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_write_error(e) and not getattr(e, "filename", None):
            raise write_error(e, path) from None  # type: ignore[arg-type]
        raise


@contextlib.contextmanager
def scratch_dir(path: str) -> Iterator[str]:
    """A fresh, empty directory at ``path`` to build an output in; removed when the block fails
    (a bad input line leaves nothing behind)."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
