"""The file plumbing of building phrase tables: text files that may be gzipped, and files written
through external processes (GNU ``sort`` in byte order on disk, as Moses sorts; ``gzip -1``) so that
sorting and compressing run on other cores while Python writes."""
from __future__ import annotations

import gzip
import os
import shlex
import shutil
import subprocess


def open_text(path: str, mode: str = "rt"):
    """A UTF-8 text file, gzipped (fast level) when its name ends in ``.gz``."""
    return gzip.open(path, mode, encoding="utf-8", compresslevel=1) if path.endswith(".gz") else \
        open(path, mode, encoding="utf-8")


class Pipe:
    """A text file written through an external ``bash -c`` command's stdin (``gzip -1 >
    FILE``, ``sort ... > FILE``): the command runs on another core while Python writes."""

    def __init__(self, cmd: str, what: str):
        self.cmd, self.what = cmd, what
        self.proc = subprocess.Popen(["bash", "-c", cmd], stdin=subprocess.PIPE)
        self.f = open(self.proc.stdin.fileno(), "w", encoding="utf-8", buffering=1 << 20, closefd=False)

    def write(self, text: str) -> None:
        self.f.write(text)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()
        self.proc.stdin.close()
        if self.proc.wait() != 0 and exc[0] is None:
            raise RuntimeError(f"{self.what} failed ({self.cmd})")


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is needed to build the phrase tables (it sorts and compresses them)")


def _sort_cmd(tmp_dir: str, memory: str, threads: int) -> str:
    """GNU sort in byte order (``LC_ALL=C``, as Moses sorts), on disk in ``tmp_dir``."""
    return f"LC_ALL=C sort -S {memory} --parallel={threads} -T {shlex.quote(tmp_dir)}"


def gnu_sort(inputs: list[str], output: str, tmp_dir: str, memory: str = "1G", threads: int = 2) -> None:
    """``LC_ALL=C sort`` of text files (gzipped ones are read through ``gzip -dc``) into
    ``output`` (gzipped if it ends in ``.gz``), on disk, as Moses sorts."""
    need("sort", "gzip", "bash")
    files = " ".join(f"<(gzip -dc {shlex.quote(p)})" if p.endswith(".gz") else shlex.quote(p) for p in inputs)
    tail = " | gzip -1" if output.endswith(".gz") else ""
    cmd = (f"set -o pipefail; {_sort_cmd(tmp_dir, memory, threads)} {files}{tail} "
           f"> {shlex.quote(output + '.tmp')}")
    if subprocess.run(["bash", "-c", cmd]).returncode != 0:
        raise RuntimeError(f"sorting {', '.join(inputs)} into {output} failed")
    os.replace(output + ".tmp", output)


def sorting_writer(output: str, tmp_dir: str, memory: str = "1G", threads: int = 1) -> Pipe:
    """A file object whose lines come out in ``output`` sorted as ``gnu_sort`` sorts them."""
    need("sort", "bash")
    return Pipe(f"{_sort_cmd(tmp_dir, memory, threads)} > {shlex.quote(output)}", f"sorting into {output}")


def gzip_writer(output: str) -> Pipe:
    """A file object that writes ``output`` through ``gzip -1`` in its own process."""
    need("gzip", "bash")
    return Pipe(f"gzip -1 > {shlex.quote(output)}", f"writing {output}")
