"""Phrase-table lines: parsing, appending a column, and errors that name file and line."""
import gzip
import math

import pytest

from rescorer.phrase_table import PhraseTableError, append_scores, format_prob, iter_table, parse_line


def test_real_lines_round_trip_and_append(real_lines):
    n = 0
    for raw in real_lines:
        pair = parse_line(raw, "pt", 1, expect_scores=4)
        out = append_scores(pair, [b"0.5"])
        f_in, f_out = raw.rstrip(b"\n").split(b" ||| "), out.rstrip(b"\n").split(b" ||| ")
        assert len(f_in) == len(f_out)
        assert f_out[:2] == f_in[:2] and f_out[3:] == f_in[3:]
        assert f_out[2] == f_in[2] + b" 0.5"
        assert out.endswith(b"\n")
        n += 1
    assert n > 1000


def test_keeps_optional_fields_byte_for_byte():
    raw = b"das Haus ||| the house ||| 0.1 0.2 ||| 0-0 1-1 ||| 3 4 2 ||| sparse_x 1 ||| {{Prop 1}}\r\n"
    out = append_scores(parse_line(raw), [b"1e-37", b"0.367879"])
    assert out == b"das Haus ||| the house ||| 0.1 0.2 1e-37 0.367879 ||| 0-0 1-1 ||| 3 4 2 ||| sparse_x 1 ||| {{Prop 1}}\r\n"
    last = append_scores(parse_line(b"a ||| b ||| 1"), [b"2"])
    assert last == b"a ||| b ||| 1 2"


def test_format_prob_is_what_moses_logs_back():
    for lp in (-0.1, -5.0, -85.3, -300.0):
        v = float(format_prob(lp))
        assert math.log(v) == pytest.approx(lp, abs=1e-5)
    assert format_prob(-85.3) == b"%.6g" % math.exp(-85.3)


@pytest.mark.parametrize("line, message", [
    (b"a ||| b\n", "expected 'source ||| target ||| scores"),
    (b" ||| b ||| 1\n", "empty source phrase"),
    (b"a |||  ||| 1\n", "empty target phrase"),
    (b"a ||| b ||| 0.1 x\n", "'x' is not a number"),
    (b"a ||| b ||| 0.1 nan\n", "is not a number"),
    (b"a ||| b ||| 0.1 0.2 0.3\n", "3 scores, but the lines before have 2"),
    (b"a ||| \xff\xfe ||| 0.1 0.2\n", "not UTF-8"),
    (b"a ||| b ||| \n", "no scores"),
    (b"\n", "empty line"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "pt.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"x ||| y ||| 0.5 0.5\n" + line)
    with pytest.raises(PhraseTableError) as e:
        list(iter_table(path))
    assert f"{path}:2:" in str(e.value)
    assert message in str(e.value)


def test_start_line_skips_but_keeps_numbering(tmp_path):
    path = tmp_path / "pt"
    path.write_bytes(b"a ||| b ||| 1\nc ||| d ||| 1\ne ||| f ||| x\n")
    it = iter_table(path, start_line=1, n_scores=1)
    assert next(it).source == "c"
    with pytest.raises(PhraseTableError, match=r"pt:3:"):
        next(it)
