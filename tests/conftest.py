import gzip
import os
import pathlib
from collections import Counter

import pytest
import torch

from rescorer.checkpoint import save_checkpoint
from rescorer.cli import main
from rescorer.model import ModelConfig, RNNEncoderDecoder
from rescorer.phrase_table import parse_line
from rescorer.vocab import EOS, UNK, Vocabulary

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("RESCORER_DATA", ROOT.parent / "shared" / "data"))
MOSES_TABLE = DATA / "moses-baseline" / "phrase-table.gz"


@pytest.fixture(scope="session")
def moses_table():
    if not MOSES_TABLE.exists():
        pytest.skip(f"shared data not found at {MOSES_TABLE} (set RESCORER_DATA)")
    return MOSES_TABLE


@pytest.fixture(scope="session")
def real_lines(moses_table):
    """About 3,000 real lines from across the Moses baseline table (every 750th line, raw bytes)."""
    out = []
    with gzip.open(moses_table, "rb") as f:
        for i, line in enumerate(f):
            if i % 750 == 0:
                out.append(line)
    return out


def first_lines(table, n: int) -> list[bytes]:
    """The first ``n`` raw lines of a gzipped table (sources with all their targets, in order)."""
    lines = []
    with gzip.open(table, "rb") as f:
        for line in f:
            lines.append(line)
            if len(lines) == n:
                break
    return lines


def table_with_vocab(d, lines: list[bytes], size: int = 400):
    """``lines`` written as ``d/pt.gz`` and ``rescorer vocab`` of it in ``d/vocab``: the table."""
    table = d / "pt.gz"
    with gzip.open(table, "wb") as f:
        f.writelines(lines)
    assert main(["vocab", "-q", "--phrase-table", str(table), "--size", str(size), "--output", str(d / "vocab")]) == 0
    return table


def table_with_model(d, lines: list[bytes], size: int, hidden: int, rank: int, maxout: int):
    """``lines`` written as ``d/pt.gz`` and an untrained network over their ``size`` most frequent
    words per side saved as ``d/model.pt`` (seed 0): the input of the scoring tests."""
    table, model = d / "pt.gz", d / "model.pt"
    with gzip.open(table, "wb") as f:
        f.writelines(lines)
    src, tgt = Counter(), Counter()
    for raw in lines:
        p = parse_line(raw)
        src.update(p.source_words)
        tgt.update(p.target_words)
    torch.manual_seed(0)
    sv, tv = Vocabulary.from_counts(src, size), Vocabulary.from_counts(tgt, size)
    m = RNNEncoderDecoder(ModelConfig(len(sv), len(tv), hidden=hidden, rank=rank, maxout_units=maxout))
    save_checkpoint(model, m, sv, tv, inverse=False)
    return table, model


def tiny_vocabs():
    sv = Vocabulary([EOS, UNK] + "the house is blue a cat".split())
    tv = Vocabulary([EOS, UNK] + "la maison est bleue un chat".split())
    return sv, tv


def tiny_model(gate="reset-before", dtype=torch.float32, scale=0.5, seed=0, hidden=8, rank=5, maxout=4, cell="gru"):
    """A tiny network with weights large enough that every term matters."""
    sv, tv = tiny_vocabs()
    torch.manual_seed(seed)
    m = RNNEncoderDecoder(ModelConfig(len(sv), len(tv), hidden=hidden, rank=rank, maxout_units=maxout, gate=gate,
                                      cell=cell))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, scale)
    return m.to(dtype)


def check_finite_differences(m, loss, per_tensor: int = 4, seed: int = 0, eps: float = 1e-6) -> int:
    """Back-propagated gradients of ``loss()`` (float64) against central differences, in
    ``per_tensor`` random coordinates of every parameter tensor; the number checked."""
    m.zero_grad()
    loss().backward()
    gen = torch.Generator().manual_seed(seed)
    checked = 0
    for name, p in m.named_parameters():
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in torch.randperm(flat.numel(), generator=gen)[:per_tensor].tolist():
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + eps
                up = loss().item()
                flat[i] = old - eps
                down = loss().item()
                flat[i] = old
            assert grad[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9), (name, i)
            checked += 1
    return checked
