"""The decoder's n-gram language model: KenLM through its C++ API (``kenlm_core``, compiled by
``make setup``), else the same interface over the ``kenlm`` module, several times slower.

The interface is what the search asks: a phrase's vocabulary ids once (``word_ids``), then
ln p(phrase | state) and the state after it, states numbered per sentence (``begin``,
``extend``), and the estimate of a phrase alone for future costs (``alone``).  Both give the same
numbers: KenLM's log10 scores summed in order in double precision, times ln 10.  A model numbers
the states of one sentence at a time (``begin`` starts again): a process decodes its sentences
one after another with its own copy (the decoder's workers are forked)."""
from __future__ import annotations

import logging
import math

import kenlm

from .compiled import check_fresh

LN10 = math.log(10.0)
EOS_WORD = "</s>"
log = logging.getLogger(__name__)

try:
    from . import kenlm_core
except ImportError as e:  # not built: the kenlm module's interface below
    kenlm_core = None
    _why = str(e)
else:
    check_fresh(kenlm_core)  # built, but older than its source: an error, not a fallback


class PythonKenLM:
    """``kenlm_core.KenLM``'s interface over the ``kenlm`` module (a phrase's ids are its words)."""

    def __init__(self, path: str):
        self.model, self.path = kenlm.Model(path), path
        self._states: list = []
        self._ids: dict = {}

    @property
    def order(self) -> int:
        return self.model.order

    @property
    def states(self) -> int:
        return len(self._states)

    def word_ids(self, words: tuple) -> tuple:
        return tuple(words)

    def _number(self, state) -> int:
        i = self._ids.get(state)
        if i is None:
            i = self._ids[state] = len(self._states)
            self._states.append(state)
        return i

    def begin(self) -> int:
        self._states, self._ids = [], {}
        s = kenlm.State()
        self.model.BeginSentenceWrite(s)
        return self._number(s)

    def _score(self, a, words, eos: bool):
        total = 0.0
        for w in words + ((EOS_WORD,) if eos else ()):
            b = kenlm.State()
            total += self.model.BaseScore(a, w, b)  # log10
            a = b
        return total, a

    def extend(self, sid: int, ids: tuple, eos: bool) -> tuple:
        if not 0 <= sid < len(self._states):
            raise IndexError(f"LM state number {sid}: the sentence has {len(self._states)} states")
        total, a = self._score(self._states[sid], ids, eos)
        return (total * LN10, self._number(a))

    def alone(self, ids: tuple) -> float:
        null = kenlm.State()
        self.model.NullContextWrite(null)
        return self._score(null, ids, False)[0] * LN10

    def alone_all(self, phrases: list) -> list:
        return [self.alone(p) for p in phrases]


def load(path: str):
    """The model at ``path`` (ARPA or KenLM binary) for the decoder: the compiled interface, or
    where it is not built (a warning says so) the kenlm module's."""
    if kenlm_core is not None:
        return kenlm_core.KenLM(path)
    log.warning("moses_integration/kenlm_core is not compiled (%s): the LM is queried through the kenlm "
                "module, slower; `make setup` builds it", _why)
    return PythonKenLM(path)
