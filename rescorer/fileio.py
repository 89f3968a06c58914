"""Writing files so that nothing half-written is ever left in place of an output."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator


class OutputExistsError(FileExistsError):
    pass


def check_can_write(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to replace an existing output unless the user asked for it."""
    if os.path.exists(path) and not overwrite:
        raise OutputExistsError(f"{os.fspath(path)} exists; pass --overwrite to replace it")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place on success only."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
