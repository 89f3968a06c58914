"""A phrase-based decoder that reads Moses's files and scores as Moses does.

Features (values as Moses computes and prints them):

* ``PhraseDictionaryMemory`` - ``max(ln x, -100)`` of each dense score;
* ``KENLM`` - log10 probabilities from KenLM (``language_model``) times ln 10, ``<s>`` ... ``</s>``;
* ``Distortion`` - ``-|d|`` per phrase, ``d = start - previous end - 1`` (``start`` for the first);
* ``WordPenalty`` - ``-1`` per target word; ``PhrasePenalty`` - ``1`` per phrase;
* ``UnknownWordPenalty`` - ``-100`` per source word without any translation, passed through;
* ``LexicalReordering`` msd-bidirectional-fe: orientation of each phrase with respect to the
  previous one (monotone: starts right after it; swap: ends right before it; else
  discontinuous); the backward model adds ``ln p(o | current pair)`` to slot ``o``, the
  forward model ``ln p(o | previous pair)`` to slot ``3 + o``.  A pair missing from the
  table adds nothing.  The first phrase is compared with the sentence start.
* ``CSLM`` (``CSLM name=CSLM0 path=cslm/best.pt``; not a feature of Moses itself) - the
  ln-probability of the new words (and of </s> at the end) under the continuous-space LM of
  ``rescorer cslm-train``.  As in the paper, the n-grams of the hypotheses popped for a stack
  are buffered and scored in one batch just before the stack is recombined and pruned (each
  distinct context through the network once); cube pruning orders its queue without them.

Search as Moses's ``-search-algorithm 1``: stacks by number of covered source words, future
cost estimates over the source (translation model, penalties and the language model of each
option in isolation, combined over spans by dynamic programming), Moses's distortion-limit
rules, hypothesis recombination on (coverage, last source phrase, LM state, reordering
state), cube pruning with a pop limit (an edge's hypotheses ordered by score plus the
weighted distortion of its jump), a stack size and a beam threshold, each stack filled and
pruned as Moses's ``HypothesisStackCubePruning`` does.  n-best lists come from the
recombination arcs, as Moses's trellis paths do.  The stacks and the trellis are in
``search.py``, compiled with Cython at set-up (``decoder.COMPILED``; the same file also runs as
plain Python, slower).
"""
from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from rescorer.vocab import EOS_ID

from . import language_model, search
from .compiled import check_fresh
from .moses_ini import MosesIni
from .table_filter import read_table, source_spans
from .search import COMPILED, Hyp, Option, Search, root_hyp, trellis_paths  # noqa: F401  (COMPILED: re-exported)

check_fresh(search)
FLOOR = -100.0
UNKNOWN_PENALTY = FLOOR  # Moses: FloorScore(log(0))
BEAM_THRESHOLD = 0.00001  # Moses's DEFAULT_BEAM_WIDTH (-beam-threshold, -b)


def moses_log(x: float) -> float:
    """What Moses does to a dense phrase-table score: ``max(ln x, -100)``."""
    return max(math.log(x), FLOOR) if x > 0 else FLOOR


class DecoderError(ValueError):
    pass


@contextlib.contextmanager
def no_cyclic_gc(freeze: bool = False):
    """The cyclic garbage collector off: loading the tables and decoding make millions of objects
    but no reference cycles, and the collector would only scan them (and the loaded tables) again
    and again.  With ``freeze`` (after loading or re-ranking the tables, which live on), what is
    alive then is moved out of the collector's generations (``gc.freeze``): its first collection
    afterwards would otherwise scan the millions of objects just made."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_on:
            gc.enable()


def _reordering_scores(path: str, wanted: set[bytes]) -> tuple[bytes, np.ndarray]:
    """A reordering table's scores (Moses-logged), and the digest of its (source, target) pairs in
    order."""
    cols = read_table(path, wanted, 6, progress=False)
    return cols.digest(), moses_logs(cols.scores)


def moses_logs(x: np.ndarray) -> np.ndarray:
    """``moses_log`` of every element."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.maximum(np.log(x), FLOOR)
    out[~(x > 0)] = FLOOR
    return out


@dataclass
class DecoderConfig:
    stack_size: int = 200           # Moses -s (DEFAULT_MAX_HYPOSTACK_SIZE)
    pop_limit: int = 1000           # Moses -cube-pruning-pop-limit
    distortion_limit: int | None = None   # None: the ini's [distortion-limit], else 6
    table_limit: int | None = None  # None: the table's table-limit=, else 20
    beam_threshold: float | None = None  # None: the ini's [beam-threshold], else Moses's 0.00001; 0: none
    max_phrase_length: int = 7


