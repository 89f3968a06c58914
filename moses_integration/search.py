"""The search core of the built-in decoder: hypotheses, their extension, and cube pruning.

Written in Cython's pure-Python mode.  ``make setup`` (``pip install -e .``) compiles this file
into an extension module beside it, which Python imports in its place; the same file also runs
as plain Python, slower (``COMPILED`` says which one is loaded).  ``decoder.PhraseModel`` builds
the options and future costs of a sentence and turns the final hypotheses into n-best lists;
what happens between (the stacks) is here.

Scores are Moses's: a hypothesis's ``score`` is the weighted sum of its feature values so far,
``future`` the estimate of the rest (Moses's future cost), and stacks are ordered by their sum.
"""
import array
import heapq

import cython
import numpy as np

from rescorer.vocab import EOS_ID, UNK_ID

COMPILED = cython.compiled
INF = float("inf")
EOS_WORD = "</s>"


@cython.final
@cython.no_gc
@cython.cclass
class Option:
    """A translation option: source span [start, end), target words and what they score alone.
    What it points to (words, numbers, arrays, its LM caches) never points back to an option, so
    the cyclic garbage collector need not track options."""
    start = cython.declare(cython.int, visibility="public")
    end = cython.declare(cython.int, visibility="public")        # exclusive
    target = cython.declare(tuple, visibility="public")
    delta = cython.declare(object, visibility="public")          # stateless feature values (TM, WP, PP, UWP)
    static = cython.declare(cython.double, visibility="public")  # their weighted sum
    future = cython.declare(cython.double, visibility="public")  # static + weighted LM estimate alone
    lr = cython.declare(object, visibility="public")             # 6 reordering log-probabilities, or None
    mask = cython.declare(object, visibility="public")           # the source words it covers, as a bit set
    lr_id = cython.declare(cython.int, visibility="public")      # equal lr values, equal id (Search sets it)
    lr_back = cython.declare(cython.double[3])  # weighted backward values by orientation (Search sets them)
    lr_fwd = cython.declare(cython.double[3])   # weighted forward values, for the phrase after this one
    lm_next = cython.declare(dict)  # LM state number before -> (ln p of the target, state number after), inside the sentence
    lm_last = cython.declare(dict)  # the same for the sentence's last phrase (</s> scored too)
    lm_ids = cython.declare(object) # the target's ids in the LM's vocabulary

    def __init__(self, start: cython.int, end: cython.int, target: tuple, delta, static: cython.double,
                 future: cython.double, lr):
        one: object = 1  # a Python int: sentences may be longer than 64 words
        self.start, self.end, self.target, self.delta = start, end, target, delta
        self.static, self.future, self.lr = static, future, lr
        self.mask = ((one << (end - start)) - 1) << start
        self.lr_id = -1
        self.lm_next = self.lm_last = self.lm_ids = None

    def __repr__(self):
        return f"Option({self.start}, {self.end}, {self.target!r}, static={self.static:.4f})"


