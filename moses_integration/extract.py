"""Phrase extraction, phrase scoring and the lexicalised reordering table, as Moses's
``extract``, ``score``, ``consolidate`` and ``lexical-reordering-score`` compute them.

Terms as in Moses: f is the source (here English), e the target (French); an alignment
point ``i-j`` links source word i and target word j.

* ``extract_sentence``: every phrase pair consistent with the word alignment, up to
  ``max_len`` words a side; a source phrase may grow over unaligned boundary words (target
  spans are enumerated, so unaligned target boundary words come with them), as Moses's
  ``extract`` does.  With each pair, its orientations for the word-based msd-bidirectional-fe
  model: against the previous phrase (monotone if the point (f_start-1, e_start-1) is
  aligned and (f_end+1, e_start-1) is not; swap if the other way round; else discontinuous)
  and against the next one ((f_end+1, e_end+1) / (f_start-1, e_end+1)); the sentence start
  and end count as aligned corner points.
* ``lexical_tables``: w(e|f) and w(f|e) from the alignment points' relative frequencies,
  unaligned words aligned to NULL, 7 decimals (Moses's ``train-model.perl`` step 4).
* ``lexical_weight``: lex(e|f, a) = prod_j (1/|a_j|) sum_{i in a_j} w(e_j|f_i), w(e_j|NULL)
  for an unaligned e_j (Koehn et al. 2003).
* ``score_table``: phi(f|e) lex(f|e) phi(e|f) lex(e|f) from relative frequencies of the
  extracted pairs; the lexical weights of a pair's most frequent alignment; fields
  ``src ||| tgt ||| scores ||| alignment ||| count(e) count(f) count(f,e) ||| |||``.
* the reordering table (in ``score_half``'s source-side pass): p(o | f, e) =
  (count(o, f, e) + s) / (count(f, e) + 3 s), s = 0.5, as ``lexical-reordering-score``.

Tables larger than memory: the extracted pairs go to plain text files that GNU ``sort``
orders on disk (``LC_ALL=C``, as Moses does); scoring reads each sorted file once, one line
at a time, holding one source (or target) phrase's pairs.  The two directions are scored in
two processes; the target-side half is piped straight into ``sort`` by source, and the
gzipped outputs are compressed by ``gzip`` processes beside the Python ones.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from itertools import zip_longest
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from .pipes import gnu_sort, gzip_writer, open_text, sorting_writer

log = logging.getLogger(__name__)

SEP = " ||| "
NULL = "NULL"
MONO, SWAP, DISC = "m", "s", "d"


class AlignmentError(ValueError):
    pass


def parse_alignment(text: str, n_src: int, n_tgt: int, where: str = "") -> list[tuple[int, int]]:
    """Pharaoh ``i-j`` pairs, checked against the sentence lengths."""
    out = []
    for tok in text.split():
        a, _, b = tok.partition("-")
        try:
            i, j = int(a), int(b)
        except ValueError:
            raise AlignmentError(f"{where}: alignment point {tok!r} is not 'i-j'") from None
        if not (0 <= i < n_src and 0 <= j < n_tgt):
            raise AlignmentError(f"{where}: alignment point {tok} outside a {n_src}x{n_tgt} sentence pair")
        out.append((i, j))
    return out


def extract_sentence(src: list[str], tgt: list[str], align: list[tuple[int, int]], max_len: int = 7,
                     orientation: bool = True) -> Iterator[tuple[int, int, int, int, str, str, str]]:
    """(f_start, f_end, e_start, e_end, alignment inside the pair, previous orientation, next
    orientation) of every consistent phrase pair; ends inclusive."""
    nf, ne = len(src), len(tgt)
    to_f: list[list[int]] = [[] for _ in range(ne)]   # e -> aligned f
    count_f = [0] * nf
    points = set(align)
    for i, j in align:
        to_f[j].append(i)
        count_f[i] += 1
    to_f_sorted = [sorted(x) for x in to_f]

    def aligned(i: int, j: int) -> bool:
        if i == -1 and j == -1:
            return True
        if i == nf and j == ne:
            return True
        return (i, j) in points

    for es in range(ne):
        used = list(count_f)
        minf, maxf = nf, -1
        for ee in range(es, min(es + max_len, ne)):
            for i in to_f[ee]:
                if i < minf:
                    minf = i
                if i > maxf:
                    maxf = i
                used[i] -= 1
            if maxf < 0 or maxf - minf >= max_len:
                continue
            if any(used[i] > 0 for i in range(minf, maxf + 1)):
                continue  # a source word inside is aligned outside the target span
            fs = minf
            while fs >= 0 and fs > maxf - max_len and (fs == minf or count_f[fs] == 0):
                fe = maxf
                while fe < nf and fe < fs + max_len and (fe == maxf or count_f[fe] == 0):
                    # in target order, as Moses's extract writes it
                    inner = " ".join(f"{i - fs}-{j - es}" for j in range(es, ee + 1) for i in to_f_sorted[j])
                    prev = nxt = ""
                    if orientation:
                        lt, rt = aligned(fs - 1, es - 1), aligned(fe + 1, es - 1)
                        prev = MONO if lt and not rt else SWAP if rt and not lt else DISC
                        lt, rt = aligned(fe + 1, ee + 1), aligned(fs - 1, ee + 1)
                        nxt = MONO if lt and not rt else SWAP if rt and not lt else DISC
                    yield fs, fe, es, ee, inner, prev, nxt
                    fe += 1
                fs -= 1


def count_links(joint: Counter, src: list[str], tgt: list[str], align: list[tuple[int, int]]) -> None:
    """Add one sentence pair's (f, e) link counts to ``joint``, unaligned words against NULL."""
    af, ae = set(), set()
    for i, j in align:
        joint[(src[i], tgt[j])] += 1
        af.add(i)
        ae.add(j)
    for i, w in enumerate(src):
        if i not in af:
            joint[(w, NULL)] += 1
    for j, w in enumerate(tgt):
        if j not in ae:
            joint[(NULL, w)] += 1


