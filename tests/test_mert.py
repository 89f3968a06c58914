"""BLEU statistics against sacrebleu; MERT's exact line search against a dense grid."""
import os
import types

import numpy as np
import pytest
import sacrebleu

from experiments import bench_tune
from moses_integration import envelope
from moses_integration.bleu import N_STATS, Reference, bleu, sentence_stats
from moses_integration.bleu import bleu_many
from moses_integration.compiled import check_fresh
from moses_integration.mert import NBestPool, default_ranges, normalize_l1, tune, weight_ranges
from moses_integration.mert import PaddedPool, _events, _prune, best_stats, line_search, optimize

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


def test_bleu_many_equals_bleu():
    rng = np.random.default_rng(1)
    rows = [sum(sentence_stats(h, Reference(r)) for h, r in zip(*random_corpus(rng, k))) for k in (1, 2, 5, 30)]
    rows.append(np.zeros(N_STATS))
    assert list(bleu_many(np.array(rows))) == pytest.approx([bleu(r) for r in rows], abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_envelopes_of_all_sentences_are_the_maximum_everywhere(seed):
    """Between the breakpoints found for all sentences at once, each sentence's winner is a
    line that is highest there (checked candidate by candidate on a dense grid)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, size=8)
    total = int(sizes.sum())
    arrays, first = [], 0
    for n in sizes:
        F = rng.normal(size=(n, 2)).round(1)  # rounding makes equal slopes and triple crossings
        S = np.zeros((n, total))
        S[np.arange(n), first + np.arange(n)] = 1  # statistics: one column per candidate
        arrays.append((F, S))
        first += n
    w, d = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    start, xs, deltas = _events(PaddedPool(arrays), w, d)
    order = np.argsort(xs, kind="stable")
    allF = np.vstack([F for F, _ in arrays])
    owner = np.repeat(np.arange(len(sizes)), sizes)
    for g in np.linspace(-15, 15, 3001):
        if np.any(np.abs(xs - g) < 1e-9):
            continue
        wins = start + deltas[order][xs[order] < g].sum(axis=0)
        assert np.all(np.isclose(wins, 0) | np.isclose(wins, 1))
        winners = np.flatnonzero(np.isclose(wins, 1))
        assert sorted(owner[winners]) == list(range(len(sizes)))  # one winner per sentence
        scores = allF @ (w + g * d)
        for k in winners:
            assert scores[k] == pytest.approx(scores[owner == owner[k]].max())


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


@pytest.mark.parametrize("seed", range(3))
def test_bounded_line_search_is_the_optimum_inside_the_bounds(seed):
    rng = np.random.default_rng(10 + seed)
    arrays = synthetic_pool(rng)
    w, d = rng.normal(size=5), rng.normal(size=5)
    lo, hi = -0.7, 1.3
    gamma, b = line_search(arrays, w, d, lo, hi)
    assert lo <= gamma <= hi
    assert bleu(best_stats(arrays, w + gamma * d)) == pytest.approx(b)
    grid = max(bleu(best_stats(arrays, w + g * d)) for g in np.linspace(lo, hi, 4001))
    assert b >= grid - 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_pruned_line_search_equals_the_full_one(seed):
    """Dropping the lines that cannot win inside the range changes nothing inside it."""
    rng = np.random.default_rng(20 + seed)
    arrays = synthetic_pool(rng, n_sent=30, n_cand=40)
    for F, _ in arrays:
        F[:, 1] = F[:, 1].round()  # equal slopes and ties at the bound
    w, d = rng.normal(size=5), np.eye(5)[1]
    P = PaddedPool(arrays)  # one pool for all: along a weight, its slope orders are sorted once and kept
    for direction in (d, rng.normal(size=5)):  # along one weight (cached slope order), and any direction
        for lo, hi in ((-0.5, np.inf), (-np.inf, 0.8), (-0.5, 0.8), (0.0, np.inf), (-np.inf, np.inf)):
            want = line_search(arrays, w, direction, lo, hi, prune=False, compiled=False)
            assert line_search(P, w, direction, lo, hi, compiled=False) == want
            assert line_search(P, w, direction, lo, hi) == want  # along one weight: the compiled sweep
    a = PaddedPool(arrays).F @ w
    kept = _prune(a, PaddedPool(arrays).F @ d, PaddedPool(arrays).valid, PaddedPool(arrays).St, 0.0, np.inf)[2]
    assert kept.shape[1] < 40  # something was dropped


@pytest.mark.parametrize("seed", range(6))
def test_lines_along_one_weight_give_the_events_of_the_full_sort(seed):
    """Along one weight, the lines kept by their slope runs and the flatter/steeper test give
    the same breakpoints, in the same order, with the same statistics as sorting every line,
    also with equal slopes, equal intercepts and repeated candidates."""
    rng = np.random.default_rng(30 + seed)
    arrays = synthetic_pool(rng, n_sent=25, n_cand=60, dim=4)
    for F, St in arrays:
        F[:, :2] = F[:, :2].round()  # few distinct values: a penalty, a count
        F[:, 2] = F[:, 2].round(1)
        F[10:20] = F[:10]  # the same features for other words
        St += rng.integers(0, 3, size=St.shape)
    arrays[3] = (arrays[3][0][:1], arrays[3][1][:1])  # a sentence with one candidate
    P = PaddedPool(arrays)
    for w in (rng.normal(size=4), np.array([1.0, 0.0, 0.0, 0.0]), rng.normal(size=4).round()):
        for k in range(4):
            d = np.eye(4)[k]
            fast = _events(P, w, d, compiled=False)
            full = _events(PaddedPool(arrays), w, d, prune=False, slope_groups=False, compiled=False)
            for x, y in zip(fast, full):
                assert np.array_equal(x, y)
            assert line_search(P, w, d, compiled=False) == line_search(arrays, w, d, compiled=False)


def _by_breakpoint(events):
    start, xs, deltas = events
    order = np.lexsort(tuple(deltas.T[::-1]) + (xs,))
    return start, xs[order], deltas[order]


@pytest.mark.parametrize("seed", range(6))
def test_compiled_sweep_gives_the_numpy_sweep_s_events(seed):
    """The compiled sweep along one weight (sentence by sentence) finds the breakpoints and
    changes of statistics of the numpy sweep (all sentences at once): the same numbers, in
    another order; so every line search gives the same step and BLEU, bounded or not."""
    assert envelope.COMPILED, "moses_integration/envelope.py is not compiled: run make setup"
    rng = np.random.default_rng(40 + seed)
    arrays = synthetic_pool(rng, n_sent=25, n_cand=60, dim=4)
    for F, St in arrays:
        F[:, :2] = F[:, :2].round()  # equal slopes, equal intercepts, triple crossings
        F[:, 2] = F[:, 2].round(1)
        F[10:20] = F[:10]
        St += rng.integers(0, 3, size=St.shape)
    arrays[3] = (arrays[3][0][:1], arrays[3][1][:1])  # a sentence with one candidate
    P = PaddedPool(arrays)
    for w in (rng.normal(size=4), np.array([1.0, 0.0, 0.0, 0.0]), rng.normal(size=4).round()):
        for k in range(4):
            d = np.eye(4)[k]
            for x, y in zip(_by_breakpoint(_events(P, w, d)), _by_breakpoint(_events(P, w, d, compiled=False))):
                assert np.array_equal(x, y)
            for lo, hi in ((-np.inf, np.inf), (-0.5, np.inf), (-np.inf, 0.8), (-0.5, 0.8), (0.0, np.inf)):
                assert line_search(P, w, d, lo, hi) == line_search(arrays, w, d, lo, hi, compiled=False)


def test_optimize_keeps_weights_in_their_ranges():
    rng = np.random.default_rng(3)
    arrays = synthetic_pool(rng, n_sent=60)
    w0 = np.full(5, 0.5)
    lower, upper = np.array([0, 0, -np.inf, 0.2, -np.inf]), np.array([np.inf, 1, np.inf, 0.6, np.inf])
    w, b = optimize(arrays, w0, np.ones(5, bool), restarts=5, lower=lower, upper=upper)
    assert np.all(w >= lower) and np.all(w <= upper)
    assert b >= bleu(best_stats(arrays, w0)) - 1e-9 and bleu(best_stats(arrays, w)) == pytest.approx(b)


def test_default_ranges_and_range_options():
    groups = [("LexicalReordering0", 6, True), ("Distortion0", 1, True), ("LM0", 1, True),
              ("UnknownWordPenalty0", 1, False), ("WordPenalty0", 1, True), ("PhrasePenalty0", 1, True),
              ("TranslationModel0", 5, True)]
    lower, upper = default_ranges(groups)
    assert list(lower[:8]) == [0] * 8 and np.all(np.isinf(lower[8:11])) and list(lower[11:]) == [0] * 5
    assert np.all(np.isinf(upper))
    lower, upper = weight_ranges(groups, ["WordPenalty0=-3,3", "LM0=-inf,inf"])
    assert (lower[9], upper[9]) == (-3, 3) and np.isinf(lower[7])
    with pytest.raises(ValueError, match="no feature 'LM1'"):
        weight_ranges(groups, ["LM1=0,1"])
    with pytest.raises(ValueError, match="NAME=LO,HI"):
        weight_ranges(groups, ["LM0=0"])


def test_optimize_gives_the_same_result_in_parallel():
    rng = np.random.default_rng(5)
    arrays = synthetic_pool(rng, n_sent=30)
    one = optimize(arrays, np.ones(5), np.ones(5, bool), restarts=3)
    two = optimize(arrays, np.ones(5), np.ones(5, bool), restarts=3, processes=2)
    assert one[1] == two[1] and np.array_equal(one[0], two[0])


def _synthetic_decoder(seed=0, S=12, C=40, D=5):
    """A deterministic stand-in for a decoder: fixed candidates per sentence, ranked by F w."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{k}" for k in range(15)]
    refs = [list(rng.choice(vocab, rng.integers(4, 9))) for _ in range(S)]
    cands = [[(list(rng.choice(vocab, rng.integers(3, 10))), rng.normal(size=D)) for _ in range(C)] for _ in range(S)]

    def decode(w, n):
        return [sorted(cs, key=lambda c: -float(c[1] @ w))[:n] for cs in cands]
    return decode, refs, D


