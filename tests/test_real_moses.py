"""What the project writes, loaded by a real Moses (../shared/tools/moses/moses, or $MOSES): a
table scored with `rescorer score --unk-count` and a moses.ini patched by `rescorer ini`; Moses's
n-best lines against the built-in decoder's on the same model."""
import argparse
import json
import os
import subprocess

import numpy as np
import pytest
import sacrebleu

from conftest import ROOT, tiny_model, tiny_vocabs
from experiments import bench_decode
from moses_integration.decoder import DecoderConfig, PhraseModel
from moses_integration.evaluate import postprocess
from moses_integration.nbest import group_by_sentence, read_nbest
from moses_integration.runner import MosesDecoder
from rescorer.checkpoint import save_checkpoint
from rescorer.cli import main

MOSES = os.environ.get("MOSES") or str(ROOT.parent / "shared" / "tools" / "moses" / "moses")

TABLE = """a cat ||| un chat ||| 0.6 0.5 0.7 0.4 ||| 0-0 1-1 ||| 2 2 1
blue ||| bleue ||| 0.8 0.7 0.9 0.6 ||| 0-0 ||| 3 3 2
is ||| est ||| 0.9 0.8 0.9 0.7 ||| 0-0 ||| 5 5 4
is blue ||| est bleue ||| 0.5 0.4 0.6 0.3 ||| 0-0 1-1 ||| 2 2 1
the ||| la ||| 0.5 0.4 0.5 0.5 ||| 0-0 ||| 9 9 4
the ||| le ||| 0.4 0.3 0.4 0.4 ||| 0-0 ||| 9 9 3
the house ||| la maison ||| 0.7 0.6 0.8 0.5 ||| 0-0 1-1 ||| 3 3 2
the house ||| la villa ||| 0.1 0.2 0.1 0.1 ||| 0-0 1-1 ||| 3 3 1
house ||| maison ||| 0.8 0.7 0.8 0.6 ||| 0-0 ||| 4 4 3
"""

INI = """[input-factors]
0
[mapping]
0 T 0
[distortion-limit]
6
[feature]
UnknownWordPenalty
WordPenalty
PhrasePenalty
PhraseDictionaryMemory name=TranslationModel0 num-features=4 path={pt} input-factor=0 output-factor=0
Distortion
[weight]
UnknownWordPenalty0= 1
WordPenalty0= -1
PhrasePenalty0= 0.2
TranslationModel0= 0.2 0.2 0.2 0.2
Distortion0= 0.3
"""


@pytest.fixture(scope="module")
def scored_system(tmp_path_factory):
    if not os.access(MOSES, os.X_OK):
        pytest.skip(f"no Moses binary at {MOSES} (set MOSES)")
    d = tmp_path_factory.mktemp("moses")
    (d / "pt").write_text(TABLE)
    (d / "moses.ini").write_text(INI.format(pt=d / "pt"))
    sv, tv = tiny_vocabs()
    save_checkpoint(d / "model.pt", tiny_model(scale=0.8), sv, tv, False)
    assert main(["score", "-q", "--phrase-table", str(d / "pt"), "--model", str(d / "model.pt"),
                 "--out", str(d / "pt.rnn"), "--unk-count", "--device", "cpu"]) == 0
    assert main(["ini", "set-table", "-q", "--ini", str(d / "moses.ini"), "--path", str(d / "pt.rnn"),
                 "--out", str(d / "moses.rnn.ini")]) == 0
    assert main(["ini", "set-weights", "-q", "--ini", str(d / "moses.rnn.ini"), "--weight",
                 "TranslationModel0= 0.2 0.2 0.2 0.2 0.3 0.1", "--out", str(d / "moses.tuned.ini")]) == 0
    (d / "in.en").write_text("the house is blue\na cat is blue\nthe cat\n")
    return d


