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
* Several processes (``score_table_parts``, one per rank of ``torch.distributed``): the table
  is planned once into contiguous parts that end on chunk boundaries (``OUT.parts.json``),
  every part is scored into ``OUT.part-K`` by the rank that owns it (part K goes to rank
  K mod world size, so a resumed job may have any number of ranks), and the parts are joined
  in order into ``OUT`` when every one is complete.  The chunks are those of a single
  process, so the output is the same bytes.
"""
from __future__ import annotations

import collections
import glob
import gzip
import itertools
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from .fileio import OutputExistsError, atomic_write, check_can_write, file_digest, is_write_error, write_error
from .phrase_table import SEP, PhraseTableError, append_scores, format_prob, iter_table, raw_lines
from .scorer import PhraseScorer

log = logging.getLogger(__name__)


class ResumeError(RuntimeError):
    pass


def file_fingerprint(path: str) -> str:
    return file_digest(path, "sha1")   # SHA-1, as the states of interrupted runs already record it


def chunks(items: Iterator, chunk_lines: int, key=lambda p: p.source) -> Iterator[list]:
    """Groups of at least ``chunk_lines`` pairs ending where the source changes (at most 4x that).
    The rule restarts at every group, so groups of a table read from a group's first line are
    the same as when it is read from its start."""
    buf: list = []
    for p in items:
        if len(buf) >= chunk_lines and (key(p) != key(buf[-1]) or len(buf) >= 4 * chunk_lines):
            yield buf
            buf = []
        buf.append(p)
    if buf:
        yield buf


def scored_chunks(scorer: PhraseScorer, todo: Iterator[list]) -> Iterator[tuple[list, list[float]]]:
    """(chunk, log p of its pairs) for each chunk of ``todo``, in order.

    Each chunk is scored with torch on one thread, and as many chunks at once as torch had
    threads: a chunk's scores then do not depend on how many threads there are (a matrix
    product split over threads may add in another order and change the last digits)."""
    workers = torch.get_num_threads()
    torch.set_num_threads(1)

    def score(chunk):
        return scorer.score_pairs((p.source, p.target) for p in chunk)
    try:
        if workers == 1:
            for chunk in todo:
                yield chunk, score(chunk)
            return
        # torch's setting is per thread: each of the pool's threads takes it once
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            pending: collections.deque = collections.deque()
            for chunk in todo:
                pending.append((chunk, pool.submit(score, chunk)))
                if len(pending) > workers:
                    chunk, fut = pending.popleft()
                    yield chunk, fut.result()
            while pending:
                chunk, fut = pending.popleft()
                yield chunk, fut.result()
    finally:
        torch.set_num_threads(workers)


def _stop_after(todo: Iterator[list], n: int, stopped: list[bool]) -> Iterator[list]:
    """The first ``n`` chunks of ``todo``; ``stopped`` gets True when there were more."""
    for k, chunk in enumerate(todo):
        if k >= n:
            stopped.append(True)
            return
        yield chunk


def _settings(table: str, model_path: str, unk_count: bool, chunk_lines: int, out: str, precision: str) -> dict:
    return {"table": os.path.abspath(table), "table_size": os.path.getsize(table),
            "model": file_fingerprint(model_path) if model_path else "", "unk_count": unk_count,
            "chunk_lines": chunk_lines, "gzip": out.endswith(".gz"), "precision": precision}


_SAVED_BEFORE = {"precision": "fp32"}  # settings that states saved before they existed did not record


def _load_saved(path: str, settings: dict) -> dict:
    """A saved state or plan, refused when it was made with other settings."""
    with open(path) as f:
        saved = json.load(f)
    changed = [k for k, v in settings.items() if saved["settings"].get(k, _SAVED_BEFORE.get(k)) != v]
    if changed:
        raise ResumeError(f"--resume: {path} was made with a different {', '.join(changed)}; "
                          "run again without --resume (and with --overwrite)")
    return saved


def _load_state(state_path: str, partial: str, settings: dict) -> dict:
    if not os.path.exists(state_path) or not os.path.exists(partial):
        raise ResumeError(f"--resume: no interrupted run to resume ({state_path} is missing)")
    return _load_saved(state_path, settings)


def _score_lines(scorer: PhraseScorer, table: str, partial: str, state_path: str, settings: dict, *,
                 lines_done: int, bytes_done: int, n_scores: int | None, last_line: int | None,
                 bar: tqdm, stop_after_chunks: int | None = None) -> tuple[int, int, bool, int | None]:
    """Score lines ``lines_done + 1 .. last_line`` (to the end when None) of ``table`` onto
    ``partial`` from byte ``bytes_done``, recording progress in ``state_path`` after every chunk:
    (lines done, lines scored now, complete, scores per input line).  Bad input removes both
    files and raises."""
    n_new = 0
    stopped: list[bool] = []
    pairs = iter_table(table, start_line=lines_done, n_scores=n_scores)
    if last_line is not None:
        pairs = itertools.islice(pairs, last_line - lines_done)
    try:
        with open(partial, "r+b" if os.path.exists(partial) else "wb") as f:
            f.truncate(bytes_done)
            f.seek(bytes_done)
            todo = chunks(pairs, settings["chunk_lines"])
            if stop_after_chunks is not None:
                todo = _stop_after(todo, stop_after_chunks, stopped)
            for chunk, logp in scored_chunks(scorer, todo):
                n_scores = chunk[0].n_scores
                lines = []
                for p, lp in zip(chunk, logp):
                    new = [format_prob(lp)]
                    if settings["unk_count"]:
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
    except PhraseTableError:
        # bad input: what was written cannot be resumed once the table is corrected (its size is
        # part of the settings), so nothing is left behind to block the corrected run
        for p in (partial, state_path):
            if os.path.exists(p):
                os.unlink(p)
        raise
    except OSError as e:
        if not is_write_error(e):
            raise
        # a full disk: the chunks recorded in the state are kept for --resume (which cuts the
        # partial file back to them); with none recorded, nothing is left
        if os.path.exists(state_path):
            raise write_error(e, partial, "the lines scored before are kept: make room and rerun with "
                                          "--resume") from None
        os.unlink(partial)
        raise write_error(e, partial) from None
    if stopped:
        return lines_done, n_new, False, n_scores
    if last_line is not None and lines_done < last_line:
        raise PhraseTableError(f"{table}: has {lines_done} lines, the plan of its parts expects {last_line} "
                               "(was it changed while being scored?)")
    return lines_done, n_new, True, n_scores


def score_table(scorer: PhraseScorer, table: str, out: str, *, model_path: str = "",
                unk_count: bool = False, resume: bool = False, overwrite: bool = False,
                chunk_lines: int = 4096, progress: bool = True,
                stop_after_chunks: int | None = None) -> dict:
    """Write ``table`` with ``exp(log p)`` (and with ``unk_count`` ``exp(-#unknown words)``) appended.

    ``stop_after_chunks`` stops early, leaving the partial output as an interruption would
    (used by the tests of ``--resume``).
    """
    partial, state_path = out + ".partial", out + ".partial.json"
    settings = _settings(table, model_path, unk_count, chunk_lines, out, scorer.precision)
    check_can_write(out, overwrite)
    if resume and os.path.exists(out + ".parts.json"):  # left by several processes: this one does every part
        return score_table_parts(scorer, table, out, 0, 1, lambda: None, model_path=model_path, unk_count=unk_count,
                                 resume=True, overwrite=overwrite, chunk_lines=chunk_lines, progress=progress)
    if os.path.exists(out + ".parts.json") and not overwrite:
        raise OutputExistsError(f"{out}.parts.json is left from an interrupted run in several processes: pass "
                                "--resume to continue it (with any number of processes) or --overwrite to start "
                                "again")
    _remove_parts(out)
    lines_done, bytes_done, n_scores = 0, 0, None
    if resume:
        state = _load_state(state_path, partial, settings)
        lines_done, bytes_done, n_scores = state["lines_done"], state["bytes_done"], state["n_scores"]
        log.info("resuming after %d lines (%d bytes of %s)", lines_done, bytes_done, partial)
    elif os.path.exists(partial) or os.path.exists(state_path):
        if not overwrite:
            raise OutputExistsError(f"{partial} is left from an interrupted run: pass --resume to "
                                    "continue it or --overwrite to start again")
        for p in (partial, state_path):
            if os.path.exists(p):
                os.unlink(p)

    t0 = time.monotonic()
    with tqdm(desc="scoring", unit=" pairs", initial=lines_done, disable=not progress, mininterval=1.0,
              dynamic_ncols=True, unit_scale=True) as bar:
        lines_done, n_new, complete, n_scores = _score_lines(
            scorer, table, partial, state_path, settings, lines_done=lines_done, bytes_done=bytes_done,
            n_scores=n_scores, last_line=None, bar=bar, stop_after_chunks=stop_after_chunks)
    if not complete:
        return {"lines": lines_done, "complete": False}
    os.replace(partial, out)
    if os.path.exists(state_path):
        os.unlink(state_path)
    secs = time.monotonic() - t0
    log.info("%s: %d lines scored (%d in this run, %.0f pairs/s), %d score(s) per line now",
             out, lines_done, n_new, n_new / max(secs, 1e-9), (n_scores or 0) + 1 + unk_count)
    return {"lines": lines_done, "complete": True, "seconds": secs, "pairs_per_s": n_new / max(secs, 1e-9)}


# -- several processes -------------------------------------------------------------------------
def plan_parts(table: str, n_parts: int, chunk_lines: int, progress: bool = False) -> tuple[list[list[int]], int]:
    """Contiguous line ranges ``[first, last]`` (1-based, inclusive) of about equal length that
    end on the chunk boundaries of a single process, and the number of lines.  One pass over
    the raw lines (no parsing): a small share of the time scoring takes."""
    ends, n = [], 0
    lines = tqdm(raw_lines(table), desc="planning the parts", unit=" lines", unit_scale=True, disable=not progress,
                 mininterval=1.0)
    sources = (raw.split(SEP, 1)[0] for _, raw in lines)
    for chunk in chunks(sources, chunk_lines, key=lambda s: s):
        n += len(chunk)
        ends.append(n)
    parts, first = [], 1
    for k in range(1, n_parts + 1):
        target = n * k / n_parts
        end = min((e for e in ends if e >= target), default=n) if k < n_parts else n
        if end >= first:
            parts.append([first, end])
            first = end + 1
    return parts, n


def part_path(out: str, k: int) -> str:
    return f"{out}.part-{k}"


def score_table_parts(scorer: PhraseScorer, table: str, out: str, rank: int, world: int,
                      barrier: Callable[[], None], *, model_path: str = "", unk_count: bool = False,
                      resume: bool = False, overwrite: bool = False, chunk_lines: int = 4096,
                      progress: bool = True) -> dict:
    """The share of rank ``rank`` of ``world`` processes in scoring ``table`` into ``out``.

    Rank 0 checks the output and plans the parts (or, with ``resume``, loads the plan and
    checks that it was made with the same settings), every rank scores the parts it owns
    (part K when K mod ``world`` = ``rank``), each resumable as a single-process run is, and
    rank 0 joins them once all are complete.  ``barrier`` waits for every rank (the process
    group's ``barrier``); the files must be on a file system every rank sees.
    """
    plan_path = out + ".parts.json"
    settings = _settings(table, model_path, unk_count, chunk_lines, out, scorer.precision)
    if rank == 0:
        check_can_write(out, overwrite)
        if resume:
            if not os.path.exists(plan_path):
                raise ResumeError(f"--resume: no interrupted run in several processes to resume ({plan_path} is "
                                  "missing)" + (f"; {out}.partial is from one process: resume it with one"
                                               if os.path.exists(out + ".partial") else ""))
            old = _load_saved(plan_path, settings)
            log.info("resuming %s: %d parts, %d complete", out, len(old["parts"]),
                     sum(os.path.exists(part_path(out, k)) for k in range(len(old["parts"]))))
        else:
            leftovers = [p for p in (plan_path, out + ".partial") if os.path.exists(p)]
            if leftovers and not overwrite:
                raise OutputExistsError(f"{leftovers[0]} is left from an interrupted run: pass --resume to "
                                        "continue it or --overwrite to start again")
            _remove_parts(out)
            t = time.monotonic()
            parts, n = plan_parts(table, world, chunk_lines, progress)
            first = next(iter_table(table), None)
            with atomic_write(plan_path, "w") as f:
                json.dump({"settings": settings, "lines": n, "parts": parts,
                           "n_scores": first.n_scores if first else None}, f)
            log.info("%s: %d lines in %d parts (planned in %.0f s)", table, n, len(parts), time.monotonic() - t)
    barrier()
    with open(plan_path) as f:
        plan = json.load(f)
    t0 = time.monotonic()
    n_new = 0
    mine = [k for k in range(len(plan["parts"])) if k % world == rank]
    with tqdm(desc=f"scoring (rank {rank})", unit=" pairs", disable=not progress or rank != 0, mininterval=1.0,
              dynamic_ncols=True, unit_scale=True) as bar:
        for k in mine:
            first, last = plan["parts"][k]
            done = part_path(out, k)
            if os.path.exists(done):
                continue
            partial, state_path = done + ".partial", done + ".partial.json"
            lines_done, bytes_done = first - 1, 0
            if os.path.exists(state_path) and os.path.exists(partial):
                state = _load_state(state_path, partial, settings)
                lines_done, bytes_done = state["lines_done"], state["bytes_done"]
            log.info("rank %d: part %d = lines %d-%d of %s, %s", rank, k, first, last, table,
                     f"resuming after line {lines_done}" if lines_done >= first else "starting")
            _, new, _, _ = _score_lines(scorer, table, partial, state_path, settings, lines_done=lines_done,
                                     bytes_done=bytes_done, n_scores=plan["n_scores"], last_line=last, bar=bar)
            os.replace(partial, done)
            os.unlink(state_path)
            n_new += new
    barrier()
    secs = time.monotonic() - t0
    if rank == 0:
        with atomic_write(out, "wb") as f:
            for k in range(len(plan["parts"])):
                with open(part_path(out, k), "rb") as p:
                    shutil.copyfileobj(p, f, 1 << 20)
        _remove_parts(out)
        log.info("%s: %d lines scored in %d part%s by %d process%s, %d score(s) per line now", out, plan["lines"],
                 len(plan["parts"]), "" if len(plan["parts"]) == 1 else "s", world, "" if world == 1 else "es",
                 (plan["n_scores"] or 0) + 1 + unk_count)
    return {"lines": plan["lines"], "complete": True, "seconds": secs, "pairs_per_s": n_new / max(secs, 1e-9),
            "parts": mine}


def unfinished_parts(out: str, rank: int, world: int) -> str:
    """What rank ``rank`` of ``world`` left unfinished, for the message of a failed job."""
    try:
        with open(out + ".parts.json") as f:
            plan = json.load(f)
    except (OSError, ValueError):
        return " before the parts were planned"
    left = [f"part {k} (lines {a}-{b} of {plan['settings']['table']})" for k, (a, b) in enumerate(plan["parts"])
            if k % world == rank and not os.path.exists(part_path(out, k))]
    return f": {', '.join(left)} not finished" if left else ""


def _remove_parts(out: str) -> None:
    for p in glob.glob(glob.escape(out) + ".part-*") + [out + ".parts.json"]:
        if os.path.exists(p):
            os.unlink(p)