def lexical_counts(corpus: Iterable[tuple[list[str], list[str], list[tuple[int, int]]]]):
    """Counts for the lexical tables: joint (f, e) counts and the totals of f and e, with
    unaligned words counted against NULL."""
    joint: Counter = Counter()
    for src, tgt, align in corpus:
        count_links(joint, src, tgt, align)
    tot_f, tot_e = totals(joint)
    return joint, tot_f, tot_e


def totals(joint: Counter) -> tuple[Counter, Counter]:
    """The totals of f and of e over joint (f, e) counts."""
    tot_f: Counter = Counter()
    tot_e: Counter = Counter()
    for (f, e), c in joint.items():
        tot_f[f] += c
        tot_e[e] += c
    return tot_f, tot_e


def lexical_tables(joint: Counter, tot_f: Counter, tot_e: Counter):
    """w(e|f) (``lex.e2f``) and w(f|e) (``lex.f2e``) as dicts keyed (f, e), as Moses's ``score``
    sees them: written with 7 decimals, read back into single-precision floats."""

    def moses(x: float) -> float:
        return float(np.float32(round(x, 7)))
    e_given_f = {k: moses(c / tot_f[k[0]]) for k, c in joint.items()}
    f_given_e = {k: moses(c / tot_e[k[1]]) for k, c in joint.items()}
    return e_given_f, f_given_e


def lexical_weight(src: list[str], tgt: list[str], align: list[tuple[int, int]], table: dict,
                   inverse: bool = False) -> float:
    """lex(e|f, a) (or lex(f|e, a) with ``inverse``, ``table`` then w(f|e)), keys (f, e)."""
    if inverse:
        words_out, words_in = src, tgt
        links = [(j, i) for i, j in align]
    else:
        words_out, words_in = tgt, src
        links = [(i, j) for i, j in align]
    to_in: list[list[int]] = [[] for _ in words_out]
    for a, b in links:
        to_in[b].append(a)
    score = 1.0
    for k, w in enumerate(words_out):
        if not to_in[k]:
            key = (NULL, w) if not inverse else (w, NULL)
            score *= table.get(key, 0.0)
        else:
            s = 0.0
            for a in to_in[k]:
                key = (words_in[a], w) if not inverse else (w, words_in[a])
                s += table.get(key, 0.0)
            score *= s / len(to_in[k])
    return score


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _links(alignment: str, n_out: int, inverse: bool, cache: dict) -> tuple[tuple[int, ...], ...]:
    """For each word of the side being explained, the indexes of the words it is aligned to."""
    key = (alignment, n_out)
    got = cache.get(key)
    if got is None:
        out: list[list[int]] = [[] for _ in range(n_out)]
        for p in alignment.split():
            i, j = p.split("-")
            if inverse:
                out[int(i)].append(int(j))
            else:
                out[int(j)].append(int(i))
        got = cache[key] = tuple(tuple(x) for x in out)
    return got


