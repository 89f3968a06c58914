"""The fast scorer (encoder once per source, prefix trees) against one-pair-at-a-time scoring."""
import itertools
import math

import numpy as np
import pytest
import torch

from conftest import tiny_model, tiny_vocabs
from rescorer.int8 import int8_copy
from rescorer.model import ModelConfig, RNNEncoderDecoder
from rescorer.model import pad
from rescorer.scorer import PhraseScorer
from rescorer.vocab import EOS, UNK, Vocabulary


def alone(m, sv, tv, src, tgt):
    s, sl = pad([sv.ids(src.split())])
    t, tl = pad([tv.ids(tgt.split())])
    with torch.no_grad():
        return m(s, sl, t, tl).item()


@pytest.mark.parametrize("gate", ["reset-before", "reset-after"])
def test_batched_equals_alone_with_shared_prefixes_padding_and_order(gate):
    m = tiny_model(gate)
    sv, tv = tiny_vocabs()
    rng = np.random.default_rng(3)
    src_words, tgt_words = sv.words[2:] + ["oov"], tv.words[2:] + ["hors"]
    sources = [" ".join(rng.choice(src_words, rng.integers(1, 7))) for _ in range(15)]
    pairs = []
    for s in sources:  # many targets per source, sharing prefixes, interleaved sources
        for _ in range(rng.integers(1, 12)):
            pairs.append((s, " ".join(rng.choice(tgt_words, rng.integers(1, 7)))))
    pairs += [pairs[0], pairs[1]]           # repeats
    order = rng.permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    want = [alone(m, sv, tv, a, b) for a, b in pairs]
    scorer = PhraseScorer(m, sv, tv, device="cpu", readout_rows=7, encoder_rows=4)  # force many chunks
    np.testing.assert_allclose(scorer.score_pairs(pairs), want, rtol=2e-5, atol=2e-5)


def test_probabilities_of_all_targets_sum_to_at_most_one():
    sv = Vocabulary([EOS, UNK, "a", "b"])
    tv = Vocabulary([EOS, UNK, "x", "y"])
    torch.manual_seed(0)
    m = RNNEncoderDecoder(ModelConfig(len(sv), len(tv), hidden=6, rank=4, maxout_units=3)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    scorer = PhraseScorer(m, sv, tv, device="cpu")
    words = tv.words[1:]  # [UNK], x, y  (EOS ends every sequence)
    for src in ("a", "a b b"):
        totals = []
        for L in range(0, 6):
            tgts = [" ".join(t) for n in range(L + 1) for t in itertools.product(words, repeat=n)]
            # the empty target is just </s>; score_ids takes it directly
            ids = [tuple(tv.ids(t.split())) for t in tgts]
            lp = scorer.score_ids([tuple(sv.ids(src.split()))] * len(ids), ids)
            totals.append(float(np.exp(lp).sum()))
        assert all(t <= 1 + 1e-9 for t in totals), totals
        assert all(b >= a for a, b in zip(totals, totals[1:])), totals   # more sequences, more mass
        assert totals[-1] > 0.5


def test_unknown_words_never_crash():
    m = tiny_model()
    sv, tv = tiny_vocabs()
    lp = PhraseScorer(m, sv, tv, device="cpu").score_pairs([("zzz qqq", "ééé 国")])
    assert math.isfinite(lp[0]) and lp[0] < 0


def test_inverse_model_scores_swapped_pairs():
    m = tiny_model()
    sv, tv = tiny_vocabs()
    inv = PhraseScorer(m, sv, tv, inverse=True, device="cpu")
    fwd = PhraseScorer(m, sv, tv, device="cpu")
    assert inv.score_pairs([("la maison", "the house")]) == pytest.approx(fwd.score_pairs([("the house", "la maison")]))
    assert inv.n_unknown("la zzz", "the house") == 1


def test_empty_input():
    m = tiny_model()
    sv, tv = tiny_vocabs()
    assert PhraseScorer(m, sv, tv, device="cpu").score_pairs([]) == []


@pytest.mark.parametrize("gate", ["reset-before", "reset-after"])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_scores_stay_close_to_fp32(gate, precision):
    m = tiny_model(gate, hidden=64, rank=16, maxout=32, scale=0.3)
    sv, tv = tiny_vocabs()
    rng = np.random.default_rng(5)
    pairs = [(" ".join(rng.choice(sv.words[2:], rng.integers(1, 6))), " ".join(rng.choice(tv.words[2:], rng.integers(1, 6))))
             for _ in range(60)]
    exact = np.array(PhraseScorer(m, sv, tv, device="cpu").score_pairs(pairs))
    approx = np.array(PhraseScorer(m, sv, tv, device="cpu", precision=precision).score_pairs(pairs))
    d = np.abs(exact - approx)
    # approximate, and close: a wrong product (a matrix transposed, a bias lost) is off by whole nats
    assert 0 < d.max() < 0.1 * np.abs(exact).max()
    assert d.mean() < 0.03 * np.abs(exact).mean()
    assert np.corrcoef(exact, approx)[0, 1] > 0.995
    np.testing.assert_allclose(PhraseScorer(m, sv, tv, device="cpu").score_pairs(pairs), exact)  # m untouched


def test_int8_quantises_every_matrix_and_refuses_other_cells():
    q = int8_copy(tiny_model())
    float_mats = [n for n, p in q.named_parameters() if p.dim() == 2 and "embed" not in n]
    assert float_mats == []                                 # only the embeddings stay float
    with pytest.raises(ValueError, match="gated unit"):
        int8_copy(tiny_model(cell="lstm"))
    with pytest.raises(ValueError, match="precision"):
        PhraseScorer(tiny_model(), *tiny_vocabs(), device="cpu", precision="fp8")
