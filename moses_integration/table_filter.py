"""A phrase table cut to an input text: its lines filtered to the spans of the input, the decoder's
columns of those lines, and binarising with Moses.

``filter_table`` keeps the lines whose source phrase occurs in the input (every span up
to the longest phrase), byte for byte, as Moses's ``filter-model-given-input.pl`` does.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from rescorer.fileio import atomic_write, check_can_write
from rescorer.phrase_table import SEP, PhraseTableError, open_binary, parse_line, raw_lines

from .compiled import check_fresh

try:
    from . import table_scan
except ImportError:  # not built: read_table takes NumPy's path
    table_scan = None
else:
    check_fresh(table_scan)  # built, but older than its source: an error, not a fallback


def source_spans(sentences: Iterable[str], max_len: int = 7) -> set[bytes]:
    """Every span of up to ``max_len`` words of the sentences, as UTF-8 bytes."""
    out: set[bytes] = set()
    for s in sentences:
        w = s.split()
        for i in range(len(w)):
            for j in range(i + 1, min(i + max_len, len(w)) + 1):
                out.add(" ".join(w[i:j]).encode())
    return out


def filtered_lines(path: str | os.PathLike, wanted: set[bytes], progress: bool = True
                   ) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of the lines whose source phrase is in ``wanted``; fast path on bytes."""
    lines = raw_lines(path)
    if progress:
        lines = tqdm(lines, desc=f"reading {os.path.basename(os.fspath(path))}", unit=" lines",
                     unit_scale=True, mininterval=2.0, leave=False)
    for lineno, raw in lines:
        k = raw.find(SEP)
        if k >= 0 and raw[:k] in wanted:
            yield lineno, raw


def _wanted_lines(path: str | os.PathLike, wanted: set[bytes], progress: bool = True) -> list[bytes]:
    """The lines (without their newline) whose source phrase is in ``wanted``, as ``filtered_lines``
    gives them, read in blocks of 16 MB: the file is split and filtered a block at a time rather
    than a line at a time.  A damaged compressed stream raises as ``raw_lines`` does, without the
    line (``read_columns`` then reads the file again line by line, which names it)."""
    out: list[bytes] = []
    bar = tqdm(desc=f"reading {os.path.basename(os.fspath(path))}", unit=" lines", unit_scale=True,
               mininterval=2.0, leave=False, disable=not progress)
    with open_binary(path) as f, bar:
        for lines in _line_blocks(f):
            out += [raw for raw in lines if (k := raw.find(SEP)) >= 0 and raw[:k] in wanted]
            bar.update(len(lines))
    return out


def _line_blocks(f, size: int = 1 << 24) -> Iterator[list[bytes]]:
    """The lines of a binary file (without their newlines), a block of about ``size`` bytes at a
    time; a last line without a newline comes too."""
    for block in _whole_line_blocks(f, size):
        lines = block.split(b"\n")
        if not lines[-1]:
            lines.pop()  # after the block's last newline
        yield lines


def _whole_line_blocks(f, size: int = 1 << 24) -> Iterator[bytes]:
    """A binary file about ``size`` bytes at a time, each block cut after its last newline (the
    rest goes with the next one); a last line without a newline comes as a block of its own."""
    rest = b""
    while block := f.read(size):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if cut:
            yield block[:cut]
    if rest:
        yield rest


@dataclass
class TableColumns:
    """The kept lines of a table as columns: each source and target phrase once, in order of
    first appearance, and per line (as written) the numbers of its phrases and its scores."""
    sources: list[str]
    targets: list[str]
    source_ids: np.ndarray
    target_ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.source_ids)

    def digest(self) -> bytes:
        """A digest of the (source, target) pairs in order: two tables with the same pairs in the
        same order number their phrases alike, so they have the same digest."""
        h = hashlib.sha256()
        for part in ("\n".join(self.sources).encode(), "\n".join(self.targets).encode(),
                     np.ascontiguousarray(self.source_ids, np.int64).tobytes(),
                     np.ascontiguousarray(self.target_ids, np.int64).tobytes()):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
        return h.digest()


def read_table(path: str | os.PathLike, wanted: set[bytes], n_scores: int, progress: bool = True) -> TableColumns:
    """The lines of ``path`` whose source phrase is in ``wanted``, as columns.

    Read by the compiled scanner (``table_scan``) when it is built, else by ``read_columns``'s
    NumPy path; either way a line that looks wrong sends the file to ``parse_line``, line by line,
    which raises naming the file and the line, or gives the same columns when the line was only
    unusual."""
    if table_scan is not None:
        got = _scan(path, wanted, n_scores, progress)
        if got is not None:
            return got
    src, tgt, scores = _read_columns_numpy(path, wanted, n_scores, progress)
    sources: dict[str, int] = {}
    targets: dict[str, int] = {}
    sid = np.fromiter((sources.setdefault(s, len(sources)) for s in src), np.int64, len(src))
    tid = np.fromiter((targets.setdefault(t, len(targets)) for t in tgt), np.int64, len(tgt))
    return TableColumns(list(sources), list(targets), sid, tid, scores)


