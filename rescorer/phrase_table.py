"""Moses phrase-table lines: parse, validate, and append dense scores.

A line is ``source ||| target ||| s1 s2 ... ||| [alignment] ||| [counts] ...``.
Everything is handled as bytes so that every field we do not touch (alignment,
counts, sparse features, properties, even odd whitespace) is written back byte for
byte.  Errors name the file and the 1-based line number.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

SEP = b" ||| "


class PhraseTableError(ValueError):
    """A malformed phrase-table line; the message names file and line."""


@dataclass(frozen=True)
class PhrasePair:
    source: str
    target: str
    fields: tuple[bytes, ...]  # every field of the line, unchanged (no newline)
    newline: bytes  # b"\n", b"\r\n" or b"" for a last line without newline
    n_scores: int

    @property
    def source_words(self) -> list[str]:
        return self.source.split()

    @property
    def target_words(self) -> list[str]:
        return self.target.split()


def open_binary(path: str | os.PathLike) -> BinaryIO:
    """Open a plain or gzipped file for reading bytes (gzip is sniffed, not guessed from the name)."""
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        # a large buffer in front of GzipFile makes line iteration about twice as fast
        return io.BufferedReader(gzip.GzipFile(fileobj=f, mode="rb"), 1 << 20)  # type: ignore[arg-type]
    return f


def parse_line(raw: bytes, path: str = "<table>", lineno: int = 0,
               expect_scores: int | None = None) -> PhrasePair:
    """Parse one raw line (with or without its newline) of a Moses phrase table."""
    if raw.endswith(b"\r\n"):
        body, nl = raw[:-2], b"\r\n"
    elif raw.endswith(b"\n"):
        body, nl = raw[:-1], b"\n"
    else:
        body, nl = raw, b""
    where = f"{path}:{lineno}"
    fields = body.split(SEP)
    if len(fields) < 3:
        raise PhraseTableError(
            f"{where}: expected 'source ||| target ||| scores [||| ...]', "
            f"found {len(fields)} field(s): {body[:80]!r}")
    try:
        source = fields[0].decode("utf-8")
        target = fields[1].decode("utf-8")
    except UnicodeDecodeError as e:
        raise PhraseTableError(f"{where}: bytes that are not UTF-8 ({e.reason} at byte {e.start})") from None
    if not source.strip():
        raise PhraseTableError(f"{where}: empty source phrase")
    if not target.strip():
        raise PhraseTableError(f"{where}: empty target phrase")
    toks = fields[2].split()
    for t in toks:
        try:
            v = float(t)
        except ValueError:
            raise PhraseTableError(f"{where}: score {t.decode('utf-8', 'replace')!r} is not a number") from None
        if math.isnan(v):
            raise PhraseTableError(f"{where}: score {t.decode()!r} is not a number")
    if not toks:
        raise PhraseTableError(f"{where}: no scores in the third field")
    if expect_scores is not None and len(toks) != expect_scores:
        raise PhraseTableError(
            f"{where}: {len(toks)} scores, but the lines before have {expect_scores}")
    return PhrasePair(source, target, tuple(fields), nl, len(toks))


def format_prob(logp: float) -> bytes:
    """A log-probability as the probability-like value Moses expects: ``exp(log p)``, ``%.6g``.

    Moses takes ``max(ln x, -100)`` of each dense score on loading, so ``exp`` is the
    inverse of what it does; ``%.6g`` keeps tiny values (``1.3e-37``) exact to 6 digits.
    Below ``exp(-745)`` a float64 underflows to 0, which Moses floors at -100 anyway.
    """
    return b"%.6g" % math.exp(logp)


def append_scores(pair: PhrasePair, values: list[bytes]) -> bytes:
    """The line of ``pair`` with ``values`` appended to its scores field; other fields unchanged."""
    fields = list(pair.fields)
    scores = fields[2]
    joiner = b"" if scores.endswith(b" ") else b" "
    fields[2] = scores + joiner + b" ".join(values)
    return SEP.join(fields) + pair.newline


def iter_table(path: str | os.PathLike, start_line: int = 0,
               n_scores: int | None = None) -> Iterator[PhrasePair]:
    """Stream the pairs of a table, checking that every line has the same number of scores.

    ``start_line`` skips that many lines (used by ``--resume``); line numbers in errors
    stay those of the file.
    """
    name = os.fspath(path)
    for lineno, raw in raw_lines(path):
        if lineno <= start_line:
            continue
        if not raw.strip():
            raise PhraseTableError(f"{name}:{lineno}: empty line")
        pair = parse_line(raw, name, lineno, n_scores)
        n_scores = pair.n_scores
        yield pair


def raw_lines(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a plain or gzipped file; a damaged or truncated gzip stream is
    an error naming the file and the line where it stops."""
    name = os.fspath(path)
    lineno = 0
    with open_binary(path) as f:
        try:
            for raw in f:
                lineno += 1
                yield lineno, raw
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            what = "ends early (truncated?)" if isinstance(e, EOFError) else f"is damaged ({e})"
            raise PhraseTableError(f"{name}:{_readable_lines(path) + 1}: compressed stream {what}") from None


def _readable_lines(path: str | os.PathLike) -> int:
    """How many whole lines a damaged gzip file gives before it fails (read again without the large
    read-ahead buffer, which fails before handing over the lines it holds)."""
    n = 0
    try:
        with gzip.open(path, "rb") as f:
            for _ in f:
                n += 1
    except (EOFError, gzip.BadGzipFile, zlib.error):
        pass
    return n
