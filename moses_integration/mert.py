"""Minimum error rate training (Och, 2003) over n-best lists accumulated across iterations.

* ``line_search``: along ``w + γ d`` each candidate's model score is a line in γ; the upper
  envelope of each sentence's lines says which candidate wins where; sweeping the
  breakpoints of all sentences while summing BLEU statistics finds the exact best γ.  Along
  one weight (what ``optimize`` searches) the envelopes are swept by compiled code
  (``envelope.py``), otherwise by numpy over all sentences at once; both give the same numbers.
* ``optimize``: coordinate line searches from the current weights and from random
  restarts, each repeated until BLEU stops improving (as Moses's ``mert`` does).
* ``tune``: decode the tuning set to n-best lists with the current weights, add them to
  the pool, optimise, and again, until the lists stop growing or after ``max_iter``
  iterations; log dev BLEU per iteration; write the tuned weights into a copy of moses.ini.
  With a ``state`` file, the pool, weights and log are saved after every iteration and a run
  can be resumed from the last finished one (as ``mert-moses.pl --continue``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from rescorer.fileio import atomic_write

from . import envelope
from .bleu import N_STATS, Reference, bleu, bleu_many, sentence_stats
from .compiled import check_fresh

check_fresh(envelope)

log = logging.getLogger(__name__)


@dataclass
class NBestPool:
    """Distinct candidates of every tuning sentence: feature vectors, BLEU statistics, and keys
    (``NBestPool.key``) that say which candidates are already in."""
    refs: list[Reference]
    feats: list[list[np.ndarray]] = field(default_factory=list)
    stats: list[list[np.ndarray]] = field(default_factory=list)
    keys: list[list[bytes]] = field(default_factory=list)
    seen: list[set] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.refs)
        self.feats, self.stats = [[] for _ in range(n)], [[] for _ in range(n)]
        self.keys, self.seen = [[] for _ in range(n)], [set() for _ in range(n)]

    @staticmethod
    def key(words: list[str], features: np.ndarray) -> bytes:
        """A candidate's identity: its words and its features to 4 decimals, as a digest that
        stays the same from one process to the next (a saved pool knows what it holds)."""
        f = np.round(np.asarray(features, dtype=float), 4) + 0.0  # + 0.0: -0.0 is 0.0
        return hashlib.blake2b(" ".join(words).encode() + b"\0" + f.tobytes(), digest_size=16).digest()

    def add(self, i: int, words: list[str], features: np.ndarray) -> bool:
        key = self.key(words, features)
        if key in self.seen[i]:
            return False
        self.seen[i].add(key)
        self.keys[i].append(key)
        self.feats[i].append(np.asarray(features, dtype=float))
        self.stats[i].append(sentence_stats(words, self.refs[i]))
        return True

    def arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array(f), np.array(s)) for f, s in zip(self.feats, self.stats)]

    def size(self) -> int:
        return sum(len(f) for f in self.feats)

    def to_flat(self) -> dict[str, np.ndarray]:
        """The pool as flat arrays: candidates per sentence, then all features, statistics, keys."""
        D = next((len(f[0]) for f in self.feats if f), 0)
        return {"counts": np.array([len(f) for f in self.feats], dtype=np.int64),
                "feats": np.array([x for f in self.feats for x in f], dtype=float).reshape(-1, D),
                "stats": np.array([x for st in self.stats for x in st], dtype=float).reshape(-1, N_STATS),
                "keys": np.frombuffer(b"".join(k for ks in self.keys for k in ks), dtype=np.uint8).reshape(-1, 16)}

    def load_flat(self, a) -> None:
        """Refill from ``to_flat``'s arrays."""
        ends = np.cumsum(a["counts"])
        for i, e in enumerate(ends):
            b = e - a["counts"][i]
            self.feats[i], self.stats[i] = list(a["feats"][b:e]), list(a["stats"][b:e])
            self.keys[i] = [k.tobytes() for k in a["keys"][b:e]]
            self.seen[i] = set(self.keys[i])


