"""Reading text files: one rule for every command.

A line ends with ``\n`` or ``\r\n`` (a file written on Windows reads as the same lines); a
file may be gzipped; a line that is not UTF-8, or a damaged gzip stream, stops with its file
and line number.
"""
from __future__ import annotations

import os
from typing import Iterator

from .phrase_table import PhraseTableError, raw_lines


class TextError(ValueError):
    pass


def text_lines(path: str, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of a UTF-8 file (the first ``limit`` if given),
    gzipped or not, newline included; a line that is not UTF-8, or a damaged gzip stream, stops
    with its file and line."""
    if not os.path.exists(path):
        raise TextError(f"{path}: no such file")
    try:
        for lineno, raw in raw_lines(path):   # a damaged gzip stream: its file and line
            if limit is not None and lineno > limit:
                return
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TextError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except PhraseTableError as e:
        raise TextError(str(e)) from None


def strip_newline(text: str) -> str:
    """A line without its line ending (``\n`` or ``\r\n``), nothing else removed."""
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return text


def read_lines(path: str, limit: int | None = None) -> list[str]:
    """The lines of a text file without their line endings, the first ``limit`` if given."""
    return [strip_newline(t) for _, t in text_lines(path, limit)]