def lexical_rows(lex: dict, inverse: bool) -> dict[str, dict[str, float]]:
    """w(e|f) keyed ``rows[e][f]`` (or w(f|e) keyed ``rows[f][e]`` with ``inverse``): the
    word being explained first, so that scoring looks its row up once per word."""
    rows: dict[str, dict[str, float]] = {}
    for (f, e), p in lex.items():
        a, b = (f, e) if inverse else (e, f)
        r = rows.get(a)
        if r is None:
            r = rows[a] = {}
        r[b] = p
    return rows


def _reordering_probs(counts: list[int], s: float) -> str:
    """p(o | f, e) = (count(o, f, e) + s) / (count(f, e) + 3 s) for previous m s d, next m s d."""
    pm, ps, pd, nm, ns, nd = counts  # previous / next: monotone, swap, discontinuous
    p, n = pm + ps + pd + 3 * s, nm + ns + nd + 3 * s  # written out: one call per pair of the table
    return (f"{_fmt((pm + s) / p)} {_fmt((ps + s) / p)} {_fmt((pd + s) / p)} "
            f"{_fmt((nm + s) / n)} {_fmt((ns + s) / n)} {_fmt((nd + s) / n)}")


def score_half(sorted_extract: str, output, lex: dict, inverse: bool, reordering=None,
               smoothing: float = 0.5, progress: int = 0) -> tuple[int, int]:
    """One direction of Moses's ``score`` over extracted pairs sorted by their first field
    (source; target with ``inverse``; the alignment is source-target either way), written to
    the file object ``output``:
    ``src ||| tgt ||| phi(second|first) lex(second|first) ||| alignment ||| count(first) count(pair)``.
    The lexical weight is ``lexical_weight`` of the pair's most frequent alignment (ties: the
    first in sorted order), written out here for speed.  With ``reordering`` (a file object),
    the lines carry a fourth field, the orientations ``prev next``, and the msd-bidirectional-fe
    probabilities of each pair, p(o | f, e) = (count(o, f, e) + s) / (count(f, e) + 3 s), go
    there in the same pass.  ``progress``: the number of lines, for a progress bar.
    Returns (pairs, lines)."""
    rows = lexical_rows(lex, inverse)
    empty: dict[str, float] = {}
    null_row = {w: r[NULL] for w, r in rows.items() if NULL in r}
    cache: dict = {}
    slot = {MONO: 0, SWAP: 1, DISC: 2}
    nfields = 3 if reordering is None else 4
    n_pairs = n_lines = 0
    # state: the current first phrase and its finished pairs; the current pair; the current
    # run of one alignment within the pair (lines are sorted, so each run is contiguous, but
    # the orientation field after it may reorder the runs: ties are broken by the string)
    first = second = al = best = None
    fw: list[str] = []
    done: list[tuple] = []
    n_pair = run = best_run = 0
    ori = [0] * 6

    def close_pair() -> None:
        b = al if run > best_run or (run == best_run and al < best) else best
        sw = second.split()
        lw = 1.0
        for w, idx in zip(sw, _links(b, len(sw), inverse, cache)):
            if not idx:  # unaligned: explained by NULL
                lw *= null_row.get(w, 0.0)
            elif len(idx) == 1:
                lw *= rows.get(w, empty).get(fw[idx[0]], 0.0)
            else:
                r = rows.get(w, empty)
                lw *= sum(r.get(fw[x], 0.0) for x in idx) / len(idx)
        done.append((second, n_pair, lw, b, ori))

    def close_first() -> None:
        n_first = sum(d[1] for d in done)
        for sec, n, lw, b, o in done:
            a, c = (sec, first) if inverse else (first, sec)  # source first either way
            output.write(f"{a}{SEP}{c}{SEP}{n / n_first:.6g} {lw:.6g}{SEP}{b}{SEP}{n_first} {n}\n")
            if reordering is not None:
                reordering.write(f"{first}{SEP}{sec}{SEP}{_reordering_probs(o, smoothing)}\n")
        done.clear()

    with open_text(sorted_extract) as inp:
        for line in tqdm(inp, desc="scoring phrase pairs", unit=" lines", total=progress or None,
                         disable=not progress, mininterval=2.0):
            n_lines += 1
            fields = line.rstrip("\n").split(SEP, nfields - 1)
            f1, f2, f3 = fields[0], fields[1], fields[2]
            if f1 != first or f2 != second:
                if first is not None:
                    close_pair()
                    n_pairs += 1
                    if f1 != first:
                        close_first()
                if f1 != first:
                    first, fw = f1, f1.split()
                second, al, best, n_pair, run, best_run = f2, f3, f3, 0, 0, 0
                if reordering is not None:
                    ori = [0] * 6
            elif f3 != al:  # the most frequent alignment; ties: the first in byte order (as Moses)
                if run > best_run or (run == best_run and al < best):
                    best, best_run = al, run
                al, run = f3, 0
            n_pair += 1
            run += 1
            if reordering is not None:
                p, q = fields[3].split()
                ori[slot[p]] += 1
                ori[3 + slot[q]] += 1
        if first is not None:
            close_pair()
            n_pairs += 1
            close_first()
    return n_pairs, n_lines


