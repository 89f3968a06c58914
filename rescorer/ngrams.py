"""Training n-grams for the CSLM from tokenised target text.

``prepare`` reads the text once (plain or gzipped files, one sentence per line) and writes
the word ids of every sentence, </s> appended, as one flat stream per split
(``train.ids.npy``, ``valid.ids.npy``) with the start of each sentence (``*.starts.npy``).
A sentence goes to the validation slice when a keyed hash of it falls under
``valid_fraction`` (paper: 0.1%), so the split does not depend on the order of the files.
Every word of the stream (each sentence's </s> included) is one training n-gram; its
context is read from the stream when a batch is made (``cslm.contexts_of``).

The streams are memory-mapped, so the text need not fit in memory as Python objects.  An
epoch visits blocks of positions in a random order and each block in a random order, a
pure function of (seed, epoch) that lets ``--resume`` continue exactly.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from typing import Iterator

import numpy as np
from tqdm import tqdm

from .fileio import scratch_dir
from .text import text_lines
from .vocab import UNK_ID, Vocabulary

BLOCK = 1 << 16


def iter_sentences(paths: list[str]) -> Iterator[tuple[str, int, list[str]]]:
    """(file, line number, words) of every non-empty line; a line that is not UTF-8 stops with
    its file and line."""
    for path in paths:
        for lineno, text in text_lines(path):
            words = text.split()
            if words:
                yield path, lineno, words


def _is_valid(words: list[str], key: bytes, threshold: int) -> bool:
    h = hashlib.blake2b(" ".join(words).encode(), digest_size=8, key=key)
    return int.from_bytes(h.digest(), "little") < threshold


def prepare(paths: list[str], vocab: Vocabulary, out_dir: str, valid_fraction: float = 0.001,
            seed: int = 1234, progress: bool = True) -> dict:
    with scratch_dir(out_dir + ".tmp") as tmp:
        return _prepare(tmp, paths, vocab, out_dir, valid_fraction, seed, progress)


def _prepare(tmp: str, paths: list[str], vocab: Vocabulary, out_dir: str, valid_fraction: float, seed: int,
             progress: bool) -> dict:
    key = seed.to_bytes(8, "little")
    threshold = int(valid_fraction * 2**64)
    files = {s: open(os.path.join(tmp, f"{s}.ids.bin"), "wb") for s in ("train", "valid")}
    starts: dict[str, list[int]] = {"train": [], "valid": []}
    size = {"train": 0, "valid": 0}
    oos: Counter = Counter()
    unigram = np.zeros(len(vocab), dtype=np.int64)
    buf: dict[str, list[int]] = {"train": [], "valid": []}
    for _, _, words in tqdm(iter_sentences(paths), desc="reading text", unit=" lines", disable=not progress,
                            mininterval=1.0):
        split = "valid" if _is_valid(words, key, threshold) else "train"
        ids = vocab.ids(words)
        starts[split].append(size[split])
        size[split] += len(ids)
        buf[split].extend(ids)
        if split == "train":
            oos.update(w for w, i in zip(words, ids) if i == UNK_ID)
        if len(buf[split]) >= 1 << 20:
            a = np.array(buf[split], dtype=np.int32)
            if split == "train":
                unigram += np.bincount(a, minlength=len(vocab))
            a.tofile(files[split])
            buf[split].clear()
    for split in ("train", "valid"):
        a = np.array(buf[split], dtype=np.int32)
        if split == "train":
            unigram += np.bincount(a, minlength=len(vocab))
        a.tofile(files[split])
        files[split].close()
        ids = np.fromfile(os.path.join(tmp, f"{split}.ids.bin"), dtype=np.int32)
        np.save(os.path.join(tmp, f"{split}.ids.npy"), ids)
        os.unlink(os.path.join(tmp, f"{split}.ids.bin"))
        np.save(os.path.join(tmp, f"{split}.starts.npy"), np.array(starts[split], dtype=np.int64))
    np.save(os.path.join(tmp, "unigram.npy"), unigram)
    with open(os.path.join(tmp, "oos_counts.json"), "w", encoding="utf-8") as f:
        json.dump(dict(oos), f, ensure_ascii=False)
    meta = {"text": [os.path.abspath(p) for p in paths], "seed": seed, "valid_fraction": valid_fraction,
            "vocab": vocab.fingerprint(), "train_ngrams": size["train"], "valid_ngrams": size["valid"],
            "train_sentences": len(starts["train"]), "valid_sentences": len(starts["valid"]),
            "oos_types": len(oos), "oos_tokens": int(sum(oos.values()))}
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return meta


class Stream:
    """A split's flat id stream and sentence starts (memory-mapped)."""

    def __init__(self, data_dir: str, split: str):
        self.ids = np.load(os.path.join(data_dir, f"{split}.ids.npy"), mmap_mode="r")
        self.starts = np.load(os.path.join(data_dir, f"{split}.starts.npy"))

    def __len__(self) -> int:
        return len(self.ids)

    def words(self, positions: np.ndarray) -> np.ndarray:
        """The word each n-gram at ``positions`` predicts."""
        return np.asarray(self.ids[np.asarray(positions, dtype=np.int64)], np.int64)

    def batch(self, positions: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
        from .cslm import contexts_of  # torch: only the CSLM's batches need it, not the decoder
        positions = np.asarray(positions, dtype=np.int64)
        return contexts_of(self.ids, self.starts, positions, order), self.words(positions)


def epoch_positions(n: int, seed: int, epoch: int, batch_size: int) -> Iterator[np.ndarray]:
    """The positions of each minibatch of an epoch, a pure function of (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    n_blocks = (n + BLOCK - 1) // BLOCK
    for b in rng.permutation(n_blocks):
        a = b * BLOCK
        perm = a + rng.permutation(min(BLOCK, n - a))
        for i in range(0, len(perm), batch_size):
            yield perm[i:i + batch_size]
