"""Checkpoints: the network, its vocabularies and (for resuming) the trainer's state, in one file.

A checkpoint is self-contained: scoring needs nothing but the ``.pt`` file.  It is written
to a temporary file and renamed into place, so an interrupted save never spoils the last one.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from .fileio import atomic_write
from .model import ModelConfig, RNNEncoderDecoder
from .vocab import Vocabulary

FORMAT = "phrase-rescorer/rnn-encdec/1"


class CheckpointError(ValueError):
    pass


def read_payload(name: str, fmt: str | tuple[str, ...], wrong_format: str) -> dict:
    """The payload of a checkpoint file, checked to be of format ``fmt`` (or one of them)."""
    if not os.path.exists(name):
        raise CheckpointError(f"{name}: no such model file")
    try:
        payload = torch.load(name, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds
        raise CheckpointError(f"{name}: not a readable checkpoint ({e})") from None
    if not isinstance(payload, dict) or payload.get("format") not in ((fmt,) if isinstance(fmt, str) else fmt):
        raise CheckpointError(f"{name}: {wrong_format}")
    return payload


def save_checkpoint(path: str | os.PathLike, model: RNNEncoderDecoder, src_vocab: Vocabulary,
                    tgt_vocab: Vocabulary, inverse: bool, trainer_state: dict | None = None) -> None:
    payload = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "src_vocab": src_vocab.words,
        "tgt_vocab": tgt_vocab.words,
        "inverse": inverse,
        "trainer": trainer_state,
    }
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; returns its fields with ``model`` built and on ``device``."""
    name = os.fspath(path)
    payload = read_payload(name, FORMAT, "not a phrase-rescorer RNN Encoder-Decoder checkpoint")
    cfg = ModelConfig(**payload["config"])
    src_vocab, tgt_vocab = Vocabulary(payload["src_vocab"]), Vocabulary(payload["tgt_vocab"])
    if (len(src_vocab), len(tgt_vocab)) != (cfg.src_vocab, cfg.tgt_vocab):
        raise CheckpointError(
            f"{name}: vocabularies of {len(src_vocab)}/{len(tgt_vocab)} words do not match the "
            f"network's {cfg.src_vocab}/{cfg.tgt_vocab}")
    model = RNNEncoderDecoder(cfg)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{name}: weights do not fit the configuration: {e}") from None
    payload["model"] = model.to(device)
    payload["config"] = cfg
    payload["src_vocab"], payload["tgt_vocab"] = src_vocab, tgt_vocab
    return payload


def check_vocab_matches(name: str, model_vocab: Vocabulary, given: Vocabulary, side: str) -> None:
    if model_vocab != given:
        raise CheckpointError(
            f"{name}: the model's {side} vocabulary ({len(model_vocab)} words, "
            f"fingerprint {model_vocab.fingerprint()}) differs from the one given "
            f"({len(given)} words, fingerprint {given.fingerprint()})")


CSLM_FORMAT = "phrase-rescorer/cslm/1"


def save_cslm_checkpoint(path: str | os.PathLike, model, vocab: Vocabulary, oos_counts: dict[str, int],
                         trainer_state: dict | None = None) -> None:
    """A CSLM, its shortlist and the out-of-shortlist unigram counts, in one file."""
    payload = {
        "format": CSLM_FORMAT,
        "config": model.cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "vocab": vocab.words,
        "oos_counts": oos_counts,
        "trainer": trainer_state,
    }
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


def export_checkpoint(path: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype = torch.float16) -> dict:
    """A copy of a checkpoint (RNN Encoder-Decoder or CSLM) to publish: its floating-point weights
    stored in ``dtype`` and no trainer state (optimizer moments, history), so it can score and
    generate but not resume training.  The loaders widen the weights back to float32 (the
    networks always compute in float32).  Returns the number of parameters and the file's size."""
    name = os.fspath(path)
    payload = read_payload(name, (FORMAT, CSLM_FORMAT), "neither an RNN Encoder-Decoder nor a CSLM checkpoint")
    payload["model"] = {k: v.to(dtype) if v.is_floating_point() else v for k, v in payload["model"].items()}
    payload["trainer"] = None
    with atomic_write(out, "wb") as f:
        torch.save(payload, f)
    return {"parameters": sum(v.numel() for v in payload["model"].values()),
            "size_mb": round(os.path.getsize(out) / 2**20, 1)}

