#!/usr/bin/env python3
"""Benchmark: n-grams scored per second by the paper-size CSLM on this CPU, with and without
computing each distinct context once, in the same run.

    python experiments/bench_cslm.py [--hyps 2000] [--shortlist 16000] [--data ../shared/data]

The requests are the n-grams of real n-best-like hypotheses: the first --sentences reference
sentences of newstest2012 (French), each with --variants copies that differ in one word, as
the hypotheses of an n-best list do, so their n-grams share many contexts.  The network has
the paper's sizes (7-gram, 512-dim projections, 1536 and 1024 rectified units) over a
shortlist of --shortlist words, random weights (speed does not depend on them).  Both ways
give the same log-probabilities (checked).
"""
from __future__ import annotations

import argparse
import os
import time
from collections import Counter

import numpy as np
import torch

from rescorer.cslm import CSLM, CSLMConfig, CSLMScorer, OutOfShortlist
from rescorer.vocab import EOS, UNK, Vocabulary

from experiments.common import data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=data_dir())
    ap.add_argument("--sentences", type=int, default=40)
    ap.add_argument("--variants", type=int, default=50)
    ap.add_argument("--shortlist", type=int, default=16000)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ref = os.path.join(a.data, "moses-baseline", "newstest2012.tc.fr")
    with open(ref, encoding="utf-8") as f:
        sents = [line.split() for line in f.read().splitlines()[:a.sentences]]
    counts = Counter(w for s in sents for w in s)
    words = [w for w, _ in counts.most_common()]
    vocab = Vocabulary([EOS, UNK] + words + [f"<filler{i}>" for i in range(a.shortlist - 2 - len(words))])
    rng = np.random.default_rng(0)
    hyps = []
    for s in sents:  # n-best-like: variants of one sentence differing in one word
        for _ in range(a.variants):
            h = list(s)
            h[int(rng.integers(len(h)))] = words[int(rng.integers(len(words)))]
            hyps.append(h)
    torch.manual_seed(0)
    model = CSLM(CSLMConfig(len(vocab)))
    scorer = CSLMScorer(model, vocab, OutOfShortlist({}))
    ctx, ids, _, _ = scorer.sentence_ngrams(hyps)
    n_ctx = len(np.unique(ctx, axis=0))
    print(f"{len(hyps)} hypotheses, {len(ids)} n-grams, {n_ctx} distinct contexts "
          f"({len(ids) / n_ctx:.1f} n-grams per context); paper-size CSLM over {len(vocab)} words, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {a.threads} threads")
    scorer.ngram_logprobs(ctx[:2048], ids[:2048], share=False)  # warm-up
    res = {}
    for share in (True, False):
        t = time.perf_counter()
        res[share] = scorer.ngram_logprobs(ctx, ids, share=share)
        secs = time.perf_counter() - t
        print(f"{'shared contexts' if share else 'every n-gram   '}: {len(ids) / secs:10.0f} n-grams/s ({secs:.1f} s)")
    print(f"max difference between the two: {np.max(np.abs(res[True] - res[False])):.2e}")


if __name__ == "__main__":
    main()
