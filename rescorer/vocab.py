"""Shortlist vocabularies: the most frequent words of each language, the rest as [UNK].

As in the original code (GroundHog), ids are reserved for the end-of-sequence
symbol (0) and the unknown word (1); the shortlist size counts them, so
``--size 15000`` gives 14,998 real words.  Frequencies are counted over the
unique phrase pairs of the table, i.e. over the data the network is trained on.

File format (``source.vocab`` / ``target.vocab``): one ``word<TAB>count`` per line,
most frequent first, the two reserved symbols on the first two lines.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from typing import Iterable

from tqdm import tqdm

from .fileio import atomic_write
from .phrase_table import iter_table

EOS = "</s>"
UNK = "[UNK]"
EOS_ID = 0
UNK_ID = 1


class VocabularyError(ValueError):
    pass


class Vocabulary:
    def __init__(self, words: list[str], counts: list[int] | None = None):
        if words[:2] != [EOS, UNK]:
            raise VocabularyError(f"a vocabulary must start with {EOS} and {UNK}")
        self.words = list(words)
        self.counts = list(counts) if counts is not None else [0] * len(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise VocabularyError("a vocabulary lists a word twice")

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    @classmethod
    def from_counts(cls, counts: Counter, size: int) -> "Vocabulary":
        if size < 3:
            raise VocabularyError("a shortlist needs room for </s>, [UNK] and at least one word")
        # most frequent first; ties broken by the word itself so the result is deterministic
        ranked = sorted(((c, w) for w, c in counts.items() if w not in (EOS, UNK)),
                        key=lambda cw: (-cw[0], cw[1]))[: size - 2]
        return cls([EOS, UNK] + [w for _, w in ranked], [0, 0] + [c for c, _ in ranked])

    def ids(self, words: Iterable[str]) -> list[int]:
        """Word ids of a phrase, the end-of-sequence id appended."""
        get = self.index.get
        out = [get(w, UNK_ID) for w in words]
        out.append(EOS_ID)
        return out

    def n_unknown(self, words: Iterable[str]) -> int:
        return sum(1 for w in words if w not in self.index)

    def fingerprint(self) -> str:
        return hashlib.sha1("\n".join(self.words).encode()).hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> None:
        with atomic_write(path, "w") as f:
            for w, c in zip(self.words, self.counts):
                f.write(f"{w}\t{c}\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        words, counts = [], []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 2 or not parts[0]:
                    raise VocabularyError(f"{path}:{lineno}: expected 'word<TAB>count'")
                try:
                    counts.append(int(parts[1]))
                except ValueError:
                    raise VocabularyError(f"{path}:{lineno}: count {parts[1]!r} is not an integer") from None
                words.append(parts[0])
        try:
            return cls(words, counts)
        except VocabularyError as e:
            raise VocabularyError(f"{path}: {e}") from None


def count_table_words(table: str | os.PathLike, progress: bool = True) -> tuple[Counter, Counter, int]:
    """Word counts of the source and target sides over the pairs of a phrase table."""
    src, tgt = Counter(), Counter()
    n = 0
    for pair in tqdm(iter_table(table), desc="counting words", unit=" pairs",
                     disable=not progress, mininterval=1.0):
        src.update(pair.source.split())
        tgt.update(pair.target.split())
        n += 1
    return src, tgt, n


def load_vocab_dir(directory: str | os.PathLike) -> tuple[Vocabulary, Vocabulary]:
    d = os.fspath(directory)
    for name in ("source.vocab", "target.vocab"):
        if not os.path.exists(os.path.join(d, name)):
            raise VocabularyError(f"{d}: no {name} here (make it with 'rescorer vocab')")
    return Vocabulary.load(os.path.join(d, "source.vocab")), Vocabulary.load(os.path.join(d, "target.vocab"))