@cython.final
@cython.no_gc
@cython.freelist(1024)
@cython.cclass
class Hyp:
    """A partial translation.  Besides the option's own stateless values, its last phrase added
    distortion ``d``, reordering in slot ``orient`` (the current pair's and ``prev.lr``), LM
    ``lm_ln`` and CSLM ``cs_ln`` (ln-probabilities), from which ``PhraseModel._translation``
    rebuilds feature vectors.  ``arcs`` are the hypotheses recombined into this one.  Nothing a
    hypothesis points to points back to it (``prev`` leads to earlier stacks, ``arcs`` to
    recombined ones), so the cyclic garbage collector need not track hypotheses."""
    coverage = cython.declare(object, visibility="public")   # covered source words, a bit set
    ncov = cython.declare(cython.int, visibility="public")
    start = cython.declare(cython.int, visibility="public")  # last phrase's source span
    end = cython.declare(cython.int, visibility="public")
    lm_id = cython.declare(cython.int)                       # its LM state, by number in the sentence
    lr = cython.declare(object, visibility="public")
    score = cython.declare(cython.double, visibility="public")
    future = cython.declare(cython.double, visibility="public")
    d = cython.declare(cython.int, visibility="public")
    orient = cython.declare(cython.int, visibility="public")
    lm_ln = cython.declare(cython.double, visibility="public")
    cs_ln = cython.declare(cython.double, visibility="public")
    prev = cython.declare(object, visibility="public")
    option = cython.declare(object, visibility="public")
    arcs = cython.declare(object, visibility="public")
    cctx = cython.declare(object, visibility="public")       # CSLM: the last n-1 word ids
    pending = cython.declare(object, visibility="public")    # CSLM: n-grams not yet scored
    lr_id = cython.declare(cython.int, visibility="public")  # the last option's lr_id (-1: none)
    rkey = cython.declare(object)                            # the recombination key, once made
    edge = cython.declare(cython.int)                        # cube pruning: edge, hypothesis rank,
    ci = cython.declare(cython.int)                          # option rank it was made from
    cj = cython.declare(cython.int)

    def path(self) -> list:
        """The hypotheses of this derivation in order (the root left out)."""
        out = []
        h = self
        while h.prev is not None:
            out.append(h)
            h = h.prev
        return out[::-1]


@cython.final
@cython.cclass
class _Edge:
    """A cube of cube pruning: hypotheses of one coverage (in Moses's order for the span) by the
    options of one source span, the coverage they make and its future cost; ``made`` marks the
    inner cells already made (``Search.run``)."""
    hyps: list
    opts: list
    cov: object
    fut: cython.double
    n_hyps: cython.int
    n_opts: cython.int
    made: bytearray


@cython.cfunc
def _new_edge(hyps: list, opts: list, cov, fut: cython.double) -> _Edge:
    e: _Edge = _Edge.__new__(_Edge)
    e.hyps, e.opts, e.cov, e.fut, e.made = hyps, opts, cov, fut, None
    e.n_hyps, e.n_opts = len(hyps), len(opts)
    return e


@cython.cfunc
def _new_hyp(coverage, ncov: cython.int, start: cython.int, end: cython.int, lm_id: cython.int, lr,
             score: cython.double, future: cython.double, prev, option) -> Hyp:
    h: Hyp = Hyp.__new__(Hyp)
    h.coverage, h.ncov, h.start, h.end = coverage, ncov, start, end
    h.lm_id, h.lr, h.score, h.future = lm_id, lr, score, future
    h.d, h.orient, h.lm_ln, h.cs_ln = 0, 0, 0.0, 0.0
    h.prev, h.option, h.arcs, h.cctx, h.pending = prev, option, None, None, None
    h.lr_id, h.rkey, h.edge, h.ci, h.cj = -1, None, 0, 0, 0
    return h


def root_hyp(future: float, cctx=None) -> Hyp:
    """The empty hypothesis: nothing covered, the LM after <s> (state number 0, ``Search.run``)."""
    h = _new_hyp(0, 0, -1, 0, 0, None, 0.0, future, None, None)
    h.cctx = cctx
    return h


