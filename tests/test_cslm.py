"""The CSLM: its equations, normalisation, scoring against a naive loop, gradients, n-best
rescoring byte for byte, training and resume."""
import gzip
import json
import math
import shutil
import subprocess
import sys

import kenlm
import numpy as np
import pytest
import torch

from conftest import DATA
from moses_integration.nbest import read_nbest
from rescorer.checkpoint import save_cslm_checkpoint
from rescorer.cli import main
from rescorer.cslm import CSLM, CSLMConfig, CSLMScorer, OutOfShortlist, contexts_of
from rescorer.vocab import EOS, EOS_ID, UNK, UNK_ID, Vocabulary

WORDS = "le chat est sur la table une maison bleue".split()


def tiny(order=4, seed=0, scale=0.3, dtype=torch.float32):
    vocab = Vocabulary([EOS, UNK] + WORDS)
    torch.manual_seed(seed)
    m = CSLM(CSLMConfig(len(vocab), order=order, embed=5, hidden=(7, 6)))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, scale)  # large enough that every term matters
    return m.to(dtype), vocab


def test_initialisation_is_uniform_in_001():
    m = CSLM(CSLMConfig(50, order=7, embed=8, hidden=(16, 12)))
    for name, p in m.named_parameters():
        assert p.abs().max() <= 0.01 and p.abs().max() > 0.005, name
    assert m.proj.weight.shape == (50, 8) and m.hidden[0].in_features == 6 * 8


def test_paper_sizes():
    m = CSLM(CSLMConfig(16000))
    assert [l.out_features for l in m.hidden if isinstance(l, torch.nn.Linear)] == [1536, 1024]
    assert m.hidden[0].in_features == 3072 and m.out.out_features == 16000


def test_equations_by_hand():
    m, vocab = tiny(order=3, dtype=torch.float64)
    ctx = torch.tensor([[2, 5], [0, 0]])
    x = torch.cat([m.proj.weight[ctx[:, 0]], m.proj.weight[ctx[:, 1]]], dim=1)
    h1 = torch.relu(x @ m.hidden[0].weight.T + m.hidden[0].bias)
    h2 = torch.relu(h1 @ m.hidden[2].weight.T + m.hidden[2].bias)
    z = h2 @ m.out.weight.T + m.out.bias
    want = z - torch.logsumexp(z, dim=1, keepdim=True)
    assert torch.allclose(m.log_probs(ctx), want)


