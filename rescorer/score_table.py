"""Streaming a phrase table through the scorer: one more dense score on every line.

* Bounded memory: the table is read in chunks of about ``chunk_lines`` lines, cut where
  the source phrase changes (a sorted table lists each source's targets together), so
  each source is encoded once; every chunk is written back in input order.
* Safe output: lines go to ``OUT.partial``; ``OUT.partial.json`` records after each
  chunk how many input lines and output bytes are complete.  ``--resume`` truncates the
  partial file there and carries on; chunk boundaries depend only on the input, so the
  result is byte-identical to an uninterrupted run.  ``OUT`` appears, by rename, only
  when the whole table is done.  A gzipped output is a sequence of gzip members, one per
  chunk (as ``zcat``, zlib and Moses read them).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import time
from typing import Iterator

from tqdm import tqdm

from .fileio import OutputExistsError, atomic_write, check_can_write
from .phrase_table import PhrasePair, PhraseTableError, append_scores, format_prob, iter_table
from .scorer import PhraseScorer

log = logging.getLogger(__name__)


class ResumeError(RuntimeError):
    pass


def file_fingerprint(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def chunks(pairs: Iterator[PhrasePair], chunk_lines: int) -> Iterator[list[PhrasePair]]:
    """Groups of at least ``chunk_lines`` pairs ending where the source changes (at most 4x that)."""
    buf: list[PhrasePair] = []
    for p in pairs:
        if len(buf) >= chunk_lines and (p.source != buf[-1].source or len(buf) >= 4 * chunk_lines):
            yield buf
            buf = []
        buf.append(p)
    if buf:
        yield buf


def score_table(scorer: PhraseScorer, table: str, out: str, *, model_path: str = "",
                unk_count: bool = False, resume: bool = False, overwrite: bool = False,
                chunk_lines: int = 4096, progress: bool = True,
                stop_after_chunks: int | None = None) -> dict:
    """Write ``table`` with ``exp(log p)`` (and with ``unk_count`` ``exp(-#unknown words)``) appended.

    ``stop_after_chunks`` stops early, leaving the partial output as an interruption would
    (used by the tests of ``--resume``).
    """
    partial, state_path = out + ".partial", out + ".partial.json"
    settings = {
        "table": os.path.abspath(table), "table_size": os.path.getsize(table),
        "model": file_fingerprint(model_path) if model_path else "", "unk_count": unk_count,
        "chunk_lines": chunk_lines, "gzip": out.endswith(".gz"),
    }
    check_can_write(out, overwrite)
    lines_done, bytes_done, n_scores = 0, 0, None
    if resume:
        if not os.path.exists(state_path) or not os.path.exists(partial):
            raise ResumeError(f"--resume: no interrupted run to resume ({state_path} is missing)")
        with open(state_path) as f:
            state = json.load(f)
        changed = [k for k, v in settings.items() if state["settings"].get(k) != v]
        if changed:
            raise ResumeError(f"--resume: {state_path} was made with a different {', '.join(changed)}; "
                              "run again without --resume (and with --overwrite)")
        lines_done, bytes_done, n_scores = state["lines_done"], state["bytes_done"], state["n_scores"]
        log.info("resuming after %d lines (%d bytes of %s)", lines_done, bytes_done, partial)
    elif os.path.exists(partial) or os.path.exists(state_path):
        if not overwrite:
            raise OutputExistsError(f"{partial} is left from an interrupted run: pass --resume to "
                                    "continue it or --overwrite to start again")

    mode = "r+b" if resume else "wb"
    t0 = time.monotonic()
    n_new = 0
    try:
        with open(partial, mode) as f:
            f.truncate(bytes_done)
            f.seek(bytes_done)
            bar = tqdm(desc="scoring", unit=" pairs", initial=lines_done, disable=not progress,
                       mininterval=1.0, dynamic_ncols=True, unit_scale=True)
            for k, chunk in enumerate(chunks(iter_table(table, start_line=lines_done, n_scores=n_scores),
                                             chunk_lines)):
                if stop_after_chunks is not None and k >= stop_after_chunks:
                    bar.close()
                    return {"lines": lines_done, "complete": False}
                n_scores = chunk[0].n_scores
                logp = scorer.score_pairs((p.source, p.target) for p in chunk)
                lines = []
                for p, lp in zip(chunk, logp):
                    new = [format_prob(lp)]
                    if unk_count:
                        new.append(format_prob(-scorer.n_unknown(p.source, p.target)))
                    lines.append(append_scores(p, new))
                data = b"".join(lines)
                if settings["gzip"]:
                    data = gzip.compress(data, compresslevel=6, mtime=0)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                lines_done += len(chunk)
                bytes_done += len(data)
                n_new += len(chunk)
                with atomic_write(state_path, "w") as s:
                    json.dump({"settings": settings, "lines_done": lines_done, "bytes_done": bytes_done,
                               "n_scores": n_scores}, s)
                bar.update(len(chunk))
            bar.close()
    except PhraseTableError:
        # bad input: what was written cannot be resumed once the table is corrected (its size is
        # part of the settings), so nothing is left behind to block the corrected run
        for p in (partial, state_path):
            if os.path.exists(p):
                os.unlink(p)
        raise
    os.replace(partial, out)
    os.unlink(state_path)
    secs = time.monotonic() - t0
    log.info("%s: %d lines scored (%d in this run, %.0f pairs/s), %d score(s) per line now",
             out, lines_done, n_new, n_new / max(secs, 1e-9), (n_scores or 0) + 1 + unk_count)
    return {"lines": lines_done, "complete": True, "seconds": secs, "pairs_per_s": n_new / max(secs, 1e-9)}