def consolidate(direct: str, inverse_by_src: str, output, progress: int = 0) -> int:
    """Join the two directions (both sorted by source then target) into Moses's table,
    written to the file object ``output``."""
    n = 0
    with open_text(direct) as d, open_text(inverse_by_src) as v:
        for ld, lv in tqdm(zip_longest(d, v), desc="joining the two directions", unit=" pairs",
                           total=progress or None, disable=not progress, mininterval=2.0):
            if ld is None or lv is None:
                raise RuntimeError(f"consolidate: {direct} and {inverse_by_src} have different lengths")
            fd, fv = ld.rstrip("\n").split(SEP), lv.rstrip("\n").split(SEP)
            if fd[0] != fv[0] or fd[1] != fv[1]:
                raise RuntimeError(f"consolidate: {fd[:2]} and {fv[:2]} out of step ({direct}, {inverse_by_src})")
            p_e_f, lex_e_f = fd[2].split()
            p_f_e, lex_f_e = fv[2].split()
            n_f, n_pair = fd[4].split()
            n_e = fv[4].split(" ", 1)[0]
            output.write(f"{fd[0]}{SEP}{fd[1]}{SEP}{p_f_e} {lex_f_e} {p_e_f} {lex_e_f}{SEP}{fd[3]}{SEP}"
                         f"{n_e} {n_f} {n_pair}{SEP}|||\n")
            n += 1
    return n


_SCORE_JOBS: list | None = None  # what forked scoring workers run


def _run_job(k: int):
    assert _SCORE_JOBS is not None
    return _SCORE_JOBS[k]()


def _score_direct(work: str, lex: dict, progress: int = 0) -> tuple[int, int]:
    """phi(e|f) lex(e|f) and the reordering table from the pairs sorted by source."""
    with open(os.path.join(work, "half.f2e"), "w", encoding="utf-8", buffering=1 << 20) as out, \
            gzip_writer(os.path.join(work, "reordering-table.wbe-msd-bidirectional-fe.gz")) as reo:
        return score_half(os.path.join(work, "extract.sorted"), out, lex, False, reo, progress=progress)


def _score_inverse(work: str, lex: dict, sort_memory: str) -> tuple[int, int]:
    """phi(f|e) lex(f|e) from the pairs sorted by target, sorted back by source as it is written."""
    with sorting_writer(os.path.join(work, "half.e2f.sorted"), work, sort_memory) as out:
        return score_half(os.path.join(work, "extract.inv.sorted"), out, lex, True)


def _extract_part(job) -> tuple[Counter, int, int]:
    """Extraction over every ``parts``-th sentence pair from the ``k``-th: two files of extracted
    pairs (``f ||| e ||| alignment ||| orientations`` and ``e ||| f ||| alignment``) and the
    lexical counts."""
    src_path, tgt_path, align_path, work, k, parts, max_len, progress = job
    joint: Counter = Counter()
    n_sent = n_pairs = 0
    with open(os.path.join(work, f"extract.{k}"), "w", encoding="utf-8", buffering=1 << 20) as ext, \
            open(os.path.join(work, f"extract.inv.{k}"), "w", encoding="utf-8", buffering=1 << 20) as inv:
        for n, (src, tgt, align) in enumerate(tqdm(read_corpus(src_path, tgt_path, align_path),
                                                   desc="extracting phrases", unit=" sent", disable=not progress,
                                                   mininterval=1.0)):
            if n % parts != k:
                continue
            n_sent += 1
            count_links(joint, src, tgt, align)
            for fs, fe, es, ee, inner, prev, nxt in extract_sentence(src, tgt, align, max_len):
                f, e = " ".join(src[fs:fe + 1]), " ".join(tgt[es:ee + 1])
                ext.write(f"{f}{SEP}{e}{SEP}{inner}{SEP}{prev} {nxt}\n")
                inv.write(f"{e}{SEP}{f}{SEP}{inner}\n")
                n_pairs += 1
    return joint, n_sent, n_pairs