def _scan(path: str | os.PathLike, wanted: set[bytes], n_scores: int, progress: bool, block_size: int = 1 << 24
          ) -> TableColumns | None:
    """``read_table`` by the compiled scanner, ``block_size`` bytes read at a time; None when a
    line needs the slow path."""
    cols = table_scan.Columns(wanted, n_scores)
    bar = tqdm(desc=f"reading {os.path.basename(os.fspath(path))}", unit=" lines", unit_scale=True,
               mininterval=2.0, leave=False, disable=not progress)
    try:
        with open_binary(path) as f, bar:
            for block in _whole_line_blocks(f, block_size):
                bar.update(cols.add(block))
                if not cols.ok:
                    return None
    except (EOFError, gzip.BadGzipFile, zlib.error):
        return None
    try:
        sources = [s.decode() for s in cols.sources]
        targets = [t.decode() for t in cols.targets]
    except UnicodeDecodeError:
        return None
    if not (all(s.strip() for s in sources) and all(t.strip() for t in targets)):
        return None
    return TableColumns(sources, targets, cols.source_ids, cols.target_ids, cols.scores)


def read_columns(path: str | os.PathLike, wanted: set[bytes], n_scores: int, progress: bool = True
                 ) -> tuple[list[str], list[str], np.ndarray]:
    """Source phrases, target phrases and dense scores (one row per line, as written) of the lines
    whose source phrase is in ``wanted`` (``read_table``'s columns, a phrase per line)."""
    t = read_table(path, wanted, n_scores, progress)
    return ([t.sources[i] for i in t.source_ids.tolist()], [t.targets[i] for i in t.target_ids.tolist()],
            t.scores)


def _read_columns_numpy(path: str | os.PathLike, wanted: set[bytes], n_scores: int, progress: bool = True
                        ) -> tuple[list[str], list[str], np.ndarray]:
    """``read_columns`` without the compiled scanner.

    The scores are parsed in bulk by NumPy's ``loadtxt``; when anything looks wrong (a field
    missing, another number of scores, an empty phrase, bytes that are not UTF-8, a score that
    NumPy does not read or that is NaN) the lines are read again one by one as ``parse_line``
    reads them, which raises naming the file and the line, or gives the same columns when the
    line was only unusual."""

    name = os.fspath(path)
    src: list[bytes] = []
    tgt: list[bytes] = []
    scores: list[bytes] = []
    try:
        lines = _wanted_lines(path, wanted, progress)
    except (EOFError, gzip.BadGzipFile, zlib.error):
        return _read_columns_line_by_line(name, wanted, n_scores)
    ok = True
    for raw in lines:
        f = raw.split(SEP, 3)
        if len(f) < 3:
            ok = False
            break
        src.append(f[0])
        tgt.append(f[1])
        scores.append(f[2])
    del lines
    try:
        sources = [s.decode() for s in src] if ok else []
        targets = [t.decode() for t in tgt] if ok else []
    except UnicodeDecodeError:
        ok = False
    ok = ok and all(s.strip() for s in sources) and all(t.strip() for t in targets)
    if ok and not scores:
        return sources, targets, np.zeros((0, n_scores))
    if ok:
        try:  # one row per line, every row n_scores numbers
            values = np.loadtxt(io.BytesIO(b"\n".join(s.strip() for s in scores)), dtype=np.float64,
                                comments=None, ndmin=2)
        except ValueError:
            values = np.zeros((0, 0))
        ok = values.shape == (len(scores), n_scores) and not np.isnan(values).any()
    if ok:
        return sources, targets, values
    return _read_columns_line_by_line(name, wanted, n_scores)


def _read_columns_line_by_line(name: str, wanted: set[bytes], n_scores: int
                               ) -> tuple[list[str], list[str], np.ndarray]:
    sources, targets, rows = [], [], []
    for lineno, raw in filtered_lines(name, wanted, False):
        p = parse_line(raw, name, lineno)  # raises with the file and the line
        if p.n_scores != n_scores:
            raise PhraseTableError(f"{name}:{lineno}: {p.n_scores} scores, {n_scores} expected")
        sources.append(p.source)
        targets.append(p.target)
        rows.append([float(x) for x in p.fields[2].split()])
    return sources, targets, np.array(rows, dtype=np.float64).reshape(len(rows), n_scores)


def filter_table(table: str, sentences: list[str], out: str, max_len: int = 7, overwrite: bool = False,
                 progress: bool = True) -> int:
    """Write the lines of ``table`` usable for ``sentences`` (gzipped when ``out`` ends in .gz)."""
    check_can_write(out, overwrite)
    wanted = source_spans(sentences, max_len)
    n = 0
    with atomic_write(out, "wb") as f:
        sink = gzip.GzipFile(fileobj=f, mode="wb", mtime=0) if out.endswith(".gz") else f
        for lineno, raw in filtered_lines(table, wanted, progress):
            parse_line(raw, table, lineno)  # a bad line is an error here too
            sink.write(raw)
            n += 1
        if sink is not f:
            sink.close()
    return n


def binarise(table: str, out_prefix: str, n_scores: int, threads: int = 1, moses_bin: str | None = None) -> str:
    """``processPhraseTableMin`` (Moses's compact table) when installed; returns the .minphr path."""
    prog = shutil.which("processPhraseTableMin", path=moses_bin) if moses_bin else shutil.which(
        "processPhraseTableMin")
    if prog is None:
        raise FileNotFoundError("processPhraseTableMin is not installed (it comes with Moses): "
                                "keep the table as PhraseDictionaryMemory")
    subprocess.run([prog, "-in", table, "-out", out_prefix, "-nscores", str(n_scores), "-threads", str(threads)],
                   check=True)
    return out_prefix + ".minphr"
