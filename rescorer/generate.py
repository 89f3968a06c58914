"""Target phrases from the network alone (the paper's section 4.2): beam search over the target
shortlist for ``argmax_y log p(y | x)``, no phrase table involved.

A hypothesis is a prefix of target symbols; each step extends every live prefix by every
shortlist word (``[UNK]`` excluded: it is not a phrase) and by ``</s>``, which finishes it.
The ``beam`` best live prefixes go on; finished phrases are collected until no live prefix
can still beat the n-th best of them (log-probabilities only fall as a prefix grows) or
``max_len`` words are reached.  With a beam as wide as the number of prefixes, the result
is exact (tests compare it with enumerating every phrase).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import RNNEncoderDecoder, pad
from .vocab import EOS_ID, UNK_ID, Vocabulary


@dataclass
class Generated:
    words: list[str]
    logprob: float      # log p(words </s> | source), natural log


@torch.inference_mode()
def beam_search(model: RNNEncoderDecoder, tgt_vocab: Vocabulary, src_ids: list[int], beam: int = 10,
                n: int = 10, max_len: int = 10) -> list[Generated]:
    """The ``n`` most probable target phrases (up to ``max_len`` words, then ``</s>``) found by a
    beam of ``beam`` prefixes, best first."""
    if beam < 1 or n < 1 or max_len < 0:
        raise ValueError("beam and n must be positive, max_len not negative")
    dec = model.decoder
    dev = dec.G_l.weight.device
    x, lengths = pad([src_ids], dev)
    c = model.encoder(x, lengths)
    state, Cc, Oc = dec.constants(c)                        # one source: every row shares C c, O_c c
    e_prev = torch.zeros(1, dec.embed.embedding_dim, device=dev, dtype=c.dtype)   # e(y_0) = 0
    prefixes: list[list[int]] = [[]]
    scores = torch.zeros(1, device=dev, dtype=torch.float64)
    done: list[tuple[float, list[int]]] = []
    for t in range(max_len + 1):
        k = len(prefixes)
        xin, inside = dec.input_terms(e_prev, Cc.expand(k, -1))
        state = dec.cell.step(xin, state, inside)
        logp = dec.log_probs(state, e_prev, Oc.expand(k, -1)).double()
        total = scores[:, None] + logp                                   # (k, |V|)
        for i in range(k):                                               # </s> finishes a phrase
            done.append((float(total[i, EOS_ID]), prefixes[i]))
        done.sort(key=lambda d: -d[0])
        del done[n:]
        if t == max_len:
            break
        total[:, EOS_ID] = -float("inf")
        total[:, UNK_ID] = -float("inf")
        flat = total.view(-1)
        m = min(beam, int(torch.isfinite(flat).sum()))
        if m == 0:
            break
        best, idx = flat.topk(m)
        if len(done) == n and float(best[0]) <= done[-1][0]:
            break                                                        # nothing live can still enter
        rows, words = idx // total.shape[1], idx % total.shape[1]
        prefixes = [prefixes[r] + [int(w)] for r, w in zip(rows.tolist(), words.tolist())]
        scores = best
        state = state[rows]
        e_prev = dec.embed(words)
    return [Generated([tgt_vocab.words[i] for i in p], s) for s, p in done]
