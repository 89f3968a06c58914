"""Many pairs at once, each piece of work done once: ``log p(target | source)`` over prefix trees.

A phrase table has many targets per source (about 28 in the shared baseline's), and the targets
of one source share their first words.  ``PrefixForest`` arranges a set of pairs so that

* the encoder runs once per distinct source phrase;
* what depends on ``c`` alone (h'_0, C c, O_c c) is computed once per source;
* the targets of one source are merged into a prefix tree: the decoder state after a prefix
  depends only on (source, prefix), so each distinct prefix costs one decoder step and one
  softmax, however many targets share it;
* the trees' levels run together across sources (nodes are numbered level by level), and the
  deep output runs on the nodes alone (no padding anywhere).

``forest_log_probs`` computes each pair's score from that arrangement.  It is an ordinary
differentiable computation: the scorer runs it under ``torch.inference_mode`` and the trainer's
by-source batches back-propagate through it.  Its result equals teacher-forced scoring of each
pair alone (``RNNEncoderDecoder.forward``), and so do its gradients: a prefix shared by k pairs
is computed once and its log-probability is summed into each of the k pairs' scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .model import RNNEncoderDecoder, pad
from .vocab import EOS_ID


@dataclass
class PrefixForest:
    """Pairs of id sequences (each ending in EOS) as prefix trees, one per distinct source.

    ``sources``: the distinct source sequences.  Nodes (one per distinct (source, target prefix),
    the empty prefix included) are numbered level by level: level d holds the nodes
    ``level_start[d]:level_start[d + 1]``; ``parent`` is a node's parent's index *within the
    previous level* (-1 at the roots), ``token`` the last symbol of its prefix (-1 for the empty
    prefix), ``src`` its source.  A request asks for p(``req_token`` | node ``req_node``) and adds
    it to the score of pair ``req_pair``; requests are sorted by node.
    """
    n_pairs: int
    sources: list[tuple[int, ...]]
    level_start: np.ndarray
    parent: np.ndarray
    token: np.ndarray
    src: np.ndarray
    req_node: np.ndarray
    req_token: np.ndarray
    req_pair: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.token)

    @classmethod
    def build(cls, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> "PrefixForest":
        if len(src_ids) != len(tgt_ids):
            raise ValueError("as many sources as targets are needed")
        src_of: dict[tuple[int, ...], int] = {}
        pair_src = [src_of.setdefault(tuple(s), len(src_of)) for s in src_ids]
        child: dict[tuple[int, int], int] = {}
        root: dict[int, int] = {}
        node_parent: list[int] = []
        node_token: list[int] = []
        node_src: list[int] = []
        node_depth: list[int] = []
        req_node: list[int] = []
        req_tok: list[int] = []
        req_pair: list[int] = []
        for p, (k, tgt) in enumerate(zip(pair_src, tgt_ids)):
            node = root.get(k)
            if node is None:
                node = root[k] = len(node_parent)
                node_parent.append(-1); node_token.append(-1); node_src.append(k); node_depth.append(0)
            for d, y in enumerate(tgt):
                y = int(y)
                req_node.append(node); req_tok.append(y); req_pair.append(p)
                if y == EOS_ID:
                    break
                key = (node, y)
                nxt = child.get(key)
                if nxt is None:
                    nxt = child[key] = len(node_parent)
                    node_parent.append(node); node_token.append(y); node_src.append(k); node_depth.append(d + 1)
                node = nxt
        # renumber level by level, so that each level is a contiguous block
        depth = np.asarray(node_depth, dtype=np.int64)
        order = np.argsort(depth, kind="stable")
        new_id = np.empty(len(order), dtype=np.int64)
        new_id[order] = np.arange(len(order))
        level_start = np.searchsorted(depth[order], np.arange(int(depth.max(initial=0)) + 2))
        parent_old = np.asarray(node_parent, dtype=np.int64)[order]
        parent = np.where(parent_old < 0, -1, new_id[np.maximum(parent_old, 0)]
                          - level_start[np.maximum(depth[order] - 1, 0)])
        rn = new_id[np.asarray(req_node, dtype=np.int64)]
        by_node = np.argsort(rn, kind="stable")
        return cls(n_pairs=len(src_ids), sources=list(src_of), level_start=level_start, parent=parent,
                   token=np.asarray(node_token, dtype=np.int64)[order],
                   src=np.asarray(node_src, dtype=np.int64)[order], req_node=rn[by_node],
                   req_token=np.asarray(req_tok, dtype=np.int64)[by_node],
                   req_pair=np.asarray(req_pair, dtype=np.int64)[by_node])


def request_log_probs(model: RNNEncoderDecoder, forest: PrefixForest, device: torch.device,
                      readout_rows: int | None = None, encoder_rows: int | None = None,
                      candidates: Tensor | None = None) -> Tensor:
    """log p(``req_token`` | node) of each request of ``forest``, in the requests' order.

    ``readout_rows`` and ``encoder_rows`` bound how many softmax rows and source phrases are
    computed at once (memory), without changing the result's meaning; ``candidates`` (sorted
    word ids holding every requested token): the softmax over those words only (training's
    sampled softmax)."""
    dec = model.decoder
    dtype = dec.embed.weight.dtype
    n_src = len(forest.sources)
    if forest.n_pairs == 0:
        return torch.zeros(0, device=device, dtype=dtype)

    # 1. the distinct sources -> c, and the per-source constants h'_0, C c, O_c c
    order = sorted(range(n_src), key=lambda k: len(forest.sources[k]))
    step = encoder_rows or n_src
    parts = []
    for a in range(0, n_src, step):
        part = order[a:a + step]
        x, lengths = pad([list(forest.sources[k]) for k in part], device)
        parts.append(model.encoder(x, lengths).to(dtype))
    c_sorted = torch.cat(parts, 0)
    inv = np.empty(n_src, dtype=np.int64)
    inv[np.asarray(order)] = np.arange(n_src)
    c = c_sorted[torch.from_numpy(inv).to(device)]
    h0, Cc, Oc = dec.constants(c)

    # 2. e(y_{t-1}) of each node; e(y_0) = 0 at the roots
    token = torch.from_numpy(forest.token).to(device)
    nsrc = torch.from_numpy(forest.src).to(device)
    e_prev = dec.embed(token.clamp(min=0)) * (token >= 0).unsqueeze(1).to(dtype)

    # 3. decoder states, one tree level at a time across all sources
    levels: list[Tensor] = []
    ls = forest.level_start
    with dec.cell.unrolled():
        for d in range(len(ls) - 1):
            a, b = int(ls[d]), int(ls[d + 1])
            src_k = nsrc[a:b]
            prev = h0[src_k] if d == 0 else levels[-1][torch.from_numpy(forest.parent[a:b]).to(device)]
            x, inside = dec.input_terms(e_prev[a:b], Cc[src_k])
            levels.append(dec.cell.step(x, prev, inside).to(dtype))
    states = torch.cat(levels, 0)

    # 4. deep output and softmax per node, then the requested symbols
    n_nodes = forest.n_nodes
    rows = readout_rows or n_nodes
    rn, rt = forest.req_node, torch.from_numpy(forest.req_token).to(device)
    if candidates is not None:  # word id -> its column of the sampled softmax
        rt = torch.searchsorted(candidates, rt)
    picked = []
    for a in range(0, n_nodes, rows):
        b = min(a + rows, n_nodes)
        logp = dec.log_probs(states[a:b], e_prev[a:b], Oc[nsrc[a:b]], candidates)
        lo, hi = np.searchsorted(rn, [a, b])
        picked.append(logp[torch.from_numpy(rn[lo:hi] - a).to(device), rt[lo:hi]])
    return torch.cat(picked)


def forest_log_probs(model: RNNEncoderDecoder, forest: PrefixForest, device: torch.device,
                     readout_rows: int | None = None, encoder_rows: int | None = None,
                     candidates: Tensor | None = None) -> Tensor:
    """log p(target | source) of each pair of ``forest`` (n_pairs,), in the pairs' order: each
    request's log-probability summed into its pair."""
    picked = request_log_probs(model, forest, device, readout_rows, encoder_rows, candidates)
    pair = torch.from_numpy(forest.req_pair).to(device)
    return picked.new_zeros(forest.n_pairs).index_add_(0, pair, picked)


class ForestModel(nn.Module):
    """``forward(forest)`` -> each pair's log p(target | source): the network called on prefix
    trees, as one module, so that DistributedDataParallel can wrap it like the network itself."""

    def __init__(self, model: RNNEncoderDecoder, readout_rows: int | None = None):
        super().__init__()
        self.model = model
        self.readout_rows = readout_rows

    def forward(self, forest: PrefixForest, candidates: Tensor | None = None) -> Tensor:
        return forest_log_probs(self.model, forest, self.model.decoder.embed.weight.device, self.readout_rows,
                                candidates=candidates)
