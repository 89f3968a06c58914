#!/usr/bin/env python3
"""Benchmark: what scoring a phrase table costs with P processes, and what 100M pairs would take.

    python experiments/bench_scale.py [--pairs 60000] [--hidden 500 1000] [--workers 1 2]

* The table is a contiguous slice of the shared Moses baseline table (from its middle, away
  from punctuation), the networks have random weights and the paper's 15,000-word shortlists
  (speed does not depend on training): hidden 1000 is the paper's size, 500 the Table 1
  reproduction's.
* Each run is the real command, ``python -m rescorer score`` (``--workers P`` for P > 1: torchrun,
  P ranks of one thread each; P = 1: one process with every core), timed from start to the
  renamed output, so process start, planning the parts and joining them are counted.  The
  outputs of every P must be the same bytes (checked).
* The projection for a table of 100M pairs on M machines of this kind adds the parts that do
  not spread over machines (one pass to plan the parts, joining them: their rates are measured
  here) to 100M pairs over M times the measured rate.
* Writes experiments/results/bench_scale/results.md and results.json.
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

import torch

from rescorer.checkpoint import save_checkpoint
from rescorer.machine import describe as describe_machine
from rescorer.model import ModelConfig, RNNEncoderDecoder
from rescorer.phrase_table import iter_table
from rescorer.score_table import plan_parts
from rescorer.vocab import Vocabulary

from experiments.common import ROOT, data_dir, markdown_table, write_results


OUT = os.path.join(ROOT, "experiments", "results", "bench_scale")


def real_slice(src: str, out: str, n: int, skip: int = 1_000_000) -> int:
    with gzip.open(src, "rb") as f, gzip.open(out, "wb") as g:
        k = 0
        for i, line in enumerate(f):
            if i < skip:
                continue
            g.write(line)
            k += 1
            if k == n:
                break
    return k


def shortlists(table: str, size: int = 15000) -> tuple[Vocabulary, Vocabulary]:

    src, tgt = Counter(), Counter()
    for p in iter_table(table):
        src.update(p.source_words)
        tgt.update(p.target_words)

    def padded(c):
        v = Vocabulary.from_counts(c, size)
        return Vocabulary(v.words + [f"pad{i}" for i in range(size - len(v))])
    return padded(src), padded(tgt)


def run_score(table: str, model: str, out: str, workers: int) -> float:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)       # P = 1 uses every core; --workers shares them out
    cmd = [sys.executable, "-m", "rescorer", "score", "-q", "--phrase-table", table, "--model", model, "--out", out,
           "--overwrite"] + (["--workers", str(workers)] if workers > 1 else [])
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=60000)
    ap.add_argument("--hidden", type=int, nargs="+", default=[500, 1000])
    ap.add_argument("--workers", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    ap.add_argument("--data", default=data_dir())
    ap.add_argument("--out", default=OUT, help="report directory (default experiments/results/bench_scale)")
    a = ap.parse_args()
    machine = describe_machine()
    print(f"{machine['cpu']}, {machine['cores']} cores, features: {', '.join(machine['features']) or 'none listed'}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        table = os.path.join(tmp, "slice.gz")
        n = real_slice(os.path.join(a.data, "moses-baseline", "phrase-table.gz"), table, a.pairs)
        t = time.perf_counter()
        plan_parts(table, 2, 4096)
        plan_rate = n / (time.perf_counter() - t)
        sv, tv = shortlists(table)
        tiny = os.path.join(tmp, "tiny.gz")
        real_slice(os.path.join(a.data, "moses-baseline", "phrase-table.gz"), tiny, 1)
        print(f"{n} pairs; planning the parts reads {plan_rate:,.0f} lines/s")
        join_rate = None
        for hidden in a.hidden:
            torch.manual_seed(0)
            model = os.path.join(tmp, f"model-{hidden}.pt")
            save_checkpoint(model, RNNEncoderDecoder(ModelConfig(len(sv), len(tv), hidden=hidden)), sv, tv,
                            inverse=False)
            first = None
            for p in a.workers:
                out = os.path.join(tmp, f"out-{hidden}-{p}.gz")
                start = run_score(tiny, model, out, p)   # the fixed cost: processes, imports, model
                secs = run_score(table, model, out, p)
                data = open(out, "rb").read()
                if first is None:
                    first = data
                same = data == first
                if join_rate is None:
                    t = time.perf_counter()
                    with open(os.path.join(tmp, "join"), "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    join_rate = n / (time.perf_counter() - t)   # lines/s of copying the scored table once
                rate = n / max(secs - start, 1e-9)
                rows.append({"hidden": hidden, "workers": p, "pairs": n, "seconds": round(secs, 2),
                             "start_seconds": round(start, 2), "pairs_per_s": round(rate, 1),
                             "same_bytes_as_first": same})
                print(f"hidden {hidden}, {p} process(es): {secs:7.1f} s ({start:.1f} s of it to start), "
                      f"{rate:8.1f} pairs/s once started, same bytes: {same}")
                if not same:
                    raise SystemExit("outputs differ between process counts")
    big = 100_000_000
    for r in rows:
        serial = big / plan_rate + (big / join_rate if r["workers"] > 1 else 0)
        r["projected_100M_hours"] = {str(m): round((serial + big / (m * r["pairs_per_s"])) / 3600, 1) for m in (1, 10, 100)}
    report = {"machine": machine, "pairs": n, "plan_lines_per_s": round(plan_rate), "join_lines_per_s": round(join_rate),
              "rows": rows, "command": " ".join(["python experiments/bench_scale.py"] + sys.argv[1:])}
    print(write_results(a.out, report, markdown, default=None), end="")


def markdown(report: dict) -> str:
    """The report's Markdown, from its results structure."""
    machine, n, rows = report["machine"], report["pairs"], report["rows"]
    plan_rate, join_rate = report["plan_lines_per_s"], report["join_lines_per_s"]
    md = ["# Scoring cost by network size and process count", "",
          f"Made by `{report['command']}` on {machine['cpu']} ({machine['cores']} cores; CPU features: "
          f"{', '.join(machine['features']) or 'none of AVX2/AVX-512/AMX listed'}), torch {machine['torch']}.", "",
          f"{n:,} contiguous pairs of the shared Moses baseline table; random weights, 15,000-word shortlists; "
          "the real `python -m rescorer score` command timed from start to the renamed output, and on a "
          "one-line table for its fixed cost (start-up: interpreter, torch, torchrun, the model); pairs/s "
          "leaves that cost out. Every process count wrote the same bytes.", ""]
    md += markdown_table(["hidden", "processes", "seconds", "of which start", "pairs/s once started",
                          "100M pairs, 1 machine (h)", "10 machines (h)", "100 machines (h)"],
                         [[r["hidden"], r["workers"], f"{r['seconds']:.1f}", f"{r['start_seconds']:.1f}",
                           f"{r['pairs_per_s']:,.0f}", r["projected_100M_hours"]["1"], r["projected_100M_hours"]["10"],
                           r["projected_100M_hours"]["100"]] for r in rows], align="r" * 8)
    for hidden in dict.fromkeys(r["hidden"] for r in rows):
        one = next((r for r in rows if r["hidden"] == hidden and r["workers"] == 1), None)
        for r in rows:
            if one and r["hidden"] == hidden and r["workers"] > 1:
                md += ["", f"Hidden {hidden}: {r['workers']} processes (one thread each) score "
                           f"{r['pairs_per_s'] / one['pairs_per_s']:.2f}x as fast as one process using all "
                           f"{machine['cores']} cores."]
    md += ["", f"Planning the parts reads {plan_rate:,.0f} lines/s and joining them copies {join_rate:,.0f} lines/s; "
           "both happen once per job, on one machine, and are in the projections, which otherwise assume "
           "the measured rate on every machine (parts are independent; only the file system is shared)."]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
