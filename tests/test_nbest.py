"""n-best lists in Moses's format: round trips, appended features, re-ranking, errors."""
import pytest

from moses_integration.nbest import (NBestError, append_feature, group_by_sentence, parse_line, read_nbest,
                                     rerank, weighted_total)
from rescorer.cli import main

NBEST = (
    "0 ||| la maison bleue ||| LexicalReordering0= -1.2 0 0 0 0 0 Distortion0= 0 LM0= -12.5 WordPenalty0= -3 "
    "PhrasePenalty0= 2 TranslationModel0= -2.1 -3.0 -1.9 -2.8 ||| -5.43\n"
    "0 ||| la bleue maison ||| LexicalReordering0= -2.2 0 -1 0 0 0 Distortion0= -2 LM0= -15.25 WordPenalty0= -3 "
    "PhrasePenalty0= 3 TranslationModel0= -2.5 -3.5 -2.0 -3.0 ||| -7.1 ||| 0-0=0-0 1-1=2-2 2-2=1-1\n"
    "1 ||| bonjour  ||| d: 0 lm: -4.5 w: -1 tm: -0.1 -0.2 -0.3 -0.4 1 ||| -1.25 ||| 0-0=0-0 ||| 0-0\r\n"
)


def test_round_trip_is_byte_exact(tmp_path):
    p = tmp_path / "nbest.txt"
    p.write_bytes(NBEST.encode())
    hyps = list(read_nbest(p))
    assert "".join(h.line() for h in hyps).encode() == p.read_bytes()
    assert [len(g) for g in group_by_sentence(hyps)] == [2, 1]
    assert hyps[0].feature_dict()["TranslationModel0"] == [-2.1, -3.0, -1.9, -2.8]
    assert hyps[2].feature_dict()["tm"] == [-0.1, -0.2, -0.3, -0.4, 1.0]   # old short names
    assert hyps[1].fields[4] == "0-0=0-0 1-1=2-2 2-2=1-1"


def test_append_feature_touches_only_the_feature_field():
    h = parse_line(NBEST.splitlines()[1])
    g = append_feature(h, "RNN0", [-3.25])
    assert g.fields[:2] == h.fields[:2] and g.fields[3:] == h.fields[3:]
    assert g.fields[2] == h.fields[2] + " RNN0= -3.25"
    assert g.feature_dict()["RNN0"] == [-3.25]


def test_rerank_against_hand_computation():
    hyps = [parse_line(x) for x in NBEST.splitlines()[:2]]
    w = {"LexicalReordering0": [0.3] * 6, "Distortion0": [0.3], "LM0": [0.5], "WordPenalty0": [-1],
         "PhrasePenalty0": [0.2], "TranslationModel0": [0.2] * 4}
    first = 0.3 * -1.2 + 0 + 0.5 * -12.5 + 3 + 0.4 + 0.2 * (-2.1 - 3.0 - 1.9 - 2.8)
    assert weighted_total(hyps[0], w) == pytest.approx(first)
    w["LM0"] = [-1.0]   # a weight that prefers the longer LM cost: the order flips
    ranked = rerank(hyps, w)
    assert ranked[0].text == "la bleue maison"
    assert ranked[0].total == pytest.approx(weighted_total(hyps[1], w), abs=1e-4)