@dataclass
class Translation:
    words: list[str]
    features: np.ndarray
    score: float
    segmentation: list[tuple[int, int, int, int]]  # source start, end, target start, end (inclusive)


@dataclass
class FeatureLayout:
    """The feature vector: Moses's n-best order (stateful features first, then stateless)."""
    groups: list[tuple[str, int, bool]] = field(default_factory=list)  # name, size, printed

    def add(self, name: str, size: int, printed: bool = True) -> slice:
        a = self.size
        self.groups.append((name, size, printed))
        return slice(a, a + size)

    @property
    def size(self) -> int:
        return sum(g[1] for g in self.groups)

    def slices(self) -> dict[str, slice]:
        out, a = {}, 0
        for name, n, _ in self.groups:
            out[name] = slice(a, a + n)
            a += n
        return out

    def format(self, values: np.ndarray) -> str:
        parts, a = [], 0
        for name, n, printed in self.groups:
            if printed:
                parts.append(f"{name}= " + " ".join(_num(v) for v in values[a:a + n]))
            a += n
        return " ".join(parts)


def _num(v: float) -> str:
    v = float(v)
    return "0" if v == 0 else f"{v:.6g}"


def _resolve(path: str, ini_dir: str) -> str:
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(ini_dir, path)


class PhraseModel:
    """The log-linear model of a moses.ini: features, weights, tables filtered to the input."""

    def __init__(self, ini: MosesIni | str, sentences: list[str], config: DecoderConfig | None = None,
                 weights: dict[str, list[float]] | None = None, progress: bool = True):
        self.ini = ini if isinstance(ini, MosesIni) else MosesIni.read(ini)
        self.cfg = config or DecoderConfig()
        ini_dir = os.path.dirname(os.path.abspath(self.ini.path))
        W = dict(self.ini.weights())
        if weights:
            W.update(weights)
        feats = self.ini.features()
        kinds = {f.kind for f in feats}
        unknown = kinds - {"PhraseDictionaryMemory", "KENLM", "Distortion", "WordPenalty", "PhrasePenalty",
                           "UnknownWordPenalty", "LexicalReordering", "CSLM"}
        if unknown:
            raise DecoderError(f"{self.ini.path}: the built-in decoder does not know {sorted(unknown)}")
        by_kind = {}
        for f in feats:
            if f.kind in by_kind:
                raise DecoderError(f"{self.ini.path}: only one {f.kind} feature is supported")
            by_kind[f.kind] = f
        if "PhraseDictionaryMemory" not in by_kind:
            raise DecoderError(f"{self.ini.path}: no PhraseDictionaryMemory feature")

        lay = self.layout = FeatureLayout()
        tm, lm, lr = by_kind["PhraseDictionaryMemory"], by_kind.get("KENLM"), by_kind.get("LexicalReordering")
        self.s_lr: slice | None = None
        if lr is not None:
            t = lr.get("type") or ""
            if "msd-bidirectional-fe" not in t:
                raise DecoderError(f"{self.ini.path}: LexicalReordering type {t!r} is not msd-bidirectional-fe")
            self.s_lr = lay.add(lr.name, 6, lr.get("tuneable") != "false")
        self.s_d = lay.add(by_kind["Distortion"].name, 1) if "Distortion" in by_kind else None
        self.s_lm = lay.add(lm.name, 1, lm.get("tuneable") != "false") if lm is not None else None
        cslm = by_kind.get("CSLM")
        self.s_cslm = lay.add(cslm.name, 1, cslm.get("tuneable") != "false") if cslm is not None else None
        uwp = by_kind.get("UnknownWordPenalty")
        self.s_uwp = lay.add(uwp.name if uwp else "UnknownWordPenalty0", 1, False)
        self.s_wp = lay.add(by_kind["WordPenalty"].name, 1) if "WordPenalty" in by_kind else None
        self.s_pp = lay.add(by_kind["PhrasePenalty"].name, 1) if "PhrasePenalty" in by_kind else None
        n_tm = int(tm.get("num-features") or 4)
        self.s_tm = lay.add(tm.name, n_tm, tm.get("tuneable") != "false")

        self.weights = np.zeros(lay.size)
        for name, n, printed in lay.groups:
            w = W.get(name)
            if w is None:
                if name.startswith("UnknownWordPenalty"):
                    w = [1.0]
                else:
                    raise DecoderError(f"{self.ini.path}: no weight for {name}")
            if len(w) != n:
                raise DecoderError(f"{self.ini.path}: {name} has {n} features but {len(w)} weights")
            self.weights[self.layout.slices()[name]] = w

        sec = self.ini.section("distortion-limit")
        self.dl = self.cfg.distortion_limit if self.cfg.distortion_limit is not None else (
            int(sec[0]) if sec else 6)
        sec = self.ini.section("beam-threshold")
        bt = self.cfg.beam_threshold if self.cfg.beam_threshold is not None else (
            float(sec[0]) if sec else BEAM_THRESHOLD)
        if not 0 <= bt < 1:
            raise DecoderError(f"beam threshold {bt}: Moses's beam-threshold is a probability ratio in [0, 1)")
        # a hypothesis worse than the stack's best by more than ln(bt) is pruned (Moses's TransformScore)
        self.beam = math.log(bt) if bt > 0 else -math.inf
        self.table_limit = self.cfg.table_limit if self.cfg.table_limit is not None else int(
            tm.get("table-limit") or 20)

        self.lm = None
        if lm is not None:
            self.lm = language_model.load(_resolve(lm.get("path"), ini_dir))
        self.cslm = None
        if cslm is not None:
            from rescorer.cslm import CSLMScorer  # torch: only a system with a CSLM feature needs it
            self.cslm = CSLMScorer.load(_resolve(cslm.get("path") or "", ini_dir))
        self.n_tm = n_tm
        with no_cyclic_gc(freeze=True):
            self._load_tables(_resolve(tm.get("path"), ini_dir),
                              _resolve(lr.get("path"), ini_dir) if lr is not None else None, sentences, progress)

    # -- tables ---------------------------------------------------------------------------
    def _load_tables(self, table: str, reordering: str | None, sentences: list[str], progress: bool = True) -> None:
        """The table's lines for these sentences as columns: every target of every source phrase,
        its Moses-logged scores, length, LM estimate and reordering scores (``_apply_weights``
        keeps the best of them per source).  A target shared by several sources is split and
        given its LM estimate once.  The reordering table is read by a forked process meanwhile,
        which hands back its scores, and a digest of its pairs to check they are the phrase
        table's in the same order."""
        wanted = source_spans(sentences, self.cfg.max_phrase_length)
        reading = None
        if reordering is not None and "fork" in mp.get_all_start_methods():
            reading = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
            lr_future = reading.submit(_reordering_scores, reordering, wanted)
        try:
            cols = read_table(table, wanted, self.n_tm, progress)
            # the phrase table's own columns while the reordering table is still being read
            self._sources, self._sid, self._tid = cols.sources, cols.source_ids, cols.target_ids
            self._tm = moses_logs(cols.scores)
            self._targets = [tuple(t.split()) for t in cols.targets]  # by target number
            self._lengths = np.array([len(t) for t in self._targets], float)[self._tid]
            self._lmest = self._lm_logprobs(self._targets)[self._tid]
            lr = lr_future.result() if reading is not None else None
        finally:
            if reading is not None:
                reading.shutdown(cancel_futures=True)
        # reordering scores: row _lr_row[k] of _lr for line k, -1 for a pair the table lacks
        self._lr: np.ndarray | None = None
        if reordering is not None:
            if lr is not None and lr[0] == cols.digest():  # the usual case: the same pairs in the same order
                self._lr, self._lr_row = lr[1], np.arange(len(cols))
            else:
                r = read_table(reordering, wanted, 6, progress)
                self._lr = moses_logs(r.scores)
                # a pair listed twice: the last; a phrase by its number in the reordering table
                row = {pair: i for i, pair in enumerate(zip(r.source_ids.tolist(), r.target_ids.tolist()))}
                r_source = {p: i for i, p in enumerate(r.sources)}
                r_target = {p: i for i, p in enumerate(r.targets)}
                s_in_r = [r_source.get(p, -1) for p in cols.sources]
                t_in_r = [r_target.get(p, -1) for p in cols.targets]
                self._lr_row = np.array([row.get((s_in_r[s], t_in_r[t]), -1)
                                         for s, t in zip(self._sid.tolist(), self._tid.tolist())], dtype=np.int64)
        self._apply_weights()

    def set_weights(self, weights: dict[str, list[float]] | np.ndarray) -> None:
        """New weights (by feature name, or a whole vector in layout order); tables re-ranked."""
        if isinstance(weights, np.ndarray):
            self.weights = weights.astype(float).copy()
        else:
            sl = self.layout.slices()
            for name, vals in weights.items():
                if name not in sl or len(vals) != sl[name].stop - sl[name].start:
                    raise DecoderError(f"weights for {name!r} do not fit the model")
                self.weights[sl[name]] = vals
        with no_cyclic_gc(freeze=True):
            self._apply_weights()

    def _stateless(self, tm: np.ndarray | None, n_words: np.ndarray, unknown: bool = False) -> np.ndarray:
        """Feature values options carry by themselves, one row per option: TM scores, -#words,
        1 phrase, -100 if unknown (``tm`` None: no TM scores)."""
        delta = np.zeros((len(n_words), self.layout.size))
        if tm is not None:
            delta[:, self.s_tm] = tm
        if unknown:
            delta[:, self.s_uwp] = UNKNOWN_PENALTY
        if self.s_wp is not None:
            delta[:, self.s_wp.start] = -n_words
        if self.s_pp is not None:
            delta[:, self.s_pp.start] = 1.0
        return delta

    def _apply_weights(self) -> None:
        """The best table-limit targets of each source by their estimated score, as Moses keeps them."""
        w = self.weights
        w_tm = w[self.s_tm]
        w_wp = w[self.s_wp][0] if self.s_wp is not None else 0.0
        w_pp = w[self.s_pp][0] if self.s_pp is not None else 0.0
        w_lm = w[self.s_lm][0] if self.s_lm is not None else 0.0
        sid = self._sid
        static = np.zeros(len(sid))
        for j in range(len(w_tm)):  # column by column: the same sum for a target wherever it lies in the table
            static += self._tm[:, j] * w_tm[j]
        static -= w_wp * self._lengths
        static += w_pp
        future = static + w_lm * self._lmest
        order = np.lexsort((-future, sid))  # by source, best estimate first; ties in table order
        if self.table_limit > 0:
            first = np.concatenate(([0], np.cumsum(np.bincount(sid, minlength=len(self._sources)))[:-1]))
            order = order[np.arange(len(order)) - first[sid[order]] < self.table_limit]
        delta = self._stateless(self._tm[order], self._lengths[order])
        if self._lr is not None:
            rows = self._lr_row[order]
            lrs = [tuple(v) if r >= 0 else None for r, v in zip(rows.tolist(), self._lr[rows].tolist())]
        else:
            lrs = [None] * len(order)
        self.table: dict[str, list[tuple[tuple[str, ...], np.ndarray, float, float, tuple | None]]] = {}
        sources, targets = self._sources, self._targets
        st, fu = static[order].tolist(), future[order].tolist()
        for i, (t, s) in enumerate(zip(self._tid[order].tolist(), sid[order].tolist())):
            entry = (targets[t], delta[i], st[i], fu[i], lrs[i])
            got = self.table.get(sources[s])
            if got is None:
                self.table[sources[s]] = [entry]
            else:
                got.append(entry)

    def _lm_logprobs(self, phrases: list[tuple[str, ...]]) -> np.ndarray:
        """ln-probability of each phrase in isolation (no <s>): Moses's LM estimate for future costs."""
        if self.lm is None:
            return np.zeros(len(phrases))
        return np.array(self.lm.alone_all(phrases))

    def _lm_estimate(self, words: tuple[str, ...]) -> float:
        return (self.weights[self.s_lm][0] * float(self._lm_logprobs([words])[0])) if self.lm is not None else 0.0

    # -- one sentence --------------------------------------------------------------------
    def options(self, words: list[str]) -> dict[tuple[int, int], list[Option]]:
        n, L = len(words), self.cfg.max_phrase_length
        out: dict[tuple[int, int], list[Option]] = {}
        for i in range(n):
            for j in range(i + 1, min(i + L, n) + 1):
                src = " ".join(words[i:j])
                for tgt, delta, static, future, lr in self.table.get(src, ()):
                    out.setdefault((i, j), []).append(Option(i, j, tgt, delta, static, future, lr))
        for i in range(n):
            if (i, i + 1) not in out:
                # an unknown word: passed through, UnknownWordPenalty -100
                delta = self._stateless(None, np.ones(1), unknown=True)[0]
                static = float(self.weights @ delta)
                tgt = (words[i],)
                out[(i, i + 1)] = [Option(i, i + 1, tgt, delta, static, static + self._lm_estimate(tgt), None)]
        for olist in out.values():  # cube pruning takes a span's options best estimate first
            olist.sort(key=lambda o: -o.future)
        return out

    def future_costs(self, n: int, options) -> list[list[float]]:
        """fc[i][j]: best estimated score of translating source span [i, j) in any segmentation."""
        fc = [[-math.inf] * (n + 1) for _ in range(n + 1)]
        for length in range(1, n + 1):
            for i in range(0, n - length + 1):
                j = i + length
                best = max((o.future for o in options.get((i, j), ())), default=-math.inf)
                for k in range(i + 1, j):
                    best = max(best, fc[i][k] + fc[k][j])
                fc[i][j] = best
        return fc

    def decode(self, sentence: str, nbest: int = 0, distinct: bool = False) -> list[Translation]:
        """The best translation, and with ``nbest`` the n best derivations (with ``distinct``
        the n best distinct target strings, as Moses's ``-n-best-list FILE N distinct``)."""
        words = sentence.split()
        n = len(words)
        if n == 0:
            return [Translation([], np.zeros(self.layout.size), 0.0, [])]
        with no_cyclic_gc():
            opts = self.options(words)
            return self._search(sentence, n, opts, self.future_costs(n, opts), nbest, distinct)

    def _search(self, sentence: str, n: int, opts: dict, fc: list, nbest: int, distinct: bool) -> list[Translation]:
        w = self.weights
        lm, cslm = self.lm, self.cslm
        search = Search(n, opts, fc, self.dl, self.cfg.max_phrase_length,
                        lm, w[self.s_lm][0] if lm is not None else 0.0,
                        self.s_d is not None, w[self.s_d][0] if self.s_d is not None else 0.0,
                        w[self.s_lr] if self.s_lr is not None else None,
                        cslm, w[self.s_cslm][0] if cslm is not None else 0.0)
        root = root_hyp(search.future_of(0),
                        (EOS_ID,) * (cslm.order - 1) if cslm is not None else None)
        finals = search.run(root, self.cfg.stack_size, self.cfg.pop_limit, self.beam)
        if not finals:
            raise DecoderError(f"no complete translation of: {sentence!r} (distortion limit {self.dl})")
        return self._nbest(finals, max(1, nbest), distinct)

    # -- n-best ---------------------------------------------------------------------------
    def _translation(self, path: list[Hyp], score: float) -> Translation:
        """Words, feature vector and segmentation of a derivation (its hypotheses in order)."""
        feats = np.add.reduce([h.option.delta for h in path]) if path else np.zeros(self.layout.size)
        words: list[str] = []
        seg = []
        d = lm_ln = cslm_ln = 0.0
        lr = [0.0] * 6
        for h in path:
            o, orient, prev_lr = h.option, h.orient, h.prev.lr
            d += h.d
            lm_ln += h.lm_ln
            cslm_ln += h.cs_ln
            if o.lr is not None:
                lr[orient] += o.lr[orient]
            if prev_lr is not None:  # equal for every hypothesis recombined with h.prev
                lr[3 + orient] += prev_lr[3 + orient]
            seg.append((o.start, o.end - 1, len(words), len(words) + len(o.target) - 1))
            words.extend(o.target)
        if self.s_d is not None:
            feats[self.s_d.start] += d
        if self.s_lr is not None:
            feats[self.s_lr] += lr
        if self.s_lm is not None:
            feats[self.s_lm.start] += lm_ln
        if self.s_cslm is not None:
            feats[self.s_cslm.start] += cslm_ln
        return Translation(words, feats, score, seg)

    def _nbest(self, finals: list[Hyp], n: int, distinct: bool = False) -> list[Translation]:
        """The n best derivations (Moses's trellis paths, ``search.trellis_paths``) as translations;
        Moses also bounds the paths it explores (here 50 n)."""
        return [self._translation(path, score) for path, score in trellis_paths(finals, n, distinct, 50 * n)]

    def nbest_line(self, sent_id: int, t: Translation, segmentation: bool = False) -> str:
        fields = [str(sent_id), " ".join(t.words) + " ", self.layout.format(t.features), _num(t.score)]
        if segmentation:
            fields.append(" ".join(f"{a}-{b}={c}-{d}" for a, b, c, d in t.segmentation))
        return " ||| ".join(fields) + "\n"
