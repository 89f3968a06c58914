"""moses.ini: byte-exact round trip of Moses's own file, idempotent new columns, errors."""
import gzip
import shutil

import pytest

from conftest import DATA
from moses_integration.moses_ini import MosesIni, MosesIniError, count_dense_scores
from rescorer.cli import main

BASELINE_INI = DATA / "moses-baseline" / "moses.ini"


@pytest.fixture
def ini_path(tmp_path):
    if not BASELINE_INI.exists():
        pytest.skip(f"no {BASELINE_INI}")
    p = tmp_path / "moses.ini"
    shutil.copy(BASELINE_INI, p)
    return p


def test_round_trip_is_byte_exact(ini_path):
    ini = MosesIni.read(ini_path)
    out = ini_path.parent / "copy.ini"
    ini.write(out)
    assert out.read_bytes() == ini_path.read_bytes()
    assert ini.weights()["TranslationModel0"] == [0.2] * 4
    assert ini.feature("TranslationModel0").get("num-features") == "4"
    assert ini.feature("Distortion0").kind == "Distortion"
    assert ini.section("distortion-limit") == ["6"]


def test_set_table_adds_columns_once_and_keeps_the_rest(ini_path):
    ini = MosesIni.read(ini_path)
    before = ini_path.read_text().splitlines()
    ini.set_table("TranslationModel0", "/x/phrase-table.rnn.gz", 6)
    once = ini.text()
    ini.set_table("TranslationModel0", "/x/phrase-table.rnn.gz", 6)   # idempotent
    assert ini.text() == once
    f = ini.feature("TranslationModel0")
    assert f.get("num-features") == "6" and f.get("path") == "/x/phrase-table.rnn.gz"
    assert ini.weights()["TranslationModel0"] == [0.2] * 6
    after = once.splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert len(before) == len(after) and len(changed) == 2
    # back to 4 columns drops the extra weights
    ini.set_table("TranslationModel0", "phrase-table.gz", 4)
    assert ini.weights()["TranslationModel0"] == [0.2] * 4


def test_add_remove_feature_and_set_weights(ini_path):
    ini = MosesIni.read(ini_path)
    original = ini.text()
    ini.add_feature("KENLM name=LM1 factor=0 path=cslm.binary order=7", [0.3])
    assert ini.weights()["LM1"] == [0.3]
    assert ini.feature("LM1").get("order") == "7"
    ini.remove_feature("LM1")
    assert ini.text() == original
    ini.set_weights({"LM0": [0.123456], "TranslationModel0": [0.1, -0.2, 0.3, 0.05]})
    assert ini.weights()["LM0"] == [0.123456]
    with pytest.raises(MosesIniError, match="has 4 weights, 2 given"):
        ini.set_weights({"TranslationModel0": [1, 2]})


def test_set_feature_arg_changes_one_field(ini_path):
    ini = MosesIni.read(ini_path)
    before = ini.text().splitlines()
    ini.set_feature_arg("LM0", "path", "/y/lm.binary")
    assert ini.feature("LM0").get("path") == "/y/lm.binary" and ini.feature("LM0").get("order") == "5"
    assert sum(a != b for a, b in zip(before, ini.text().splitlines())) == 1


def test_malformed_ini_names_file_and_line(tmp_path):
    p = tmp_path / "bad.ini"
    p.write_text("[feature]\nDistortion\n\n[weight]\nDistortion0 0.3\n")
    with pytest.raises(MosesIniError, match=r"bad.ini:5: weight line without '='"):
        MosesIni.read(p).weights()
    p.write_text("[feature]\nKENLM name=LM0 order\n")
    with pytest.raises(MosesIniError, match=r"bad.ini:2: feature argument 'order'"):
        MosesIni.read(p).features()


def test_cli_points_the_table_at_the_scored_file(ini_path, tmp_path):
    table = tmp_path / "pt.rnn.gz"
    with gzip.open(table, "wb") as f:
        f.write(b"a ||| b ||| 0.1 0.2 0.3 0.4 0.05 1 ||| 0-0 ||| 1 1 1\n")
    assert count_dense_scores(table) == 6
    out = tmp_path / "moses.rnn.ini"
    args = ["ini", "set-table", "--ini", str(ini_path), "--feature", "TranslationModel0", "--path", str(table),
            "--out", str(out)]
    assert main(args) == 0
    ini = MosesIni.read(out)
    assert ini.feature("TranslationModel0").get("num-features") == "6"
    assert main(args) == 1                       # no silent overwrite
    assert main(args + ["--overwrite"]) == 0


def test_cli_adds_and_removes_a_feature_idempotently(tmp_path):
    base = tmp_path / "moses.ini"
    base.write_text("[feature]\nWordPenalty\nKENLM name=LM0 factor=0 path=lm.bin order=5\n\n[weight]\n"
                    "WordPenalty0= -1\nLM0= 0.5\n")
    args = ["ini", "add-feature", "--ini", str(base), "--line", "CSLM name=CSLM0 path=cslm/best.pt",
            "--weight", "0.3"]
    assert main(args + ["--out", str(tmp_path / "a.ini")]) == 0
    assert main(["ini", "add-feature", "--ini", str(tmp_path / "a.ini"), "--line",
                 "CSLM name=CSLM0 path=cslm/best.pt", "--weight", "0.3", "--out", str(tmp_path / "b.ini")]) == 0
    a, b = (tmp_path / "a.ini").read_text(), (tmp_path / "b.ini").read_text()
    assert a == b and a.count("CSLM name=CSLM0") == 1 and "CSLM0= 0.3" in a
    assert main(["ini", "remove-feature", "--ini", str(tmp_path / "a.ini"), "--name", "CSLM0",
                 "--out", str(tmp_path / "c.ini")]) == 0
    assert (tmp_path / "c.ini").read_text() == base.read_text()