def test_sampled_softmax_normalises_over_its_words_only():
    m, vocab = tiny(order=3, dtype=torch.float64)
    ctx, word = torch.tensor([[2, 5], [0, 0], [3, 1]]), torch.tensor([4, 1, 4])
    every = torch.arange(len(vocab))
    torch.testing.assert_close(m(ctx, word, every), m(ctx, word), rtol=0, atol=1e-12)
    cand = torch.tensor([1, 3, 4])
    z = m.out(m.hidden(m.proj(ctx).flatten(1)))                # the full logits, then V' columns only
    want = z.gather(1, word[:, None])[:, 0] - torch.logsumexp(z[:, cand], 1)
    torch.testing.assert_close(m(ctx, word, cand), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_probabilities_sum_to_one_for_any_context(seed):
    m, vocab = tiny(seed=seed)
    ctx = torch.randint(0, len(vocab), (50, 3))
    p = m.log_probs(ctx).double().exp().sum(1)
    assert torch.allclose(p, torch.ones(50, dtype=torch.float64), atol=1e-5)
    # over the whole vocabulary: shortlist words, and [UNK]'s mass shared by out-of-shortlist words
    oos = OutOfShortlist({"chien": 3, "maisons": 1, "vert": 7})
    u = sum(math.exp(oos.logprob(w)) for w in oos.counts) + math.exp(oos.logprob("jamais-vu"))
    assert u == pytest.approx(1.0)
    lp = m.log_probs(ctx[:1]).double().exp()[0]
    total = lp.sum() - lp[UNK_ID] + lp[UNK_ID] * u
    assert float(total.detach()) == pytest.approx(1.0, abs=1e-6)


def test_contexts_are_padded_with_end_of_sentence():
    ids = np.array([5, 6, 0, 7, 8, 9, 0])
    starts = np.array([0, 3])
    ctx = contexts_of(ids, starts, np.arange(7), order=4)
    assert ctx.tolist() == [[0, 0, 0], [0, 0, 5], [0, 5, 6], [0, 0, 0], [0, 0, 7], [0, 7, 8], [7, 8, 9]]


def naive_sentence_logprob(m, vocab, oos, words, order):
    """One n-gram at a time, context built by hand."""
    ids = [vocab.index.get(w, UNK_ID) for w in words] + [EOS_ID]
    total = 0.0
    for t, wid in enumerate(ids):
        ctx = [ids[k] if k >= 0 else EOS_ID for k in range(t - order + 1, t)]
        with torch.no_grad():
            total += float(m.log_probs(torch.tensor([ctx]))[0, wid])
        if wid == UNK_ID:
            total += oos.logprob(words[t])
    return total


def test_sentence_scores_equal_the_sum_of_single_ngram_scores():
    m, vocab = tiny(order=4, dtype=torch.float64)
    oos = OutOfShortlist({"chien": 2})
    sents = [s.split() for s in ["le chat est sur la table", "une maison bleue", "le chien est sur le chien",
                                 "la", "le chat le chat le chat est bleue sur la table"]]
    scorer = CSLMScorer(m, vocab, oos, batch_contexts=4)  # several batches
    for share in (True, False):
        got = scorer.score_sentences(sents, share=share)
        want = [naive_sentence_logprob(m, vocab, oos, s, 4) for s in sents]
        assert got == pytest.approx(want, abs=1e-9)


def test_gradients_match_finite_differences():
    m, vocab = tiny(order=3, dtype=torch.float64, scale=0.5)
    ctx = torch.tensor([[2, 3], [0, 4], [5, 5]])
    word = torch.tensor([4, 0, 1])
    loss = -m(ctx, word).sum()
    loss.backward()
    rng = np.random.default_rng(0)
    for name, p in m.named_parameters():
        for _ in range(4):
            idx = tuple(int(rng.integers(0, s)) for s in p.shape)
            old = p.data[idx].item()
            with torch.no_grad():
                p.data[idx] = old + 1e-6
                up = -m(ctx, word).sum().item()
                p.data[idx] = old - 1e-6
                down = -m(ctx, word).sum().item()
                p.data[idx] = old
            assert p.grad[idx].item() == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-7), name


NBEST = (
    "0 ||| le chat est sur la table  ||| LM0= -20.5 WordPenalty0= -6 TranslationModel0= -1 -2 -3 -4 ||| -3.25 "
    "||| 0-1=0-1 2-4=2-5\n"
    "0 ||| la chat est table  ||| LM0= -25 WordPenalty0= -4 TranslationModel0= -1 -2 -3.5 -4 ||| -4.5\n"
    "1 ||| une maison chien  ||| LM0= -14 WordPenalty0= -3 TranslationModel0= -2 -2 -2 -2 ||| -2.1\r\n"
)


def test_nbest_rescoring_keeps_every_other_byte(tmp_path):
    m, vocab = tiny()
    save_cslm_checkpoint(tmp_path / "cslm.pt", m, vocab, {"chien": 1})
    (tmp_path / "in.nbest").write_bytes(NBEST.encode())
    assert main(["cslm-rescore", "--model", str(tmp_path / "cslm.pt"), "--nbest", str(tmp_path / "in.nbest"),
                 "--out", str(tmp_path / "out.nbest"), "--device", "cpu"]) == 0
    scorer = CSLMScorer(m, vocab, OutOfShortlist({"chien": 1}))
    old = NBEST.encode().splitlines(keepends=True)
    new = (tmp_path / "out.nbest").read_bytes().splitlines(keepends=True)
    assert len(new) == len(old)
    for a, b, h in zip(old, new, read_nbest(tmp_path / "out.nbest")):
        fa, fb = a.split(b" ||| "), b.split(b" ||| ")
        assert fa[:2] == fb[:2] and fa[3:] == fb[3:]          # id, text, total, alignment, line end
        value = h.feature_dict()["CSLM0"][0]
        assert fb[2] == fa[2] + b" CSLM0= " + f"{value:.6g}".encode()
        assert value == pytest.approx(float(scorer.score_sentences([h.text.split()])[0]), abs=1e-4)
    assert main(["cslm-rescore", "--model", str(tmp_path / "cslm.pt"), "--nbest", str(tmp_path / "in.nbest"),
                 "--out", str(tmp_path / "out.nbest"), "--device", "cpu"]) == 1  # no silent overwrite


