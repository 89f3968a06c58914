"""The network against a plain NumPy transcription of the equations in paper-facts.md."""
import numpy as np
import pytest
import torch

from rescorer.model import pad
from rescorer.scorer import PhraseScorer

from conftest import tiny_model, tiny_vocabs


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def P(m):
    return {k: v.detach().double().numpy() for k, v in m.named_parameters()}


def gru_step(W_in, b_in, U, e, h, gate, ungated=None, inside=None):
    """r, z, h~ and h_t exactly as the paper writes them (biases kept)."""
    H = h.shape[0]
    W_r, W_z, W = W_in[:H], W_in[H:2 * H], W_in[2 * H:]
    b_r, b_z, b = b_in[:H], b_in[H:2 * H], b_in[2 * H:]
    U_r, U_z, U_ = U[:H], U[H:2 * H], U[2 * H:]
    gr = np.zeros(H) if ungated is None else ungated[:H]
    gz = np.zeros(H) if ungated is None else ungated[H:2 * H]
    r = sig(W_r @ e + b_r + U_r @ h + gr)
    z = sig(W_z @ e + b_z + U_z @ h + gz)
    if gate == "reset-before":
        cand_in = np.zeros(H) if ungated is None else ungated[2 * H:]
        h_tilde = np.tanh(W @ e + b + cand_in + U_ @ (r * h))
    else:
        inner = U_ @ h + (np.zeros(H) if inside is None else inside)
        h_tilde = np.tanh(W @ e + b + r * inner)
    return z * h + (1 - z) * h_tilde


def numpy_score(m, src_ids, tgt_ids, gate):
    """log p(y | x) of one pair by a naive loop over the paper's equations."""
    p = P(m)
    H = m.cfg.hidden
    h = np.zeros(H)
    for x in src_ids:
        h = gru_step(p["encoder.cell.W_in.weight"], p["encoder.cell.W_in.bias"], p["encoder.cell.U"],
                     p["encoder.embed.weight"][x], h, gate)
    c = np.tanh(p["encoder.V.weight"] @ h + p["encoder.V.bias"])                 # c = tanh(V h_N)
    hd = np.tanh(p["decoder.V.weight"] @ c + p["decoder.V.bias"])                # h'_0 = tanh(V' c)
    Cc = p["decoder.C.weight"] @ c                                               # [C_r c; C_z c; C c]
    e_prev = np.zeros(m.cfg.rank)                                                # e(y_0) = 0
    total = 0.0
    for y in tgt_ids:
        if gate == "reset-before":
            hd = gru_step(p["decoder.cell.W_in.weight"], p["decoder.cell.W_in.bias"], p["decoder.cell.U"],
                          e_prev, hd, gate, ungated=Cc)
        else:
            hd = gru_step(p["decoder.cell.W_in.weight"], p["decoder.cell.W_in.bias"], p["decoder.cell.U"],
                          e_prev, hd, gate, ungated=np.concatenate([Cc[:2 * H], np.zeros(H)]), inside=Cc[2 * H:])
        s_prime = (p["decoder.O_h.weight"] @ hd + p["decoder.O_h.bias"] + p["decoder.O_y.weight"] @ e_prev
                   + p["decoder.O_c.weight"] @ c)
        s = np.maximum(s_prime[0::2], s_prime[1::2])                             # s_i = max(s'_{2i-1}, s'_{2i})
        logits = p["decoder.G_l.weight"] @ (p["decoder.G_r.weight"] @ s) + p["decoder.G_l.bias"]
        logits -= logits.max()
        total += logits[y] - np.log(np.exp(logits).sum())
        e_prev = p["decoder.embed.weight"][y]
    return total


@pytest.mark.parametrize("gate", ["reset-before", "reset-after"])
def test_one_gru_step_equals_numpy(gate):
    m = tiny_model(gate, torch.float64)
    cell = m.encoder.cell
    rng = np.random.default_rng(1)
    e, h = rng.normal(size=(3, 5)), rng.normal(size=(3, 8))
    got = cell.step(cell.W_in(torch.from_numpy(e)), torch.from_numpy(h)).detach().numpy()
    p = P(m)
    for i in range(3):
        want = gru_step(p["encoder.cell.W_in.weight"], p["encoder.cell.W_in.bias"], p["encoder.cell.U"],
                        e[i], h[i], gate)
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12)


def test_update_gate_keeps_the_past():
    """z -> 1 copies h_{t-1}: the paper's convention (z weights the previous state)."""
    m = tiny_model(dtype=torch.float64)
    cell = m.encoder.cell
    H = 8
    x = torch.zeros(1, 3 * H, dtype=torch.float64)
    x[0, H:2 * H] = 50.0  # z = sigmoid(large) = 1
    h = torch.randn(1, H, dtype=torch.float64)
    torch.testing.assert_close(cell.step(x, h), h)


@pytest.mark.parametrize("gate", ["reset-before", "reset-after"])
def test_pair_scores_equal_numpy_loop(gate):
    m = tiny_model(gate, torch.float64)
    sv, tv = tiny_vocabs()
    pairs = [("the house", "la maison"), ("the house is blue", "la maison est bleue"),
             ("a cat", "un chat"), ("unknown words here", "la inconnue"), ("blue", "bleue est la maison un")]
    src = [sv.ids(s.split()) for s, _ in pairs]
    tgt = [tv.ids(t.split()) for _, t in pairs]
    want = np.array([numpy_score(m, s, t, gate) for s, t in zip(src, tgt)])
    s, sl = pad(src)
    t, tl = pad(tgt)
    np.testing.assert_allclose(m(s, sl, t, tl).detach().numpy(), want, rtol=1e-10)
    scorer = PhraseScorer(m, sv, tv, device="cpu")
    np.testing.assert_allclose(scorer.score_pairs(pairs), want, rtol=1e-10)
