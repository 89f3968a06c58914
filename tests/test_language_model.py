"""The decoder's language model over KenLM's C++ API (moses_integration/kenlm_core.pyx) against
the kenlm module: the same log-probabilities to the bit, the same state numbers, the same
n-best lists from the decoder either way."""
import math
import random

import kenlm
import numpy as np
import pytest

from moses_integration import decoder, language_model
from moses_integration.decoder import DecoderConfig, PhraseModel
from moses_integration.language_model import PythonKenLM
from test_decoder import TGT, make_model, write_arpa


def test_kenlm_core_is_compiled():
    """`make setup` builds kenlm_core against the kenlm package's libkenlm.so."""
    assert language_model.kenlm_core is not None, "moses_integration/kenlm_core is not built: run `make setup`"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_lm_equals_the_kenlm_module(tmp_path, seed):
    """Random phrases after random states reached: ln p, the state numbers (equal KenLM states, one
    number) and the estimates alone, equal to the kenlm module's; and to an independent sum of
    kenlm's full-sentence scores where a phrase starts the sentence."""
    rng = random.Random(seed)
    write_arpa(tmp_path / "lm.arpa", rng)
    path = str(tmp_path / "lm.arpa")
    c, p = language_model.load(path), PythonKenLM(path)
    assert isinstance(c, language_model.kenlm_core.KenLM) and c.order == p.order == 3
    words = TGT + ["unknown-word", "é"]
    for _ in range(3):  # sentences: each begins its own numbering
        assert c.begin() == p.begin() == 0
        reached = [0]
        for _ in range(400):
            sid = rng.choice(reached)
            phrase = tuple(rng.choice(words) for _ in range(rng.randint(1, 4)))
            eos = rng.random() < 0.2
            got, want = c.extend(sid, c.word_ids(phrase), eos), p.extend(sid, p.word_ids(phrase), eos)
            assert got == want
            if got[1] not in reached:
                assert got[1] == len(reached)  # numbered on first sight
                reached.append(got[1])
            assert c.alone(c.word_ids(phrase)) == p.alone(phrase)
        assert c.states == p.states == len(reached)
        # fewer states than the phrases reached them: KenLM's states merge equal contexts
        assert len(reached) < 400
    lm = kenlm.Model(path)
    for _ in range(50):
        phrase = tuple(rng.choice(words) for _ in range(rng.randint(1, 5)))
        c.begin()
        ln, _ = c.extend(0, c.word_ids(phrase), True)
        # kenlm sums a sentence in single precision
        assert ln == pytest.approx(lm.score(" ".join(phrase), bos=True, eos=True) * math.log(10), abs=1e-4)
    phrases = [tuple(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(100)]
    assert c.alone_all(phrases) == p.alone_all(phrases) == [p.alone(x) for x in phrases]


def test_bad_model_and_state_numbers(tmp_path):
    with pytest.raises(OSError, match="missing.arpa"):
        language_model.load(str(tmp_path / "missing.arpa"))
    (tmp_path / "bad.arpa").write_text("not an ARPA file\n")
    with pytest.raises(OSError, match="bad.arpa"):
        language_model.load(str(tmp_path / "bad.arpa"))
    write_arpa(tmp_path / "lm.arpa", random.Random(0))
    for lm in (language_model.load(str(tmp_path / "lm.arpa")), PythonKenLM(str(tmp_path / "lm.arpa"))):
        lm.begin()
        with pytest.raises(IndexError, match="state number 5"):
            lm.extend(5, lm.word_ids(("x",)), False)


@pytest.mark.parametrize("seed, with_lr", [(0, True), (3, False)])
def test_decoder_gives_the_same_nbest_with_either_lm(tmp_path, monkeypatch, seed, with_lr):
    ini = make_model(tmp_path, seed, with_lr)
    sentences = ["a b c", "b a d c", "d c b a", "c a b d a", " ".join(["c a e b d"] * 6)]
    cfg = DecoderConfig(pop_limit=50, stack_size=20)
    before = PhraseModel(str(ini), sentences, cfg)
    assert isinstance(before.lm, language_model.kenlm_core.KenLM)
    monkeypatch.setattr(decoder.language_model, "load", lambda path: PythonKenLM(path))
    after = PhraseModel(str(ini), sentences, cfg)
    assert isinstance(after.lm, PythonKenLM)
    np.testing.assert_array_equal(before._lmest, after._lmest)
    for s in sentences:
        b, a = before.decode(s, nbest=10, distinct=True), after.decode(s, nbest=10, distinct=True)
        assert [(t.words, t.segmentation, t.score) for t in b] == [(t.words, t.segmentation, t.score) for t in a]
        np.testing.assert_array_equal(np.array([t.features for t in b]), np.array([t.features for t in a]))