def read_corpus(src_path: str, tgt_path: str, align_path: str):
    """(source words, target words, alignment points) of every line of three parallel files;
    a bad line stops with its file and line number."""
    with open_text(src_path) as fs, open_text(tgt_path) as ft, open_text(align_path) as fa:
        for n, (ls, lt, la) in enumerate(zip(fs, ft, fa), 1):
            src, tgt = ls.split(), lt.split()
            yield src, tgt, parse_alignment(la, len(src), len(tgt), f"{align_path}:{n}")
        for f, path in ((fs, src_path), (ft, tgt_path), (fa, align_path)):
            if f.readline():
                raise AlignmentError(f"{path}:{n + 1}: more lines than the other files of the corpus")


def build_tables(src_path: str, tgt_path: str, align_path: str, out_dir: str, max_len: int = 7,
                 progress: bool = True, sort_memory: str = "1G", threads: int = 2) -> dict:
    """Moses's training steps 4-7 from a word-aligned corpus: ``lex.e2f``/``lex.f2e``,
    ``phrase-table.gz`` and ``reordering-table.wbe-msd-bidirectional-fe.gz`` in ``out_dir``."""
    work = os.path.join(out_dir, "extract.tmp")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    t0 = time.time()
    parts = max(1, threads)
    jobs = [(src_path, tgt_path, align_path, work, k, parts, max_len, progress and k == 0) for k in range(parts)]
    if parts > 1:  # every k-th sentence pair in worker k, each writing its own files
        with mp.get_context("fork").Pool(parts) as pool:
            results = pool.map(_extract_part, jobs, chunksize=1)
    else:
        results = [_extract_part(jobs[0])]
    joint: Counter = Counter()
    for j, _, _ in results:
        joint.update(j)
    n_sent, n_pairs = sum(r[1] for r in results), sum(r[2] for r in results)
    tot_f, tot_e = totals(joint)
    e_given_f, f_given_e = lexical_tables(joint, tot_f, tot_e)
    with open_text(os.path.join(work, "lex.e2f"), "wt") as a, open_text(os.path.join(work, "lex.f2e"), "wt") as b:
        for (f, e) in sorted(joint):
            a.write(f"{e} {f} {e_given_f[(f, e)]:.7f}\n")   # Moses: target source w(e|f)
            b.write(f"{f} {e} {f_given_e[(f, e)]:.7f}\n")   # source target w(f|e)
    log.info("extracted %d phrase pairs from %d sentences in %.0f s", n_pairs, n_sent, time.time() - t0)
    t0 = time.time()
    log.info("sorting 2 x %d lines on disk (LC_ALL=C sort)", n_pairs)
    for name in ("extract", "extract.inv"):
        inputs = [os.path.join(work, f"{name}.{k}") for k in range(parts)]
        gnu_sort(inputs, os.path.join(work, f"{name}.sorted"), work, sort_memory, threads)
        for p in inputs:
            os.unlink(p)
    log.info("sorted on disk in %.0f s", time.time() - t0)
    t0 = time.time()
    log.info("scoring both directions and the reordering table (2 processes)")
    global _SCORE_JOBS
    _SCORE_JOBS = [lambda: _score_direct(work, e_given_f, n_pairs if progress else 0),
                   lambda: _score_inverse(work, f_given_e, sort_memory)]
    try:
        if threads > 1:  # the two directions are independent: one process each
            with mp.get_context("fork").Pool(2) as pool:
                results = pool.map(_run_job, range(2), chunksize=1)
        else:
            results = [_run_job(k) for k in range(2)]
    finally:
        _SCORE_JOBS = None
    n_reo = results[0][0]
    log.info("scored both directions and the reordering table in %.0f s", time.time() - t0)
    t0 = time.time()
    with gzip_writer(os.path.join(work, "phrase-table.gz")) as out:
        n_table = consolidate(os.path.join(work, "half.f2e"), os.path.join(work, "half.e2f.sorted"), out,
                              n_reo if progress else 0)
    log.info("consolidated %d pairs in %.0f s", n_table, time.time() - t0)
    for name in ("phrase-table.gz", "reordering-table.wbe-msd-bidirectional-fe.gz", "lex.e2f", "lex.f2e"):
        os.replace(os.path.join(work, name), os.path.join(out_dir, name))
    shutil.rmtree(work)
    return {"sentences": n_sent, "extracted": n_pairs, "phrase_pairs": n_table, "reordering_pairs": n_reo}
