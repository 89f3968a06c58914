"""Phrase-table tools: filter to an input text, keep the best targets, binarise with Moses.

``filter_table`` keeps the lines whose source phrase occurs in the input (every span up
to the longest phrase), byte for byte, as Moses's ``filter-model-given-input.pl`` does.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Iterable, Iterator

from rescorer.fileio import atomic_write, check_can_write
from rescorer.phrase_table import SEP, parse_line, raw_lines


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
    from tqdm import tqdm
    lines = tqdm(raw_lines(path), desc=f"reading {os.path.basename(os.fspath(path))}", unit=" lines",
                 unit_scale=True, mininterval=2.0, disable=not progress, leave=False)
    for lineno, raw in lines:
        k = raw.find(SEP)
        if k >= 0 and raw[:k] in wanted:
            yield lineno, raw


def filter_table(table: str, sentences: list[str], out: str, max_len: int = 7, overwrite: bool = False) -> int:
    """Write the lines of ``table`` usable for ``sentences`` (gzipped when ``out`` ends in .gz)."""
    import gzip
    check_can_write(out, overwrite)
    wanted = source_spans(sentences, max_len)
    n = 0
    with atomic_write(out, "wb") as f:
        sink = gzip.GzipFile(fileobj=f, mode="wb", mtime=0) if out.endswith(".gz") else f
        for lineno, raw in filtered_lines(table, wanted):
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
