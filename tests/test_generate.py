"""Beam search over the network alone against enumerating every target phrase."""
import itertools

import numpy as np
import pytest

from rescorer.generate import beam_search
from rescorer.scorer import PhraseScorer
from rescorer.vocab import EOS_ID, UNK_ID

from conftest import tiny_model, tiny_vocabs


def exhaustive(model, sv, tv, source, max_len):
    """Every phrase of up to max_len shortlist words ([UNK] excluded), scored one by one."""
    words = [w for i, w in enumerate(tv.words) if i not in (EOS_ID, UNK_ID)]
    phrases = [" ".join(p) for n in range(max_len + 1) for p in itertools.product(words, repeat=n)]
    scorer = PhraseScorer(model, sv, tv, device="cpu")
    src = [source] * len(phrases)
    # the empty phrase scores through ids directly: "</s>" alone
    scores = scorer.score_ids([tuple(sv.ids(s.split())) for s in src], [tuple(tv.ids(p.split())) for p in phrases])
    order = np.argsort(-scores, kind="stable")
    return [(phrases[i], scores[i]) for i in order]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_wide_beam_equals_exhaustive_enumeration(cell):
    m = tiny_model(cell=cell, scale=0.8)
    sv, tv = tiny_vocabs()
    for source in ("the house is blue", "a cat"):
        want = exhaustive(m, sv, tv, source, 3)[:10]
        got = beam_search(m, tv, sv.ids(source.split()), beam=300, n=10, max_len=3)
        assert [" ".join(g.words) for g in got] == [w for w, _ in want]
        np.testing.assert_allclose([g.logprob for g in got], [s for _, s in want], atol=1e-4)


def test_narrow_beam_finds_real_phrases_no_better_than_the_best():
    m = tiny_model(scale=0.8)
    sv, tv = tiny_vocabs()
    best = exhaustive(m, sv, tv, "the house", 3)
    exact = dict(best)
    got = beam_search(m, tv, sv.ids("the house".split()), beam=2, n=5, max_len=3)
    assert 1 <= len(got) <= 5
    assert [g.logprob for g in got] == sorted((g.logprob for g in got), reverse=True)
    for g in got:  # each is a real phrase with its true score, none better than the true best
        assert g.logprob == pytest.approx(exact[" ".join(g.words)], abs=1e-4)
        assert g.logprob <= best[0][1] + 1e-4
    assert all("[UNK]" not in g.words for g in got)


def test_unknown_source_words_are_read_as_unk():
    m = tiny_model()
    sv, tv = tiny_vocabs()
    a = beam_search(m, tv, sv.ids("zzz house".split()), beam=5, n=3, max_len=2)
    b = beam_search(m, tv, sv.ids("qqq house".split()), beam=5, n=3, max_len=2)
    assert [(g.words, round(g.logprob, 6)) for g in a] == [(g.words, round(g.logprob, 6)) for g in b]
