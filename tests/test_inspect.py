"""`rescorer inspect`, `generate` and `embed` on a tiny network and a small phrase table."""
import gzip

import numpy as np
import pytest

from conftest import tiny_model, tiny_vocabs
from experiments import analysis
from rescorer.checkpoint import save_checkpoint
from rescorer.cli import main
from rescorer.generate import beam_search
from rescorer.maps import display_label, write_map
from rescorer.scorer import PhraseScorer

TABLE = [("the house", "la maison", 0.6), ("the house", "maison", 0.3), ("the house", "la maison bleue", 0.05),
         ("the house", "un chat", 0.01), ("a cat", "un chat", 0.7), ("a cat", "chat", 0.2),
         ("the blue house", "la maison bleue", 0.9), ("is blue", "est bleue", 0.8), ("a house", "une maison", 0.5),
         ("the cat", "le chat", 0.5), ("blue house", "maison bleue", 0.5), ("the zzz", "la chose", 0.5)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inspect")
    sv, tv = tiny_vocabs()
    save_checkpoint(d / "model.pt", tiny_model(scale=0.8), sv, tv, False)
    with gzip.open(d / "pt.gz", "wt", encoding="utf-8") as f:
        for s, t, p in TABLE:
            f.write(f"{s} ||| {t} ||| 0.5 0.4 {p} 0.3 ||| 0-0 ||| 1 1 1\n")
    return d


def _tsv(text):
    rows = [line.split("\t") for line in text.strip().splitlines()[1:]]
    return [(r[0], r[1], int(r[2]), r[3], float(r[4]) if r[4] else None, float(r[5]), int(r[6])) for r in rows]


def test_table_and_rnn_rankings_side_by_side(files, capsys):
    assert main(["inspect", "-q", "--model", str(files / "model.pt"), "--phrase-table", str(files / "pt.gz"),
                 "--source", "the house", "--source", "a cat", "--format", "tsv", "--device", "cpu"]) == 0
    rows = _tsv(capsys.readouterr().out)
    scorer = PhraseScorer.load(files / "model.pt", "cpu")
    for src in ("the house", "a cat"):
        mine = [(t, p) for s, t, p in TABLE if s == src]
        rnn = dict(zip((t for t, _ in mine), scorer.score_pairs([(src, t) for t, _ in mine])))
        by_table = [r for r in rows if r[0] == src and r[1] == "table"]
        by_rnn = [r for r in rows if r[0] == src and r[1] == "rnn"]
        assert [r[3] for r in by_table] == [t for t, _ in sorted(mine, key=lambda x: -x[1])]
        assert [r[3] for r in by_rnn] == sorted(rnn, key=lambda t: -rnn[t])
        for r in by_table + by_rnn:   # both scores on every row
            assert r[4] == pytest.approx(dict(mine)[r[3]]) and r[5] == pytest.approx(rnn[r[3]], abs=1e-4)


def test_markdown_with_an_absent_source_and_an_unknown_word(files, capsys, tmp_path):
    srcs = tmp_path / "sources.txt"
    srcs.write_text("the house\nblue cat\nthe zzz\n")
    assert main(["inspect", "-q", "--model", str(files / "model.pt"), "--phrase-table", str(files / "pt.gz"),
                 "--sources", str(srcs), "-k", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "### the house" in out and "4 target phrases in the table;" in out
    absent = out.split("### blue cat")[1].split("###")[0]
    assert "Not in the phrase table" in absent
    scorer = PhraseScorer.load(files / "model.pt", "cpu")
    gen = beam_search(scorer.model, scorer.tgt_vocab, scorer.src_vocab.ids(["blue", "cat"]), beam=10, n=2)
    for g in gen:  # the network's own phrases stand in for the table's
        assert f"| {' '.join(g.words) or '(empty phrase)'} | {g.logprob:.2f} |" in absent
    assert "### the zzz (the network reads: the [UNK])" in out


def test_bad_input_is_a_message(files, capsys):
    args = ["--model", str(files / "model.pt"), "--phrase-table", str(files / "pt.gz"), "--device", "cpu"]
    assert main(["inspect", "-q", *args, "--source", "  "]) == 1
    assert main(["inspect", "-q", *args]) == 1
    assert main(["inspect", "-q", *args, "--source", "the house", "--column", "9"]) == 1
    err = capsys.readouterr().err
    assert "empty --source" in err and "give --source" in err and "pt.gz:1: 4 scores, no column 9" in err


def test_generate_prints_the_beam(files, capsys):
    assert main(["generate", "--model", str(files / "model.pt"), "--source", "the house", "--source", "qqq",
                 "-n", "3", "--beam", "5", "--max-len", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "the house" and out[4].startswith("qqq  (the network reads: [UNK])")
    scores = [float(line.split()[0]) for line in out[1:4]]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    assert main(["generate", "--model", str(files / "model.pt"), "--source", ""]) == 1


def test_embed_writes_maps_and_every_coordinate(files):
    out = files / "maps"
    assert main(["embed", "-q", "--model", str(files / "model.pt"), "--phrase-table", str(files / "pt.gz"),
                 "--out", str(out), "--words", "50", "--phrases", "20", "--device", "cpu"]) == 0
    words = (out / "words.tsv").read_text().splitlines()
    phrases = (out / "phrases.tsv").read_text().splitlines()
    assert words[0] == "label\tx\ty" and len(words) == 1 + 6        # the 6 words of the shortlist
    assert len(phrases) == 1 + 8 and "the house" in {r.split("\t")[0] for r in phrases[1:]}  # 2+ words
    xy = np.array([[float(v) for v in r.split("\t")[1:]] for r in phrases[1:]])
    assert np.isfinite(xy).all() and xy.std(0).min() > 0
    for png in ("words.png", "phrases.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_map_labels_undo_moses_escapes_and_draw_a_dollar(tmp_path):
    assert display_label("l&apos;") == "l'" and display_label("&#124; &amp; &#91;x&#93;") == "| & [x]"
    assert display_label("$ 5") == r"\$ 5"
    labels = ["$", "l&apos;", "&quot;", "5 $", "a"]   # a raw $ would start matplotlib's math text
    write_map(labels, np.random.default_rng(0).normal(size=(5, 2)), str(tmp_path / "m.png"), str(tmp_path / "m.tsv"), "t")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert [r.split("\t")[0] for r in (tmp_path / "m.tsv").read_text().splitlines()[1:]] == labels  # the TSV keeps tokens


def test_analysis_script_writes_the_three_views(files, tmp_path):
    srcs = tmp_path / "sources.txt"
    srcs.write_text("the house\na cat\nblue cat\n")
    res = analysis.main(["--model", str(files / "model.pt"), "--phrase-table", str(files / "pt.gz"),
                         "--output", str(tmp_path / "out"), "--sources", str(srcs), "--words", "50",
                         "--phrases", "20", "--device", "cpu", "-q"])
    assert [x["in_table"] for x in res["lists"]] == [True, True, False]
    assert set(res["generated"]) == {"the house", "a cat", "blue cat"}
    md = (tmp_path / "out" / "analysis.md").read_text()
    for part in ("## 1. The phrase table", "## 2. Target phrases generated", "## 3. Maps", "### blue cat"):
        assert part in md
    assert (tmp_path / "out" / "words.png").exists() and (tmp_path / "out" / "phrases.tsv").exists()


def test_known_targets_leaves_unknown_target_words_out_of_the_rnn_ranking(files, capsys):
    args = ["inspect", "-q", "--model", str(files / "model.pt"), "--phrase-table", str(files / "pt.gz"),
            "--source", "the cat", "--source", "a house", "--format", "tsv", "--device", "cpu"]
    assert main(args) == 0
    rows = _tsv(capsys.readouterr().out)
    assert {(r[3], r[6]) for r in rows} == {("le chat", 1), ("une maison", 1)}   # "le", "une": not in the shortlist
    assert main(args + ["--known-targets"]) == 0
    rows = _tsv(capsys.readouterr().out)
    assert [r[1] for r in rows] == ["table", "table"]     # the RNN's ranking is empty, the table's is not