def test_moses_loads_the_scored_table_and_agrees_with_the_builtin_decoder(scored_system):
    d = scored_system
    nb = d / "moses.nbest"
    r = subprocess.run([MOSES, "-f", str(d / "moses.tuned.ini"), "-v", "0", "-search-algorithm", "1",
                        "-cube-pruning-pop-limit", "1000", "-s", "200", "-n-best-list", str(nb), "10"],
                       input=(d / "in.en").read_text(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    moses_lists = list(group_by_sentence(read_nbest(nb)))
    assert len(moses_lists) == 3
    sents = (d / "in.en").read_text().splitlines()
    model = PhraseModel(str(d / "moses.tuned.ini"), sents, DecoderConfig(), progress=False)
    for sent, hyps in zip(sents, moses_lists):
        feats = hyps[0].feature_dict()
        assert len(feats["TranslationModel0"]) == 6          # four table scores, the RNN's, the WP's
        ours = model.decode(sent)[0]
        assert " ".join(ours.words) == hyps[0].text.strip()
        assert ours.score == pytest.approx(hyps[0].total, abs=1e-3)
        sl = model.layout.slices()  # every feature Moses prints, equal to the built-in decoder's
        assert set(feats) <= set(sl) and "TranslationModel0" in feats
        for name, vals in feats.items():
            np.testing.assert_allclose(ours.features[sl[name]], vals, atol=1e-3, err_msg=name)
    # the WP column: minus the words outside the shortlists, summed over the phrases ("le" and
    # "villa" are outside the tiny target shortlist)
    wp = {h.text.strip(): h.feature_dict()["TranslationModel0"][5] for hyps in moses_lists for h in hyps}
    assert wp["la maison est bleue"] == 0 and wp["le cat"] == -1   # "cat" alone: unknown, passed through
    assert all(v == int(v) <= 0 for v in wp.values())


def test_bench_decode_runs_both_decoders_and_compares_their_best_scores(scored_system, tmp_path):
    """experiments/bench_decode.py's measurement on the tiny system: both decoders as whole
    processes at equal settings, and the per-sentence comparison of their best model scores."""
    d = scored_system
    sents = (d / "in.en").read_text().splitlines()
    a = argparse.Namespace(work=str(tmp_path), processes=1, repeats=2)
    refs = ["La maison est bleue.", "Le chat.", "Une maison."]
    res = bench_decode.bench_system("tiny", str(d / "moses.tuned.ini"), sents, a, MOSES, refs)
    assert res["best_score"] == {"higher": 0, "equal": 3, "lower": 0, "same_translation": 3}
    # each decoder's BLEU, as sacrebleu gives it on the detruecased, detokenised 1-best
    ours = postprocess((tmp_path / "tiny" / "builtin.out").read_text().splitlines())
    want = sacrebleu.corpus_bleu(ours, [refs]).score
    assert res["bleu"] == {"builtin": round(want, 2), "moses": round(want, 2)}
    assert res["bleu_signature"].startswith("nrefs:1|")
    assert [len(v) for v in res["runs"].values()] == [2, 2]
    assert res["speed_vs_moses"] == pytest.approx(res["median_wall_s"]["moses"] / res["median_wall_s"]["builtin"],
                                                  abs=1e-3)
    assert all(r["peak_mb"] > 0 and r["cpu_s"] >= 0 for v in res["runs"].values() for r in v)
    assert all(r["cpu_s"] > 0 for r in res["runs"]["builtin"])  # Moses's run of 3 tiny sentences may round to 0.00 s
    assert bench_decode.compare([("a", -10.0), ("b", -10.0), ("c", -10.0)], [("a", -10.0005), ("x", -9.9), ("c", -10.2)]) \
        == {"higher": 1, "equal": 1, "lower": 1, "same_translation": 2}


def test_tune_through_moses_completes_an_iteration_without_moses_log(scored_system, tmp_path, capfd):
    """``tune --moses-bin``: MERT takes its n-best lists from the real Moses, whose own log stays
    out of the output under -q; the tuned ini loads in Moses.  A Moses that fails shows the end
    of its log in the error."""
    d = scored_system
    (tmp_path / "ref.fr").write_text("la maison est bleue\nun chat est bleue\nle chat\n")
    out = tmp_path / "tuned.ini"
    capfd.readouterr()
    assert main(["tune", "-q", "--ini", str(d / "moses.tuned.ini"), "--input", str(d / "in.en"), "--ref",
                 str(tmp_path / "ref.fr"), "--output", str(out), "--nbest", "5", "--max-iter", "1",
                 "--restarts", "2", "--threads", "1", "--moses-bin", MOSES]) == 0
    err = capfd.readouterr().err
    assert "Defined parameters" not in err and "VmPeak" not in err and "Name:moses" not in err
    hist = json.loads((tmp_path / "tuned.ini.tune.json").read_text())
    assert [h["iteration"] for h in hist] == [1, 2] and hist[0]["pool"] > 3
    r = subprocess.run([MOSES, "-f", str(out), "-v", "0"], input="the house is blue\n", capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip()
    (tmp_path / "broken.ini").write_text((d / "moses.tuned.ini").read_text().replace(str(d / "pt.rnn"),
                                                                                   str(tmp_path / "missing")))
    layout = PhraseModel(str(d / "moses.tuned.ini"), ["the"], DecoderConfig(), progress=False).layout
    with pytest.raises(RuntimeError, match="failed .exit status"):
        MosesDecoder(MOSES, str(tmp_path / "broken.ini"), ["the house"], layout, 1).nbest_lists(
            np.ones(layout.size), 5)
