"""Training: the data pipeline, exact resume, and real learning on the shared phrase table."""
import gzip
import json
import zlib

import pytest
import torch

from rescorer import data as pairdata
from rescorer.checkpoint import load_checkpoint
from rescorer.cli import main
from rescorer.vocab import Vocabulary

from conftest import table_with_vocab


@pytest.fixture(scope="module")
def small_table(tmp_path_factory, real_lines):
    d = tmp_path_factory.mktemp("train")
    # repeated pairs at the end: training must see each once
    return d, table_with_vocab(d, real_lines[:1500] + real_lines[:40])


def test_vocab_files(small_table):
    d, _ = small_table
    v = Vocabulary.load(d / "vocab" / "target.vocab")
    assert len(v) == 400 and v.words[:2] == ["</s>", "[UNK]"]
    assert v.counts[2:] == sorted(v.counts[2:], reverse=True)


def test_prepare_keeps_unique_pairs_and_a_disjoint_validation_slice(small_table, tmp_path):
    d, table = small_table
    sv = Vocabulary.load(d / "vocab" / "source.vocab")
    tv = Vocabulary.load(d / "vocab" / "target.vocab")
    meta = pairdata.prepare(str(table), sv, tv, str(tmp_path / "data"), valid_fraction=0.1, n_buckets=3,
                            progress=False)
    assert meta["lines"] == 1540 and meta["repeats_removed"] == 40
    assert meta["train_pairs"] + meta["valid_pairs"] == 1500
    assert 90 < meta["valid_pairs"] < 220

    def as_set(p):
        return {(tuple(p.source(i)), tuple(p.target(i))) for i in range(len(p))}
    train = set()
    for b in range(3):
        train |= as_set(pairdata.Pairs.load(str(tmp_path / "data" / f"bucket-{b:04d}.npz")))
    valid = as_set(pairdata.Pairs.load(str(tmp_path / "data" / "valid.npz")))
    assert len(valid) > 0 and len(train) <= meta["train_pairs"]  # distinct texts may share ids via [UNK]
    # every epoch visits every training pair exactly once, in length-sorted batches
    seen = []
    for srcs, tgts in pairdata.epoch_batches(str(tmp_path / "data"), 3, 1234, 0, batch_size=16, group=10):
        lens = [len(t) for t in tgts]
        assert max(lens) - min(lens) <= 3
        seen += [(tuple(s), tuple(t)) for s, t in zip(srcs, tgts)]
    assert len(seen) == meta["train_pairs"] and set(seen) == train
    again = [(tuple(s), tuple(t)) for s, t in
             zip(*[sum(x, []) for x in zip(*pairdata.epoch_batches(str(tmp_path / "data"), 3, 1234, 1, 16, 10))])]
    assert again != seen and sorted(again) == sorted(seen)  # a new order each epoch


def _train(d, table, out, *extra):
    return main(["train", "-q", "--phrase-table", str(table), "--vocab", str(d / "vocab"), "--out", str(out),
                 "--hidden", "16", "--rank", "8", "--maxout-units", "8", "--valid-fraction", "0.1",
                 "--valid-every", "7", "--batch-size", "16", "--buckets", "3", *extra])


@pytest.mark.parametrize("optimizer,path", [("adadelta", []), ("adam", []),
                                            ("adam", ["--batching", "by-source", "--per-source", "4"]),
                                            ("adam", ["--batching", "by-source", "--precision", "bf16"]),
                                            ("adam", ["--sampled-softmax", "20"]),
                                            ("adam", ["--batching", "by-source", "--sampled-softmax", "20"])])
def test_resume_continues_exactly(small_table, tmp_path, optimizer, path):
    d, table = small_table
    opts = ["--optimizer", optimizer, *path]
    assert _train(d, table, tmp_path / "straight", "--max-updates", "30", *opts) == 0
    assert _train(d, table, tmp_path / "split", "--max-updates", "13", *opts) == 0
    # without --resume an existing run is not overwritten
    assert _train(d, table, tmp_path / "split", "--max-updates", "30", *opts) == 1
    # the run's own batching wins over the command line's: its batches must be the ones it would have seen
    assert _train(d, table, tmp_path / "split", "--max-updates", "30", "--optimizer", optimizer, "--resume",
                  *[x for x in path if x not in ("--batching", "by-source", "--sampled-softmax", "20")]) == 0
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    if "--sampled-softmax" in path:  # recorded in the checkpoint, and the run's own on resume
        assert b["trainer"]["config"]["sampled_softmax"] == 20
        valid = a["trainer"]["history"]["valid"]     # validated with the full softmax
        assert valid[-1][1] < valid[0][1]
    for (k, x), y in zip(a["model"].state_dict().items(), b["model"].state_dict().values()):
        assert torch.equal(x, y), k
    # the same validations, plus the one the interrupted run made when it stopped at 13
    assert [v for v in b["trainer"]["history"]["valid"] if v[0] != 13] == a["trainer"]["history"]["valid"]
    assert (tmp_path / "split" / "curves.png").stat().st_size > 10_000
    assert (tmp_path / "split" / "best.pt").exists()


def test_resume_with_another_vocabulary_is_refused(small_table, tmp_path, caplog):
    d, table = small_table
    assert _train(d, table, tmp_path / "run", "--max-updates", "3") == 0
    other = tmp_path / "other"
    assert main(["vocab", "-q", "--phrase-table", str(table), "--size", "50", "--out", str(other)]) == 0
    assert main(["train", "-q", "--phrase-table", str(table), "--vocab", str(other), "--out",
                 str(tmp_path / "run"), "--resume"]) == 1
    assert "vocabulary" in caplog.text and "differs" in caplog.text


def test_early_stopping(small_table, tmp_path):
    d, table = small_table
    assert _train(d, table, tmp_path / "es", "--patience", "1", "--max-updates", "2000", "--optimizer", "adam",
                  "--lr", "0.05") == 0
    summary = json.loads((tmp_path / "es" / "summary.json").read_text())
    assert "early stop" in summary["stop"] and summary["updates"] < 2000


@pytest.mark.slow
def test_learns_real_pairs_well_below_unigram(moses_table, tmp_path):
    """A small model, 1,800 updates on real pairs of the Moses baseline table (about a minute on
    an idle machine; a budget in updates, not minutes, so that a loaded machine trains it as far)."""
    table = tmp_path / "pt.gz"
    with gzip.open(moses_table, "rb") as f, gzip.open(table, "wb", compresslevel=1) as out:
        for line in f:  # every source phrase whose hash falls in 1/20, with all its targets
            if zlib.crc32(line.split(b" ||| ", 1)[0]) % 20 == 0:
                out.write(line)
    assert main(["vocab", "-q", "--phrase-table", str(table), "--size", "3000", "--out", str(tmp_path / "v")]) == 0
    assert main(["train", "-q", "--phrase-table", str(table), "--vocab", str(tmp_path / "v"), "--out",
                 str(tmp_path / "run"), "--hidden", "128", "--rank", "64", "--maxout-units", "64",
                 "--valid-fraction", "0.02", "--valid-every", "300", "--optimizer", "adam", "--lr", "3e-3",
                 "--max-updates", "1800"]) == 0
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    print(f"\nvalidation perplexity {s['best_valid_ppl']:.1f} vs unigram {s['baseline_ppl']:.1f} "
          f"({s['baseline_ppl'] / s['best_valid_ppl']:.2f}x lower) after {s['updates']} updates")
    assert s["best_valid_ppl"] < 0.6 * s["baseline_ppl"]
