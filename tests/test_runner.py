"""The n-best rescoring wrapper of a decoder (moses_integration.runner.RescoredDecoder)."""
import numpy as np
import pytest

from moses_integration.decoder import FeatureLayout
from moses_integration.runner import RescoredDecoder


class _FakeDecoder:
    """Two hypotheses per sentence, the longer first, with fixed features; records the weights it is asked to search with."""
    layout = FeatureLayout([("LM0", 1, True), ("WordPenalty0", 1, True), ("TranslationModel0", 2, True)])

    def __init__(self):
        self.calls = []

    def nbest_lists(self, weights, n):
        self.calls.append(np.array(weights))
        return [[(["a", "b", "c"], np.array([-3.0, -3.0, -0.5, -0.5])),
                 (["a", "b"], np.array([-2.0, -2.0, -1.0, -1.0]))]]


def _score(sentences):
    # a sentence-level model: ln p lower for longer hypotheses, 1 per word
    return [-float(len(s)) for s in sentences]


def test_search_weights_without_and_with_a_standin():
    w = np.array([0.5, -1.0, 0.2, 0.3, 0.7])  # LM0, WP, TM (2), CSLM0 last
    plain = RescoredDecoder(_FakeDecoder(), "CSLM0", _score)
    assert plain.search_weights(w).tolist() == [0.5, -1.0, 0.2, 0.3]
    stood = RescoredDecoder(_FakeDecoder(), "CSLM0", _score, standin="LM0")
    assert stood.search_weights(w) == pytest.approx([1.2, -1.0, 0.2, 0.3])
    assert w.tolist() == [0.5, -1.0, 0.2, 0.3, 0.7]  # the caller's weights are left alone


def test_the_search_gets_the_standin_weights_and_the_lists_are_reranked_with_the_true_features():
    dec = _FakeDecoder()
    r = RescoredDecoder(dec, "CSLM0", _score, standin="LM0")
    w = np.array([0.1, -1.0, 0.0, 0.0, 1.0])
    (cands,) = r.nbest_lists(w, 2)
    assert dec.calls[0] == pytest.approx([1.1, -1.0, 0.0, 0.0])
    # every vector carries the decoder's own LM0 value and the model's score, appended last
    feats = {tuple(words): f for words, f in cands}
    assert feats[("a", "b")].tolist() == [-2.0, -2.0, -1.0, -1.0, -2.0]
    assert feats[("a", "b", "c")].tolist() == [-3.0, -3.0, -0.5, -0.5, -3.0]
    # re-ranked by the true weights: -0.2 for "a b" against -0.3 for "a b c"
    best = max(cands, key=lambda c: float(c[1] @ w))
    assert cands[0][0] == best[0] == ["a", "b"]
    # scored once: a second call finds both hypotheses in the cache
    seen = []
    r.score = lambda s: seen.extend(s) or _score(s)
    r.nbest_lists(w, 2)
    assert seen == []


def test_a_standin_the_search_does_not_have_is_an_error():
    with pytest.raises(ValueError, match="LM1.*LM0, WordPenalty0, TranslationModel0"):
        RescoredDecoder(_FakeDecoder(), "CSLM0", _score, standin="LM1")
