"""Phrase extraction, scoring and reordering on hand-worked examples."""
import gzip
import io

import pytest

from moses_integration.extract import (AlignmentError, build_tables, extract_sentence, lexical_counts,
                                       lexical_tables, lexical_weight, parse_alignment, score_half)


def pairs(src, tgt, align, max_len=7):
    s, t = src.split(), tgt.split()
    a = parse_alignment(align, len(s), len(t))
    return {(" ".join(s[fs:fe + 1]), " ".join(t[es:ee + 1])): (inner, p, n)
            for fs, fe, es, ee, inner, p, n in extract_sentence(s, t, a, max_len)}


def test_crossing_alignment():
    got = pairs("a b c", "x y z", "0-0 1-2 2-1")
    assert got == {
        ("a", "x"): ("0-0", "m", "d"),
        ("c", "y"): ("0-0", "d", "s"),
        ("b", "z"): ("0-0", "s", "d"),
        ("b c", "y z"): ("1-0 0-1", "m", "m"),             # points in target order, as Moses writes them
        ("a b c", "x y z"): ("0-0 2-1 1-2", "m", "m"),
    }


def test_unaligned_source_word_extends_phrases():
    got = pairs("a b c", "x y", "0-0 2-1")
    assert set(got) == {("a", "x"), ("a b", "x"), ("a b c", "x y"), ("c", "y"), ("b c", "y")}
    assert got[("a b", "x")][0] == "0-0" and got[("b c", "y")][0] == "1-0"


def test_unaligned_target_word_comes_with_target_spans():
    got = pairs("a b", "x y z", "0-0 1-2")
    assert set(got) == {("a", "x"), ("a", "x y"), ("a b", "x y z"), ("b", "y z"), ("b", "z")}


def test_maximum_phrase_length():
    assert ("a b c", "x y z") not in pairs("a b c", "x y z", "0-0 1-2 2-1", max_len=2)
    assert ("b c", "y z") in pairs("a b c", "x y z", "0-0 1-2 2-1", max_len=2)


def test_one_to_many_and_inconsistent_spans():
    # b is aligned to both x and z: no pair may hold x or z without b and y's word
    got = pairs("a b c", "x y z", "1-0 1-2 0-1 2-1")
    assert ("b", "x") not in got and ("a", "y") not in got
    assert ("a b c", "x y z") in got and len(got) == 1


def test_bad_alignment_names_the_place():
    with pytest.raises(AlignmentError, match="al.txt:3: alignment point 0-5 outside a 2x3"):
        parse_alignment("0-0 0-5", 2, 3, "al.txt:3")


CORPUS = [("a b", "x y", "0-0 1-1"), ("a", "x", "0-0"), ("a b", "y", "1-0")]


def test_lexical_tables_by_hand():
    joint, tf, te = lexical_counts([(s.split(), t.split(), parse_alignment(a, 9, 9)) for s, t, a in CORPUS])
    assert joint == {("a", "x"): 2, ("b", "y"): 2, ("a", "NULL"): 1}
    e_f, f_e = lexical_tables(joint, tf, te)
    assert e_f[("a", "x")] == pytest.approx(2 / 3) and e_f[("a", "NULL")] == pytest.approx(1 / 3)
    assert f_e[("a", "x")] == 1 and f_e[("a", "NULL")] == 1
    # lex(e|f) averages over a word's links and uses NULL for unaligned target words
    table = {("a", "x"): 0.5, ("b", "x"): 0.3, ("NULL", "y"): 0.1}
    assert lexical_weight(["a", "b"], ["x", "y"], [(0, 0), (1, 0)], table) == pytest.approx(0.4 * 0.1)


def test_tables_scores_by_hand(tmp_path):
    for k, name in enumerate(("src", "tgt", "al")):
        (tmp_path / name).write_text("".join(c[k] + "\n" for c in CORPUS))
    info = build_tables(str(tmp_path / "src"), str(tmp_path / "tgt"), str(tmp_path / "al"), str(tmp_path),
                        progress=False)
    assert info["phrase_pairs"] == 4 and info["extracted"] == 6
    with gzip.open(tmp_path / "phrase-table.gz", "rt") as f:
        lines = f.read().splitlines()
    assert lines == sorted(lines, key=lambda x: x.encode())       # LC_ALL=C order
    rows = {tuple(x.split(" ||| ")[:2]): x.split(" ||| ")[2:] for x in lines}
    # p(f|e) lex(f|e) p(e|f) lex(e|f) ||| alignment ||| count(e) count(f) count(f,e) ||| |||
    assert rows[("a", "x")] == ["1 1 1 0.666667", "0-0", "2 2 2", "|||"]
    assert rows[("a b", "x y")] == ["1 1 0.5 0.666667", "0-0 1-1", "1 2 1", "|||"]
    assert rows[("b", "y")] == ["0.666667 1 1 1", "0-0", "3 2 2", "|||"]
    assert rows[("a b", "y")] == ["0.333333 1 0.5 1", "1-0", "3 2 1", "|||"]
    assert all(x.endswith(" ||| |||") for x in lines)              # as Moses's own tables end
    with gzip.open(tmp_path / "reordering-table.wbe-msd-bidirectional-fe.gz", "rt") as f:
        reo = {tuple(x.split(" ||| ")[:2]): [float(v) for v in x.split(" ||| ")[2].split()] for x in f}
    # (b, y) is seen twice: in sentence 1 after a (monotone) and at the end (monotone), in sentence 3 after
    # an unaligned a (discontinuous: the corner (0, -1) is not aligned) and at the end
    assert reo[("b", "y")] == pytest.approx([1.5 / 3.5, 0.5 / 3.5, 1.5 / 3.5, 2.5 / 3.5, 0.5 / 3.5, 0.5 / 3.5])


def test_most_frequent_alignment_ties_go_to_the_smaller_string(tmp_path):
    # sorted as whole lines, the orientation field puts "0-0 1-0" before "0-0" (' 1' < ' |');
    # Moses breaks the tie by the alignment string alone: "0-0" is the pair's alignment
    lines = ["a b ||| x ||| 0-0 1-0 ||| m d\n", "a b ||| x ||| 0-0 ||| s m\n", "a b ||| y ||| 1-0 ||| d d\n"]
    assert lines == sorted(lines, key=str.encode)
    (tmp_path / "ext").write_text("".join(lines))
    out, reo = io.StringIO(), io.StringIO()
    table = {("a", "x"): 0.5, ("b", "x"): 0.3, ("b", "y"): 0.25}
    assert score_half(str(tmp_path / "ext"), out, table, False, reo) == (2, 3)
    assert out.getvalue().splitlines() == ["a b ||| x ||| 0.666667 0.5 ||| 0-0 ||| 3 2",
                                           "a b ||| y ||| 0.333333 0.25 ||| 1-0 ||| 3 1"]
    # previous m s d = 1 1 0, next m s d = 1 0 1, smoothed by 0.5 over 2 + 1.5
    assert reo.getvalue().splitlines()[0] == "a b ||| x ||| " + " ".join(
        f"{x / 3.5:.6g}" for x in (1.5, 1.5, 0.5, 1.5, 0.5, 1.5))
