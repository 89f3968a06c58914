"""A phrase-based decoder that reads Moses's files and scores as Moses does.

Features (values as Moses computes and prints them):

* ``PhraseDictionaryMemory`` - ``max(ln x, -100)`` of each dense score;
* ``KENLM`` - log10 probabilities from the ``kenlm`` module times ln 10, ``<s>`` ... ``</s>``;
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
state), cube pruning with a pop limit and a stack size.  n-best lists come from the
recombination arcs, as Moses's trellis paths do.  The stacks and the trellis are in
``search.py``, compiled with Cython at set-up (``decoder.COMPILED``; 2.8x faster than the same
file run by Python).
"""
from __future__ import annotations

import gc
import math
import os
from dataclasses import dataclass, field

import numpy as np

from rescorer.vocab import EOS_ID

from .moses_ini import MosesIni, MosesIniError
from .search import COMPILED, Hyp, Option, Search, root_hyp, trellis_paths  # noqa: F401  (COMPILED: re-exported)


def _check_search_core() -> None:
    """A compiled search core older than its source would silently run old code.  Checked for
    in-place builds (``make setup``, ``pip install -e``: search.c lies beside), where search.py
    is edited; an installed wheel has no search.c, and its files get the times of installation."""
    from . import search
    if COMPILED:
        here = os.path.dirname(search.__file__)
        src = os.path.join(here, "search.py")
        if os.path.exists(os.path.join(here, "search.c")) and os.path.exists(src) \
                and os.path.getmtime(src) > os.path.getmtime(search.__file__):
            raise ImportError(f"{search.__file__} is older than {src}: rebuild it with `make setup` "
                              "(or `python setup.py build_ext --inplace`)")


_check_search_core()
LN10 = math.log(10.0)
FLOOR = -100.0
UNKNOWN_PENALTY = FLOOR  # Moses: FloorScore(log(0))


def moses_log(x: float) -> float:
    """What Moses does to a dense phrase-table score: ``max(ln x, -100)``."""
    return max(math.log(x), FLOOR) if x > 0 else FLOOR


class DecoderError(ValueError):
    pass