class PaddedPool:
    """The pool as arrays: flat, sentence after sentence (features (T, D), statistics (T, K),
    ``offsets`` of each sentence's part), and padded to the longest list (features (S, N, D),
    statistics (S, N, K) and which entries are real) so that numpy handles every sentence at
    once.  The compiled sweep along one weight (``envelope.sweep``) reads the flat arrays; the
    padded ones are made when another line search first needs them."""

    def __init__(self, arrays: list[tuple[np.ndarray, np.ndarray]]):
        self.sizes = np.array([len(F) for F, _ in arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.flat_F = np.concatenate([np.asarray(F, float).reshape(len(F), -1) for F, _ in arrays])
        self.flat_St = np.ascontiguousarray(np.concatenate([np.asarray(St, float).reshape(len(St), -1)
                                                            for _, St in arrays]))
        self._padded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._orders: dict[tuple[int, float], np.ndarray] = {}
        self._slopes: dict[int, tuple] = {}
        self._flat_orders: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._scores: tuple[bytes, np.ndarray, np.ndarray] | None = None

    def _pad(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._padded is None:
            S, N = len(self.sizes), int(self.sizes.max(initial=1))
            valid = np.arange(N)[None, :] < self.sizes[:, None]
            F, St = np.zeros((S, N, self.flat_F.shape[1])), np.zeros((S, N, self.flat_St.shape[1]))
            F[valid], St[valid] = self.flat_F, self.flat_St
            self._padded = (F, St, valid)
        return self._padded

    @property
    def F(self) -> np.ndarray:
        return self._pad()[0]

    @property
    def St(self) -> np.ndarray:
        return self._pad()[1]

    @property
    def valid(self) -> np.ndarray:
        return self._pad()[2]

    def scores(self, w: np.ndarray) -> np.ndarray:
        """F w padded, -inf on padding; the last w's are kept, since a coordinate ascent round
        makes one line search per weight from the same w.  The products are those of the padded
        array, for every line search: the flat array's can differ in the last bit."""
        key = np.asarray(w, float).tobytes()
        if self._scores is None or self._scores[0] != key:
            self._scores = (key, np.where(self.valid, self.F @ w, -np.inf), None)
        return self._scores[1]

    def flat_scores(self, w: np.ndarray) -> np.ndarray:
        """F w on the flat arrays (the padded ones' numbers)."""
        padded = self.scores(w)
        if self._scores[2] is None:
            self._scores = (self._scores[0], padded, padded[self.valid])
        return self._scores[2]

    def flat_slope_order(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The flat candidates sentence by sentence, each sentence's by F[:, k] (equal values in
        candidate order), and F[:, k] in that order; sorted once per weight."""
        o = self._flat_orders.get(k)
        if o is None:
            sentence = np.repeat(np.arange(len(self.sizes)), self.sizes)
            order = np.lexsort((self.flat_F[:, k], sentence)).astype(np.int64)
            o = self._flat_orders[k] = (order, self.flat_F[order, k])
        return o

    def slope_groups(self, k: int) -> tuple:
        """Along weight k: per sentence, the candidates by slope F[:, :, k] (stable, padding last),
        the sorted slopes, and where each run of equal slopes starts in the flattened (S, N)
        array and how long each run is; sorted once, kept for every later line search."""
        g = self._slopes.get(k)
        if g is None:
            order = np.argsort(np.where(self.valid, self.F[:, :, k], np.inf), axis=1, kind="stable")
            b = np.take_along_axis(self.F[:, :, k], order, 1)
            valid = np.take_along_axis(self.valid, order, 1)
            new = np.ones(b.shape, bool)
            new[:, 1:] = (b[:, 1:] != b[:, :-1]) | (valid[:, 1:] != valid[:, :-1])
            starts = np.flatnonzero(new)
            g = self._slopes[k] = (order, b, valid, starts, np.diff(starts, append=new.size))
        return g

    def steepest_first(self, k: int, sign: float) -> np.ndarray:
        """Per sentence, the candidates by ``sign * F[:, :, k]`` descending: the slopes of a line
        search along weight k do not depend on the weights, so coordinate ascent sorts them once."""
        o = self._orders.get((k, sign))
        if o is None:
            o = self._orders[(k, sign)] = np.argsort(-sign * self.F[:, :, k], axis=1, kind="stable")
        return o


def _padded(arrays) -> PaddedPool:
    return arrays if isinstance(arrays, PaddedPool) else PaddedPool(arrays)


def best_stats(arrays, w: np.ndarray) -> np.ndarray:
    """Summed statistics of every sentence's highest-scoring candidate under w."""
    P = _padded(arrays)
    best = np.argmax(P.scores(w), axis=1)
    return P.St[np.arange(len(best)), best].sum(axis=0)


def _prune(a: np.ndarray, b: np.ndarray, valid: np.ndarray, St: np.ndarray, lo: float, hi: float,
           steepest_first=None):
    """The lines a + γ b that can be on their sentence's upper envelope somewhere in [lo, hi].

    With lo finite, a line is dropped when another one of the same sentence is strictly higher
    at lo and at least as steep (or as high at lo and steeper): it stays below that one for
    all γ >= lo.  With only hi finite, the mirror image.  Exact for γ in [lo, hi]; the envelope
    outside the range may change, which ``line_search`` never looks at.  The kept lines are
    packed to the left in their original order, padded to the longest row.
    ``steepest_first(sign)``, when given, returns each row's lines by ``sign * b`` descending
    (ties in any order: a line is then dropped only for a steeper-or-equal, strictly higher one,
    still exact, if less thorough among equal slopes)."""
    if lo > -math.inf:
        x, sign = lo, 1.0
    elif hi < math.inf:
        x, sign = hi, -1.0
    else:
        return a, b, valid, St
    with np.errstate(invalid="ignore"):
        at = np.where(valid, a + b * x, -np.inf)
    if steepest_first is not None:
        order = steepest_first(sign)
    else:
        steep = np.where(valid, sign * b, -np.inf)
        order = np.lexsort((-at, -steep), axis=-1)  # steepest first, then highest at x
    at_sorted = np.take_along_axis(at, order, 1)
    best_before = np.maximum.accumulate(at_sorted, axis=1)
    best_before = np.concatenate([np.full((len(a), 1), -np.inf), best_before[:, :-1]], axis=1)
    keep = np.empty_like(valid)
    np.put_along_axis(keep, order, ~(best_before > at_sorted), 1)
    keep &= valid
    width = max(1, int(keep.sum(axis=1).max()))
    if width > 0.8 * a.shape[1]:
        return a, b, valid, St
    pick = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    v = np.take_along_axis(keep, pick, 1)
    return (np.where(v, np.take_along_axis(a, pick, 1), -np.inf), np.where(v, np.take_along_axis(b, pick, 1), np.inf),
            v, np.take_along_axis(St, pick[:, :, None], 1))


def _sorted_lines(a: np.ndarray, b: np.ndarray, valid: np.ndarray):
    """Each sentence's lines a + γ b by slope, with only the highest of equal slopes (the last
    in candidate order among equally high ones) valid: (a, b, valid, order) in that order,
    order[i, j] being the candidate at sorted position j."""
    order = np.lexsort((a, b), axis=-1)  # per sentence by slope, then intercept; padding last
    a, b = np.take_along_axis(a, order, 1), np.take_along_axis(b, order, 1)
    v = np.take_along_axis(valid, order, 1)
    v[:, :-1] &= ~((b[:, :-1] == b[:, 1:]) & v[:, 1:])  # equal slopes: only the highest intercept
    return a, b, v, order


def _pack(keep: np.ndarray, a: np.ndarray, b: np.ndarray, order: np.ndarray):
    """The kept entries of each row moved to the left in their order, rows padded to the
    longest (a = -inf, b = inf, not valid): (a, b, valid, order)."""
    S, N = keep.shape
    flat = np.flatnonzero(keep)
    rows = flat // N
    counts = np.bincount(rows, minlength=S)
    W = max(1, int(counts.max(initial=0)))
    to = np.arange(len(flat)) + np.repeat(np.arange(S) * W - (np.cumsum(counts) - counts), counts)
    A, B, V, O = np.full(S * W, -np.inf), np.full(S * W, np.inf), np.zeros(S * W, bool), np.zeros(S * W, np.int64)
    A[to], B[to], V[to], O[to] = a.ravel()[flat], b.ravel()[flat], True, order.ravel()[flat]
    return A.reshape(S, W), B.reshape(S, W), V.reshape(S, W), O.reshape(S, W)


def _distinct_slope_lines(P: PaddedPool, a: np.ndarray, k: int):
    """The lines of ``_sorted_lines`` along weight k that can be on the upper envelope, in the
    same order, packed to the left.  The slope order is sorted once per weight
    (``PaddedPool.slope_groups``), the highest line of each run of equal slopes is found with
    two segmented maxima; then a line lower than some flatter line and than some steeper one
    is dropped: one of the two is above it for every γ."""
    order, b, valid, starts, lengths = P.slope_groups(k)
    a = np.take_along_axis(a, order, 1)
    flat = a.ravel()
    top = np.repeat(np.maximum.reduceat(flat, starts), lengths)
    last = np.maximum.reduceat(np.where(flat == top, np.arange(flat.size), -1), starts)  # the last of the highest
    keep = np.zeros(flat.size, bool)
    keep[last] = True
    keep = keep.reshape(a.shape) & valid
    highest = np.where(keep, a, -np.inf)
    flatter = np.maximum.accumulate(highest, axis=1)
    steeper = np.maximum.accumulate(highest[:, ::-1], axis=1)[:, ::-1]
    keep[:, 1:-1] &= ~((a[:, 1:-1] < flatter[:, :-2]) & (a[:, 1:-1] < steeper[:, 2:]))
    return _pack(keep, a, b, order)


def _events(P: PaddedPool, w: np.ndarray, d: np.ndarray, lo: float = -math.inf, hi: float = math.inf,
            prune: bool = True, slope_groups: bool = True, compiled: bool = True):
    """Statistics at γ = -inf and the breakpoints of every sentence's upper envelope of lines
    (F w) + γ (F d), with the change of statistics at each (with ``prune`` and a bounded
    range, of the envelope of the lines that matter in [lo, hi], see ``_prune``; along one
    weight without bounds, of the lines that can be on it, see ``_distinct_slope_lines``).

    Swept from γ = -inf for all sentences at once: the line of least slope (highest intercept
    among equal slopes) wins first; the next winner is the steeper line that crosses the current
    one first (the steepest of those crossing at the same point)."""
    axis = np.flatnonzero(d)
    unit = len(axis) == 1 and d[axis[0]] == 1.0  # along one weight: the slopes are a column of F
    if unit and compiled and envelope.COMPILED and lo < hi:
        # the whole envelope, sentence by sentence in compiled code: inside [lo, hi] it is the
        # pruned one's, which is all ``line_search`` looks at
        order, slopes = P.flat_slope_order(int(axis[0]))
        return envelope.sweep(P.flat_scores(w)[order], slopes, order, P.offsets, P.flat_St)
    a = P.scores(w)
    St = P.St
    if unit and slope_groups and not (prune and (lo > -math.inf or hi < math.inf)):
        a, b, v, order = _distinct_slope_lines(P, a, int(axis[0]))
    else:
        b = np.where(P.valid, P.F[:, :, axis[0]] if unit else P.F @ d, np.inf)
        valid = P.valid
        if prune:
            a, b, valid, St = _prune(a, b, valid, St, lo, hi,
                                     (lambda sign: P.steepest_first(int(axis[0]), sign)) if unit else None)
        a, b, v, order = _sorted_lines(a, b, valid)
    S, N = v.shape
    rows, idx = np.arange(S), np.arange(N)
    cur = np.argmax(v, axis=1)
    start = St[rows, order[rows, cur]].sum(axis=0)  # St stays unsorted: only the winners are looked up
    xs, rs, froms, tos = [], [], [], []
    active = rows
    with np.errstate(invalid="ignore", divide="ignore"):
        while active.size:
            c = cur[active]
            A, B = a[active], b[active]
            x = (A[np.arange(len(c)), c][:, None] - A) / (B - B[np.arange(len(c)), c][:, None])
            x = np.where(v[active] & (idx[None, :] > c[:, None]), x, np.inf)
            m = x.min(axis=1)
            go = np.isfinite(m)
            hit = (x == m[:, None]) & go[:, None]
            nxt = N - 1 - np.argmax(hit[:, ::-1], axis=1)  # the steepest line crossing first
            xs.append(m[go])
            rs.append(active[go])
            froms.append(c[go])
            tos.append(nxt[go])
            cur[active[go]] = nxt[go]
            active = active[go]
    if not xs:
        return start, np.zeros(0), np.zeros((0, St.shape[2]))
    xs, rs, froms, tos = (np.concatenate(z) for z in (xs, rs, froms, tos))
    return start, xs, St[rs, order[rs, tos]] - St[rs, order[rs, froms]]


def line_search(arrays, w: np.ndarray, d: np.ndarray, lo: float = -math.inf,
                hi: float = math.inf, prune: bool = True, compiled: bool = True) -> tuple[float, float]:
    """The γ in [lo, hi] maximising corpus BLEU of the 1-best along w + γ d (exact), and that BLEU.

    The 1-best list is constant between breakpoints of the sentences' envelopes; the corpus
    statistics of every interval are a running sum over the sorted breakpoints; the best
    interval that meets [lo, hi] wins and γ is the middle of their intersection.  ``prune``
    first drops the lines that cannot win inside the range (same result, less work)."""
    start, xs, deltas = _events(_padded(arrays), w, d, lo, hi, prune, compiled=compiled)
    order = np.argsort(xs, kind="stable")
    xs = xs[order]
    stats = np.vstack([start, start + np.cumsum(deltas[order], axis=0)]) if len(xs) else start[None]
    lefts = np.concatenate([[-math.inf], xs])
    rights = np.concatenate([xs, [math.inf]])
    a_c, b_c = np.maximum(lefts, lo), np.minimum(rights, hi)
    ok = (a_c < b_c) | ((a_c == b_c) & (lo == hi))
    if not ok.any():  # [lo, hi] is a single breakpoint
        return lo, bleu(best_stats(arrays, w + lo * d))
    cand = np.flatnonzero(ok)
    scores = bleu_many(stats[cand])
    k = cand[int(np.argmax(scores))]
    b, a_k, b_k = float(scores.max()), float(a_c[k]), float(b_c[k])
    if a_k == -math.inf and b_k == math.inf:
        gamma = 0.0
    elif a_k == -math.inf:
        gamma = b_k - 1.0
    elif b_k == math.inf:
        gamma = a_k + 1.0
    else:
        gamma = 0.5 * (a_k + b_k)
    return gamma, b


def _climb(arrays: PaddedPool, w: np.ndarray, dims: np.ndarray, lower: np.ndarray, upper: np.ndarray,
           max_rounds: int, compiled: bool = True) -> tuple[np.ndarray, float]:
    """Coordinate ascent from w: the best single-weight line search step, until none helps."""
    cur = bleu(best_stats(arrays, w))
    for _ in range(max_rounds):
        step = None
        for k in dims:
            d = np.zeros_like(w)
            d[k] = 1.0
            g, b = line_search(arrays, w, d, lower[k] - w[k], upper[k] - w[k], compiled=compiled)
            if b > cur + 1e-6 and (step is None or b > step[1]):
                step = (d * g, b)
        if step is None:
            break
        w = w + step[0]
        cur = step[1]
    return w, cur


_CLIMB_ARGS: tuple | None = None  # what forked workers share: (pool, dims, lower, upper, max_rounds, compiled)


def _climb_worker(w: np.ndarray) -> tuple[np.ndarray, float]:
    assert _CLIMB_ARGS is not None
    return _climb(_CLIMB_ARGS[0], w, *_CLIMB_ARGS[1:])


def optimize(arrays, w0: np.ndarray, tunable: np.ndarray, restarts: int = 20, seed: int = 0,
             max_rounds: int = 50, lower: np.ndarray | None = None, upper: np.ndarray | None = None,
             extra_starts: list[np.ndarray] | None = None, processes: int = 1,
             compiled: bool = True) -> tuple[np.ndarray, float]:
    """Best weights found by coordinate line searches from w0, ``extra_starts`` and random
    restarts (uniform in [-1, 1] cut to the ranges), every weight kept in [lower, upper].
    The starting points are shared out over ``processes`` forked workers.  ``compiled=False``:
    numpy's line searches instead of the compiled sweep (the same numbers, slower)."""
    global _CLIMB_ARGS
    rng = np.random.default_rng(seed)
    arrays = _padded(arrays)
    dims = np.flatnonzero(tunable)
    lower = np.full(len(w0), -math.inf) if lower is None else np.asarray(lower, float)
    upper = np.full(len(w0), math.inf) if upper is None else np.asarray(upper, float)
    clip = lambda w: np.where(tunable, np.clip(w, lower, upper), w0)  # noqa: E731
    starts = [clip(w0.copy())] + [clip(np.asarray(s, float).copy()) for s in extra_starts or ()]
    for _ in range(restarts):
        w = w0.copy()
        w[dims] = rng.uniform(np.maximum(lower[dims], -1), np.minimum(upper[dims], 1))
        starts.append(w)
    if processes > 1 and len(starts) > 1:
        _CLIMB_ARGS = (arrays, dims, lower, upper, max_rounds, compiled)
        try:
            with mp.get_context("fork").Pool(min(processes, len(starts))) as workers:
                results = workers.map(_climb_worker, starts, chunksize=1)
        finally:
            _CLIMB_ARGS = None
    else:
        results = [_climb(arrays, w, dims, lower, upper, max_rounds, compiled) for w in starts]
    best_w, best_b = starts[0].copy(), bleu(best_stats(arrays, starts[0]))
    for w, b in results:  # in start order, so the result does not depend on the processes
        if b > best_b + 1e-9:
            best_w, best_b = w.copy(), b
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


def weight_ranges(groups: list[tuple[str, int, bool]], specs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds per weight: ``default_ranges`` overridden by ``NAME=LO,HI`` specifications."""
    lower, upper = default_ranges(groups)
    start = {}
    a = 0
    for name, n, _ in groups:
        start[name] = (a, a + n)
        a += n
    for spec in specs:
        name, _, rng = spec.partition("=")
        try:
            lo, hi = (float(x) for x in rng.split(","))
        except ValueError:
            raise ValueError(f"--range {spec!r}: expected NAME=LO,HI, e.g. LM0=0,inf") from None
        if name not in start:
            raise ValueError(f"--range {spec!r}: no feature {name!r} (features: {', '.join(start)})")
        if lo > hi:
            raise ValueError(f"--range {spec!r}: LO > HI")
        lower[start[name][0]:start[name][1]], upper[start[name][0]:start[name][1]] = lo, hi
    return lower, upper


def tunable_mask(groups: list[tuple[str, int, bool]]) -> np.ndarray:
    """Which weights MERT moves: all but the unknown-word penalty's, which Moses does not tune."""
    return np.concatenate([np.full(n, not name.startswith("UnknownWordPenalty")) for name, n, _ in groups])


@dataclass
class TuneResult:
    weights: np.ndarray
    history: list[dict]
    pool: NBestPool | None = None  # every candidate decoded, as the last optimisation saw them


def _fingerprint(references: list[list[str]], w0: np.ndarray, tunable: np.ndarray, nbest: int,
                 normalize: bool = False) -> str:
    """What a saved state must have been made for: the references, starting weights, the
    tuned weights, the n-best size and the normalisation (iterations, restarts and ranges may
    change on resume)."""
    h = hashlib.blake2b(digest_size=16)
    for r in references:
        h.update(" ".join(r).encode() + b"\n")
    h.update(np.asarray(w0, float).tobytes() + np.asarray(tunable, bool).tobytes() + str(nbest).encode())
    if normalize:
        h.update(b"L1")
    return h.hexdigest()


def normalize_l1(w: np.ndarray, tunable: np.ndarray) -> np.ndarray:
    """The tuned weights scaled to an L1 norm of 1, the others kept: what Moses's ``mert`` does to
    its best point when every weight of the n-best lists is tuned (``Point::NormalizeL1``), and
    mert-moses.pl to the starting weights.  The untuned UnknownWordPenalty keeps its weight, as in
    Moses, where it is not in the n-best lists."""
    w = np.asarray(w, float).copy()
    norm = float(np.abs(w[tunable]).sum())
    if norm > 0:
        w[tunable] /= norm
    return w


def save_state(path: str, pool: NBestPool, next_iteration: int, w: np.ndarray, best: tuple[float, np.ndarray],
               history: list[dict], fingerprint: str) -> None:
    """Everything ``tune`` needs to go on after an iteration, written atomically (one .npz)."""
    meta = {"next_iteration": next_iteration, "best_bleu": best[0], "history": history, "fingerprint": fingerprint}
    with atomic_write(path, "wb") as f:
        np.savez(f, w=w, best_w=best[1], meta=np.array(json.dumps(meta)), **pool.to_flat())


def load_state(path: str, pool: NBestPool, fingerprint: str) -> tuple[int, np.ndarray, tuple[float, np.ndarray], list[dict]]:
    """Fill ``pool`` from a saved state; (next iteration, weights, best (BLEU, weights), history)."""
    try:
        with np.load(path) as z:
            a = {k: z[k] for k in z.files}
        meta = json.loads(str(a["meta"]))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a tuning state written by rescorer tune ({e})") from None
    if meta["fingerprint"] != fingerprint:
        raise ValueError(f"{path}: saved by a tuning run with other references, starting weights, tuned "
                         "weights, n-best size or normalisation; start afresh without --resume (with --overwrite)")
    pool.load_flat(a)
    return meta["next_iteration"], a["w"], (meta["best_bleu"], a["best_w"]), meta["history"]


def tune(decode: Callable[[np.ndarray, int], list[list[tuple[list[str], np.ndarray]]]],
         references: list[list[str]], w0: np.ndarray, tunable: np.ndarray, nbest: int = 100,
         max_iter: int = 25, restarts: int = 20, seed: int = 0, lower: np.ndarray | None = None,
         upper: np.ndarray | None = None, processes: int = 1, state: str | None = None,
         resume: bool = False, normalize: bool = False) -> TuneResult:
    """MERT with any decoder: ``decode(weights, n)`` returns each sentence's n-best (words, features).

    Each optimisation starts from the current weights, the initial ones, the best decoded so
    far and ``restarts`` random points; weights stay in [lower, upper] (``default_ranges``).
    With ``state``, everything is saved there after each iteration; ``resume`` continues from
    it, and the run ends as an uninterrupted one would have.  With ``normalize``, the starting
    weights and each iteration's optimised ones are scaled to an L1 norm of 1 over the tuned
    weights, as Moses's mert-moses.pl and ``mert`` do (``normalize_l1``): without it, the scale
    of the weights is free and can drift across iterations."""
    if not envelope.COMPILED:
        log.warning("MERT's envelope sweep (moses_integration/envelope.py) is not compiled: line searches run "
                    "with numpy, slower; `make setup` compiles it")
    pool = NBestPool([Reference(r) for r in references])
    w_start = normalize_l1(w0, tunable) if normalize else w0
    w = w_start.astype(float).copy()
    history: list[dict] = []
    best = (-1.0, w.copy())
    first = 1
    fingerprint = _fingerprint(references, w0, tunable, nbest, normalize)
    if resume:
        if state is None or not os.path.exists(state):
            raise FileNotFoundError(f"{state}: no tuning state to resume from")
        first, w, best, history = load_state(state, pool, fingerprint)
        log.info("resuming from %s: %d iterations done, pool %d", state, first - 1, pool.size())
        if history and history[-1].get("stop") == "n-best lists stopped growing":
            return TuneResult(best[1], history, pool)
    for it in range(first, max_iter + 1):
        t0 = time.time()
        lists = decode(w, nbest)
        t1 = time.time()
        dev = one_best_bleu(lists, pool.refs)
        new = sum(pool.add(i, words, f) for i, cands in enumerate(lists) for words, f in cands)
        if dev > best[0]:
            best = (dev, w.copy())
        rec = {"iteration": it, "dev_bleu": dev, "new_candidates": new, "pool": pool.size(),
               "weights": w.tolist(), "decode_seconds": round(t1 - t0, 1),
               "merge_seconds": round(time.time() - t1, 1)}
        if new == 0:
            rec["stop"] = "n-best lists stopped growing"
            history.append(rec)
            log.info("iteration %d: dev BLEU %.2f; no new candidates: done", it, dev)
            if state is not None:
                save_state(state, pool, it + 1, w, best, history, fingerprint)
            break
        w_new, pool_bleu = optimize(pool.arrays(), w, tunable, restarts=restarts, seed=seed + it,
                                    lower=lower, upper=upper, extra_starts=[w_start, best[1]], processes=processes)
        rec["pool_bleu_after"] = pool_bleu
        rec["optimise_seconds"] = round(time.time() - t1, 1)  # with the merge
        history.append(rec)
        log.info("iteration %d: dev BLEU %.2f, %d new candidates (pool %d), optimised pool BLEU %.2f",
                 it, dev, new, pool.size(), pool_bleu)
        w = normalize_l1(w_new, tunable) if normalize else w_new
        if state is not None:
            save_state(state, pool, it + 1, w, best, history, fingerprint)
    else:
        # the last optimised weights have not been decoded yet: decode once more to log them (with the
        # n-best size of the iterations: a decoder that re-ranks its n-best lists needs them)
        t0 = time.time()
        lists = decode(w, nbest)
        dev = one_best_bleu(lists, pool.refs)
        history.append({"iteration": max_iter + 1, "dev_bleu": dev, "weights": w.tolist(), "stop": "max_iter",
                        "decode_seconds": round(time.time() - t0, 1)})
        if dev > best[0]:
            best = (dev, w.copy())
    return TuneResult(best[1], history, pool)
