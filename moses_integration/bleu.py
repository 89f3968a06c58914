"""BLEU from sufficient statistics, as sacrebleu computes corpus BLEU (tokens given, one reference).

A sentence's statistics are ``[hyp_len, ref_len, match_1, total_1, ..., match_4, total_4]``;
corpus BLEU sums them and applies the brevity penalty and sacrebleu's default 'exp'
smoothing, so the value equals ``sacrebleu.corpus_bleu(..., tokenize='none')`` on the
same tokens (the tests check it).  Summable statistics are what MERT's line search needs.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

MAX_N = 4
N_STATS = 2 + 2 * MAX_N


def ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


class Reference:
    """A tokenised reference with its n-gram counts computed once."""

    def __init__(self, words: list[str]):
        self.len = len(words)
        self.counts = [ngrams(words, n) for n in range(1, MAX_N + 1)]


def sentence_stats(hyp: list[str], ref: Reference) -> np.ndarray:
    s = np.zeros(N_STATS)
    s[0], s[1] = len(hyp), ref.len
    for n in range(1, MAX_N + 1):
        h = ngrams(hyp, n)
        s[2 * n] = sum(min(c, ref.counts[n - 1].get(g, 0)) for g, c in h.items())
        s[2 * n + 1] = max(len(hyp) - n + 1, 0)
    return s


def bleu(stats: np.ndarray) -> float:
    """Corpus BLEU (0-100) from summed statistics, sacrebleu's formula and 'exp' smoothing."""
    hyp_len, ref_len = stats[0], stats[1]
    if hyp_len == 0:
        return 0.0
    smooth, log_sum = 1.0, 0.0
    for n in range(1, MAX_N + 1):
        correct, total = stats[2 * n], stats[2 * n + 1]
        if total == 0:
            return 0.0  # sacrebleu: precision 0 for an order with no n-grams
        if correct == 0:
            smooth *= 2
            p = 100.0 / (smooth * total)
        else:
            p = 100.0 * correct / total
        log_sum += math.log(p)
    bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_sum / MAX_N)


def bleu_many(stats: np.ndarray) -> np.ndarray:
    """``bleu`` of every row of a matrix of summed statistics, vectorised (equal to ``bleu``)."""
    stats = np.atleast_2d(np.asarray(stats, float))
    hyp_len, ref_len = stats[:, 0], stats[:, 1]
    correct, total = stats[:, 2::2], stats[:, 3::2]
    zero = correct == 0
    smooth = np.power(2.0, np.cumsum(zero, axis=1))  # sacrebleu 'exp': doubles at each order with no match
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(zero, 100.0 / (smooth * total), 100.0 * correct / total)
        log_p = np.log(p).mean(axis=1)
        bp = np.where(hyp_len >= ref_len, 1.0, np.exp(1 - ref_len / np.where(hyp_len > 0, hyp_len, 1)))
    out = bp * np.exp(log_p)
    out[(hyp_len == 0) | np.any(total == 0, axis=1)] = 0.0
    return out
