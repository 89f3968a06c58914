#!/usr/bin/env python3
"""Experiment: MERT with the built-in decoder on a small slice of newstest2012.

    python experiments/bench_decode.py          # builds work/bench_decode/moses.ini first
    python experiments/tune_small.py [--first 100 --sentences 80 --iterations 4 --nbest 50]

Prints dev BLEU (tokenised, truecased) per iteration.  Records what MERT does on a small
tuning set; the paper tuned on ~6,000 sentences.
"""
from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np

from moses_integration.decoder import DecoderConfig
from moses_integration.mert import default_ranges, tune
from moses_integration.runner import BuiltinDecoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("RESCORER_DATA", "../shared/data"))
    ap.add_argument("--ini", default="work/bench_decode/moses.ini")
    ap.add_argument("--first", type=int, default=100)
    ap.add_argument("--sentences", type=int, default=80)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--nbest", type=int, default=50)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--pop-limit", type=int, default=300)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    base = os.path.join(a.data, "moses-baseline")
    sl = slice(a.first, a.first + a.sentences)
    src = open(os.path.join(base, "newstest2012.tc.en"), encoding="utf-8").read().splitlines()[sl]
    ref = [r.split() for r in open(os.path.join(base, "newstest2012.tc.fr"), encoding="utf-8").read().splitlines()[sl]]
    dec = BuiltinDecoder(a.ini, src, DecoderConfig(pop_limit=a.pop_limit, stack_size=50))
    tunable = np.concatenate([np.full(k, not n.startswith("UnknownWordPenalty")) for n, k, _ in dec.layout.groups])
    lower, upper = default_ranges(dec.layout.groups)
    t = time.time()
    res = tune(dec.nbest_lists, ref, dec.model.weights.copy(), tunable, nbest=a.nbest, max_iter=a.iterations,
               restarts=a.restarts, lower=lower, upper=upper)
    for h in res.history:
        print(f"iteration {h['iteration']}: dev BLEU {h['dev_bleu']:.2f}  pool {h.get('pool', '-')}")
    print(f"{time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
