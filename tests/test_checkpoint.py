"""Published checkpoints: weights in fp16, no trainer state, loaded back as float32 networks."""
import math

import numpy as np
import pytest
import torch

from rescorer.checkpoint import (CheckpointError, export_checkpoint, load_checkpoint, save_checkpoint,
                                 save_cslm_checkpoint)
from rescorer.cslm import CSLM, CSLMConfig, CSLMScorer, OutOfShortlist, load_cslm_checkpoint
from rescorer.scorer import PhraseScorer
from rescorer.vocab import EOS, UNK, Vocabulary

from conftest import tiny_model, tiny_vocabs


def test_an_exported_rnn_scores_as_its_weights_rounded_to_fp16(tmp_path):
    sv, tv = tiny_vocabs()
    m = tiny_model(scale=0.3)
    save_checkpoint(tmp_path / "full.pt", m, sv, tv, False, trainer_state={"history": [1, 2, 3]})
    info = export_checkpoint(tmp_path / "full.pt", tmp_path / "half.pt")
    assert info["parameters"] == sum(p.numel() for p in m.parameters())
    raw = torch.load(tmp_path / "half.pt", weights_only=False)
    assert raw["trainer"] is None and all(v.dtype == torch.float16 for v in raw["model"].values())
    ck = load_checkpoint(tmp_path / "half.pt")
    assert all(p.dtype == torch.float32 for p in ck["model"].parameters())
    # the loaded network is the original with every weight rounded to fp16, computed in float32
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.half().float())
    pairs = [("the house is blue", "la maison est bleue"), ("a cat", "un chat"), ("the dog", "le chien")]
    rounded = PhraseScorer(m, sv, tv, False, "cpu").score_pairs(pairs)
    assert np.array_equal(PhraseScorer.load(tmp_path / "half.pt", "cpu").score_pairs(pairs), rounded)


def test_an_exported_cslm_keeps_its_shortlist_and_out_of_shortlist_counts(tmp_path):
    vocab = Vocabulary([EOS, UNK] + "la maison est bleue".split())
    torch.manual_seed(0)
    m = CSLM(CSLMConfig(len(vocab), order=3, embed=5, hidden=(7,)))
    save_cslm_checkpoint(tmp_path / "cslm.pt", m, vocab, {"chien": 2}, trainer_state={"x": 1})
    export_checkpoint(tmp_path / "cslm.pt", tmp_path / "cslm.fp16.pt")
    full, half = load_cslm_checkpoint(tmp_path / "cslm.pt"), load_cslm_checkpoint(tmp_path / "cslm.fp16.pt")
    assert half["vocab"] == full["vocab"] and half["oos_counts"] == {"chien": 2} and half["trainer"] is None
    sents = [["la", "maison", "est", "bleue"], ["le", "chien"]]
    a = CSLMScorer(full["model"], full["vocab"], OutOfShortlist({"chien": 2})).score_sentences(sents)
    b = CSLMScorer(half["model"], half["vocab"], OutOfShortlist({"chien": 2})).score_sentences(sents)
    assert np.allclose(a, b, atol=1e-2) and not math.isnan(float(b.sum()))


def test_export_names_a_file_that_is_no_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="x.pt: not a readable checkpoint"):
        export_checkpoint(tmp_path / "x.pt", tmp_path / "y.pt")
    torch.save({"format": "something/else"}, tmp_path / "z.pt")
    with pytest.raises(CheckpointError, match="z.pt: neither an RNN Encoder-Decoder nor a CSLM"):
        export_checkpoint(tmp_path / "z.pt", tmp_path / "y.pt")
    assert not (tmp_path / "y.pt").exists()
