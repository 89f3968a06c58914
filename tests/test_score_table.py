"""`rescorer score`: new columns on real lines, byte-exact resume, and clear errors."""
import gzip
import math
import os

import numpy as np
import pytest
import torch

from conftest import table_with_model, tiny_model
from conftest import tiny_vocabs
from rescorer.checkpoint import CheckpointError, load_checkpoint
from rescorer.checkpoint import save_checkpoint
from rescorer.cli import main
from rescorer.phrase_table import parse_line
from rescorer.score_table import score_table
from rescorer.scorer import PhraseScorer
from rescorer.vocab import Vocabulary


@pytest.fixture(scope="module")
def table_and_model(tmp_path_factory, real_lines):
    d = tmp_path_factory.mktemp("score")
    table, model = table_with_model(d, real_lines, 300, hidden=16, rank=8, maxout=8)
    return d, table, model


def run(*args):
    return main(["score", "-q", *map(str, args)])


def test_score_adds_columns_and_keeps_every_other_field(table_and_model, real_lines):
    d, table, model = table_and_model
    out = d / "out.gz"
    assert run("--phrase-table", table, "--model", model, "--out", out, "--unk-count", "--chunk-lines", 500) == 0
    lines = gzip.open(out, "rb").read().splitlines(keepends=True)
    assert len(lines) == len(real_lines)
    scorer = PhraseScorer.load(model, "cpu")
    pairs = [parse_line(r) for r in real_lines]
    want = scorer.score_pairs([(p.source, p.target) for p in pairs])
    for raw, new, p, lp in zip(real_lines, lines, pairs, want):
        fi, fo = raw.split(b" ||| "), new.split(b" ||| ")
        assert fo[:2] == fi[:2] and fo[3:] == fi[3:]
        scores = fo[2].split()
        assert scores[:4] == fi[2].split()
        assert math.log(float(scores[4])) == pytest.approx(lp, abs=1e-4)
        assert math.log(float(scores[5])) == pytest.approx(-scorer.n_unknown(p.source, p.target), abs=1e-5)
    assert not os.path.exists(str(out) + ".partial")


@pytest.mark.parametrize("name", ["out.gz", "out.txt"])
def test_interrupted_resume_gives_identical_bytes(table_and_model, name):
    d, table, model = table_and_model
    scorer = PhraseScorer.load(model, "cpu")
    whole, part = d / ("whole-" + name), d / ("part-" + name)
    score_table(scorer, str(table), str(whole), model_path=str(model), chunk_lines=300, progress=False)
    r = score_table(scorer, str(table), str(part), model_path=str(model), chunk_lines=300, progress=False,
                    stop_after_chunks=4)
    assert not r["complete"] and not part.exists()
    # a crash may also leave bytes after the last recorded chunk: they must be dropped
    with open(str(part) + ".partial", "ab") as f:
        f.write(b"garbage from a crash")
    with pytest.raises(FileExistsError, match="--resume"):
        score_table(scorer, str(table), str(part), model_path=str(model), chunk_lines=300, progress=False)
    assert run("--phrase-table", table, "--model", model, "--out", part, "--chunk-lines", 300, "--resume") == 0
    assert part.read_bytes() == whole.read_bytes()


def test_does_not_overwrite_without_being_asked(table_and_model, caplog):
    d, table, model = table_and_model
    out = d / "exists.gz"
    out.write_bytes(b"precious")
    assert run("--phrase-table", table, "--model", model, "--out", out) == 1
    assert out.read_bytes() == b"precious"
    assert "--overwrite" in caplog.text


def test_resume_with_other_settings_is_refused(table_and_model, caplog):
    d, table, model = table_and_model
    out = d / "other.gz"
    score_table(PhraseScorer.load(model, "cpu"), str(table), str(out), model_path=str(model),
                chunk_lines=300, progress=False, stop_after_chunks=1)
    assert run("--phrase-table", table, "--model", model, "--out", out, "--chunk-lines", 300, "--resume",
               "--unk-count") == 1
    assert "different unk_count" in caplog.text


def test_bad_table_leaves_no_output(table_and_model, caplog):
    d, table, model = table_and_model
    bad = d / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"a ||| b ||| 0.1 0.2\n" * 10 + b"a ||| c ||| 0.1\n")
    out = d / "bad-out.gz"
    assert run("--phrase-table", bad, "--model", model, "--out", out) == 1
    assert f"{bad}:11: 1 scores, but the lines before have 2" in caplog.text
    assert not out.exists()