def _without_times(history):
    return [{k: v for k, v in h.items() if not k.endswith("_seconds")} for h in history]


def test_tune_resumes_where_it_stopped(tmp_path):
    """Interrupted during iteration 3 and resumed from its state file, tuning ends exactly as
    an uninterrupted run: same weights, same log; a state of another run is refused."""
    decode, refs, D = _synthetic_decoder()
    w0, tunable = np.full(D, 0.2), np.ones(D, bool)
    kw = dict(nbest=4, max_iter=4, restarts=3, seed=1)
    full = tune(decode, refs, w0, tunable, state=str(tmp_path / "full.npz"), **kw)
    assert len(full.history) == 5 and full.history[-1]["stop"] == "max_iter"

    calls = []

    def interrupted(w, n):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return decode(w, n)
    state = str(tmp_path / "run.npz")
    with pytest.raises(KeyboardInterrupt):
        tune(interrupted, refs, w0, tunable, state=state, **kw)
    resumed = tune(decode, refs, w0, tunable, state=state, resume=True, **kw)
    np.testing.assert_array_equal(resumed.weights, full.weights)
    assert _without_times(resumed.history) == _without_times(full.history)
    # more iterations on resume: the first four stay as they were
    longer = tune(decode, refs, w0, tunable, state=state, resume=True, **{**kw, "max_iter": 6})
    assert _without_times(longer.history)[:4] == _without_times(full.history)[:4]
    assert [h["iteration"] for h in longer.history][4] == 5 and "new_candidates" in longer.history[4]
    assert "stop" in longer.history[-1] and len(longer.history) <= 7

    with pytest.raises(ValueError, match="run.npz: saved by a tuning run with other references"):
        tune(decode, refs[::-1], w0, tunable, state=state, resume=True, **kw)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        tune(decode, refs, w0, tunable, state=str(tmp_path / "missing.npz"), resume=True, **kw)
    (tmp_path / "bad.npz").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="bad.npz: not a tuning state"):
        tune(decode, refs, w0, tunable, state=str(tmp_path / "bad.npz"), resume=True, **kw)


