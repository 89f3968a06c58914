"""Fast exact scoring of many phrase pairs: ``log p(target | source)``.

The work is organised around what a phrase table looks like (about 20 targets per source):

* the encoder runs once per distinct source phrase, in batches sorted by length;
* what depends on ``c`` alone (h'_0, C c, O_c c) is computed once per source;
* the targets of one source are merged into a prefix tree: the decoder state after a
  prefix depends only on (source, prefix), so each distinct prefix costs one decoder step
  and one softmax, however many targets share it;
* tree levels of all sources in a batch run together, and the deep output runs on the
  nodes alone (no padding anywhere).

The result equals teacher-forced scoring of each pair alone (tests check it to float
round-off).  ``score_pairs`` keeps the input order.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .model import RNNEncoderDecoder, pad
from .runtime import PRECISIONS, default_device
from .vocab import EOS_ID, Vocabulary


class PhraseScorer:
    """Scores phrase pairs with a trained RNN Encoder-Decoder.

    >>> scorer = PhraseScorer.load("run/best.pt")             # doctest: +SKIP
    >>> scorer.score_pairs([("the house", "la maison")])       # doctest: +SKIP
    [-2.91...]

    With a model trained with ``--inverse`` the scores are ``log p(source | target)``.
    ``precision="bf16"`` runs the matrix products in bfloat16 (``torch.autocast``), and
    ``"int8"`` on the CPU with the matrices quantised (``rescorer.int8``): faster where the
    hardware has the instructions for them (AMX, AVX-512 BF16 / VNNI), and no longer exact.
    """

    def __init__(self, model: RNNEncoderDecoder, src_vocab: Vocabulary, tgt_vocab: Vocabulary,
                 inverse: bool = False, device: str | torch.device | None = None,
                 readout_rows: int = 512, encoder_rows: int = 2048, precision: str = "fp32"):
        self.device = torch.device(device) if device is not None else default_device()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.precision = precision
        if precision == "int8":
            if self.device.type != "cpu":
                raise ValueError(f"int8 scoring runs on the CPU, not on {self.device}")
            from .int8 import int8_copy
            model = int8_copy(model)
        self.model = model.to(self.device).eval()
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.inverse = inverse
        self.readout_rows = readout_rows    # softmax rows at once: bounds memory (rows x |V| floats)
        self.encoder_rows = encoder_rows

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None, **kw) -> "PhraseScorer":
        dev = torch.device(device) if device is not None else default_device()
        ck = load_checkpoint(path, dev)
        return cls(ck["model"], ck["src_vocab"], ck["tgt_vocab"], ck["inverse"], dev, **kw)

    # -- public API --------------------------------------------------------------------------
    def score_pairs(self, pairs: Iterable[tuple[str, str]]) -> list[float]:
        """log p(target | source) (natural log) of each (source, target) pair of words."""
        src_ids, tgt_ids = [], []
        for s, t in pairs:
            if self.inverse:
                s, t = t, s
            src_ids.append(tuple(self.src_vocab.ids(s.split())))
            tgt_ids.append(tuple(self.tgt_vocab.ids(t.split())))
        return self.score_ids(src_ids, tgt_ids).tolist()

    def n_unknown(self, source: str, target: str) -> int:
        """Words of the pair outside the network's shortlists (the paper's WP feature)."""
        if self.inverse:
            source, target = target, source
        return self.src_vocab.n_unknown(source.split()) + self.tgt_vocab.n_unknown(target.split())

    # -- the heavy loop ------------------------------------------------------------------------
    def score_ids(self, src_ids: Sequence[tuple[int, ...]], tgt_ids: Sequence[tuple[int, ...]]) -> np.ndarray:
        """Scores of id sequences (each ending in EOS) as float64, in input order."""
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            return self._score_ids(src_ids, tgt_ids)

    def _score_ids(self, src_ids: Sequence[tuple[int, ...]], tgt_ids: Sequence[tuple[int, ...]]) -> np.ndarray:
        if len(src_ids) != len(tgt_ids):
            raise ValueError("as many sources as targets are needed")
        if not src_ids:
            return np.zeros(0)
        dec = self.model.decoder
        dev = self.device
        dtype = dec.embed.weight.dtype

        # 1. distinct sources -> c, and the per-source constants h'_0, C c, O_c c
        src_of: dict[tuple[int, ...], int] = {}
        pair_src = [src_of.setdefault(s, len(src_of)) for s in src_ids]
        sources = list(src_of)
        order = sorted(range(len(sources)), key=lambda k: len(sources[k]))
        c = torch.empty(len(sources), self.model.cfg.hidden, device=dev, dtype=dtype)
        for a in range(0, len(order), self.encoder_rows):
            part = order[a:a + self.encoder_rows]
            x, lengths = pad([list(sources[k]) for k in part], dev)
            c[torch.tensor(part, device=dev)] = self.model.encoder(x, lengths).to(dtype)
        h0, Cc, Oc = dec.constants(c)

        # 2. prefix trees: node = (source, target prefix); requests = (node, next symbol, pair)
        child: dict[tuple[int, int], int] = {}
        node_parent: list[int] = []
        node_token: list[int] = []     # last symbol of the prefix, -1 for the empty prefix
        node_src: list[int] = []
        node_depth: list[int] = []
        root: dict[int, int] = {}
        req_node: list[int] = []
        req_tok: list[int] = []
        req_pair: list[int] = []
        for p, (k, tgt) in enumerate(zip(pair_src, tgt_ids)):
            node = root.get(k)
            if node is None:
                node = root[k] = len(node_parent)
                node_parent.append(-1); node_token.append(-1); node_src.append(k); node_depth.append(0)
            for d, y in enumerate(tgt):
                req_node.append(node); req_tok.append(y); req_pair.append(p)
                if y == EOS_ID:
                    break
                key = (node, y)
                nxt = child.get(key)
                if nxt is None:
                    nxt = child[key] = len(node_parent)
                    node_parent.append(node); node_token.append(y); node_src.append(k); node_depth.append(d + 1)
                node = nxt

        n_nodes = len(node_parent)
        parent = torch.tensor(node_parent, device=dev)
        token = torch.tensor(node_token, device=dev)
        nsrc = torch.tensor(node_src, device=dev)
        depth = np.asarray(node_depth)
        # e(y_{t-1}) of each node; e(y_0) = 0 at the roots
        e_prev = dec.embed(token.clamp(min=0))
        e_prev[token < 0] = 0.0

        # 3. decoder states, one tree level at a time across all sources
        states = torch.empty(n_nodes, dec.cell.state_size, device=dev, dtype=dtype)
        for d in range(int(depth.max()) + 1):
            idx = torch.from_numpy(np.flatnonzero(depth == d)).to(dev)
            src_k = nsrc[idx]
            prev = h0[src_k] if d == 0 else states[parent[idx]]
            x, inside = dec.input_terms(e_prev[idx], Cc[src_k])
            states[idx] = dec.cell.step(x, prev, inside).to(dtype)

        # 4. deep output and softmax per node, then pick the requested symbols
        rn = np.asarray(req_node)
        by_node = np.argsort(rn, kind="stable")
        rn_sorted = rn[by_node]
        rt_sorted = torch.from_numpy(np.asarray(req_tok)[by_node]).to(dev)
        picked = torch.empty(len(rn), device=dev, dtype=dtype)
        for a in range(0, n_nodes, self.readout_rows):
            b = min(a + self.readout_rows, n_nodes)
            logp = dec.log_probs(states[a:b], e_prev[a:b], Oc[nsrc[a:b]])
            lo, hi = np.searchsorted(rn_sorted, [a, b])
            rows = torch.from_numpy(rn_sorted[lo:hi] - a).to(dev)
            picked[lo:hi] = logp[rows, rt_sorted[lo:hi]]
        scores = np.zeros(len(src_ids))
        np.add.at(scores, np.asarray(req_pair)[by_node], picked.double().cpu().numpy())
        return scores


def difference_stats(exact: np.ndarray, approx: np.ndarray) -> dict:
    """How far approximate log-probabilities (a reduced precision) are from exact ones: the
    maximum, mean and 99th percentile of |difference|, and the mean |exact| for scale."""
    d = np.abs(np.asarray(exact, float) - np.asarray(approx, float))
    return {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
            "p99_abs_diff": float(np.quantile(d, 0.99)), "mean_abs_logp": float(np.abs(exact).mean())}
