"""Prefix-tree (by-source) training: the same log-probabilities and gradients as scoring each pair
alone, by-source minibatches that cover every pair once, bf16 training close to fp32, and options
refused or warned against before any data is read."""
import os

import numpy as np
import pytest
import torch

from conftest import check_finite_differences, table_with_vocab, tiny_model, tiny_vocabs
from rescorer import data as pairdata
from rescorer import machine
from rescorer.cli import main
from rescorer.cslm import CSLM, CSLMConfig, load_cslm_checkpoint
from rescorer.model import pad
from rescorer.tree import ForestModel, PrefixForest, forest_log_probs
from rescorer.vocab import load_vocab_dir

PAIRS = [("the house is", "la maison"), ("the house is", "la maison est"), ("the house is", "la chat"),
         ("a cat", "un chat est bleue"), ("the house is", "un"), ("a cat", "un chat"), ("blue", "bleue"),
         ("a cat", "un chat"), ("the house is", "la maison est bleue")]   # shared prefixes, a repeated pair


def ids(pairs):
    sv, tv = tiny_vocabs()
    return [sv.ids(a.split()) for a, _ in pairs], [tv.ids(b.split()) for _, b in pairs]


def test_forest_shares_sources_and_prefixes():
    srcs, tgts = ids(PAIRS)
    f = PrefixForest.build(srcs, tgts)
    assert len(f.sources) == 3 and f.n_pairs == len(PAIRS)
    # one node per distinct (source, prefix), the empty prefix included
    prefixes = {(tuple(s), tuple(t[:k])) for s, t in zip(srcs, tgts) for k in range(len(t))}
    assert f.n_nodes == len(prefixes) < sum(len(t) for t in tgts)
    by_length = np.bincount([len(t) for _, t in prefixes])
    assert list(np.diff(f.level_start)) == list(by_length)      # level d: the prefixes of d symbols
    assert len(f.req_node) == sum(len(t) for t in tgts) and np.all(np.diff(f.req_node) >= 0)


@pytest.mark.parametrize("gate,cell", [("reset-before", "gru"), ("reset-after", "gru"), ("reset-before", "lstm"),
                                       ("reset-before", "tanh")])
def test_forest_log_probs_and_gradients_equal_each_pair_alone(gate, cell):
    m = tiny_model(gate, torch.float64, scale=0.4, cell=cell)
    srcs, tgts = ids(PAIRS)
    s, sl = pad(srcs)
    t, tl = pad(tgts)
    alone = m(s, sl, t, tl)
    together = forest_log_probs(m, PrefixForest.build(srcs, tgts), torch.device("cpu"), readout_rows=4,
                                encoder_rows=2)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    weights = torch.linspace(0.5, 1.5, len(PAIRS), dtype=torch.float64)   # any loss of the pairs' scores
    g_alone = torch.autograd.grad((alone * weights).sum(), list(m.parameters()))
    g_tree = torch.autograd.grad((ForestModel(m)(PrefixForest.build(srcs, tgts)) * weights).sum(),
                                 list(m.parameters()))
    for (name, _), a, b in zip(m.named_parameters(), g_alone, g_tree):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-11, msg=name)


def test_sampled_softmax_is_the_softmax_over_its_words_and_the_full_one_over_all():
    """The softmax over candidate words V': over every word it is the full softmax (both paths),
    over fewer it is log_softmax of the full logits' V' columns, computed here independently."""
    m = tiny_model("reset-before", torch.float64, scale=0.4)
    srcs, tgts = ids(PAIRS)
    s, sl = pad(srcs)
    t, tl = pad(tgts)
    forest = PrefixForest.build(srcs, tgts)
    n = m.cfg.tgt_vocab
    every = torch.arange(n)
    torch.testing.assert_close(m(s, sl, t, tl, every), m(s, sl, t, tl), rtol=0, atol=1e-12)
    torch.testing.assert_close(ForestModel(m)(forest, every), m(s, sl, t, tl), rtol=0, atol=1e-12)
    words = sorted({w for x in tgts for w in x} | {0, n - 1})
    assert len(words) < n
    cand = torch.tensor(words)
    # independently: each target word's full logit, normalised over the V' columns only
    dec, c = m.decoder, m.encoder(s, sl)
    expect = []
    for i, y in enumerate(tgts):
        h, _, Oc = dec.constants(c[i:i + 1])
        x_prev = torch.zeros(1, m.cfg.rank, dtype=torch.float64)
        total = 0.0
        for w in y:
            x, inside = dec.input_terms(x_prev, dec.C(c[i:i + 1]))
            h = dec.cell.step(x, h, inside)
            st = dec.cell.output(h)
            sp = dec.O_h(st) + dec.O_y(x_prev) + Oc
            logits = dec.G_l(dec.G_r(sp.view(1, -1, dec.maxout_pool).amax(-1)))[0]
            total = total + logits[w] - torch.logsumexp(logits[cand], 0)
            x_prev = dec.embed(torch.tensor([w]))
        expect.append(total)
    expect = torch.stack(expect)
    torch.testing.assert_close(m(s, sl, t, tl, cand), expect, rtol=0, atol=1e-10)
    torch.testing.assert_close(ForestModel(m)(forest, cand), expect, rtol=0, atol=1e-10)
    assert torch.all(m(s, sl, t, tl, cand) > m(s, sl, t, tl))   # fewer words to share the mass with


