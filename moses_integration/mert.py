"""Minimum error rate training (Och, 2003) over n-best lists accumulated across iterations.

* ``line_search``: along ``w + γ d`` each candidate's model score is a line in γ; the upper
  envelope of each sentence's lines says which candidate wins where; sweeping the
  breakpoints of all sentences while summing BLEU statistics finds the exact best γ.
* ``optimize``: coordinate line searches from the current weights and from random
  restarts, each repeated until BLEU stops improving (as Moses's ``mert`` does).
* ``tune``: decode the tuning set to n-best lists with the current weights, add them to
  the pool, optimise, and again, until the lists stop growing or after ``max_iter``
  iterations; log dev BLEU per iteration; write the tuned weights into a copy of moses.ini.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .bleu import N_STATS, Reference, bleu, sentence_stats

log = logging.getLogger(__name__)


@dataclass
class NBestPool:
    """Distinct candidates of every tuning sentence: feature vectors and BLEU statistics."""
    refs: list[Reference]
    feats: list[list[np.ndarray]] = field(default_factory=list)
    stats: list[list[np.ndarray]] = field(default_factory=list)
    seen: list[set] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.refs)
        self.feats, self.stats, self.seen = [[] for _ in range(n)], [[] for _ in range(n)], [set() for _ in range(n)]

    def add(self, i: int, words: list[str], features: np.ndarray) -> bool:
        key = (tuple(words), tuple(np.round(features, 4)))
        if key in self.seen[i]:
            return False
        self.seen[i].add(key)
        self.feats[i].append(np.asarray(features, dtype=float))
        self.stats[i].append(sentence_stats(words, self.refs[i]))
        return True

    def arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array(f), np.array(s)) for f, s in zip(self.feats, self.stats)]

    def size(self) -> int:
        return sum(len(f) for f in self.feats)


def best_stats(arrays, w: np.ndarray) -> np.ndarray:
    total = np.zeros(N_STATS)
    for F, S in arrays:
        total += S[int(np.argmax(F @ w))]
    return total


def _envelope(a: np.ndarray, b: np.ndarray) -> tuple[list[float], list[int]]:
    """Upper envelope of lines a + γ b: start points (first is -inf) and the winning line of each."""
    order = np.lexsort((a, b))  # by slope, then intercept
    xs: list[float] = []
    idx: list[int] = []
    for k in order:
        ak, bk = a[k], b[k]
        while idx:
            t = idx[-1]
            if b[t] == bk:  # same slope: the later one has the larger intercept
                idx.pop()
                xs.pop()
                continue
            x = (a[t] - ak) / (bk - b[t])
            if x <= xs[-1]:
                idx.pop()
                xs.pop()
                continue
            break
        xs.append(-math.inf if not idx else (a[idx[-1]] - ak) / (bk - b[idx[-1]]))
        idx.append(int(k))
    return xs, idx


def line_search(arrays, w: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """The γ maximising corpus BLEU of the 1-best along w + γ d (exact), and that BLEU."""
    stats = np.zeros(N_STATS)
    events: list[tuple[float, np.ndarray]] = []
    for F, S in arrays:
        xs, idx = _envelope(F @ w, F @ d)
        stats += S[idx[0]]
        for k in range(1, len(idx)):
            events.append((xs[k], S[idx[k]] - S[idx[k - 1]]))
    events.sort(key=lambda e: e[0])
    best_b, best_lo, best_hi = bleu(stats), -math.inf, events[0][0] if events else math.inf
    for k, (x, delta) in enumerate(events):
        stats = stats + delta
        hi = events[k + 1][0] if k + 1 < len(events) else math.inf
        if hi == x:
            continue
        b = bleu(stats)
        if b > best_b + 1e-9:
            best_b, best_lo, best_hi = b, x, hi
    if best_lo == -math.inf and best_hi == math.inf:
        gamma = 0.0
    elif best_lo == -math.inf:
        gamma = best_hi - 1.0
    elif best_hi == math.inf:
        gamma = best_lo + 1.0
    else:
        gamma = 0.5 * (best_lo + best_hi)
    return gamma, best_b


def optimize(arrays, w0: np.ndarray, tunable: np.ndarray, restarts: int = 20, seed: int = 0,
             max_rounds: int = 50) -> tuple[np.ndarray, float]:
    """Best weights found by coordinate line searches from w0 and from random restarts."""
    rng = np.random.default_rng(seed)
    dims = np.flatnonzero(tunable)
    starts = [w0.copy()]
    for _ in range(restarts):
        w = w0.copy()
        w[dims] = rng.uniform(-1, 1, len(dims))
        starts.append(w)
    best_w, best_b = w0.copy(), bleu(best_stats(arrays, w0))
    for w in starts:
        cur = bleu(best_stats(arrays, w))
        for _ in range(max_rounds):
            step = None
            for k in dims:
                d = np.zeros_like(w)
                d[k] = 1.0
                g, b = line_search(arrays, w, d)
                if b > cur + 1e-6 and (step is None or b > step[1]):
                    step = (d * g, b)
            if step is None:
                break
            w = w + step[0]
            cur = step[1]
        if cur > best_b + 1e-9:
            best_w, best_b = w.copy(), cur
    # no normalisation: scaling only the tuned weights would change the ranking against the fixed ones
    return best_w, best_b


def one_best_bleu(lists, refs: list[Reference]) -> float:
    """Corpus BLEU of the first candidate of each sentence's n-best list."""
    return bleu(sum((sentence_stats(cands[0][0], ref) for cands, ref in zip(lists, refs)), np.zeros(N_STATS)))


@dataclass
class TuneResult:
    weights: np.ndarray
    history: list[dict]


def tune(decode: Callable[[np.ndarray, int], list[list[tuple[list[str], np.ndarray]]]],
         references: list[list[str]], w0: np.ndarray, tunable: np.ndarray, nbest: int = 100,
         max_iter: int = 25, restarts: int = 20, seed: int = 0) -> TuneResult:
    """MERT with any decoder: ``decode(weights, n)`` returns each sentence's n-best (words, features)."""
    pool = NBestPool([Reference(r) for r in references])
    w = w0.astype(float).copy()
    history = []
    best = (-1.0, w.copy())
    for it in range(1, max_iter + 1):
        lists = decode(w, nbest)
        dev = one_best_bleu(lists, pool.refs)
        new = sum(pool.add(i, words, f) for i, cands in enumerate(lists) for words, f in cands)
        if dev > best[0]:
            best = (dev, w.copy())
        rec = {"iteration": it, "dev_bleu": dev, "new_candidates": new, "pool": pool.size(),
               "weights": w.tolist()}
        if new == 0:
            rec["stop"] = "n-best lists stopped growing"
            history.append(rec)
            log.info("iteration %d: dev BLEU %.2f; no new candidates: done", it, dev)
            break
        w_new, pool_bleu = optimize(pool.arrays(), w, tunable, restarts=restarts, seed=seed + it)
        rec["pool_bleu_after"] = pool_bleu
        history.append(rec)
        log.info("iteration %d: dev BLEU %.2f, %d new candidates (pool %d), optimised pool BLEU %.2f",
                 it, dev, new, pool.size(), pool_bleu)
        w = w_new
    else:
        # the last optimised weights have not been decoded yet: decode once more to log them
        lists = decode(w, 1)
        dev = one_best_bleu(lists, pool.refs)
        history.append({"iteration": max_iter + 1, "dev_bleu": dev, "weights": w.tolist(), "stop": "max_iter"})
        if dev > best[0]:
            best = (dev, w.copy())
    return TuneResult(best[1], history)
