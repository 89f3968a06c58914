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
* ``score_reordering``: p(o | f, e) = (count(o, f, e) + s) / (count(f, e) + 3 s), s = 0.5.

Tables larger than memory: the extracted pairs go to files that GNU ``sort`` orders on disk
(``LC_ALL=C``, as Moses does); scoring reads each sorted file once, one source (or target)
phrase at a time.
"""
from __future__ import annotations

import gzip
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections import Counter
from typing import Iterable, Iterator

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
    import numpy as np

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


# -- files -----------------------------------------------------------------------------------
def _open(path: str, mode: str = "rt"):
    return gzip.open(path, mode, encoding="utf-8", compresslevel=1) if path.endswith(".gz") else \
        open(path, mode, encoding="utf-8")


def gnu_sort(inputs: list[str], output: str, tmp_dir: str, memory: str = "1G", threads: int = 2) -> None:
    """``LC_ALL=C sort`` of (gzipped) text files into a gzipped file, on disk, as Moses sorts."""
    for tool in ("sort", "gzip", "bash"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is needed to sort the extracted phrases")
    files = " ".join(f"<(gzip -dcf {shlex.quote(p)})" for p in inputs)
    cmd = (f"set -o pipefail; LC_ALL=C sort -S {memory} --parallel={threads} -T {shlex.quote(tmp_dir)} "
           f"--compress-program=gzip {files} | gzip -1 > {shlex.quote(output + '.tmp')}")
    if subprocess.run(["bash", "-c", cmd]).returncode != 0:
        raise RuntimeError(f"sorting {', '.join(inputs)} into {output} failed")
    os.replace(output + ".tmp", output)


def _groups(lines: Iterator[str], nfields: int) -> Iterator[tuple[str, list[list[str]]]]:
    """Consecutive lines with the same first field, split into ``nfields`` fields."""
    key, group = None, []
    for line in lines:
        f = line.rstrip("\n").split(SEP, nfields - 1)
        if f[0] != key:
            if group:
                yield key, group
            key, group = f[0], []
        group.append(f)
    if group:
        yield key, group


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _links(alignment: str, n_out: int, inverse: bool, cache: dict) -> tuple[tuple[int, ...], ...]:
    """For each word of the side being explained, the indexes of the words it is aligned to."""
    key = (alignment, n_out, inverse)
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


def score_half(sorted_extract: str, output: str, lex: dict, inverse: bool) -> None:
    """One direction of Moses's ``score`` over an extract file sorted by its first field
    (source, or target with ``inverse``; the alignment is source-target either way):
    ``src ||| tgt ||| phi(second|first) lex(second|first) ||| alignment ||| count(first) count(pair)``.
    The lexical weight is ``lexical_weight`` of the pair's most frequent alignment (ties: the
    first in sorted order), written out here for speed."""
    get = lex.get
    cache: dict = {}
    with _open(sorted_extract) as inp, _open(output, "wt") as out:
        for first, group in _groups(inp, 3):
            n_first = len(group)
            pairs: dict[str, Counter] = {}
            for _, second, al in group:
                c = pairs.get(second)
                if c is None:
                    c = pairs[second] = Counter()
                c[al] += 1
            fw = first.split()
            for second, aligns in pairs.items():
                n_pair = sum(aligns.values())
                best = min(aligns.items(), key=lambda kv: (-kv[1], kv[0]))[0] if len(aligns) > 1 else \
                    next(iter(aligns))
                sw = second.split()
                lw = 1.0
                for k, idx in enumerate(_links(best, len(sw), inverse, cache)):
                    w = sw[k]
                    if not idx:  # unaligned: explained by NULL
                        lw *= get((w, NULL) if inverse else (NULL, w), 0.0)
                    elif inverse:
                        lw *= sum(get((w, fw[x]), 0.0) for x in idx) / len(idx)
                    else:
                        lw *= sum(get((fw[x], w), 0.0) for x in idx) / len(idx)
                a, b = (second, first) if inverse else (first, second)  # source first either way
                out.write(f"{a}{SEP}{b}{SEP}{n_pair / n_first:.6g} {lw:.6g}{SEP}{best}{SEP}{n_first} {n_pair}\n")


def consolidate(direct: str, inverse_by_src: str, output: str) -> int:
    """Join the two directions (both sorted by source then target) into Moses's table."""
    n = 0
    with _open(direct) as d, _open(inverse_by_src) as v, _open(output, "wt") as out:
        for ld, lv in zip(d, v):
            fd, fv = ld.rstrip("\n").split(SEP), lv.rstrip("\n").split(SEP)
            if fd[:2] != fv[:2]:
                raise RuntimeError(f"consolidate: {fd[:2]} and {fv[:2]} out of step ({direct}, {inverse_by_src})")
            p_e_f, lex_e_f = fd[2].split()
            p_f_e, lex_f_e = fv[2].split()
            n_f, n_pair = fd[4].split()
            n_e = fv[4].split()[0]
            out.write(f"{fd[0]}{SEP}{fd[1]}{SEP}{p_f_e} {lex_f_e} {p_e_f} {lex_e_f}{SEP}{fd[3]}{SEP}"
                      f"{n_e} {n_f} {n_pair}{SEP}|||\n")
            n += 1
    return n


