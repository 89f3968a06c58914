"""The baseline pipeline: preparation round trips, and the whole recipe on 2,000 sentence pairs
of the shared data, whose tables, LM and moses.ini the built-in decoder loads and uses."""
import gzip
import os
import shutil
import sys

import pytest

from conftest import DATA, ROOT

RAW = DATA / "train" / "news2008-2011.en.gz"


def sample(lang, n=500):
    path = DATA / "train" / f"news2008-2011.{lang}.gz"
    if not path.exists():
        pytest.skip(f"no shared data at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [next(f).strip() for _ in range(n)]


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_tokenise_then_detokenise_returns_the_sentence(lang):
    from moses_integration.evaluate import postprocess
    from moses_integration.prepare import Preprocessor
    from sacremoses import MosesPunctNormalizer
    lines = sample(lang)
    prep, norm = Preprocessor(lang), MosesPunctNormalizer(lang=lang)
    tok = [prep.tokenize(s) for s in lines]
    assert any("&apos;" in t or "&quot;" in t for t in tok)          # Moses's escaping
    back = postprocess(tok, lang)  # detruecasing leaves lowercase-initial text as it is
    same = sum(b == norm.normalize(s) for b, s in zip(back, lines))
    rate = same / len(lines)
    print(f"\n{lang}: {same}/{len(lines)} = {rate:.1%} of sentences come back unchanged (after punctuation "
          "normalisation)")
    assert rate > 0.9


def test_truecaser_round_trip(tmp_path):
    from moses_integration.prepare import Preprocessor, train_truecaser
    from sacremoses import MosesDetruecaser
    lines = sample("en", 2000)
    pre = Preprocessor("en")
    tok = [pre.tokenize(s) for s in lines]
    train_truecaser(tok, str(tmp_path / "tc.en"))
    tc = Preprocessor("en", str(tmp_path / "tc.en"))
    cased = [tc(s) for s in lines[:300]]
    # truecasing changes only the case of words, and only of sentence-initial ones
    for t, c in zip(tok, cased):
        assert t.lower() == c.lower()
        assert t.split()[1:] == c.split()[1:]
    # detruecasing restores the capital of the first word
    detrue = MosesDetruecaser()
    assert sum(detrue.detruecase(c, return_str=True) == t for t, c in zip(tok, cased)) > 0.9 * len(cased)


def test_clean_corpus_rules():
    from moses_integration.prepare import clean_pair
    assert clean_pair("a b", "x y z")
    assert not clean_pair("", "x") and not clean_pair("a " * 81, "x " * 80)
    assert clean_pair("a " * 9, "x") and not clean_pair("a " * 10, "x")   # ratio 9


@pytest.mark.skipif(not RAW.exists(), reason="no shared data")
def test_pipeline_on_2000_pairs_makes_a_system_the_decoder_uses(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    import build_baseline
    from moses_integration.decoder import DecoderConfig, PhraseModel
    if not (shutil.which("lmplz") or os.access(os.path.join(os.path.dirname(sys.executable), "lmplz"), os.X_OK)):
        pytest.skip("lmplz not installed: run 'make setup'")
    work = tmp_path / "work"
    report = build_baseline.main(["--config", str(ROOT / "experiments" / "baseline-small.ini"),
                                  "--work", str(work), "--data", str(DATA)])
    assert [r["stage"] for r in report] == ["prepare-en", "prepare-fr", "clean", "align", "tables", "sets", "lm",
                                            "ini"]
    tables = next(r for r in report if r["stage"] == "tables")
    assert tables["phrase_pairs"] > 50000 and tables["reordering_pairs"] == tables["phrase_pairs"]
    with gzip.open(work / "model" / "phrase-table.gz", "rt") as f:
        first = f.readline().split(" ||| ")
    assert len(first) == 7 and len(first[2].split()) == 4 and len(first[4].split()) == 3
    # up to date: nothing runs again
    again = build_baseline.main(["--config", str(ROOT / "experiments" / "baseline-small.ini"),
                                 "--work", str(work), "--data", str(DATA)])
    assert all(r.get("skipped") for r in again)
    src = (work / "corpus" / "newstest2012.tc.en").read_text().splitlines()[:5]
    model = PhraseModel(str(work / "model" / "moses.ini"), src, DecoderConfig(pop_limit=200, stack_size=50))
    outs = [model.decode(s)[0] for s in src]
    translated = sum(1 for s, t in zip(src, outs) if set(t.words) - set(s.split()))
    assert translated == len(src)          # every sentence got French words from the table
    assert all(t.features[model.layout.slices()["LM0"]][0] < 0 for t in outs)
