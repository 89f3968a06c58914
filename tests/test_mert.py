"""BLEU statistics against sacrebleu; MERT's exact line search against a dense grid."""
import numpy as np
import pytest
import sacrebleu

from moses_integration.bleu import N_STATS, Reference, bleu, sentence_stats
from moses_integration.mert import _envelope, best_stats, line_search, optimize

WORDS = "le la les un une de du maison chat bleu rouge est a".split()


def random_corpus(rng, n):
    refs = [list(rng.choice(WORDS, rng.integers(3, 15))) for _ in range(n)]
    hyps = [list(rng.choice(WORDS, rng.integers(1, 15))) for _ in range(n)]
    return hyps, refs


@pytest.mark.parametrize("seed", range(5))
def test_bleu_equals_sacrebleu(seed):
    rng = np.random.default_rng(seed)
    hyps, refs = random_corpus(rng, 30 if seed else 3)
    stats = sum(sentence_stats(h, Reference(r)) for h, r in zip(hyps, refs))
    want = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]], tokenize="none")
    assert bleu(stats) == pytest.approx(want.score, abs=1e-9)


def test_envelope_is_the_maximum_everywhere():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30)
    b[5] = b[6]  # equal slopes
    xs, idx = _envelope(a, b)
    for g in np.linspace(-20, 20, 4001):
        k = np.searchsorted(xs, g, side="right") - 1
        assert a[idx[k]] + g * b[idx[k]] == pytest.approx(np.max(a + g * b))


def synthetic_pool(rng, n_sent=40, n_cand=15, dim=5):
    arrays = []
    for _ in range(n_sent):
        ref = Reference(list(rng.choice(WORDS, rng.integers(4, 12))))
        cands = [list(rng.choice(WORDS, rng.integers(2, 14))) for _ in range(n_cand)]
        F = rng.normal(size=(n_cand, dim))
        S = np.array([sentence_stats(c, ref) for c in cands])
        arrays.append((F, S))
    return arrays


@pytest.mark.parametrize("seed", range(4))
def test_line_search_finds_the_true_optimum(seed):
    rng = np.random.default_rng(seed)
    arrays = synthetic_pool(rng)
    w, d = rng.normal(size=5), rng.normal(size=5)
    gamma, b = line_search(arrays, w, d)
    assert bleu(best_stats(arrays, w + gamma * d)) == pytest.approx(b)
    grid = max(bleu(best_stats(arrays, w + g * d)) for g in np.linspace(-30, 30, 6001))
    assert b >= grid - 1e-9          # nothing on a dense grid beats it
    assert b >= bleu(best_stats(arrays, w)) - 1e-9


def test_optimize_raises_pool_bleu():
    rng = np.random.default_rng(7)
    arrays = synthetic_pool(rng, n_sent=60)
    w0 = np.ones(5)
    start = bleu(best_stats(arrays, w0))
    tunable = np.array([True, True, True, True, False])
    w, b = optimize(arrays, w0, tunable, restarts=5)
    assert b > start and bleu(best_stats(arrays, w)) == pytest.approx(b)
    assert w[4] == w0[4]  # an untunable weight stays