@cython.final
@cython.cclass
class Search:
    """One sentence's beam search (Moses's ``-search-algorithm 1``).

    ``opts`` maps (start, end) to options sorted best estimate first; ``fc[i][j]`` is the future
    cost of span [i, j).  ``lm`` is a ``language_model`` model (``kenlm_core.KenLM``, which
    numbers the sentence's LM states) or None; ``cslm`` a ``CSLMScorer`` or None (its word index
    kept as ``cs_index``)."""
    n: cython.int
    dl: cython.int
    L: cython.int
    opts: dict
    opts_at: list   # the options of span [s, e) at s * (n + 1) + e, or None
    fc: list
    fut_cache: dict
    lm: object
    w_lm: cython.double
    w_d: cython.double
    has_d: cython.bint
    lr_on: cython.bint
    w_lr: tuple
    cslm: object
    w_cs: cython.double
    cs_index: object
    cs_cache: dict
    jkey: object    # _by_jump's work arrays
    jpos: object

    def __init__(self, n: cython.int, opts: dict, fc: list, dl: cython.int, max_phrase_length: cython.int,
                 lm, w_lm: cython.double, has_d: cython.bint, w_d: cython.double, w_lr, cslm=None,
                 w_cs: cython.double = 0.0):
        self.n, self.opts, self.fc, self.dl, self.L = n, opts, fc, dl, max_phrase_length
        self.fut_cache = {}
        self.jkey = self.jpos = None
        self.lm, self.w_lm = lm, w_lm
        self.has_d, self.w_d = has_d, w_d
        self.lr_on = w_lr is not None
        self.w_lr = tuple(float(x) for x in w_lr) if w_lr is not None else None
        self.cslm, self.w_cs, self.cs_cache = cslm, w_cs, {}
        self.cs_index = cslm.vocab.index if cslm is not None else None
        # Options with the same target share their LM ids and continuations; equal reordering
        # values get one id, which the recombination key compares instead of the six values.
        lm_caches: dict = {}
        lr_ids: dict = {}
        o: Option
        self.opts_at = [None] * ((n + 1) * (n + 1))
        for (s, e), olist in opts.items():
            if olist:
                self.opts_at[s * (n + 1) + e] = olist
        for olist in opts.values():
            for o in olist:
                caches = lm_caches.get(o.target)
                if caches is None:
                    caches = lm_caches[o.target] = ({}, {}, lm.word_ids(o.target) if lm is not None else None)
                o.lm_next, o.lm_last, o.lm_ids = caches
                if o.lr is not None:
                    o.lr_id = lr_ids.setdefault(o.lr, len(lr_ids))
                    if self.lr_on:  # (a list assigned to the C arrays as a whole: plain Python has no arrays there)
                        o.lr_back = [self.w_lr[k] * o.lr[k] for k in range(3)]
                        o.lr_fwd = [self.w_lr[3 + k] * o.lr[3 + k] for k in range(3)]

    @cython.ccall
    def future_of(self, cov) -> cython.double:
        """Future cost of the uncovered source: the sum over its maximal gaps of fc."""
        v = self.fut_cache.get(cov)
        if v is not None:
            return v
        n: cython.int = self.n
        i: cython.int = 0
        j: cython.int
        total: cython.double = 0.0
        fc: list = self.fc
        while i < n:
            if cov >> i & 1:
                i += 1
                continue
            j = i
            while j < n and not cov >> j & 1:
                j += 1
            total += fc[i][j]
            i = j
        self.fut_cache[cov] = total
        return total

    @cython.cfunc
    def extend(self, h: Hyp, o: Option, cov, fut: cython.double) -> Hyp:
        """Hypothesis h followed by option o, which make coverage ``cov`` with future cost ``fut``
        (the edge's): every feature's weighted increment."""
        score: cython.double = h.score + o.static
        o_start: cython.int = o.start
        o_end: cython.int = o.end
        ncov: cython.int = h.ncov + o_end - o_start
        d: cython.int = 0
        if self.has_d:  # distortion -|d|, Moses's ComputeDistortionDistance
            d = -abs(o_start - h.end) if h.ncov else -o_start
            score += self.w_d * d
        orient: cython.int = 0
        if self.lr_on:  # orientation of this phrase against the previous one: 0 M, 1 S, 2 D
            orient = 0 if o_start == h.end else (1 if o_end == h.start else 2)
            if o.lr is not None:  # backward model: p(o | this pair)
                score += o.lr_back[orient]
            if h.lr is not None:  # forward model: p(o | previous pair)
                score += cython.cast(Option, h.option).lr_fwd[orient]
        last: cython.bint = ncov == self.n
        sid: cython.int = 0
        lm_ln: cython.double = 0.0
        if self.lm is not None:
            cache: dict = o.lm_last if last else o.lm_next
            hit = cache.get(h.lm_id)
            if hit is None:
                hit = self.lm.extend(h.lm_id, o.lm_ids, last)
                cache[h.lm_id] = hit
            lm_ln, sid = hit
            score += self.w_lm * lm_ln
        nh: Hyp = _new_hyp(cov, ncov, o_start, o_end, sid, o.lr if self.lr_on else None, score,
                           fut, h, o)
        nh.d, nh.orient, nh.lm_ln = d, orient, lm_ln
        if self.lr_on:
            nh.lr_id = o.lr_id
        if self.cslm is not None:
            self._cslm_ngrams(nh, h.cctx, o.target + ((EOS_WORD,) if last else ()))
        return nh

    def _cslm_ngrams(self, nh: Hyp, ctx: tuple, words: tuple) -> None:
        """CSLM: the new n-grams, scored later in a batch; words outside the shortlist get
        ln p([UNK] | h) + ln u(w) (rescorer.cslm), the u(w) part added here."""
        pending = []
        oos = 0.0
        for word in words:
            wid = EOS_ID if word == EOS_WORD else self.cs_index.get(word, UNK_ID)
            if wid == UNK_ID:
                oos += self.cslm.oos.logprob(word)
            pending.append((ctx, wid))
            ctx = ctx[1:] + (wid,)
        nh.cctx, nh.pending, nh.cs_ln = ctx, pending, oos

    def score_pending(self, hyps: list) -> None:
        """The buffered CSLM n-grams of these hypotheses, in one batch; added to their scores."""
        cache = self.cs_cache
        todo = list({g for h in hyps for g in h.pending if g not in cache})
        if todo:
            lps = self.cslm.ngram_logprobs(np.array([c for c, _ in todo], dtype=np.int64).reshape(len(todo), -1),
                                           np.array([wd for _, wd in todo], dtype=np.int64))
            cache.update(zip(todo, lps.tolist()))
        for h in hyps:
            ln = h.cs_ln + sum(cache[g] for g in h.pending)  # the u(w) part was already there
            h.cs_ln = ln
            h.score += self.w_cs * ln
            h.pending = None

    @cython.cfunc
    def key(self, h: Hyp) -> tuple:
        """What the rest of the search depends on: recombination merges equal keys."""
        if h.rkey is None:
            h.rkey = (h.coverage, h.end, h.lm_id, h.lr_id, h.start if self.lr_on else None, h.cctx)
        return h.rkey

    @cython.cfunc
    def add(self, stack: dict, h: Hyp) -> cython.bint:
        """Recombination: the better of two equal-key hypotheses stays, the other becomes an arc.
        True when h is in the stack afterwards."""
        k = self.key(h)
        old = stack.get(k)
        if old is None:
            stack[k] = h
            return True
        o: Hyp = old
        arcs: list = o.arcs
        if arcs is None:
            arcs = o.arcs = []
        if h.score > o.score:  # h takes o's place and its arcs, o last among them
            arcs.append(o)
            h.arcs, o.arcs = arcs, None
            stack[k] = h
            return True
        arcs.append(h)
        return False

    @cython.cfunc
    def fill(self, popped: list, stack_size: cython.int, beam: cython.double) -> list:
        """The stack made of the popped hypotheses, in the order they were popped, as Moses's
        ``HypothesisStackCubePruning::AddPrune``: a hypothesis whose score + future is below the
        stack's worst admitted score is dropped; the worst admitted score is the best one plus
        ``beam`` (ln of Moses's beam-threshold; -inf: none), raised to the pruning threshold
        whenever the stack, grown to 2 * stack_size, is pruned to stack_size; and the stack is
        pruned to stack_size at the end.  The kept hypotheses, best first."""
        stack: dict = {}
        best: cython.double = -INF
        worst: cython.double = -INF
        t: cython.double
        h: Hyp
        for h in popped:
            t = h.score + h.future
            if t < worst or t == -INF:
                continue
            if self.add(stack, h):
                if t > best:
                    best = t
                    if best + beam > worst:
                        worst = best + beam
                if len(stack) > 2 * stack_size - 1:
                    worst = _prune(stack, stack_size, best, beam)
        if len(stack) > stack_size:
            _prune(stack, stack_size, best, beam)
        return _best_first(list(stack.values()), len(stack))

    @cython.cfunc
    def _by_jump(self, hyps: list, s: cython.int) -> list:
        """An edge's hypotheses (one coverage, best score first) in Moses's cube order for
        options starting at ``s``: by score plus the weighted distortion of the jump to s
        (``HypothesisScoreOrdererWithDistortion``), ties in score order."""
        m: cython.Py_ssize_t = len(hyps)
        i: cython.Py_ssize_t
        h: Hyp
        end0: cython.int = cython.cast(Hyp, hyps[0]).end
        same: cython.bint = True
        for i in range(1, m):
            if cython.cast(Hyp, hyps[i]).end != end0:
                same = False
                break
        if same:  # one jump for all: the score order stands
            return hyps
        if self.jkey is None or len(self.jkey) < m:
            self.jkey, self.jpos = np.empty(2 * m), np.empty(2 * m, dtype=np.int64)
        kv: cython.double[:] = self.jkey
        pv: cython.longlong[:] = self.jpos
        j: cython.Py_ssize_t
        t: cython.double
        for i in range(m):  # insertion sort, best first, ties in score order: the input is nearly sorted
            h = hyps[i]
            t = h.score - self.w_d * abs(s - h.end)
            j = i
            while j > 0 and kv[j - 1] < t:
                kv[j] = kv[j - 1]
                pv[j] = pv[j - 1]
                j -= 1
            kv[j] = t
            pv[j] = i
        return [hyps[pv[i]] for i in range(m)]

    @cython.cfunc
    def register_edges(self, hyps: list, edges: list) -> cython.void:
        """The cube-pruning edges out of a stack: per coverage and source span, the hypotheses
        (best first) that may jump there under Moses's distortion-limit rules, and the options."""
        n: cython.int = self.n
        dl: cython.int = self.dl
        L: cython.int = self.L
        s: cython.int
        e: cython.int
        first_gap: cython.int
        ncov: cython.int
        h: Hyp
        opts_at: list = self.opts_at
        by_cov: dict = {}
        for h in hyps:
            g = by_cov.get(h.coverage)
            if g is None:
                by_cov[h.coverage] = [h]
            else:
                g.append(h)
        for cov, group in by_cov.items():
            group.sort(key=_neg_score)
            first_gap = 0
            while cov >> first_gap & 1:
                first_gap += 1
            ncov = cython.cast(Hyp, group[0]).ncov
            for s in range(first_gap, n):
                if cov >> s & 1:
                    continue
                ok = None
                for e in range(s + 1, min(s + L, n) + 1):
                    if cov >> (e - 1) & 1:
                        break
                    olist = opts_at[s * (n + 1) + e]
                    if olist is None:
                        continue
                    # Moses: starting right of the first gap, the jump back must stay in the limit
                    if dl >= 0 and s != first_gap and abs(e - first_gap) > dl:
                        continue
                    if ok is None:  # the hypotheses whose jump to s is within the limit
                        ok = group if dl < 0 else [h for h in group
                                                   if abs(s if h.ncov == 0 else s - h.end) <= dl]
                        if self.has_d and len(ok) > 1:
                            ok = self._by_jump(ok, s)
                    if ok:  # the coverage the edge makes and its future cost, once for its hypotheses
                        new_cov = cov | cython.cast(Option, olist[0]).mask
                        edges[ncov + e - s].append(_new_edge(ok, olist, new_cov, self.future_of(new_cov)))

    def run(self, root: Hyp, stack_size: cython.int, pop_limit: cython.int, beam: cython.double = -INF) -> list:
        """Stacks by number of covered words, cube pruning into each; the full hypotheses, best first.
        ``beam`` is ln of Moses's beam-threshold (``fill``).

        An edge's cube is its hypotheses (rank a) by its options (rank b); popping cell (a, b)
        makes (a + 1, b) and (a, b + 1), each once (Moses's ``BackwardsEdge::PushSuccessors``).
        A cell with a or b = 0 has one neighbour that makes it, so only the others are marked
        in the edge's ``made`` grid.  The queue orders the stack's hypotheses by -(score + future),
        then by the order they were made in (``_heap_push``, ``_heap_pop``)."""
        n: cython.int = self.n
        m: cython.int
        ei: cython.int
        i: cython.int
        j: cython.int
        a: cython.int
        b: cython.int
        k: cython.int
        cell: cython.Py_ssize_t
        ed: _Edge
        pops: cython.int
        x: cython.longlong
        size: cython.Py_ssize_t
        key: cython.double[:]
        queue: cython.longlong[:]
        h: Hyp
        nh: Hyp
        made: bytearray
        kept: list = []
        edges: list = [[] for _ in range(n + 1)]  # per target stack: its _Edges
        if self.lm is not None:  # the sentence's LM states by number, the root's (after <s>) first
            root.lm_id = self.lm.begin()
        self.key(root)
        self.register_edges([root], edges)
        for m in range(1, n + 1):
            my_edges: list = edges[m]
            made_hyps: list = []  # the stack's hypotheses in the order they were made
            key = np.empty(len(my_edges) + 2 * pop_limit + 1)
            queue = np.empty(len(my_edges) + 2 * pop_limit + 1, dtype=np.int64)
            size = 0
            for ei in range(len(my_edges)):
                ed = my_edges[ei]
                h = self.extend(ed.hyps[0], ed.opts[0], ed.cov, ed.fut)
                h.edge = ei
                key[len(made_hyps)] = -(h.score + h.future)
                _heap_push(queue, size, key, len(made_hyps))
                made_hyps.append(h)
                size += 1
            pops = 0
            popped: list = []
            while size > 0 and pops < pop_limit:
                x = _heap_pop(queue, size, key)
                size -= 1
                h = made_hyps[x]
                pops += 1
                popped.append(h)
                ei, i, j = h.edge, h.ci, h.cj
                ed = my_edges[ei]
                for k in range(2):
                    a, b = i + 1 - k, j + k
                    if a >= ed.n_hyps or b >= ed.n_opts:
                        continue
                    if a > 0 and b > 0:
                        if ed.made is None:
                            ed.made = bytearray(ed.n_hyps * ed.n_opts)
                        made = ed.made
                        cell = a * ed.n_opts + b
                        if made[cell]:
                            continue
                        made[cell] = 1
                    nh = self.extend(ed.hyps[a], ed.opts[b], ed.cov, ed.fut)
                    nh.edge, nh.ci, nh.cj = ei, a, b
                    key[len(made_hyps)] = -(nh.score + nh.future)
                    _heap_push(queue, size, key, len(made_hyps))
                    made_hyps.append(nh)
                    size += 1
            edges[m] = None
            if self.cslm is not None:
                self.score_pending(popped)
            kept = self.fill(popped, stack_size, beam)
            if m < n:
                self.register_edges(kept, edges)
        return sorted(kept, key=_neg_score)