def test_model_vocabulary_mismatch_is_an_error(table_and_model, tmp_path, caplog):
    d, table, model = table_and_model
    other = Vocabulary(["</s>", "[UNK]", "just", "these"])
    other.save(tmp_path / "source.vocab")
    other.save(tmp_path / "target.vocab")
    assert run("--phrase-table", table, "--model", model, "--out", tmp_path / "o.gz", "--vocab", tmp_path) == 1
    assert "source vocabulary" in caplog.text and "differs" in caplog.text


def test_not_a_model_is_an_error(tmp_path, table_and_model, caplog):
    _, table, _ = table_and_model
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert run("--phrase-table", table, "--model", junk, "--out", tmp_path / "o.gz") == 1
    assert "not a readable checkpoint" in caplog.text


def test_weights_that_do_not_fit_the_vocabulary(tmp_path, caplog):
    m = tiny_model()
    sv, tv = tiny_vocabs()
    path = tmp_path / "m.pt"
    save_checkpoint(path, m, sv, tv, inverse=False)
    ck = torch.load(path, weights_only=False)
    ck["tgt_vocab"] = ck["tgt_vocab"] + ["extra"]
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match="do not match the network"):
        load_checkpoint(path)


def test_bad_line_after_written_chunks_leaves_nothing_to_block_the_corrected_run(table_and_model, caplog):
    d, table, model = table_and_model
    bad = d / "late-bad.gz"
    lines = [f"w{i} ||| x{i} ||| 0.1 0.2 ||| 0-0\n".encode() for i in range(50)]
    with gzip.open(bad, "wb") as f:
        f.writelines(lines[:40] + [b"w40 ||| x40 ||| 0.1\n"] + lines[41:])
    out = d / "late-out.gz"
    args = ["--phrase-table", bad, "--model", model, "--out", out, "--chunk-lines", "8"]
    assert run(*args) == 1
    assert f"{bad}:41: 1 scores, but the lines before have 2" in caplog.text
    assert not out.exists() and not os.path.exists(f"{out}.partial") and not os.path.exists(f"{out}.partial.json")
    with gzip.open(bad, "wb") as f:   # corrected: runs without --resume or --overwrite
        f.writelines(lines)
    assert run(*args) == 0 and len(gzip.open(out).read().splitlines()) == 50


def test_truncated_gzip_names_file_and_line(table_and_model, caplog):
    d, table, model = table_and_model
    data = table.read_bytes()
    cut = d / "cut.gz"
    cut.write_bytes(data[:len(data) // 2])
    out = d / "cut-out.gz"
    assert run("--phrase-table", cut, "--model", model, "--out", out) == 1
    msg = next(r.getMessage() for r in caplog.records if "compressed stream" in r.getMessage())
    assert msg.startswith(f"{cut}:") and msg.endswith("compressed stream ends early (truncated?)")
    assert int(msg[len(str(cut)) + 1:].split(":")[0]) > 1000
    assert not out.exists() and not os.path.exists(f"{out}.partial")


def test_int8_scoring_from_the_command_line_and_no_resume_across_precisions(table_and_model, caplog):
    d, table, model = table_and_model
    out8, out32 = d / "int8.gz", d / "fp32.gz"
    assert run("--phrase-table", table, "--model", model, "--out", out8, "--precision", "int8") == 0
    assert run("--phrase-table", table, "--model", model, "--out", out32) == 0
    a = [float(x.split(b" ||| ")[2].split()[-1]) for x in gzip.open(out32)]
    b = [float(x.split(b" ||| ")[2].split()[-1]) for x in gzip.open(out8)]
    assert len(a) == len(b) and np.allclose(np.log(a), np.log(b), atol=0.05)
    out = d / "mixed.gz"
    score_table(PhraseScorer.load(model, "cpu"), str(table), str(out), model_path=str(model),
                chunk_lines=300, progress=False, stop_after_chunks=1)
    assert run("--phrase-table", table, "--model", model, "--out", out, "--chunk-lines", 300, "--resume",
               "--precision", "int8") == 1
    assert "different precision" in caplog.text