def test_tune_normalises_like_moses_when_asked(tmp_path):
    """normalize=True: the starting weights and every iteration's optimised ones have an L1 norm
    of 1 over the tuned weights (as Moses's mert writes them); an untuned weight keeps its value;
    a state saved without normalisation is not resumed with it."""
    decode, refs, D = _synthetic_decoder(seed=2)
    w0, tunable = np.array([0.5, -2.0, 1.0, 0.3, 4.0]), np.array([True, True, True, True, False])
    np.testing.assert_allclose(normalize_l1(w0, tunable), [0.5 / 3.8, -2 / 3.8, 1 / 3.8, 0.3 / 3.8, 4.0])
    kw = dict(nbest=4, max_iter=3, restarts=3, seed=1)
    res = tune(decode, refs, w0, tunable, normalize=True, state=str(tmp_path / "n.npz"), **kw)
    for h in res.history:
        w = np.array(h["weights"])
        assert np.abs(w[tunable]).sum() == pytest.approx(1.0) and w[4] == 4.0
    plain = tune(decode, refs, w0, tunable, state=str(tmp_path / "p.npz"), **kw)
    assert np.abs(np.array(plain.history[0]["weights"])[tunable]).sum() == pytest.approx(3.8)
    with pytest.raises(ValueError, match="p.npz: saved by a tuning run with other"):
        tune(decode, refs, w0, tunable, normalize=True, state=str(tmp_path / "p.npz"), resume=True, **kw)


def test_every_decode_asks_for_the_n_best_lists():
    """The last decode of a run (the weights of the last iteration) asks for n-best lists too:
    a decoder that re-ranks its n-best lists (the CSLM's n-best rescoring) needs them to give
    the 1-best whose dev BLEU is logged and compared."""
    decode, refs, D = _synthetic_decoder(seed=4)
    asked = []

    def recording(w, n):
        asked.append(n)
        return decode(w, n)
    res = tune(recording, refs, np.full(D, 0.2), np.ones(D, bool), nbest=5, max_iter=2, restarts=2, seed=1)
    assert res.history[-1]["stop"] == "max_iter" and asked == [5, 5, 5]


