"""The built-in decoder and MERT on real data: the Moses baseline tables, a KenLM model built
here with lmplz from the shared French text, and 80 sentences of newstest2012."""
import json
import math
import os
import shutil
import subprocess
import sys

import kenlm
import numpy as np
import pytest
import torch

from conftest import DATA
from experiments.bench_decode import best_scores, compare
from moses_integration.decoder import DecoderConfig, PhraseModel
from moses_integration.moses_ini import MosesIni
from moses_integration.nbest import group_by_sentence, read_nbest
from moses_integration.table_filter import filter_table
from rescorer.checkpoint import save_cslm_checkpoint
from rescorer.cli import main
from rescorer.cslm import CSLM, CSLMConfig, CSLMScorer, OutOfShortlist
from rescorer.vocab import EOS, UNK, Vocabulary
from test_real_moses import MOSES

BASE = DATA / "moses-baseline"


def tool(name):
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else shutil.which(name)


@pytest.fixture(scope="module")
def real_system(tmp_path_factory):
    if not (BASE / "phrase-table.gz").exists():
        pytest.skip(f"no Moses baseline in {BASE}")
    lmplz, build_binary = tool("lmplz"), tool("build_binary")
    if not (lmplz and build_binary):
        pytest.skip("lmplz/build_binary not installed: run 'make setup' (moses_integration/install_kenlm.sh)")
    d = tmp_path_factory.mktemp("real")
    text = subprocess.run(f"zcat {BASE / 'train.clean.fr.gz'} | head -40000; zcat {BASE / 'lmextra.tc.fr.gz'}",
                          shell=True, capture_output=True, check=True).stdout
    arpa = d / "lm.arpa"
    with open(arpa, "wb") as f:
        subprocess.run([lmplz, "-o", "5", "-S", "10%", "-T", str(d), "--discount_fallback"], input=text,
                       stdout=f, stderr=subprocess.DEVNULL, check=True)
    subprocess.run([build_binary, str(arpa), str(d / "lm.binary")], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    src = (BASE / "newstest2012.tc.en").read_text().splitlines()[100:180]
    ref = (BASE / "newstest2012.tc.fr").read_text().splitlines()[100:180]
    (d / "dev.en").write_text("\n".join(src) + "\n")
    (d / "dev.fr").write_text("\n".join(ref) + "\n")
    # the tables filtered to the tuning set, as mert-moses.pl does first
    filter_table(str(BASE / "phrase-table.gz"), src, str(d / "pt.gz"))
    filter_table(str(BASE / "reordering-table.wbe-msd-bidirectional-fe.gz"), src, str(d / "reo.gz"))
    ini = MosesIni.read(BASE / "moses.ini")
    for name, path in (("TranslationModel0", d / "pt.gz"), ("LexicalReordering0", d / "reo.gz"),
                       ("LM0", d / "lm.binary")):
        ini.set_feature_arg(name, "path", str(path))
    ini.write(d / "moses.ini")
    return d


def test_lm_feature_equals_kenlm_full_sentence_score(real_system):
    d = real_system
    sents = (d / "dev.en").read_text().splitlines()[:5]
    model = PhraseModel(str(d / "moses.ini"), sents, DecoderConfig(pop_limit=200, stack_size=50))
    lm = kenlm.Model(str(d / "lm.binary"))
    for s in sents:
        for t in model.decode(s, nbest=5):
            want = lm.score(" ".join(t.words), bos=True, eos=True) * math.log(10)
            assert t.features[model.layout.slices()["LM0"]][0] == pytest.approx(want, abs=1e-3)


def test_decode_and_evaluate_on_real_data(real_system, capsys):
    d = real_system
    assert main(["decode", "-q", "--ini", str(d / "moses.ini"), "--input", str(d / "dev.en"), "--output",
                 str(d / "out.fr"), "--n-best-list", str(d / "nbest"), "10", "--threads", "2",
                 "--pop-limit", "300", "--stack-size", "50", "--segmentation"]) == 0
    assert len((d / "out.fr").read_text().splitlines()) == 80
    # one process: the same bytes as two
    assert main(["decode", "-q", "--ini", str(d / "moses.ini"), "--input", str(d / "dev.en"), "--output",
                 str(d / "out1.fr"), "--n-best-list", str(d / "nbest1"), "10", "--threads", "1",
                 "--pop-limit", "300", "--stack-size", "50", "--segmentation"]) == 0
    assert (d / "out1.fr").read_bytes() == (d / "out.fr").read_bytes()
    assert (d / "nbest1").read_bytes() == (d / "nbest").read_bytes()
    lists = list(group_by_sentence(read_nbest(d / "nbest")))
    assert len(lists) == 80 and all(1 <= len(x) <= 10 for x in lists)
    # evaluation on detokenised output with sacrebleu, and the bootstrap against itself
    assert main(["evaluate", "--hyp", str(d / "out.fr"), "--ref", str(d / "dev.fr"), "--no-postprocess",
                 "--baseline", str(d / "out.fr"), "--samples", "100"]) == 0
    out = capsys.readouterr().out
    assert "nrefs:1" in out and "p = " in out


def test_best_model_scores_equal_the_real_moses_on_real_data(real_system, tmp_path):
    """Cube pruning as Moses does it (pop limit 1000, stack 200, an edge's hypotheses ordered by
    score and distortion): on 50 real sentences the same best model score as the real Moses,
    sentence by sentence, and the same 1-best on nearly all."""
    if not os.access(MOSES, os.X_OK):
        pytest.skip(f"no Moses binary at {MOSES} (set MOSES)")
    src = (BASE / "newstest2012.tc.en").read_text().splitlines()[40:90]
    (tmp_path / "in.en").write_text("\n".join(src) + "\n")
    filter_table(str(BASE / "phrase-table.gz"), src, str(tmp_path / "pt.gz"))
    filter_table(str(BASE / "reordering-table.wbe-msd-bidirectional-fe.gz"), src, str(tmp_path / "reo.gz"))
    ini = MosesIni.read(real_system / "moses.ini")
    ini.set_feature_arg("TranslationModel0", "path", str(tmp_path / "pt.gz"))
    ini.set_feature_arg("LexicalReordering0", "path", str(tmp_path / "reo.gz"))
    ini.write(tmp_path / "moses.ini")
    assert main(["decode", "-q", "--ini", str(tmp_path / "moses.ini"), "--input", str(tmp_path / "in.en"),
                 "--output", str(tmp_path / "out.fr"), "--n-best-list", str(tmp_path / "ours.nbest"), "1",
                 "--threads", "2"]) == 0
    with open(tmp_path / "in.en") as f:
        subprocess.run([MOSES, "-f", str(tmp_path / "moses.ini"), "-v", "0", "-search-algorithm", "1",
                        "-cube-pruning-pop-limit", "1000", "-s", "200", "-threads", "2",
                        "-n-best-list", str(tmp_path / "moses.nbest"), "1"], stdin=f, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
    res = compare(best_scores(str(tmp_path / "ours.nbest")), best_scores(str(tmp_path / "moses.nbest")))
    assert res["equal"] == 50 and res["same_translation"] >= 49, res


def test_tuning_raises_dev_bleu_on_real_data(real_system, capsys):
    """MERT on 80 sentences of newstest2012: some iteration's weights decode the tuning set
    to a higher BLEU than the default weights, and those weights are the ones written."""
    d = real_system
    assert main(["tune", "-q", "--ini", str(d / "moses.ini"), "--input", str(d / "dev.en"), "--ref",
                 str(d / "dev.fr"), "--out-ini", str(d / "tuned.ini"), "--nbest", "50", "--max-iter", "4",
                 "--restarts", "5", "--threads", "2", "--pop-limit", "300", "--stack-size", "50"]) == 0
    err = capsys.readouterr().err  # each iteration logged as it ends; -q: no progress bars
    assert "iteration 2: dev BLEU" in err and "new candidates (pool" in err
    assert "decoding" not in err and "reading" not in err
    hist = json.loads((d / "tuned.ini.tune.json").read_text())
    assert [h["iteration"] for h in hist] == [1, 2, 3, 4, 5]
    pools = [h["pool"] for h in hist[:4]]
    assert pools == sorted(pools) and pools[0] > 80            # the pool accumulates across iterations
    assert all(h["pool_bleu_after"] >= h["dev_bleu"] - 1e-9 for h in hist[:4])  # never worse on the pool
    dev = [h["dev_bleu"] for h in hist]
    print("dev BLEU per iteration:", " ".join(f"{b:.2f}" for b in dev))
    assert max(dev[1:]) > dev[0]                                # tuning raised dev BLEU
    best = hist[max(range(len(dev)), key=lambda i: dev[i])]["weights"]
    tuned, default = MosesIni.read(d / "tuned.ini"), MosesIni.read(d / "moses.ini")
    assert set(tuned.weights()) == set(default.weights())
    flat = [v for name, _, _ in _layout(d) for v in tuned.weights()[name]]
    assert flat == pytest.approx(best, rel=1e-5, abs=1e-6)
    # the state saved after every iteration: a new run will not overwrite it, --resume continues
    # (all four iterations are done: only the final decode is redone, to the same result)
    args = ["tune", "-q", "--ini", str(d / "moses.ini"), "--input", str(d / "dev.en"), "--ref", str(d / "dev.fr"),
            "--out-ini", str(d / "tuned.ini"), "--nbest", "50", "--max-iter", "4", "--restarts", "5",
            "--threads", "2", "--pop-limit", "300", "--stack-size", "50"]
    assert (d / "tuned.ini.mert.npz").exists()
    other = [str(d / "other.ini") if x == str(d / "tuned.ini") else x for x in args]
    assert main(other + ["--state", str(d / "tuned.ini.mert.npz")]) == 1  # exists: --resume or --overwrite
    assert not (d / "other.ini").exists()
    before = (d / "tuned.ini").read_text()
    assert main(args + ["--resume", "--overwrite"]) == 0
    assert (d / "tuned.ini").read_text() == before
    again = json.loads((d / "tuned.ini.tune.json").read_text())
    assert [h["dev_bleu"] for h in again] == dev


def _layout(d):
    return PhraseModel(str(d / "moses.ini"), ["a"]).layout.groups


def _tiny_cslm(d, path):
    """An untrained CSLM over the words of the dev references, saved at ``path``."""
    words = sorted({w for line in (d / "dev.fr").read_text().split("\n") for w in line.split()})[:3000]
    vocab = Vocabulary([EOS, UNK] + words)
    torch.manual_seed(0)
    model = CSLM(CSLMConfig(len(vocab), order=5, embed=16, hidden=(32, 32)))
    save_cslm_checkpoint(path, model, vocab, {})
    return model, vocab


def test_decode_with_a_cslm_feature_in_parallel(real_system, tmp_path):
    """The CSLM inside the search on real tables, two worker processes: every n-best line's CSLM0
    equals the whole-sentence score of its text."""
    d = real_system
    model, vocab = _tiny_cslm(d, tmp_path / "cslm.pt")
    assert main(["ini", "add-feature", "--ini", str(d / "moses.ini"), "--line",
                 f"CSLM name=CSLM0 path={tmp_path / 'cslm.pt'}", "--weight", "0.3",
                 "--out", str(tmp_path / "cslm.ini")]) == 0
    (tmp_path / "in.en").write_text("\n".join((d / "dev.en").read_text().splitlines()[:6]) + "\n")
    assert main(["decode", "-q", "--ini", str(tmp_path / "cslm.ini"), "--input", str(tmp_path / "in.en"),
                 "--output", str(tmp_path / "out.fr"), "--n-best-list", str(tmp_path / "nbest"), "5",
                 "--threads", "2", "--pop-limit", "200", "--stack-size", "30"]) == 0
    scorer = CSLMScorer(model, vocab, OutOfShortlist({}))
    hyps = list(read_nbest(tmp_path / "nbest"))
    assert len({h.sent_id for h in hyps}) == 6
    got = np.array([h.feature_dict()["CSLM0"][0] for h in hyps])
    want = scorer.score_sentences([h.text.split() for h in hyps])
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_tune_and_decode_with_the_cslm_by_nbest_rescoring(real_system, tmp_path, caplog):
    """``tune --cslm``: MERT tunes CSLM0 beside the ini's features, starting it at half of LM0's
    start weight (LM0 keeps the other half); the weight goes into a comment of the tuned ini,
    whose [weight] section Moses can still read.  ``decode --cslm``: each n-best line's CSLM0 is
    the CSLM's score of its text, its total the weighted sum, and the 1-best is what ``rerank``
    picks from those lists with the tuned ini and CSLM0's weight."""
    d = real_system
    model, vocab = _tiny_cslm(d, tmp_path / "cslm.pt")
    cslm = tmp_path / "cslm.pt"
    src, ref = tmp_path / "dev.en", tmp_path / "dev.fr"
    src.write_text("\n".join((d / "dev.en").read_text().splitlines()[:20]) + "\n")
    ref.write_text("\n".join((d / "dev.fr").read_text().splitlines()[:20]) + "\n")
    search = ["--threads", "2", "--pop-limit", "200", "--stack-size", "30"]
    tuned = tmp_path / "tuned.ini"
    assert main(["tune", "-q", "--ini", str(d / "moses.ini"), "--input", str(src), "--ref", str(ref),
                 "--output", str(tuned), "--nbest", "20", "--max-iter", "2", "--restarts", "2",
                 "--cslm", str(cslm)] + search) == 0
    hist = json.loads((tuned.parent / "tuned.ini.tune.json").read_text())
    names = [name for name, n, _ in _layout(d) for _ in range(n)] + ["CSLM0"]
    start = dict(zip(names, hist[0]["weights"]))
    lm0 = MosesIni.read(d / "moses.ini").weights()["LM0"][0]
    assert start["CSLM0"] == pytest.approx(0.5 * lm0) and start["LM0"] == pytest.approx(0.5 * lm0)
    text = tuned.read_text()
    head = text.splitlines()[0]
    assert head.startswith("# CSLM0= ")
    w = float(head.split()[2].rstrip(":"))
    assert w == pytest.approx(max(hist, key=lambda h: h["dev_bleu"])["weights"][-1], rel=1e-5, abs=1e-6)
    assert "CSLM0" not in MosesIni.read(tuned).weights()          # the [weight] section Moses reads
    assert f"--cslm-weight {w:.6g}" in text and f"--weights 'CSLM0= {w:.6g}'" in text

    test = tmp_path / "test.en"
    test.write_text("\n".join((d / "dev.en").read_text().splitlines()[40:46]) + "\n")
    out, nbest = tmp_path / "out.fr", tmp_path / "nbest"
    caplog.clear()
    assert main(["decode", "-q", "--ini", str(tuned), "--input", str(test), "--output", str(out),
                 "--cslm", str(cslm)] + search) == 1                 # no weight given
    assert "--cslm-weight" in caplog.text and not out.exists()
    assert main(["decode", "-q", "--ini", str(tuned), "--input", str(test), "--output", str(out),
                 "--n-best-list", str(nbest), "10", "--cslm", str(cslm), "--cslm-weight", repr(w),
                 "--cslm-nbest", "20"] + search) == 0
    hyps = list(read_nbest(nbest))
    assert sorted({h.sent_id for h in hyps}) == list(range(6)) and len(hyps) <= 60
    scorer = CSLMScorer(model, vocab, OutOfShortlist({}))
    got = np.array([h.feature_dict()["CSLM0"][0] for h in hyps])
    np.testing.assert_allclose(got, scorer.score_sentences([h.text.split() for h in hyps]), rtol=1e-5, atol=1e-4)
    weights = dict(MosesIni.read(tuned).weights(), CSLM0=[w])
    for i in range(6):  # the total also has the unknown-word penalty, which Moses does not print and
        # which is the same for all of a sentence's hypotheses (each keeps every unknown word)
        rest = [h.total - sum(a * b for name, vals in h.feature_dict().items() for a, b in zip(weights[name], vals))
                for h in hyps if h.sent_id == i]
        assert rest == pytest.approx([rest[0]] * len(rest), abs=2e-3)
    best = out.read_text().splitlines()
    assert best == [next(h.text for h in hyps if h.sent_id == i) for i in range(6)]
    assert main(["rerank", "--nbest", str(nbest), "--ini", str(tuned), "--weights", f"CSLM0= {w!r}",
                 "--output", str(tmp_path / "reranked.fr")]) == 0
    assert (tmp_path / "reranked.fr").read_text().splitlines() == best


def test_tune_through_moses_with_the_cslm_by_nbest_rescoring(real_system, tmp_path):
    """``tune --moses-bin --cslm``: the real Moses makes the n-best lists, with LM0 standing in
    for the CSLM, and they are rescored and re-ranked as with the built-in decoder."""
    if not os.access(MOSES, os.X_OK):
        pytest.skip(f"no Moses binary at {MOSES} (set MOSES)")
    d = real_system
    _tiny_cslm(d, tmp_path / "cslm.pt")
    src, ref = tmp_path / "dev.en", tmp_path / "dev.fr"
    src.write_text("\n".join((d / "dev.en").read_text().splitlines()[:10]) + "\n")
    ref.write_text("\n".join((d / "dev.fr").read_text().splitlines()[:10]) + "\n")
    tuned = tmp_path / "tuned.ini"
    assert main(["tune", "-q", "--ini", str(d / "moses.ini"), "--input", str(src), "--ref", str(ref),
                 "--output", str(tuned), "--nbest", "10", "--max-iter", "1", "--restarts", "2", "--threads", "2",
                 "--moses-bin", MOSES, "--cslm", str(tmp_path / "cslm.pt")]) == 0
    hist = json.loads((tmp_path / "tuned.ini.tune.json").read_text())
    assert len(hist) == 2 and 10 < hist[0]["pool"] <= 100
    assert len(hist[0]["weights"]) == sum(n for _, n, _ in _layout(d)) + 1     # and CSLM0's
    assert tuned.read_text().startswith("# CSLM0= ")