def test_sampled_softmax_gradient_estimates_the_full_one():
    """Averaged over draws of V' (the batch's target words and K uniform ones), the sampled
    softmax's gradient points where the full softmax's does, the closer the more words it draws."""
    m = tiny_model("reset-before", torch.float64, scale=0.4)
    srcs, tgts = ids(PAIRS)
    s, sl = pad(srcs)
    t, tl = pad(tgts)
    params = list(m.parameters())

    def grad(cand=None):
        return torch.cat([g.flatten() for g in torch.autograd.grad(-m(s, sl, t, tl, cand).mean(), params)])
    full = grad()
    n = m.cfg.tgt_vocab
    targets = np.unique(np.concatenate([np.asarray(x) for x in tgts]))
    rng = np.random.default_rng(0)
    cosine = {}
    for k in (2, n // 2):
        mean = sum(grad(torch.from_numpy(np.unique(np.concatenate([targets, rng.choice(n, k, replace=False)]))))
                   for _ in range(100)) / 100
        cosine[k] = float(torch.nn.functional.cosine_similarity(mean, full, 0))
    assert cosine[n // 2] > 0.99 and cosine[n // 2] > cosine[2] > 0.5, cosine


def test_forest_gradients_equal_finite_differences():
    m = tiny_model("reset-before", torch.float64, scale=0.3, hidden=4, rank=3, maxout=3)
    srcs, tgts = ids(PAIRS)
    forest = PrefixForest.build(srcs, tgts)

    def loss():
        return -forest_log_probs(m, forest, torch.device("cpu")).mean()
    assert check_finite_differences(m, loss, per_tensor=3, seed=1) >= 3 * 15


def test_bf16_loss_and_gradients_are_close_to_fp32():
    m = tiny_model("reset-before", torch.float32, scale=0.3, hidden=32, rank=16, maxout=16)
    srcs, tgts = ids(PAIRS)
    forest = PrefixForest.build(srcs, tgts)
    exact = forest_log_probs(m, forest, torch.device("cpu"))
    g_exact = torch.autograd.grad(exact.sum(), list(m.parameters()))
    with torch.autocast("cpu", torch.bfloat16):
        approx = forest_log_probs(m, forest, torch.device("cpu"))
    g_approx = torch.autograd.grad(approx.float().sum(), list(m.parameters()))
    assert approx.dtype == torch.float32            # the softmax and the sums stay in fp32
    torch.testing.assert_close(approx, exact, rtol=0.03, atol=0.05)
    a, b = torch.cat([g.flatten() for g in g_exact]), torch.cat([g.flatten() for g in g_approx])
    assert torch.nn.functional.cosine_similarity(a, b, 0) > 0.99 and (a - b).norm() < 0.1 * a.norm()
    assert not torch.equal(approx, exact)           # the products really ran in bfloat16


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, real_lines):
    d = tmp_path_factory.mktemp("bysource")
    table = table_with_vocab(d, real_lines[:1500])
    sv, tv = load_vocab_dir(str(d / "vocab"))
    metas = {b: pairdata.prepare(str(table), sv, tv, str(d / b), valid_fraction=0.1, n_buckets=3, bucket_by=b,
                                 progress=False) for b in ("pair", "source")}
    return d, table, metas


def test_by_source_buckets_hold_every_target_of_a_source_and_the_same_validation_pairs(prepared):
    d, _, metas = prepared
    assert metas["pair"]["train_pairs"] == metas["source"]["train_pairs"] > 1000
    v = {b: pairdata.Pairs.load(str(d / b / "valid.npz")) for b in ("pair", "source")}
    for k in ("src", "src_off", "tgt", "tgt_off"):
        assert np.array_equal(getattr(v["pair"], k), getattr(v["source"], k))
    home = {}
    for b in range(3):
        p = pairdata.Pairs.load(str(d / "source" / f"bucket-{b:04d}.npz"))
        for i in range(len(p)):
            assert home.setdefault(p.source(i).tobytes(), b) == b


def test_by_source_batches_cover_every_pair_once_and_share_sources(prepared):
    d, _, metas = prepared

    def epoch(e):
        return list(pairdata.epoch_batches_by_source(str(d / "source"), 3, 1234, e, batch_size=32, per_source=5))
    batches = epoch(0)
    seen = [(tuple(s), tuple(t)) for srcs, tgts in batches for s, t in zip(srcs, tgts)]
    assert len(seen) == metas["source"]["train_pairs"]
    uniform = [(tuple(s), tuple(t)) for srcs, tgts in pairdata.epoch_batches(str(d / "pair"), 3, 1234, 0, 32)
               for s, t in zip(srcs, tgts)]
    assert sorted(seen) == sorted(uniform)
    assert all(len(srcs) <= 32 for srcs, _ in batches) and sum(len(s) == 32 for s, _ in batches) >= len(batches) - 3
    shared = 0
    for srcs, _ in batches:
        keys = [s.tobytes() for s in srcs]
        shared += len(keys) - len(set(keys))
    assert shared > len(seen) / 3                      # the encoder's work is shared
    again = epoch(0)
    assert all(all(np.array_equal(a, b) for a, b in zip(x[1], y[1])) for x, y in zip(batches, again))
    assert [tuple(t) for _, ts in epoch(1) for t in ts] != [tuple(t) for _, ts in batches for t in ts]


def test_a_sample_as_large_as_the_shortlist_is_refused_before_any_data_is_read(prepared, tmp_path, caplog):
    d, table, _ = prepared
    n = len(load_vocab_dir(str(d / "vocab"))[1])
    rc = main(["train", "-q", "--phrase-table", str(table), "--vocab", str(d / "vocab"), "--out", str(tmp_path / "r"),
               "--sampled-softmax", str(n)])
    assert rc == 1 and f"--sampled-softmax {n}: not fewer than the {n} words of the shortlist" in caplog.text
    assert not (tmp_path / "r").exists()
    assert main(["train", "-q", "--phrase-table", str(table), "--vocab", str(d / "vocab"), "--out",
                 str(tmp_path / "r"), "--sampled-softmax", "-2"]) == 1
    assert "--sampled-softmax -2: a number of words" in caplog.text and not (tmp_path / "r").exists()


@pytest.mark.parametrize("option,value", [("--batch-size", "-4"), ("--per-source", "0")])
def test_a_wrong_option_value_is_refused_before_any_data_is_read(prepared, tmp_path, caplog, option, value):
    d, table, _ = prepared
    rc = main(["train", "-q", "--phrase-table", str(table), "--vocab", str(d / "vocab"), "--out", str(tmp_path / "r"),
               "--batching", "by-source", option, value])
    assert rc == 1 and f"{option} {value}: must be at least 1" in caplog.text
    assert not (tmp_path / "r").exists()


def test_bf16_without_the_instructions_warns_naming_the_option_and_what_the_cpu_lacks(prepared, tmp_path, caplog,
                                                                                      monkeypatch):
    d, table, _ = prepared
    monkeypatch.setattr(machine, "cpu_features", lambda: ["avx2"])
    assert machine.bf16_shortfall() is not None
    rc = main(["train", "-q", "--phrase-table", str(table), "--vocab", str(d / "vocab"), "--out", str(tmp_path / "r"),
               "--hidden", "8", "--rank", "4", "--maxout-units", "4", "--valid-fraction", "0.1", "--max-updates", "2",
               "--precision", "bf16"])
    assert rc == 0
    assert "--precision bf16" in caplog.text and "has neither AVX-512 BF16 nor AMX" in caplog.text
    assert os.path.exists(tmp_path / "r" / "best.pt")


def test_cslm_trains_in_bf16_with_fp32_log_probabilities(tmp_path):
    torch.manual_seed(0)
    m = CSLM(CSLMConfig(50, order=3, embed=8, hidden=(16,)))
    ctx, word = torch.randint(0, 50, (12, 2)), torch.randint(0, 50, (12,))
    with torch.autocast("cpu", torch.bfloat16):
        lp = m(ctx, word)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, m(ctx, word), rtol=0.02, atol=0.05)
    text = tmp_path / "fr.txt"
    text.write_text("".join(f"le chat {i % 5} est sur la table {i % 7}\n" for i in range(200)))
    assert main(["cslm-train", "-q", "--input", str(text), "--shortlist", "20", "--order", "3", "--embed", "4",
                 "--hidden", "8", "--batch-size", "16", "--valid-fraction", "0.1", "--max-updates", "5",
                 "--precision", "bf16", "--output", str(tmp_path / "run")]) == 0
    ck = load_cslm_checkpoint(tmp_path / "run" / "last.pt")
    assert all(v.dtype == torch.float32 for v in ck["model"].state_dict().values())   # fp32 master weights
