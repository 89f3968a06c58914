"""The heavy loop of MERT's line search along one weight: every sentence's upper envelope of
lines, swept from γ = -inf, on the pool's flat arrays (no padding).

Written in Cython's pure-Python mode and compiled by ``make setup`` like ``search.py``
(``COMPILED`` says whether the extension is loaded; ``mert`` uses the numpy sweep otherwise).
The lines of candidate j are ``a[j] + γ b[j]``.  Per sentence, in slope order:

1. of equal slopes only the highest line stays (among equally high, the last candidate);
2. a line lower than some flatter line and than some steeper one is dropped: one of those two
   is above it for every γ;
3. from the least steep line, the next winner is the steeper line that crosses the current one
   first, the steepest of those crossing at the same point (``mert._events`` does the same
   with numpy arrays, all sentences at once).

Each crossing is computed as ``(a[c] - a[j]) / (b[j] - b[c])``, as ``mert._events`` does, so
the breakpoints are the same numbers."""
import math

import cython
import numpy as np

COMPILED = cython.compiled
INF = cython.declare(cython.double, math.inf)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
def sweep(a: cython.double[:], b: cython.double[:], order: cython.longlong[:], offsets: cython.longlong[:],
          St: cython.double[:, :]) -> tuple:
    """Statistics at γ = -inf and every breakpoint with its change of statistics.

    ``order`` lists the candidates sentence by sentence, each sentence's by slope (equal slopes
    in candidate order), ``offsets[s]:offsets[s + 1]`` being sentence s's part; ``a`` and ``b``
    are the intercepts and slopes in that order (``a[i]`` is candidate ``order[i]``'s), so that
    the loops read memory in sequence.  Returns (start (K,), breakpoints (E,), changes (E, K)),
    breakpoints sentence by sentence."""
    S: cython.Py_ssize_t = offsets.shape[0] - 1
    K: cython.Py_ssize_t = St.shape[1]
    width: cython.Py_ssize_t = 1
    s: cython.Py_ssize_t
    for s in range(S):
        if offsets[s + 1] - offsets[s] > width:
            width = offsets[s + 1] - offsets[s]
    line_np = np.empty(width, dtype=np.int64)  # a sentence's lines after steps 1 and 2
    top_np = np.empty(width)  # after step 1: the highest intercept up to here, from the left
    line: cython.longlong[:] = line_np
    top: cython.double[:] = top_np
    start_np = np.zeros(K)
    start: cython.double[:] = start_np
    cap: cython.Py_ssize_t = 4 * S + 16
    xs_np = np.empty(cap)
    pairs_np = np.empty((cap, 2), dtype=np.int64)  # (candidate before, candidate after)
    xs: cython.double[:] = xs_np
    pairs: cython.longlong[:, :] = pairs_np
    E: cython.Py_ssize_t = 0
    i: cython.Py_ssize_t
    t: cython.Py_ssize_t
    n: cython.Py_ssize_t
    m: cython.Py_ssize_t
    cur: cython.Py_ssize_t
    nxt: cython.Py_ssize_t
    j: cython.longlong
    best: cython.longlong
    k: cython.Py_ssize_t
    hi: cython.double
    x: cython.double
    lowest: cython.double
    stop: cython.bint
    for s in range(S):
        # 1. the highest line of each run of equal slopes (the last of the equally high)
        n = 0
        i = offsets[s]
        while i < offsets[s + 1]:
            best = i
            i += 1
            while i < offsets[s + 1] and b[i] == b[best]:
                if a[i] >= a[best]:
                    best = i
                i += 1
            line[n] = best
            n += 1
        if n == 0:
            continue
        # 2. drop a line lower than a flatter one and than a steeper one (prefix and suffix maxima)
        hi = a[line[0]]
        for t in range(n):
            if a[line[t]] > hi:
                hi = a[line[t]]
            top[t] = hi
        m = n
        hi = -INF
        for t in range(n - 1, -1, -1):  # right to left, compacting into the right end
            j = line[t]
            if not (t > 0 and a[j] < top[t - 1] and a[j] < hi):
                m -= 1
                line[m] = j
            if a[j] > hi:
                hi = a[j]
        # the kept lines are line[m:n], by slope
        for k in range(K):
            start[k] += St[order[line[m]], k]
        # 3. the sweep
        cur = m
        while True:
            lowest = INF
            nxt = -1
            stop = False
            for t in range(cur + 1, n):
                x = (a[line[cur]] - a[line[t]]) / (b[line[t]] - b[line[cur]])
                if x != x:  # NaN: numpy's minimum would be NaN, which ends the sweep
                    stop = True
                    break
                if x <= lowest:  # ties: the steeper line
                    lowest = x
                    nxt = t
            if stop or nxt < 0 or not (-INF < lowest < INF):
                break
            if E == cap:
                cap *= 2
                xs_np = np.resize(xs_np, cap)
                pairs_np = np.resize(pairs_np, (cap, 2))
                xs = xs_np
                pairs = pairs_np
            xs[E] = lowest
            pairs[E, 0] = order[line[cur]]
            pairs[E, 1] = order[line[nxt]]
            E += 1
            cur = nxt
    p = pairs_np[:E]
    St_np = np.asarray(St)
    return start_np, xs_np[:E].copy(), St_np[p[:, 1]] - St_np[p[:, 0]]
