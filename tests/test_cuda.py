"""The CUDA paths: scoring, training (one process and two ranks over NCCL) and the CSLM on a GPU
give what the CPU gives.  Skipped, with the reason, on machines without a CUDA GPU; nothing in
the default path needs one."""
import gzip
import os
import subprocess
import sys

import pytest
import torch

from rescorer.cslm import CSLM, CSLMConfig
from rescorer.scorer import PhraseScorer

from conftest import ROOT, first_lines, tiny_model, tiny_vocabs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

PAIRS = [("the house", "la maison"), ("the house is blue", "la maison est bleue"), ("a cat", "un chat"),
         ("the cat", "le chat inconnu")]


def test_scores_on_the_gpu_equal_those_on_the_cpu():
    sv, tv = tiny_vocabs()
    m = tiny_model()
    cpu = PhraseScorer(m, sv, tv, device="cpu").score_pairs(PAIRS)
    gpu = PhraseScorer(tiny_model(), sv, tv, device="cuda").score_pairs(PAIRS)
    assert gpu == pytest.approx(cpu, abs=1e-4)


def test_cslm_on_the_gpu_equals_the_cpu():
    torch.manual_seed(0)
    m = CSLM(CSLMConfig(20, order=3, embed=4, hidden=(8,)))
    ctx, words = torch.randint(0, 20, (16, 2)), torch.randint(0, 20, (16,))
    assert m.to("cuda")(ctx.cuda(), words.cuda()).cpu() == pytest.approx(m.to("cpu")(ctx, words), abs=1e-5)


def test_training_on_the_gpu_alone_and_as_two_ranks(tmp_path, moses_table):
    lines = first_lines(moses_table, 2000)
    table = tmp_path / "pt.gz"
    with gzip.open(table, "wb") as f:
        f.writelines(lines)

    def cli(*args):
        subprocess.run([sys.executable, "-m", "rescorer", *map(str, args)], cwd=ROOT, check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    cli("vocab", "-q", "--phrase-table", table, "--size", 300, "--out", tmp_path / "vocab")
    common = ["train", "-q", "--phrase-table", table, "--vocab", tmp_path / "vocab", "--hidden", 16, "--rank", 8,
              "--maxout-units", 8, "--batch-size", 16, "--max-updates", 3, "--valid-fraction", 0.02, "--device", "cuda"]
    cli(*common, "--out", tmp_path / "one")
    workers = min(2, torch.cuda.device_count())
    cli(*common, "--out", tmp_path / "many", "--workers", workers)
    a = torch.load(tmp_path / "one" / "last.pt", map_location="cpu", weights_only=False)["model"]
    b = torch.load(tmp_path / "many" / "last.pt", map_location="cpu", weights_only=False)["model"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
