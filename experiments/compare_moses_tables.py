#!/usr/bin/env python3
"""Check the project's phrase extraction and scoring against the real Moses, on identical input.

    python experiments/compare_moses_tables.py [--work work/moses_check]

Builds (once) the phrase and reordering tables from the Moses baseline's own training corpus and
word alignment (``train.clean.{en,fr}.gz``, ``aligned.grow-diag-final-and.gz``) with
``moses_integration.extract.build_tables``, then walks our tables and Moses's (filtered to
newstest2012+2013) side by side, both sorted as ``LC_ALL=C sort`` sorts, and reports: how many
of Moses's pairs we have, how many of ours for the same source phrases Moses lacks, and for the
common pairs how many have equal scores (to Moses's 6 printed digits), equal alignments and
equal counts.  Prints the time and peak memory of building the tables.

    python experiments/compare_moses_tables.py --lexical [--every 7]

is the quick check (a minute): the lexical tables from the same corpus and alignment, and the
two lexical weights of every 7th pair of Moses's table recomputed from the alignment Moses
printed for it, compared to 6 significant digits.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import time
from collections import Counter

from moses_integration.extract import build_tables, count_links, lexical_tables, lexical_weight, read_corpus, totals

from experiments.common import data_dir

SEP = b" ||| "


def rows(path: str):
    with gzip.open(path, "rb") as f:
        for line in f:
            parts = line.rstrip(b"\n").split(SEP)
            yield parts[0] + SEP + parts[1] + SEP, parts


def close(a: bytes, b: bytes, rel: float = 2e-5) -> bool:
    x, y = [float(v) for v in a.split()], [float(v) for v in b.split()]
    return len(x) == len(y) and all(abs(p - q) <= rel * max(abs(p), abs(q), 1e-300) for p, q in zip(x, y))


def compare(ours: str, moses: str, fields: list[tuple[int, str]], examples: int = 3) -> dict:
    """Merge-join two sorted tables; ours may hold more source phrases than Moses's filtered one."""
    moses_sources = set()
    for _, p in rows(moses):
        moses_sources.add(p[0])
    stats = {"moses_pairs": 0, "common": 0, "only_moses": 0, "only_ours_same_source": 0}
    for _, name in fields:
        stats[f"equal_{name}"] = 0
    bad: dict[str, list] = {name: [] for _, name in fields}
    it = rows(ours)
    cur = next(it, None)
    for key, mp in rows(moses):
        stats["moses_pairs"] += 1
        while cur is not None and cur[0] < key:
            if cur[1][0] in moses_sources:
                stats["only_ours_same_source"] += 1
            cur = next(it, None)
        if cur is None or cur[0] != key:
            stats["only_moses"] += 1
            continue
        stats["common"] += 1
        op = cur[1]
        for idx, name in fields:
            same = close(op[idx], mp[idx]) if name in ("scores", "reordering") else op[idx] == mp[idx]
            if same:
                stats[f"equal_{name}"] += 1
            elif len(bad[name]) < examples:
                bad[name].append((mp[0].decode(), mp[1].decode(), op[idx].decode(), mp[idx].decode()))
        cur = next(it, None)
    while cur is not None:
        if cur[1][0] in moses_sources:
            stats["only_ours_same_source"] += 1
        cur = next(it, None)
    stats["examples_of_differences"] = bad
    return stats


def lexical_check(base: str, every: int) -> None:

    joint: Counter = Counter()
    for src, tgt, al in read_corpus(os.path.join(base, "train.clean.en.gz"), os.path.join(base, "train.clean.fr.gz"),
                                    os.path.join(base, "aligned.grow-diag-final-and.gz")):
        count_links(joint, src, tgt, al)
    tot_f, tot_e = totals(joint)
    e_f, f_e = lexical_tables(joint, tot_f, tot_e)
    n = same = 0
    with gzip.open(os.path.join(base, "phrase-table.gz"), "rt", encoding="utf-8") as f:
        for k, line in enumerate(f):
            if k % every:
                continue
            p = line.split(" ||| ")
            src, tgt, scores = p[0].split(), p[1].split(), [float(x) for x in p[2].split()]
            al = [tuple(int(x) for x in q.split("-")) for q in p[3].split()]
            ours = (float(f"{lexical_weight(src, tgt, al, f_e, inverse=True):.6g}"),
                    float(f"{lexical_weight(src, tgt, al, e_f):.6g}"))
            n += 1
            same += ours == (scores[1], scores[3])
    print(f"lexical weights lex(f|e) and lex(e|f) equal to Moses's (6 digits) for {same} of {n} pairs "
          f"({same / n:.2%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=data_dir())
    ap.add_argument("--work", default="work/moses_check")
    ap.add_argument("--lexical", action="store_true", help="only the quick check of the lexical weights")
    ap.add_argument("--every", type=int, default=7)
    a = ap.parse_args()
    base = os.path.join(a.data, "moses-baseline")
    if a.lexical:
        lexical_check(base, a.every)
        return
    pt = os.path.join(a.work, "phrase-table.gz")
    reo = os.path.join(a.work, "reordering-table.wbe-msd-bidirectional-fe.gz")
    if not (os.path.exists(pt) and os.path.exists(reo)):
        t = time.time()
        info = build_tables(os.path.join(base, "train.clean.en.gz"), os.path.join(base, "train.clean.fr.gz"),
                            os.path.join(base, "aligned.grow-diag-final-and.gz"), a.work)
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        print(f"tables built in {(time.time() - t) / 60:.1f} min, peak memory {peak:.0f} MB: {info}")
    res = {
        "phrase-table": compare(pt, os.path.join(base, "phrase-table.gz"),
                                [(2, "scores"), (3, "alignment"), (4, "counts")]),
        "reordering-table": compare(reo, os.path.join(base, "reordering-table.wbe-msd-bidirectional-fe.gz"),
                                    [(2, "reordering")]),
    }
    for name, st in res.items():
        n = st["common"]
        print(f"{name}: {st['moses_pairs']} Moses pairs, {n} also ours ({n / max(st['moses_pairs'], 1):.2%}), "
              f"{st['only_moses']} only Moses's, {st['only_ours_same_source']} only ours (same source phrases)")
        for k, v in st.items():
            if k.startswith("equal_"):
                print(f"  {k[6:]} equal: {v} of {n} ({v / max(n, 1):.2%})")
        for field, ex in st["examples_of_differences"].items():
            for e in ex:
                print(f"  {field} differs: {e[0]!r} -> {e[1]!r}: ours {e[2]!r}, Moses {e[3]!r}")
    with open(os.path.join(a.work, "comparison.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