def _fast_fields(line: bytes, path: str, lineno: int, n_scores: int) -> tuple[str, str, list[float]]:
    """Source, target and Moses-logged scores of a table line; full checks only when it looks wrong."""
    f = line.split(b" ||| ", 3)
    try:
        vals = [float(x) for x in f[2].split()]
        src, tgt = f[0].decode(), f[1].decode()
        ok = len(vals) == n_scores and src.strip() and tgt.strip() and all(v == v for v in vals)
    except (IndexError, ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        from rescorer.phrase_table import parse_line
        p = parse_line(line, path, lineno)  # raises with file and line
        raise DecoderError(f"{path}:{lineno}: {p.n_scores} scores, {n_scores} expected")
    log = math.log
    return src, tgt, [max(log(v), FLOOR) if v > 0 else FLOOR for v in vals]  # max(ln v, -100)


@dataclass
class DecoderConfig:
    stack_size: int = 200           # Moses -s (DEFAULT_MAX_HYPOSTACK_SIZE)
    pop_limit: int = 1000           # Moses -cube-pruning-pop-limit
    distortion_limit: int | None = None   # None: the ini's [distortion-limit], else 6
    table_limit: int | None = None  # None: the table's table-limit=, else 20
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
        import kenlm
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
        self.table_limit = self.cfg.table_limit if self.cfg.table_limit is not None else int(
            tm.get("table-limit") or 20)

        self.lm = None
        if lm is not None:
            self.lm = kenlm.Model(_resolve(lm.get("path"), ini_dir))
        self.cslm = None
        if cslm is not None:
            from rescorer.checkpoint import load_cslm_checkpoint
            from rescorer.cslm import CSLMScorer, OutOfShortlist
            ck = load_cslm_checkpoint(_resolve(cslm.get("path") or "", ini_dir))
            self.cslm = CSLMScorer(ck["model"], ck["vocab"], OutOfShortlist(ck["oos_counts"]))
        self.n_tm = n_tm
        self._load_tables(_resolve(tm.get("path"), ini_dir),
                          _resolve(lr.get("path"), ini_dir) if lr is not None else None, sentences, progress)

    # -- tables ---------------------------------------------------------------------------
    def _load_tables(self, table: str, reordering: str | None, sentences: list[str], progress: bool = True) -> None:
        from .phrase_tables import filtered_lines, source_spans
        wanted = source_spans(sentences, self.cfg.max_phrase_length)
        raw: dict[str, list] = {}
        for lineno, line in filtered_lines(table, wanted, progress):
            src, tgt, vals = _fast_fields(line, table, lineno, self.n_tm)
            raw.setdefault(src, []).append((tuple(tgt.split()), vals))
        self.lr_table: dict[tuple[str, str], tuple[float, ...]] = {}
        if reordering is not None:
            pairs = {(s, " ".join(t)) for s, opts in raw.items() for t, _ in opts}
            for lineno, line in filtered_lines(reordering, wanted, progress):
                src, tgt, vals = _fast_fields(line, reordering, lineno, 6)
                if (src, tgt) in pairs:
                    self.lr_table[(src, tgt)] = tuple(vals)
        # per source: targets, their TM log-scores as a matrix, lengths, LM estimates (unweighted)
        self._lm_cache: dict[tuple[str, ...], float] = {}
        self.raw = {}
        for src, opts in raw.items():
            targets = [t for t, _ in opts]
            self.raw[src] = (targets, np.array([v for _, v in opts]), np.array([len(t) for t in targets], float),
                             np.array([self._lm_logprob(t) for t in targets]))
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
        self._apply_weights()

    def _stateless(self, tm: np.ndarray | None, n_words: int, unknown: bool = False) -> np.ndarray:
        """Feature values an option carries by itself: TM scores, -#words, 1 phrase, -100 if unknown."""
        delta = np.zeros(self.layout.size)
        if tm is not None:
            delta[self.s_tm] = tm
        if unknown:
            delta[self.s_uwp] = UNKNOWN_PENALTY
        if self.s_wp is not None:
            delta[self.s_wp] = -n_words
        if self.s_pp is not None:
            delta[self.s_pp] = 1.0
        return delta

    def _apply_weights(self) -> None:
        """The best table-limit targets of each source by their estimated score, as Moses keeps them."""
        w = self.weights
        w_tm = w[self.s_tm]
        w_wp = w[self.s_wp][0] if self.s_wp is not None else 0.0
        w_pp = w[self.s_pp][0] if self.s_pp is not None else 0.0
        w_lm = w[self.s_lm][0] if self.s_lm is not None else 0.0
        self.table: dict[str, list[tuple[tuple[str, ...], np.ndarray, float, float]]] = {}
        for src, (targets, tm, lengths, lmest) in self.raw.items():
            static = tm @ w_tm - w_wp * lengths + w_pp
            future = static + w_lm * lmest
            order = np.argsort(-future, kind="stable")
            if self.table_limit > 0:
                order = order[: self.table_limit]
            self.table[src] = [(targets[k], self._stateless(tm[k], len(targets[k])), float(static[k]),
                                float(future[k])) for k in order]

    def _lm_logprob(self, words: tuple[str, ...]) -> float:
        """ln-probability of a phrase in isolation (no <s>): Moses's LM estimate for future costs."""
        if self.lm is None:
            return 0.0
        total = self._lm_cache.get(words)
        if total is None:
            import kenlm
            a, b = kenlm.State(), kenlm.State()
            self.lm.NullContextWrite(a)
            total = 0.0
            for w in words:
                total += self.lm.BaseScore(a, w, b)
                a, b = b, a
            self._lm_cache[words] = total = total * LN10
        return total

    def _lm_estimate(self, words: tuple[str, ...]) -> float:
        return (self.weights[self.s_lm][0] * self._lm_logprob(words)) if self.lm is not None else 0.0

    # -- one sentence --------------------------------------------------------------------
    def options(self, words: list[str]) -> dict[tuple[int, int], list[Option]]:
        n, L = len(words), self.cfg.max_phrase_length
        out: dict[tuple[int, int], list[Option]] = {}
        for i in range(n):
            for j in range(i + 1, min(i + L, n) + 1):
                src = " ".join(words[i:j])
                for tgt, delta, static, future in self.table.get(src, ()):
                    lr = self.lr_table.get((src, " ".join(tgt))) if self.lr_table else None
                    out.setdefault((i, j), []).append(Option(i, j, tgt, delta, static, future, lr))
        for i in range(n):
            if (i, i + 1) not in out:
                # an unknown word: passed through, UnknownWordPenalty -100
                delta = self._stateless(None, 1, unknown=True)
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
        opts = self.options(words)
        fc = self.future_costs(n, opts)
        # The search makes millions of short-lived objects but no reference cycles of its own: the cyclic
        # collector would only scan them (and the loaded tables) again and again.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            return self._search(sentence, n, opts, fc, nbest, distinct)
        finally:
            if gc_was_on:
                gc.enable()

    def _search(self, sentence: str, n: int, opts: dict, fc: list, nbest: int, distinct: bool) -> list[Translation]:
        import kenlm
        w = self.weights
        lm, cslm = self.lm, self.cslm
        search = Search(n, opts, fc, self.dl, self.cfg.max_phrase_length,
                        lm, w[self.s_lm][0] if lm is not None else 0.0,
                        self.s_d is not None, w[self.s_d][0] if self.s_d is not None else 0.0,
                        w[self.s_lr] if self.s_lr is not None else None,
                        cslm, w[self.s_cslm][0] if cslm is not None else 0.0)
        start_state = None
        if lm is not None:
            start_state = kenlm.State()
            lm.BeginSentenceWrite(start_state)
        root = root_hyp(start_state, search.future_of(0),
                        (EOS_ID,) * (cslm.order - 1) if cslm is not None else None)
        finals = search.run(root, self.cfg.stack_size, self.cfg.pop_limit)
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
