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
    """Upper envelope of lines a + γ b: start points (first is -inf) and the winning line of each.

    Swept from γ = -inf: the line of least slope (highest intercept among equal slopes) wins
    first; the next winner is the steeper line that crosses the current one first (the steepest
    of those crossing at the same point).  Each step is one vector operation over the lines."""
    order = np.lexsort((a, b))  # by slope, then intercept
    a, b = a[order], b[order]
    last = np.append(b[1:] != b[:-1], True)  # equal slopes: only the highest intercept can win
    order, a, b = order[last], a[last], b[last]
    xs, idx = [-math.inf], [int(order[0])]
    cur = 0
    while cur < len(a) - 1:
        x = (a[cur] - a[cur + 1:]) / (b[cur + 1:] - b[cur])
        m = x.min()
        cur = cur + 1 + int(np.flatnonzero(x == m)[-1])
        xs.append(float(m))
        idx.append(int(order[cur]))
    return xs, idx


def line_search(arrays, w: np.ndarray, d: np.ndarray, lo: float = -math.inf,
                hi: float = math.inf) -> tuple[float, float]:
    """The γ in [lo, hi] maximising corpus BLEU of the 1-best along w + γ d (exact), and that BLEU."""
    stats = np.zeros(N_STATS)
    events: list[tuple[float, np.ndarray]] = []
    for F, S in arrays:
        xs, idx = _envelope(F @ w, F @ d)
        stats += S[idx[0]]
        for k in range(1, len(idx)):
            events.append((xs[k], S[idx[k]] - S[idx[k - 1]]))
    events.sort(key=lambda e: e[0])
    # the 1-best is constant on each interval [x_k, x_k+1) between breakpoints; sweep them
    # left to right, keep those that meet [lo, hi], take the middle of the best one
    best = None
    a = -math.inf
    for k in range(len(events) + 1):
        b_end = events[k][0] if k < len(events) else math.inf
        a_c, b_c = max(a, lo), min(b_end, hi)
        if a_c < b_c or (a_c == b_c and lo == hi):
            b = bleu(stats)
            if best is None or b > best[0] + 1e-9:
                best = (b, a_c, b_c)
        if k < len(events):
            stats = stats + events[k][1]
            a = b_end
    if best is None:  # [lo, hi] is a single breakpoint
        return lo, bleu(best_stats(arrays, w + lo * d))
    b, a_c, b_c = best
    if a_c == -math.inf and b_c == math.inf:
        gamma = 0.0
    elif a_c == -math.inf:
        gamma = b_c - 1.0
    elif b_c == math.inf:
        gamma = a_c + 1.0
    else:
        gamma = 0.5 * (a_c + b_c)
    return gamma, b


def optimize(arrays, w0: np.ndarray, tunable: np.ndarray, restarts: int = 20, seed: int = 0,
             max_rounds: int = 50, lower: np.ndarray | None = None, upper: np.ndarray | None = None,
             extra_starts: list[np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """Best weights found by coordinate line searches from w0, ``extra_starts`` and random
    restarts (uniform in [-1, 1] cut to the ranges), every weight kept in [lower, upper]."""
    rng = np.random.default_rng(seed)
    dims = np.flatnonzero(tunable)
    lower = np.full(len(w0), -math.inf) if lower is None else np.asarray(lower, float)
    upper = np.full(len(w0), math.inf) if upper is None else np.asarray(upper, float)
    clip = lambda w: np.where(tunable, np.clip(w, lower, upper), w0)  # noqa: E731
    starts = [clip(w0.copy())] + [clip(np.asarray(s, float).copy()) for s in extra_starts or ()]
    for _ in range(restarts):
        w = w0.copy()
        w[dims] = rng.uniform(np.maximum(lower[dims], -1), np.minimum(upper[dims], 1))
        starts.append(w)
    best_w, best_b = starts[0].copy(), bleu(best_stats(arrays, starts[0]))
    for w in starts:
        cur = bleu(best_stats(arrays, w))
        for _ in range(max_rounds):
            step = None
            for k in dims:
                d = np.zeros_like(w)
                d[k] = 1.0
                g, b = line_search(arrays, w, d, lower[k] - w[k], upper[k] - w[k])
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


def default_ranges(groups: list[tuple[str, int, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds per weight: log-probability features (translation model, language
    model, lexicalised reordering, and any added neural column) and the distortion cost
    (``-|d|``) may not get negative weights, which would reward improbable phrases or long
    jumps; the word, phrase and unknown-word penalties are free.  On a small tuning set an unbounded MERT otherwise finds
    weights that rank its n-best pool well by rewarding improbable phrases, and the decoder then
    prefers garbage (see the README)."""
    lower, upper = [], []
    for name, n, _ in groups:
        free = any(name.startswith(p) for p in ("WordPenalty", "PhrasePenalty", "UnknownWordPenalty"))
        lower += [-math.inf if free else 0.0] * n
        upper += [math.inf] * n
    return np.array(lower), np.array(upper)


@dataclass
class TuneResult:
    weights: np.ndarray
    history: list[dict]


def tune(decode: Callable[[np.ndarray, int], list[list[tuple[list[str], np.ndarray]]]],
         references: list[list[str]], w0: np.ndarray, tunable: np.ndarray, nbest: int = 100,
         max_iter: int = 25, restarts: int = 20, seed: int = 0, lower: np.ndarray | None = None,
         upper: np.ndarray | None = None) -> TuneResult:
    """MERT with any decoder: ``decode(weights, n)`` returns each sentence's n-best (words, features).

    Each optimisation starts from the current weights, the initial ones, the best decoded so
    far and ``restarts`` random points; weights stay in [lower, upper] (``default_ranges``)."""
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
        w_new, pool_bleu = optimize(pool.arrays(), w, tunable, restarts=restarts, seed=seed + it,
                                    lower=lower, upper=upper, extra_starts=[w0, best[1]])
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