def write_text(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("softmax", [[], ["--batch-size", "4", "--sampled-softmax", "1"]])  # V' < the 8 words
def test_training_resumes_exactly(tmp_path, softmax):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(400)]
    write_text(tmp_path / "text.gz", lines)
    args = ["cslm-train", "-q", "--text", str(tmp_path / "text.gz"), "--shortlist", "8", "--order", "4",
            "--embed", "8", "--hidden", "16", "12", "--valid-fraction", "0.05", "--valid-every", "20",
            "--device", "cpu", "--optimizer", "adam", "--lr", "0.01", *softmax]
    assert main(args + ["--out", str(tmp_path / "a"), "--max-updates", "60"]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--max-updates", "30"]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--max-updates", "60", "--resume"]) == 0
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000
    # scoring a file with the trained model
    (tmp_path / "in.txt").write_text("le chat est sur la table\nune maison verte\n")
    assert main(["cslm-score", "--model", str(tmp_path / "a" / "best.pt"), "--input", str(tmp_path / "in.txt"),
                 "--output", str(tmp_path / "scores"), "--device", "cpu"]) == 0
    scores = [float(x) for x in (tmp_path / "scores").read_text().split()]
    assert len(scores) == 2 and all(s < 0 for s in scores)


def test_bad_text_names_file_and_line(tmp_path, caplog):
    (tmp_path / "bad.txt").write_bytes(b"le chat\nla \xff table\n")
    assert main(["cslm-train", "-q", "--text", str(tmp_path / "bad.txt"), "--shortlist", "8",
                 "--out", str(tmp_path / "run"), "--device", "cpu"]) == 1
    assert f"{tmp_path / 'bad.txt'}:2" in caplog.text