def trellis_paths(finals: list, n: cython.int, distinct: cython.bint, max_explored: cython.int) -> list:
    """Moses's n-best trellis paths: a derivation deviates from an earlier one by swapping one
    hypothesis for one of its arcs (the recombined alternatives), at a cost of the score they
    differ by.  A derivation is kept as (its parent's path, position, arc) and spelled out
    only when popped.  Returns up to n (hypotheses in order, score), best first; with
    ``distinct``, one per target string.  At most ``max_explored`` derivations are popped.

    The derivations are taken best first, ties in the order they were made (the final
    hypotheses first, then each popped path's deviations by position and arc).  The deviations
    of one popped path are made together and most are never taken, so they are not all queued:
    they are kept in arrays (``_Deviations``), sorted once, and only the best one not yet taken
    waits in the queue for its path; taking it queues the next.  As each path's first remaining
    deviation is the best of its own, the queue's first is the best of all of them: the same
    derivations in the same order as queueing every deviation, with a queue of about the
    derivations taken rather than the ones made."""
    heap: list = []
    explored: cython.int = 0
    blocks: cython.longlong = 0
    p: cython.int
    pos: cython.int
    bi: cython.Py_ssize_t
    j: cython.Py_ssize_t
    neg: cython.double
    h: Hyp
    devs: _Deviations
    i: cython.Py_ssize_t
    for i in range(len(finals)):
        h = finals[i]
        heap.append((-h.score, -1, i, None, 0, h, None, 0))
    heapq.heapify(heap)
    out: list = []
    seen: set = set()
    while heap and len(out) < n and explored < max_explored:
        neg, _, _, parent, pos, h, block, bi = heapq.heappop(heap)
        if block is not None and bi + 1 < cython.cast(_Deviations, block).size:
            devs = block  # its path's next deviation takes its place
            j = devs.order[bi + 1]
            heapq.heappush(heap, (devs.cost[j], devs.number, j, parent, devs.position[j],
                                  cython.cast(Hyp, parent[devs.position[j]]).arcs[devs.arc[j]], devs, bi + 1))
        explored += 1
        # the path from the final hypothesis backwards (index 0 = the final hypothesis)
        rev: list = parent[:pos] if parent is not None else []
        rev.append(h)
        x = h.prev
        while cython.cast(Hyp, x).prev is not None:
            rev.append(x)
            x = cython.cast(Hyp, x).prev
        if distinct:
            words = []
            for p in range(len(rev) - 1, -1, -1):
                words.extend(cython.cast(Hyp, rev[p]).option.target)
            key = tuple(words)
            if key not in seen:
                seen.add(key)
                out.append((rev[::-1], -neg))
        else:
            out.append((rev[::-1], -neg))
        # its deviations: at the positions after the one this derivation changed
        devs = _Deviations(rev, pos + 1 if parent is not None else 0, neg, blocks)
        if devs.size:
            blocks += 1
            j = devs.order[0]
            heapq.heappush(heap, (devs.cost[j], devs.number, j, rev, devs.position[j],
                                  cython.cast(Hyp, rev[devs.position[j]]).arcs[devs.arc[j]], devs, 0))
    return out