def score_reordering(sorted_orientations: str, output: str, smoothing: float = 0.5) -> int:
    """msd-bidirectional-fe probabilities per pair: previous m s d, next m s d."""
    n = 0
    idx = {MONO: 0, SWAP: 1, DISC: 2}
    with _open(sorted_orientations) as inp, _open(output, "wt") as out:
        key, counts = None, None
        for line in inp:
            src, tgt, o = line.rstrip("\n").split(SEP)
            k = (src, tgt)
            if k != key:
                if key is not None:
                    out.write(_reo_line(key, counts, smoothing))
                    n += 1
                key, counts = k, [0] * 6
            p, q = o.split()
            counts[idx[p]] += 1
            counts[3 + idx[q]] += 1
        if key is not None:
            out.write(_reo_line(key, counts, smoothing))
            n += 1
    return n


def _reo_line(key, c, s) -> str:
    tp, tn = sum(c[:3]), sum(c[3:])
    vals = [(x + s) / (tp + 3 * s) for x in c[:3]] + [(x + s) / (tn + 3 * s) for x in c[3:]]
    return f"{key[0]}{SEP}{key[1]}{SEP}" + " ".join(_fmt(v) for v in vals) + "\n"


_SCORE_JOBS: list | None = None  # what forked scoring workers run


def _run_job(k: int):
    assert _SCORE_JOBS is not None
    fn, args = _SCORE_JOBS[k]
    return fn(*args)


def _extract_part(job) -> tuple[Counter, int, int]:
    """Extraction over every ``parts``-th sentence pair from the ``k``-th: three files of extracted
    pairs (by source, by target, with orientations) and the lexical counts."""
    from tqdm import tqdm
    src_path, tgt_path, align_path, work, k, parts, max_len, progress = job
    joint: Counter = Counter()
    n_sent = n_pairs = 0
    with _open(os.path.join(work, f"extract.{k}.gz"), "wt") as ext, \
            _open(os.path.join(work, f"extract.inv.{k}.gz"), "wt") as inv, \
            _open(os.path.join(work, f"extract.o.{k}.gz"), "wt") as ori:
        for n, (src, tgt, align) in enumerate(tqdm(read_corpus(src_path, tgt_path, align_path),
                                                   desc="extracting phrases", unit=" sent", disable=not progress,
                                                   mininterval=1.0)):
            if n % parts != k:
                continue
            n_sent += 1
            count_links(joint, src, tgt, align)
            for fs, fe, es, ee, inner, prev, nxt in extract_sentence(src, tgt, align, max_len):
                f, e = " ".join(src[fs:fe + 1]), " ".join(tgt[es:ee + 1])
                ext.write(f"{f}{SEP}{e}{SEP}{inner}\n")
                inv.write(f"{e}{SEP}{f}{SEP}{inner}\n")
                ori.write(f"{f}{SEP}{e}{SEP}{prev} {nxt}\n")
                n_pairs += 1
    return joint, n_sent, n_pairs


