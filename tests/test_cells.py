"""The recurrent units of the ablation (LSTM, plain tanh) against NumPy transcriptions of their
equations, the fast scorer against teacher-forced scoring with each, their gradients, and
checkpoints that say which cell they hold."""
import numpy as np
import pytest
import torch

from rescorer.checkpoint import load_checkpoint, save_checkpoint
from rescorer.model import ModelConfig, pad
from rescorer.scorer import PhraseScorer

from conftest import tiny_model, tiny_vocabs


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_step(cell, W, b, U, e, state, H, extra):
    """One step as the model's docstring writes it; ``extra`` is the decoder's C c term."""
    a = W @ e + b + extra + U @ state[:H]
    if cell == "tanh":
        return np.tanh(a)                                   # h_t = tanh(W e + U h_{t-1})
    i, f, o, g = sig(a[:H]), sig(a[H:2 * H]), sig(a[2 * H:3 * H]), np.tanh(a[3 * H:])
    m = f * state[H:] + i * g                               # m_t = f m_{t-1} + i g
    return np.concatenate([o * np.tanh(m), m])              # h_t = o tanh(m_t)


def numpy_score(model, src, tgt, cell):
    p = {k: v.detach().double().numpy() for k, v in model.named_parameters()}
    H = model.cfg.hidden
    size = 2 * H if cell == "lstm" else H
    blocks = 4 if cell == "lstm" else 1
    state = np.zeros(size)
    for x in src:
        state = numpy_step(cell, p["encoder.cell.W_in.weight"], p["encoder.cell.W_in.bias"], p["encoder.cell.U"],
                           p["encoder.embed.weight"][x], state, H, np.zeros(blocks * H))
    c = np.tanh(p["encoder.V.weight"] @ state[:H] + p["encoder.V.bias"])
    h0 = np.tanh(p["decoder.V.weight"] @ c + p["decoder.V.bias"])
    state = np.concatenate([h0, np.zeros(H)]) if cell == "lstm" else h0
    Cc = p["decoder.C.weight"] @ c
    e_prev = np.zeros(model.cfg.rank)
    total = 0.0
    for y in tgt:
        state = numpy_step(cell, p["decoder.cell.W_in.weight"], p["decoder.cell.W_in.bias"], p["decoder.cell.U"],
                           e_prev, state, H, Cc)
        s1 = (p["decoder.O_h.weight"] @ state[:H] + p["decoder.O_h.bias"] + p["decoder.O_y.weight"] @ e_prev
              + p["decoder.O_c.weight"] @ c)
        s = s1.reshape(-1, model.cfg.maxout_pool).max(1)
        logits = p["decoder.G_l.weight"] @ (p["decoder.G_r.weight"] @ s) + p["decoder.G_l.bias"]
        total += logits[y] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        e_prev = p["decoder.embed.weight"][y]
    return total


@pytest.mark.parametrize("cell", ["lstm", "tanh"])
def test_network_equals_numpy_equations(cell):
    m = tiny_model(cell=cell, dtype=torch.float64)
    sv, tv = tiny_vocabs()
    for src, tgt in [("the house is blue", "la maison est bleue"), ("a cat", "un chat"), ("blue", "bleue")]:
        s, t = sv.ids(src.split()), tv.ids(tgt.split())
        xs, sl = pad([s])
        xt, tl = pad([t])
        with torch.no_grad():
            got = m(xs, sl, xt, tl).item()
        assert got == pytest.approx(numpy_score(m, s, t, cell), abs=1e-9)


@pytest.mark.parametrize("cell", ["lstm", "tanh"])
def test_fast_scorer_equals_teacher_forcing(cell):
    m = tiny_model(cell=cell)
    sv, tv = tiny_vocabs()
    rng = np.random.default_rng(5)
    pairs = [(" ".join(rng.choice(sv.words[2:] + ["oov"], rng.integers(1, 6))),
              " ".join(rng.choice(tv.words[2:], rng.integers(1, 6)))) for _ in range(60)]
    pairs += [(pairs[0][0], pairs[1][1]), (pairs[0][0], pairs[2][1])]   # shared sources and prefixes
    want = []
    for a, b in pairs:
        s, sl = pad([sv.ids(a.split())])
        t, tl = pad([tv.ids(b.split())])
        with torch.no_grad():
            want.append(m(s, sl, t, tl).item())
    scorer = PhraseScorer(m, sv, tv, device="cpu", readout_rows=5, encoder_rows=3)
    np.testing.assert_allclose(scorer.score_pairs(pairs), want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cell", ["lstm", "tanh"])
def test_gradients_equal_finite_differences(cell):
    """Backpropagation through each cell against central differences, in float64, every weight."""
    m = tiny_model(cell=cell, dtype=torch.float64, scale=0.3, hidden=4, rank=3, maxout=3)
    sv, tv = tiny_vocabs()
    xs, sl = pad([sv.ids("the house is blue".split()), sv.ids("a cat".split())])
    xt, tl = pad([tv.ids("la maison est bleue".split()), tv.ids("un chat".split())])
    names = [n for n, _ in m.named_parameters()]

    def loss(*weights):
        return torch.func.functional_call(m, dict(zip(names, weights)), (xs, sl, xt, tl)).sum()
    assert torch.autograd.gradcheck(loss, [p.detach().clone().requires_grad_() for p in m.parameters()],
                                    eps=1e-6, atol=1e-6)


def test_checkpoints_record_the_cell_and_older_ones_are_gru(tmp_path):
    sv, tv = tiny_vocabs()
    m = tiny_model(cell="lstm")
    save_checkpoint(tmp_path / "lstm.pt", m, sv, tv, False)
    ck = load_checkpoint(tmp_path / "lstm.pt")
    assert ck["config"].cell == "lstm"
    s = PhraseScorer.load(tmp_path / "lstm.pt", "cpu")
    assert np.isfinite(s.score_pairs([("the house", "la maison")])).all()
    # a checkpoint written before the cell option existed: no "cell" in its config
    g = tiny_model()
    save_checkpoint(tmp_path / "old.pt", g, sv, tv, False)
    payload = torch.load(tmp_path / "old.pt", weights_only=False)
    del payload["config"]["cell"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["config"].cell == "gru"


def test_a_reset_gate_form_needs_the_gated_unit():
    with pytest.raises(ValueError, match="no reset gate"):
        ModelConfig(10, 10, cell="lstm", gate="reset-after")
    with pytest.raises(ValueError, match="cell must be one of"):
        ModelConfig(10, 10, cell="rnn")