@cython.final
@cython.cclass
class _Deviations:
    """The deviations of one path ``rev`` (final hypothesis first) at positions ``first`` on, in
    the order they are made (by position, then arc): the cost of each (``neg`` + the score the
    hypothesis and its arc differ by), its position and arc, and ``order``, their indices by
    cost, ties in the order made.  ``number`` orders paths' deviations made at equal cost."""
    size = cython.declare(cython.Py_ssize_t)
    number = cython.declare(cython.longlong)
    cost = cython.declare(cython.double[:])
    position = cython.declare(cython.int[:])
    arc = cython.declare(cython.int[:])
    order = cython.declare(cython.int[:])

    def __init__(self, rev: list, first: cython.int, neg: cython.double, number: cython.longlong):
        p: cython.int
        k: cython.int
        m: cython.Py_ssize_t = 0
        base: cython.double
        h: Hyp
        a: Hyp
        for p in range(first, len(rev)):
            arcs = cython.cast(Hyp, rev[p]).arcs
            if arcs is not None:
                m += len(arcs)
        self.size, self.number = m, number
        if m == 0:
            return
        self.cost = array.array("d", bytes(8 * m))
        self.position = array.array("i", bytes(4 * m))
        self.arc = array.array("i", bytes(4 * m))
        m = 0
        for p in range(first, len(rev)):
            h = rev[p]
            if h.arcs is not None:
                base = neg + h.score
                for k in range(len(h.arcs)):
                    a = h.arcs[k]
                    self.cost[m] = base - a.score
                    self.position[m], self.arc[m] = p, k
                    m += 1
        self.order = array.array("i", range(m))
        _sort_by(self.cost, self.order, array.array("i", bytes(4 * m)), m)


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _sort_by(key: cython.double[:], idx: cython.int[:], tmp: cython.int[:], m: cython.Py_ssize_t) -> cython.void:
    """Sort the indices idx[:m] by key, ties in their order (a bottom-up merge sort)."""
    width: cython.Py_ssize_t = 1
    lo: cython.Py_ssize_t
    mid: cython.Py_ssize_t
    hi: cython.Py_ssize_t
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    k: cython.Py_ssize_t
    src: cython.int[:] = idx
    dst: cython.int[:] = tmp
    in_tmp: cython.bint = False  # whether the sorted run is in tmp
    while width < m:
        lo = 0
        while lo < m:
            mid = min(lo + width, m)
            hi = min(lo + 2 * width, m)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if key[src[j]] < key[src[i]]:
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < mid:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < hi:
                dst[k] = src[j]
                j += 1
                k += 1
            lo = hi
        src, dst = dst, src
        in_tmp = not in_tmp
        width *= 2
    if in_tmp:
        for i in range(m):
            idx[i] = src[i]


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.exceptval(check=False)
def _before(key: cython.double[:], x: cython.longlong, y: cython.longlong) -> cython.bint:
    """Is x ahead of y in the queue: the lower key, or made first."""
    return key[x] < key[y] or (key[x] == key[y] and x < y)


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
def _heap_push(queue: cython.longlong[:], size: cython.Py_ssize_t, key: cython.double[:],
               x: cython.longlong) -> cython.void:
    """Add x to the binary heap queue[:size] (which grows by one)."""
    pos: cython.Py_ssize_t = size
    parent: cython.Py_ssize_t
    while pos > 0:
        parent = (pos - 1) >> 1
        if not _before(key, x, queue[parent]):
            break
        queue[pos] = queue[parent]
        pos = parent
    queue[pos] = x


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.exceptval(check=False)
def _heap_pop(queue: cython.longlong[:], size: cython.Py_ssize_t, key: cython.double[:]) -> cython.longlong:
    """Remove and return the first of the binary heap queue[:size] (which shrinks by one)."""
    top: cython.longlong = queue[0]
    last: cython.longlong = queue[size - 1]
    size -= 1
    pos: cython.Py_ssize_t = 0
    child: cython.Py_ssize_t
    if size == 0:
        return top
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _before(key, queue[child + 1], queue[child]):
            child += 1
        if not _before(key, queue[child], last):
            break
        queue[pos] = queue[child]
        pos = child
    queue[pos] = last
    return top


