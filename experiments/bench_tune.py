#!/usr/bin/env python3
"""Benchmark: MERT with the built-in decoder on 1,000 sentences of newstest2012, 100-best.

    python experiments/bench_tune.py [--sentences 1000] [--max-iter 5] [--restarts 10]

The system of ``bench_decode.py`` (the Moses baseline tables filtered to the tuning set, a
5-gram KenLM model built here, Moses's default weights; decoder at pop limit 1000, stack 200).
Prints dev BLEU, pool size and the time of decoding and of optimising at every iteration, and
the total.  Writes
WORK/tuned.ini and WORK/tune.json.
"""
from __future__ import annotations

import json
import logging
import os
import time

import numpy as np


from experiments.bench_decode import arguments, build_system  # noqa: E402
from moses_integration.decoder import DecoderConfig  # noqa: E402
from moses_integration.mert import default_ranges, tune  # noqa: E402
from moses_integration.moses_ini import MosesIni  # noqa: E402
from moses_integration.runner import BuiltinDecoder  # noqa: E402


def main() -> None:
    ap = arguments(__doc__, 1000, "work/bench_tune")
    ap.add_argument("--max-iter", type=int, default=5)
    ap.add_argument("--nbest", type=int, default=100)
    ap.add_argument("--restarts", type=int, default=10)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    t_all = time.time()
    ini_path, src = build_system(a)
    base = os.path.join(a.data, "moses-baseline")
    with open(os.path.join(base, "newstest2012.tc.fr"), encoding="utf-8") as f:
        ref = [r.split() for r in f.read().splitlines()[:a.sentences]]
    t = time.time()
    dec = BuiltinDecoder(ini_path, src, DecoderConfig(), a.processes)
    print(f"loading: {time.time() - t:.1f} s")
    groups = dec.layout.groups
    tunable = np.concatenate([np.full(k, not n.startswith("UnknownWordPenalty")) for n, k, _ in groups])
    lower, upper = default_ranges(groups)
    t = time.time()
    res = tune(lambda w, n: [[(x.words, x.features) for x in ts] for ts in dec.translate(w, n, False, True)],
               ref, dec.model.weights.copy(), tunable, nbest=a.nbest, max_iter=a.max_iter,
               restarts=a.restarts, lower=lower, upper=upper, processes=a.processes)
    tuning = time.time() - t
    for h in res.history:
        print(f"iteration {h['iteration']}: dev BLEU {h['dev_bleu']:.2f}, pool {h.get('pool', '-')}, "
              f"decode {h['decode_seconds']:.0f} s, optimise {h.get('optimise_seconds', 0):.0f} s")
    print(f"{len(src)} sentences, {a.nbest}-best, {len(groups)} feature groups ({len(tunable)} weights): "
          f"tuning {tuning / 60:.1f} min, everything (filtering, loading, tuning) {(time.time() - t_all) / 60:.1f} min")
    ini = MosesIni.read(ini_path)
    sl = dec.layout.slices()
    ini.set_weights({n: list(res.weights[sl[n]]) for n, _, _ in groups if n in ini.weights()})
    ini.write(os.path.join(a.work, "tuned.ini"))
    with open(os.path.join(a.work, "tune.json"), "w") as f:
        json.dump(res.history, f, indent=1)


if __name__ == "__main__":
    main()