def test_pool_round_trips_through_flat_arrays():
    decode, refs, D = _synthetic_decoder(seed=3, S=4)
    pool = NBestPool([Reference(r) for r in refs])
    for i, cands in enumerate(decode(np.ones(D), 10)):
        for words, f in cands:
            pool.add(i, words, f)
    again = NBestPool([Reference(r) for r in refs])
    again.load_flat(pool.to_flat())
    assert again.keys == pool.keys and again.seen == pool.seen
    for a, b in zip(pool.arrays(), again.arrays()):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    words, f = decode(np.ones(D), 1)[0][0]
    assert not again.add(0, words, f + 1e-7)  # the same candidate (features to 4 decimals)
    assert again.add(0, words, f + 1e-3)


def test_bench_tune_times_both_optimisers_on_the_run_s_pool_and_reports_it():
    """experiments/bench_tune.py: the final pool optimised by both paths (the same weights), and
    its report rendered from the results structure alone."""
    rng = np.random.default_rng(7)
    refs = [list(rng.choice(WORDS, rng.integers(4, 12))) for _ in range(20)]
    pool = NBestPool([Reference(r) for r in refs])
    for i in range(20):
        for _ in range(12):
            pool.add(i, list(rng.choice(WORDS, rng.integers(2, 14))), rng.normal(size=4).round(1))
    w0 = np.full(4, 0.5)
    lower, upper = np.zeros(4), np.full(4, np.inf)
    cmp_ = bench_tune.compare_optimisers(pool, w0, w0 * 2, np.ones(4, bool), lower, upper, 3, 1, 1)
    assert cmp_["same_weights"] and cmp_["same_bleu"] and cmp_["candidates"] == pool.size()
    assert cmp_["speedup"] == pytest.approx(cmp_["numpy_seconds"] / cmp_["compiled_seconds"], rel=0.01)
    its = [{"iteration": 1, "dev_bleu": 10.0, "pool": 240, "new_candidates": 240, "decode_seconds": 30.0,
            "merge_seconds": 2.0, "optimise_seconds": 12.0},
           {"iteration": 2, "dev_bleu": 11.0, "pool": 240, "new_candidates": 0, "decode_seconds": 28.0,
            "merge_seconds": 1.0, "stop": "n-best lists stopped growing"}]
    rep = {"command": "python experiments/bench_tune.py", "sentences": 20, "input": "x",
           "machine": {"cpu": "CPU", "cores": 2, "features": ["avx2"]},
           "settings": {"nbest": 100, "max_iter": 8, "restarts": 10, "seed": 1001, "processes": 2},
           "load_seconds": 5.0, "load_average": [0.1, 0.2], "best_dev_bleu": 11.0, "iterations": its, "final_pool": cmp_,
           "totals": {"tuning_seconds": 75.0, "decode_seconds": 58.0, "merge_seconds": 3.0, "optimise_seconds": 10.0,
                      "other_seconds": 4.0}}
    md = bench_tune.report(rep)
    assert "**1.2 minutes** (within the 5-minute target)" in md and "| 1 | 10.00 | 240 | 240 | 30.0 | 2.0 | 10.0 |" in md
    assert "the same weights: yes" in md


@pytest.mark.parametrize("source, made", [("py", "c"), ("pyx", "cpp")])
def test_a_compiled_part_older_than_its_source_is_refused(tmp_path, source, made):
    """An in-place build (its .c, or .cpp for a .pyx built as C++ like kenlm_core, beside it)
    older than the source it was made from would run old code: importing it fails, naming both
    files; a newer build, a plain .py module or a wheel (no .c) passes."""
    so, src, gen = (tmp_path / n for n in ("part.cpython-311-x86_64-linux-gnu.so", f"part.{source}",
                                           f"part.{made}"))
    for f in (so, src, gen):
        f.write_text("")
    os.utime(so, (1000, 1000))
    os.utime(src, (2000, 2000))
    mod = types.ModuleType("moses_integration.part")
    mod.__file__, mod.COMPILED = str(so), True
    with pytest.raises(ImportError, match=f"{so} is older than {src}"):
        check_fresh(mod)
    os.utime(so, (3000, 3000))
    check_fresh(mod)  # rebuilt
    os.utime(so, (1000, 1000))
    gen.unlink()
    check_fresh(mod)  # a wheel's
    mod.__file__, mod.COMPILED = str(src), False
    check_fresh(mod)  # the plain-Python fallback
    assert envelope.COMPILED and check_fresh(envelope) is None
