"""How far back the training signal reaches: the norm of dL/dh_t, the gradient of a pair's loss
L = -log p(y | x) with respect to each encoder state h_t, against the distance from the end of
the source (0: the last state, the one c is made from).  A plain tanh unit lets it fade with the
distance (the vanishing gradient); the gated units carry it further.  For the LSTM the state is
[h_t; m_t], memory cell included, as it is the state the recurrence passes on.
"""
from __future__ import annotations

import numpy as np
import torch

from .data import Pairs
from .model import ModelConfig, RNNEncoderDecoder, pad


def parameter_count(cfg: ModelConfig) -> int:
    """Parameters of the network of ``cfg`` (built on the meta device: nothing is allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in RNNEncoderDecoder(cfg).parameters())


def hidden_for_parameters(cfg: ModelConfig, cell: str, target: int) -> int:
    """The hidden size that gives the ``cell`` network of ``cfg`` the parameter count nearest ``target``."""
    def count(h: int) -> int:
        return parameter_count(ModelConfig(**{**cfg.to_dict(), "cell": cell, "hidden": h}))
    lo, hi = 1, 8 * cfg.hidden
    while lo < hi:  # the count grows with the hidden size
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    return min((h for h in (lo - 1, lo) if h >= 1), key=lambda h: abs(count(h) - target))


def state_gradient_norms(model: RNNEncoderDecoder, pairs: Pairs, max_pairs: int = 2000,
                         device: torch.device | str = "cpu") -> dict[int, tuple[float, int]]:
    """{distance from the source's end: (mean of ||dL/dh_t||, number of states)} over the first
    ``max_pairs`` pairs, each pair's loss on its own (pairs grouped by source length, so no state
    is padding)."""
    model = model.to(device)
    was_training = model.training
    model.eval()
    enc = model.encoder
    n = min(len(pairs), max_pairs)
    by_len: dict[int, list[int]] = {}
    for i in range(n):
        by_len.setdefault(len(pairs.source(i)), []).append(i)
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    try:
        for length, idx in sorted(by_len.items()):
            src = torch.as_tensor(np.stack([pairs.source(i) for i in idx]), dtype=torch.long, device=device)
            tgt, tl = pad([pairs.target(i).tolist() for i in idx], device)
            x = enc.cell.W_in(enc.embed(src))
            state = x.new_zeros(len(idx), enc.cell.state_size)          # h_0 = 0
            states = []
            for t in range(length):
                state = enc.cell.step(x[:, t], state)
                state.retain_grad()
                states.append(state)
            c = torch.tanh(enc.V(enc.cell.output(state)))
            loss = -model.decoder(c, tgt, tl).sum()                      # each pair's own loss, summed
            model.zero_grad(set_to_none=True)
            loss.backward()
            for t, s in enumerate(states):
                d = length - 1 - t
                sums[d] = sums.get(d, 0.0) + float(s.grad.norm(dim=1).sum())
                counts[d] = counts.get(d, 0) + len(idx)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {d: (sums[d] / counts[d], counts[d]) for d in sorted(sums)}
