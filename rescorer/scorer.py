"""Fast exact scoring of many phrase pairs: ``log p(target | source)``.

The pairs of each chunk are arranged as prefix trees (``rescorer.tree``): the encoder runs once
per distinct source, what depends on ``c`` alone once per source, and each distinct target
prefix of a source costs one decoder step and one softmax.  The result equals teacher-forced
scoring of each pair alone (tests check it to float round-off).  ``score_pairs`` keeps the
input order.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .model import RNNEncoderDecoder
from .runtime import PRECISIONS, default_device
from .tree import PrefixForest, request_log_probs
from .vocab import Vocabulary


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
            from .int8 import int8_copy  # only int8 scoring needs it
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
        forest = PrefixForest.build(src_ids, tgt_ids)
        if forest.n_pairs == 0:
            return np.zeros(0)
        picked = request_log_probs(self.model, forest, self.device, self.readout_rows, self.encoder_rows)
        scores = np.zeros(forest.n_pairs)
        np.add.at(scores, forest.req_pair, picked.double().cpu().numpy())  # summed in float64
        return scores


def difference_stats(exact: np.ndarray, approx: np.ndarray) -> dict:
    """How far approximate log-probabilities (a reduced precision) are from exact ones: the
    maximum, mean and 99th percentile of |difference|, and the mean |exact| for scale."""
    d = np.abs(np.asarray(exact, float) - np.asarray(approx, float))
    return {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
            "p99_abs_diff": float(np.quantile(d, 0.99)), "mean_abs_logp": float(np.abs(exact).mean())}
