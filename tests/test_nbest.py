"""n-best lists in Moses's format: round trips, appended features, re-ranking, errors."""
import pytest

from moses_integration.nbest import (NBestError, append_feature, group_by_sentence, parse_line, read_nbest,
                                     rerank, weighted_total)

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