@pytest.mark.parametrize("line, msg", [
    ("0 ||| x ||| LM0= -1\n", "expected 'id ||| hypothesis"),
    ("a ||| x ||| LM0= -1 ||| 2\n", "sentence id 'a'"),
    ("0 ||| x ||| -1 LM0= ||| 2\n", "before any feature name"),
    ("0 ||| x ||| LM0= y ||| 2\n", "'y' is not a number"),
    ("0 ||| x ||| LM0= 1 ||| z\n", "total score 'z'"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, msg):
    p = tmp_path / "bad.nbest"
    p.write_text(NBEST.splitlines()[0] + "\n" + line)
    with pytest.raises(NBestError, match=msg) as e:
        list(read_nbest(p))
    assert f"{p}:2:" in str(e.value)


INI = """[feature]
UnknownWordPenalty
WordPenalty
PhrasePenalty
Distortion

[weight]
UnknownWordPenalty0= 1
WordPenalty0= -1
PhrasePenalty0= 0.2
Distortion0= 0.3
LexicalReordering0= 0.3 0.3 0.3 0.3 0.3 0.3
LM0= 0.5
TranslationModel0= 0.2 0.2 0.2 0.2
"""


def _cli(*args):
    return main([str(a) for a in args])


def test_rerank_command_picks_by_the_ini_weights_and_the_added_feature(tmp_path):
    """`rescorer rerank`: totals from the ini's weights plus --weights for a feature added by
    cslm-rescore, checked against the sum written out by hand; an id the list lacks gets an
    empty line."""
    lines = NBEST.splitlines()[:2]
    nb = tmp_path / "nbest.cslm.txt"
    # sentence 0: the two hypotheses with a CSLM0 score each; sentence 1 missing; sentence 2: one
    nb.write_text(lines[0].replace(" ||| -5.43", " CSLM0= -20 ||| -5.43") + "\n"
                  + lines[1].replace(" ||| -7.1", " CSLM0= -9 ||| -7.1") + "\n"
                  + "2 ||| oui ||| LM0= -2 WordPenalty0= -1 CSLM0= -3 ||| 0\n")
    ini = tmp_path / "moses.ini"
    ini.write_text(INI)
    base = [0.3 * -1.2 + 0.5 * -12.5 + 3 + 0.4 + 0.2 * (-2.1 - 3.0 - 1.9 - 2.8),
            0.3 * (-2.2 - 1) + 0.3 * -2 + 0.5 * -15.25 + 3 + 0.6 + 0.2 * (-2.5 - 3.5 - 2.0 - 3.0)]
    # without the CSLM the first hypothesis wins; with CSLM0= 1 the second (its CSLM0 is 11 higher)
    assert base[0] > base[1] and base[1] - 9 > base[0] - 20
    out = tmp_path / "best.txt"
    assert _cli("rerank", "--nbest", nb, "--ini", ini, "--weights", "CSLM0= 0", "--output", out, "-q") == 0
    assert out.read_text() == "la maison bleue\n\noui\n"
    assert _cli("rerank", "--nbest", nb, "--ini", ini, "--weights", "CSLM0= 1", "--output", out, "--overwrite",
                "--n-best-out", tmp_path / "reranked.txt", "--sentences", 4, "-q") == 0
    assert out.read_text() == "la bleue maison\n\noui\n\n"
    ranked = list(read_nbest(tmp_path / "reranked.txt"))
    assert [h.text for h in ranked] == ["la bleue maison", "la maison bleue", "oui"]
    assert ranked[0].total == pytest.approx(base[1] - 9, abs=1e-4)
    assert ranked[1].total == pytest.approx(base[0] - 20, abs=1e-4)


def test_rerank_command_errors_name_the_file_and_line(tmp_path, caplog):
    nb = tmp_path / "nbest.txt"
    nb.write_text(NBEST.splitlines()[0] + "\n" + "1 ||| oui ||| LM0= -2 RNN0= -1 ||| 0\n")
    ini = tmp_path / "moses.ini"
    ini.write_text(INI)
    out = tmp_path / "best.txt"
    assert _cli("rerank", "--nbest", nb, "--ini", ini, "--output", out, "-q") != 0
    assert f"{nb}:2: no weight for feature 'RNN0'" in caplog.text and not out.exists()
    nb.write_text("1 ||| oui ||| LM0= -2 ||| 0\n0 ||| non ||| LM0= -3 ||| 0\n")
    assert _cli("rerank", "--nbest", nb, "--weights", "LM0= 1", "--output", out, "-q") != 0
    assert f"{nb}:2: sentence 0 after sentence 1" in caplog.text and not out.exists()
    out.write_text("kept\n")
    assert _cli("rerank", "--nbest", nb, "--weights", "LM0= 1", "--output", out, "-q") != 0
    assert out.read_text() == "kept\n"   # nothing overwritten unasked