def read_corpus(src_path: str, tgt_path: str, align_path: str):
    """(source words, target words, alignment points) of every line of three parallel files;
    a bad line stops with its file and line number."""
    with _open(src_path) as fs, _open(tgt_path) as ft, _open(align_path) as fa:
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
    from tqdm import tqdm
    work = os.path.join(out_dir, "extract.tmp")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    t0 = time.time()
    parts = max(1, threads)
    jobs = [(src_path, tgt_path, align_path, work, k, parts, max_len, progress and k == 0) for k in range(parts)]
    if parts > 1:  # every k-th sentence pair in worker k, each writing its own files
        import multiprocessing as mp
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
    with _open(os.path.join(work, "lex.e2f"), "wt") as a, _open(os.path.join(work, "lex.f2e"), "wt") as b:
        for (f, e) in sorted(joint):
            a.write(f"{e} {f} {e_given_f[(f, e)]:.7f}\n")   # Moses: target source w(e|f)
            b.write(f"{f} {e} {f_given_e[(f, e)]:.7f}\n")   # source target w(f|e)
    log.info("extracted %d phrase pairs from %d sentences in %.0f s", n_pairs, n_sent, time.time() - t0)
    t0 = time.time()
    for name in ("extract", "extract.inv", "extract.o"):
        inputs = [os.path.join(work, f"{name}.{k}.gz") for k in range(parts)]
        gnu_sort(inputs, os.path.join(work, f"{name}.sorted.gz"), work, sort_memory, threads)
        for p in inputs:
            os.unlink(p)
    log.info("sorted on disk in %.0f s", time.time() - t0)
    t0 = time.time()
    global _SCORE_JOBS
    _SCORE_JOBS = [
        (score_half, (os.path.join(work, "extract.sorted.gz"), os.path.join(work, "half.f2e.gz"), e_given_f, False)),
        (score_half, (os.path.join(work, "extract.inv.sorted.gz"), os.path.join(work, "half.e2f.gz"), f_given_e,
                      True)),
        (score_reordering, (os.path.join(work, "extract.o.sorted.gz"),
                            os.path.join(work, "reordering-table.wbe-msd-bidirectional-fe.gz")))]
    try:
        if threads > 1:  # the directions and the reordering table are independent: one process each
            import multiprocessing as mp
            with mp.get_context("fork").Pool(min(threads, 3)) as pool:
                results = pool.map(_run_job, range(3), chunksize=1)
        else:
            results = [_run_job(k) for k in range(3)]
    finally:
        _SCORE_JOBS = None
    n_reo = results[2]
    gnu_sort([os.path.join(work, "half.e2f.gz")], os.path.join(work, "half.e2f.sorted.gz"), work, sort_memory,
             threads)
    log.info("scored in %.0f s", time.time() - t0)
    t0 = time.time()
    n_table = consolidate(os.path.join(work, "half.f2e.gz"), os.path.join(work, "half.e2f.sorted.gz"),
                          os.path.join(work, "phrase-table.gz"))
    log.info("consolidated %d pairs in %.0f s", n_table, time.time() - t0)
    for name in ("phrase-table.gz", "reordering-table.wbe-msd-bidirectional-fe.gz", "lex.e2f", "lex.f2e"):
        os.replace(os.path.join(work, name), os.path.join(out_dir, name))
    shutil.rmtree(work)
    return {"sentences": n_sent, "extracted": n_pairs, "phrase_pairs": n_table, "reordering_pairs": n_reo}
