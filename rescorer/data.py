"""Training pairs from a phrase table: unique pairs, a held-out slice, shuffling on disk, minibatches.

``prepare`` streams the table once and writes the pairs, as word ids, into ``n_buckets``
files chosen by a keyed hash of the pair.  The hash also

* removes repeated pairs (a repeat lands in the same bucket with the same hash), so
  training sees the *unique* pairs, counts ignored, as in the paper;
* holds out a validation slice (pairs whose hash falls under ``valid_fraction``).

Each bucket must fit in memory, the table need not: an epoch visits the buckets in a
random order and each bucket in a random order (a two-level shuffle).  Minibatches are
made as in GroundHog: ``group`` batches' worth of pairs are read at once, sorted by
length, split into batches, and the batches shuffled, so little padding is computed.
The order is a pure function of (seed, epoch), which lets ``--resume`` continue exactly.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from tqdm import tqdm

from .fileio import atomic_write, scratch_dir
from .phrase_table import iter_table
from .vocab import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class Pairs:
    """Id sequences (EOS included) stored flat: pair i is src[src_off[i]:src_off[i+1]]."""
    src: np.ndarray
    src_off: np.ndarray
    tgt: np.ndarray
    tgt_off: np.ndarray

    def __len__(self) -> int:
        return len(self.src_off) - 1

    def source(self, i: int) -> np.ndarray:
        return self.src[self.src_off[i]:self.src_off[i + 1]]

    def target(self, i: int) -> np.ndarray:
        return self.tgt[self.tgt_off[i]:self.tgt_off[i + 1]]

    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_off)

    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_off)

    @classmethod
    def from_lists(cls, srcs: list[list[int]], tgts: list[list[int]]) -> "Pairs":
        def flat(seqs):
            off = np.zeros(len(seqs) + 1, dtype=np.int64)
            np.cumsum([len(s) for s in seqs], out=off[1:])
            data = np.fromiter((x for s in seqs for x in s), dtype=np.int32, count=int(off[-1]))
            return data, off
        s, so = flat(srcs)
        t, to = flat(tgts)
        return cls(s, so, t, to)

    def save(self, path: str) -> None:
        with atomic_write(path, "wb") as f:
            np.savez(f, src=self.src, src_off=self.src_off, tgt=self.tgt, tgt_off=self.tgt_off)

    @classmethod
    def load(cls, path: str) -> "Pairs":
        with np.load(path) as z:
            return cls(z["src"], z["src_off"], z["tgt"], z["tgt_off"])


def _pair_hash(source: str, target: str, key: bytes) -> int:
    h = hashlib.blake2b((source + "\t" + target).encode(), digest_size=8, key=key)
    return int.from_bytes(h.digest(), "little")


def prepare(table: str, src_vocab: Vocabulary, tgt_vocab: Vocabulary, out_dir: str, *,
            valid_fraction: float = 0.001, n_buckets: int = 16, seed: int = 1234,
            inverse: bool = False, bucket_by: str = "pair", progress: bool = True) -> dict:
    """Encode the unique pairs of ``table`` into shuffle buckets and a validation file.

    With ``inverse`` the pairs are swapped (the model learns p(source | target)); then
    ``src_vocab`` is the vocabulary of the table's target side.  ``bucket_by="source"`` keys the
    training buckets by the (model's) source phrase, so that all its targets share a bucket (for
    ``epoch_batches_by_source``); the validation pairs are the same either way.
    """
    if bucket_by not in ("pair", "source"):
        raise ValueError(f"bucket_by must be 'pair' or 'source', not {bucket_by!r}")
    with scratch_dir(out_dir + ".tmp") as tmp:
        return _prepare(tmp, table, src_vocab, tgt_vocab, out_dir, valid_fraction, n_buckets, seed, inverse,
                        bucket_by, progress)


def _prepare(tmp: str, table: str, src_vocab: Vocabulary, tgt_vocab: Vocabulary, out_dir: str,
             valid_fraction: float, n_buckets: int, seed: int, inverse: bool, bucket_by: str,
             progress: bool) -> dict:
    key = seed.to_bytes(8, "little")
    threshold = int(valid_fraction * 2**64)
    buf: list[list[tuple[int, list[int], list[int]]]] = [[] for _ in range(n_buckets + 1)]  # last: valid
    spill = [open(os.path.join(tmp, f"spill-{b}.pkl"), "wb") for b in range(n_buckets + 1)]
    n_lines = 0
    for pair in tqdm(iter_table(table), desc="reading pairs", unit=" pairs", disable=not progress,
                     mininterval=1.0):
        n_lines += 1
        s, t = (pair.target, pair.source) if inverse else (pair.source, pair.target)
        h = _pair_hash(pair.source, pair.target, key)
        src_ids = src_vocab.ids(s.split())
        if h < threshold:
            b = n_buckets
        elif bucket_by == "source":  # by the ids the encoder reads: sources that differ in [UNK]s only share
            b = (_pair_hash(" ".join(map(str, src_ids)), "", key) >> 32) % n_buckets
        else:
            b = (h >> 32) % n_buckets
        buf[b].append((h, src_ids, tgt_vocab.ids(t.split())))
        if len(buf[b]) >= 20000:  # bounded memory: spill to disk
            pickle.dump(buf[b], spill[b], protocol=pickle.HIGHEST_PROTOCOL)
            buf[b].clear()
    for b in range(n_buckets + 1):
        pickle.dump(buf[b], spill[b], protocol=pickle.HIGHEST_PROTOCOL)
        spill[b].close()
    buf.clear()

    sizes, repeats = [], 0
    tgt_counts = np.zeros(len(tgt_vocab), dtype=np.int64)
    for b in range(n_buckets + 1):
        seen: set[int] = set()
        srcs, tgts = [], []
        with open(os.path.join(tmp, f"spill-{b}.pkl"), "rb") as f:
            while True:
                try:
                    records = pickle.load(f)
                except EOFError:
                    break
                for h, s, t in records:
                    if h in seen:
                        repeats += 1
                        continue
                    seen.add(h)
                    srcs.append(s)
                    tgts.append(t)
        os.unlink(os.path.join(tmp, f"spill-{b}.pkl"))
        pairs = Pairs.from_lists(srcs, tgts)
        name = "valid.npz" if b == n_buckets else f"bucket-{b:04d}.npz"
        pairs.save(os.path.join(tmp, name))
        if b < n_buckets:
            tgt_counts += np.bincount(pairs.tgt, minlength=len(tgt_vocab))
            sizes.append(len(pairs))
    meta = {
        "table": os.path.abspath(table), "lines": n_lines, "repeats_removed": repeats,
        "train_pairs": int(sum(sizes)), "valid_pairs": int(n_lines - repeats - sum(sizes)),
        "bucket_sizes": sizes, "seed": seed, "valid_fraction": valid_fraction, "inverse": inverse,
        "bucket_by": bucket_by,
        "src_vocab": src_vocab.fingerprint(), "tgt_vocab": tgt_vocab.fingerprint(),
    }
    np.save(os.path.join(tmp, "tgt_unigram.npy"), tgt_counts)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    log.info("%d lines -> %d training pairs in %d buckets, %d validation pairs, %d repeats removed",
             n_lines, meta["train_pairs"], n_buckets, meta["valid_pairs"], repeats)
    return meta


def load_meta(data_dir: str) -> dict:
    with open(os.path.join(data_dir, "meta.json")) as f:
        return json.load(f)


def epoch_batches(data_dir: str, n_buckets: int, seed: int, epoch: int, batch_size: int,
                  group: int = 10) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """The minibatches of one epoch, a pure function of (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    for b in rng.permutation(n_buckets):
        pairs = Pairs.load(os.path.join(data_dir, f"bucket-{b:04d}.npz"))
        perm = rng.permutation(len(pairs))
        sl, tl = pairs.src_lengths(), pairs.tgt_lengths()
        step = batch_size * group
        for a in range(0, len(perm), step):
            chunk = perm[a:a + step]
            chunk = chunk[np.lexsort((sl[chunk], tl[chunk]))]        # by target, then source length
            batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
            for k in rng.permutation(len(batches)):
                idx = batches[k]
                yield [pairs.source(i) for i in idx], [pairs.target(i) for i in idx]


def epoch_batches_by_source(data_dir: str, n_buckets: int, seed: int, epoch: int, batch_size: int,
                            per_source: int = 16) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """The minibatches of one epoch made of runs of targets of one source, a pure function of
    (seed, epoch), from buckets keyed by source (``prepare(bucket_by="source")``).

    In each bucket, every source's targets are shuffled and cut into runs of at most
    ``per_source``; the runs are shuffled and laid end to end, and the sequence is cut into
    minibatches of ``batch_size`` pairs.  Every pair is seen once per epoch, as with
    ``epoch_batches``; a minibatch holds at least ``batch_size / per_source`` sources, and the
    pairs of a run share the encoder's work and their common target prefixes (``rescorer.tree``).
    """
    rng = np.random.default_rng([seed, epoch, 1])
    for b in rng.permutation(n_buckets):
        pairs = Pairs.load(os.path.join(data_dir, f"bucket-{b:04d}.npz"))
        by_src: dict[bytes, list[int]] = {}
        for i in range(len(pairs)):
            by_src.setdefault(pairs.source(i).tobytes(), []).append(i)
        runs = []
        for members in by_src.values():
            members = rng.permutation(np.asarray(members))
            runs.extend(members[a:a + per_source] for a in range(0, len(members), per_source))
        if not runs:
            continue
        seq = np.concatenate([runs[k] for k in rng.permutation(len(runs))])
        for a in range(0, len(seq), batch_size):
            idx = seq[a:a + batch_size]
            yield [pairs.source(i) for i in idx], [pairs.target(i) for i in idx]


def fixed_batches(pairs: Pairs, batch_size: int) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Length-sorted batches of a fixed set (validation)."""
    order = np.lexsort((pairs.src_lengths(), pairs.tgt_lengths()))
    for a in range(0, len(order), batch_size):
        idx = order[a:a + batch_size]
        yield [pairs.source(i) for i in idx], [pairs.target(i) for i in idx]