@cython.cfunc
def _best_first(hyps: list, k: cython.Py_ssize_t) -> list:
    """The ``k`` hypotheses of the highest score + future, best first, ties in their order
    (as ``sorted(hyps, key=lambda h: -(h.score + h.future))[:k]``, with the keys in an array
    sorted by numpy)."""
    m: cython.Py_ssize_t = len(hyps)
    i: cython.Py_ssize_t
    h: Hyp
    keys = np.empty(m)
    kv: cython.double[:] = keys
    for i in range(m):
        h = hyps[i]
        kv[i] = -(h.score + h.future)
    return [hyps[j] for j in np.argsort(keys, kind="stable")[:k].tolist()]


@cython.cfunc
def _prune(stack: dict, size: cython.int, best: cython.double, beam: cython.double) -> cython.double:
    """Moses's ``PruneToSize``: the threshold is the size-th best score + future among those
    above ``best`` + ``beam`` (the lowest of them when fewer); every hypothesis below it leaves
    the stack, ties stay.  Returns the threshold.  When none is above (scores so large, under
    weights far from 1, that adding the beam does not change the best's float), the threshold is
    ``best``: the best and its ties stay."""
    h: Hyp
    t: cython.double
    floor: cython.double = best + beam
    scores: list = []
    for h in stack.values():
        t = h.score + h.future
        if t > floor:
            scores.append(t)
    if not scores:
        scores.append(best)
    scores.sort(reverse=True)
    threshold: cython.double = scores[min(size, len(scores)) - 1]
    gone: list = []
    for k, h in stack.items():
        if h.score + h.future < threshold:
            gone.append(k)
    for k in gone:
        del stack[k]
    return threshold


def _neg_score(h) -> float:
    return -h.score

