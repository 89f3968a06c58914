"""The continuous-space language model (CSLM, Schwenk 2007): a feed-forward n-gram model.

For an n-gram (paper: 7-gram) the n-1 context words h = w_{t-n+1} .. w_{t-1} are looked up in
one shared projection table R (paper: 512 dimensions each), concatenated (6 x 512 = 3072),
passed through two rectified linear layers (paper: 1536 and 1024 units) and a softmax over
the target shortlist:

    x = [R w_{t-6}; ...; R w_{t-1}]
    h1 = max(0, W1 x + b1),  h2 = max(0, W2 h1 + b2)
    p(w_t = j | h) = softmax(V h2 + c)_j

Every weight and bias starts uniform in [-0.01, 0.01].  Contexts reaching before the start
of a sentence are padded with the end-of-sentence symbol (id 0), i.e. "after a sentence end",
so the shortlist shared with the RNN Encoder-Decoder needs no extra symbol.  Every sentence
ends with the prediction of </s>, as in KenLM's full-sentence score.

Words outside the shortlist: the network predicts the class [UNK]; a word w outside the
shortlist gets p([UNK] | h) * u(w), where u is the add-one unigram distribution over the
out-of-shortlist words of the training text plus one slot for words never seen there, so
the probabilities over the whole vocabulary still sum to one (``oos_logprob``).

``CSLMScorer`` scores n-grams in large batches and computes each distinct context once
(requests sorted by context, as Schwenk's toolkit does): the softmax over the shortlist
is the expensive part and is shared by every word asked in the same context.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import CSLM_FORMAT, CheckpointError, read_payload
from .config import CSLMConfig
from .vocab import EOS_ID, UNK_ID, Vocabulary


class CSLM(nn.Module):
    def __init__(self, cfg: CSLMConfig):
        super().__init__()
        if cfg.order < 2:
            raise ValueError("a CSLM needs an order of at least 2")
        self.cfg = cfg
        self.proj = nn.Embedding(cfg.vocab, cfg.embed)              # R
        layers: list[nn.Module] = []
        width = (cfg.order - 1) * cfg.embed                          # |x| = (n-1) * 512
        for size in cfg.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]            # h_k = max(0, W_k h_{k-1} + b_k)
            width = size
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, cfg.vocab)                       # V h + c
        for p in self.parameters():
            nn.init.uniform_(p, -cfg.init, cfg.init)

    def log_probs(self, ctx: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """ln p(. | h) over the shortlist for contexts ``ctx`` (B, n-1) of word ids, oldest first;
        with ``candidates`` (sorted word ids), over those words only (training's sampled softmax)."""
        x = self.proj(ctx).flatten(1)                                # [R w_{t-6}; ...; R w_{t-1}]
        if candidates is None:
            logits = self.out(self.hidden(x))
        else:                                                        # the rows of V of those words only
            logits = F.linear(self.hidden(x), self.out.weight[candidates], self.out.bias[candidates])
        # softmax(V h2 + c), normalised in float32 at least, also where the products run in bfloat16
        return torch.log_softmax(logits, -1, dtype=torch.promote_types(logits.dtype, torch.float32))

    def forward(self, ctx: torch.Tensor, word: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """ln p(word | ctx) for each row (``candidates``: normalised over those words, ``word`` among them)."""
        col = word if candidates is None else torch.searchsorted(candidates, word)
        return self.log_probs(ctx, candidates).gather(1, col[:, None]).squeeze(1)


def load_cslm_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A CSLM checkpoint's payload (``rescorer.checkpoint.save_cslm_checkpoint``), its ``model``,
    ``config`` and ``vocab`` made objects, the model on ``device``."""
    name = os.fspath(path)
    payload = read_payload(name, CSLM_FORMAT, "not a phrase-rescorer CSLM checkpoint")
    cfg = CSLMConfig.from_dict(payload["config"])
    vocab = Vocabulary(payload["vocab"])
    if len(vocab) != cfg.vocab:
        raise CheckpointError(f"{name}: a vocabulary of {len(vocab)} words for a CSLM over {cfg.vocab}")
    model = CSLM(cfg)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{name}: weights do not fit the configuration: {e}") from None
    payload["model"], payload["config"], payload["vocab"] = model.to(device), cfg, vocab
    return payload


def contexts_of(ids: np.ndarray, starts: np.ndarray, positions: np.ndarray, order: int) -> np.ndarray:
    """The n-1 context ids of the words at ``positions`` of a flat id stream whose sentences
    begin at ``starts`` (sorted); positions before a sentence's start are padded with </s>."""
    first = starts[np.searchsorted(starts, positions, side="right") - 1]
    idx = positions[:, None] + np.arange(-(order - 1), 0)[None, :]
    return np.where(idx < first[:, None], EOS_ID, ids[np.maximum(idx, 0)]).astype(np.int64)


class OutOfShortlist:
    """u(w): add-one unigram distribution over the training words outside the shortlist, with
    one more slot shared by words never seen in training."""

    def __init__(self, counts: dict[str, int]):
        self.counts = dict(counts)
        self.denominator = sum(self.counts.values()) + len(self.counts) + 1

    def logprob(self, word: str) -> float:
        return math.log((self.counts.get(word, 0) + 1) / self.denominator)


class CSLMScorer:
    """Log-probabilities (natural log) of n-grams and sentences under a trained CSLM."""

    def __init__(self, model: CSLM, vocab: Vocabulary, oos: OutOfShortlist, device: torch.device | str = "cpu",
                 batch_contexts: int = 1024):
        if len(vocab) != model.cfg.vocab:
            raise ValueError(f"vocabulary of {len(vocab)} words for a CSLM over {model.cfg.vocab}")
        self.model, self.vocab, self.oos = model.eval(), vocab, oos
        self.device = torch.device(device)
        self.order = model.cfg.order
        self.batch = batch_contexts

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu", **kw) -> "CSLMScorer":
        """The scorer of a CSLM checkpoint (``rescorer cslm-train``'s best.pt), on ``device``."""
        ck = load_cslm_checkpoint(path, device)
        return cls(ck["model"], ck["vocab"], OutOfShortlist(ck["oos_counts"]), device, **kw)

    def ngram_logprobs(self, contexts: np.ndarray, words: np.ndarray, share: bool = True) -> np.ndarray:
        """ln p(word | context) from the network (shortlist ids) for every request.

        With ``share`` the requests are sorted by context and each distinct context goes
        through the network once; without, every request does (for comparison)."""
        contexts = np.asarray(contexts, dtype=np.int64).reshape(-1, self.order - 1)
        words = np.asarray(words, dtype=np.int64)
        out = np.empty(len(words))
        if len(words) == 0:
            return out
        if share:
            uniq, inv = np.unique(contexts, axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + self.batch, self.batch))
        else:
            uniq, inv = contexts, np.arange(len(words))
            order = inv
            bounds = np.minimum(np.arange(0, len(words) + self.batch, self.batch), len(words))
        with torch.inference_mode():
            for k in range(len(bounds) - 1):
                a, b = int(bounds[k]), int(bounds[k + 1])
                if a == b:
                    continue
                req = order[a:b]
                c0 = k * self.batch
                lp = self.model.log_probs(torch.from_numpy(uniq[c0:c0 + self.batch]).to(self.device))
                rows = torch.from_numpy(inv[req] - c0).to(self.device)
                cols = torch.from_numpy(words[req]).to(self.device)
                out[req] = lp[rows, cols].double().cpu().numpy()
        return out

    def sentence_ngrams(self, sentences: list[list[str]]):
        """Contexts, shortlist ids, sentence index and out-of-shortlist term of every prediction
        (each word and the final </s>) of the sentences."""
        ids, starts, oos_terms = [], [], []
        pos = 0
        for words in sentences:
            starts.append(pos)
            wid = self.vocab.ids(words)  # </s> appended
            ids.extend(wid)
            oos_terms.extend(self.oos.logprob(w) if i == UNK_ID else 0.0 for w, i in zip(words, wid))
            oos_terms.append(0.0)
            pos += len(wid)
        ids_a = np.array(ids, dtype=np.int64)
        starts_a = np.array(starts, dtype=np.int64)
        positions = np.arange(len(ids_a))
        ctx = contexts_of(ids_a, starts_a, positions, self.order)
        sent = np.searchsorted(starts_a, positions, side="right") - 1
        return ctx, ids_a, sent, np.array(oos_terms)

    def score_sentences(self, sentences: list[list[str]], share: bool = True) -> np.ndarray:
        """ln p(sentence </s>) of each sentence: the sum of its n-gram log-probabilities."""
        if not sentences:
            return np.zeros(0)
        ctx, ids, sent, oos = self.sentence_ngrams(sentences)
        lp = self.ngram_logprobs(ctx, ids, share) + oos
        return np.bincount(sent, weights=lp, minlength=len(sentences))