@pytest.mark.slow
def test_small_cslm_on_french_text_against_kenlm(tmp_path):
    """A small CSLM trained for 2,000 updates on 40,000 lines of the shared French text (about two
    minutes on an idle machine; a budget in updates, not minutes, so that a loaded machine trains it
    as far), against KenLM's modified Kneser-Ney model of the same order on the same lines, both over the whole
    vocabulary on 500 held-out lines of the same file.  It falls short of KenLM (the printed
    ratio; see the README), as Schwenk's CSLMs do before long training."""


    src = DATA / "moses-baseline" / "train.clean.fr.gz"
    here = [str(p) for p in (tmp_path,)][0]
    lmplz = shutil.which("lmplz", path=f"{sys.prefix}/bin:{__import__('os').environ.get('PATH', '')}")
    if not src.exists() or not lmplz:
        pytest.skip("needs the shared French text and lmplz ('make setup')")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        lines = [next(f).strip() for _ in range(40500)]
    train, held = lines[:40000], lines[40000:]
    write_text(tmp_path / "train.fr.gz", train)
    order = 4
    with open(tmp_path / "lm.arpa", "wb") as out:
        subprocess.run([lmplz, "-o", str(order), "-S", "10%", "-T", here, "--discount_fallback"],
                       input="\n".join(train).encode() + b"\n", stdout=out, stderr=subprocess.DEVNULL, check=True)
    lm = kenlm.Model(str(tmp_path / "lm.arpa"))
    n_pred = sum(len(s.split()) + 1 for s in held)
    kenlm_ppl = math.exp(-sum(lm.score(s, bos=True, eos=True) for s in held) * math.log(10) / n_pred)
    assert main(["cslm-train", "-q", "--text", str(tmp_path / "train.fr.gz"), "--shortlist", "5000",
                 "--order", str(order), "--embed", "64", "--hidden", "256", "256", "--optimizer", "adam",
                 "--lr", "3e-3", "--batch-size", "128", "--valid-every", "300", "--valid-fraction", "0.01",
                 "--max-updates", "2000",
                 "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    scorer = CSLMScorer.load(tmp_path / "run" / "best.pt")
    cslm_ppl = math.exp(-scorer.score_sentences([s.split() for s in held]).sum() / n_pred)
    counts = np.load(tmp_path / "run" / "data" / "unigram.npy")
    summary = __import__("json").loads((tmp_path / "run" / "summary.json").read_text())
    print(f"\nheld-out perplexity over the whole vocabulary: CSLM {cslm_ppl:.1f}, KenLM {order}-gram "
          f"{kenlm_ppl:.1f} ({cslm_ppl / kenlm_ppl:.2f}x); CSLM validation perplexity over the shortlist "
          f"{summary['best_valid_ppl']:.1f} vs unigram {summary['baseline_ppl']:.1f}; {summary['updates']} updates")
    assert counts.sum() > 500000
    assert summary["best_valid_ppl"] < 0.5 * summary["baseline_ppl"]   # it learned far more than unigrams
    # 2,000 updates do not beat Kneser-Ney on this data; a sanity bound
    assert cslm_ppl < 4.0 * kenlm_ppl


def test_learning_rate_decays_on_a_plateau_and_resumes_exactly(tmp_path, caplog):
    """--lr-decay 0.5 --lr-patience 2: the learning rate halves at every second validation in a row
    without a new best (recomputed here from the validation record), and a run stopped and resumed
    meanwhile ends with the same weights and the same learning rates."""
    rng = np.random.default_rng(2)
    write_text(tmp_path / "text.gz", [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(400)])
    # a learning rate far too high for Adam, so that validations stop improving
    args = ["cslm-train", "-q", "--text", str(tmp_path / "text.gz"), "--shortlist", "8", "--order", "3",
            "--embed", "8", "--hidden", "16", "--valid-fraction", "0.05", "--valid-every", "5", "--patience", "100",
            "--device", "cpu", "--optimizer", "adam", "--lr", "0.5", "--lr-decay", "0.5", "--lr-patience", "2"]
    assert main(args + ["--out", str(tmp_path / "a"), "--max-updates", "80"]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--max-updates", "40"]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--max-updates", "80", "--resume"]) == 0
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    h = a["trainer"]["history"]
    expected, lr, best, bad = [], 0.5, math.inf, 0
    for _, ppl in h["valid"]:
        if ppl < best * (1 - 1e-4):   # ReduceLROnPlateau's default relative threshold
            bad = 0
        else:
            bad += 1
        best = min(best, ppl)
        if bad == 2:
            lr, bad = lr / 2, 0
        expected.append(lr)
    assert len(h["valid"]) == 17 and h["lr"] == pytest.approx(expected)
    assert min(h["lr"]) < 0.5   # the plateau came, and the rate decayed
    assert b["trainer"]["history"]["lr"] == h["lr"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert main(args[:-4] + ["--lr-decay", "1.5", "--out", str(tmp_path / "c"), "--max-updates", "5"]) != 0
    assert "learning-rate decay 1.5: a factor in (0, 1]" in caplog.text


def test_validation_once_per_epoch(tmp_path):
    rng = np.random.default_rng(1)
    write_text(tmp_path / "text.gz", [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(300)])
    assert main(["cslm-train", "-q", "--text", str(tmp_path / "text.gz"), "--shortlist", "8", "--order", "3",
                 "--embed", "4", "--hidden", "8", "--valid-fraction", "0.05", "--valid-every", "0",
                 "--max-epochs", "2", "--device", "cpu", "--optimizer", "adam", "--out", str(tmp_path / "r")]) == 0
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["epoch"] == 2 and s["stop"] == "2 epoch(s) done"
    ck = torch.load(tmp_path / "r" / "last.pt", weights_only=False)
    assert len(ck["trainer"]["history"]["valid"]) == 3   # before training and after each epoch
