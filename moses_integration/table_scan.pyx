# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The decoder's reading of a phrase table at the C level: the lines whose source phrase the
input needs, split into their source, target and scores in one pass over the decompressed bytes.

``Columns.add`` takes blocks of whole lines (``table_filter`` reads the file in blocks and cuts
them after their last newline).  A line is kept when its source phrase (up to the first
``" ||| "``) is in ``wanted``, as ``table_filter.filtered_lines`` keeps it; lines without the
separator are skipped there too.  Sources and targets are numbered in order of first appearance
(a target shared by many sources is decoded and split once by the caller), scores are read with
``strtod``, correctly rounded like Python's ``float``.

Anything unusual in a kept line (a field missing, another number of scores, a score with other
characters than digits, signs, a point and an exponent, NaN) stops the scan: ``ok`` is then
False and the caller reads the file again line by line as ``parse_line`` does, which raises
naming the file and the line, or gives the same columns when the line was only unusual."""
from libc.stdlib cimport strtod
from libc.string cimport memchr
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

import numpy as np

COMPILED = True  # as search.py's flag: compiled.check_fresh looks at it


cdef inline Py_ssize_t _find_sep(const char* p, Py_ssize_t i, Py_ssize_t end) noexcept:
    """The first " ||| " in p[i:end], as bytes.find finds it; -1 when there is none."""
    cdef const char* q
    cdef Py_ssize_t j
    while True:
        q = <const char*>memchr(p + i + 1, b'|', end - i - 1) if end - i > 1 else NULL
        if q == NULL:
            return -1
        j = q - p  # a '|' at j, j >= i + 1: a match starts at j - 1
        if j + 3 < end and p[j - 1] == b' ' and p[j + 1] == b'|' and p[j + 2] == b'|' and p[j + 3] == b' ':
            return j - 1
        i = j


cdef inline bint _space(char c) noexcept:
    return c == b' ' or c == b'\t' or c == b'\r' or c == b'\x0b' or c == b'\x0c'


cdef inline bint _number_char(char c) noexcept:
    return (b'0' <= c <= b'9') or c == b'.' or c == b'-' or c == b'+' or c == b'e' or c == b'E'


cdef double[23] _TEN
_TEN[0] = 1.0
for _k in range(1, 23):
    _TEN[_k] = _TEN[_k - 1] * 10.0  # exact: 10**k = 5**k * 2**k and 5**22 < 2**53


cdef inline double _number(const char* p, Py_ssize_t n, bint* ok) noexcept:
    """The number written in p[0:n], correctly rounded.  Plain decimals of up to 15 digits with
    a small exponent take Clinger's fast path (the integer of the digits and the power of ten
    are both exact, so one multiplication or division rounds correctly); anything else goes to
    strtod, which must then read the whole token."""
    cdef Py_ssize_t i = 0
    cdef bint neg = False
    cdef unsigned long long m = 0
    cdef int digits = 0, scale = 0, e = 0, esign = 1, edigits = 0
    cdef bint seen = False
    cdef char* after
    cdef double v
    if i < n and (p[i] == b'-' or p[i] == b'+'):
        neg = p[i] == b'-'
        i += 1
    while i < n and b'0' <= p[i] <= b'9':
        if m or p[i] != b'0':
            digits += 1
        m = m * 10 + (p[i] - 48) if digits <= 18 else m
        seen = True
        i += 1
    if i < n and p[i] == b'.':
        i += 1
        while i < n and b'0' <= p[i] <= b'9':
            if m or p[i] != b'0':
                digits += 1
            m = m * 10 + (p[i] - 48) if digits <= 18 else m
            scale += 1
            seen = True
            i += 1
    if seen and i < n and (p[i] == b'e' or p[i] == b'E'):
        i += 1
        if i < n and (p[i] == b'-' or p[i] == b'+'):
            esign = -1 if p[i] == b'-' else 1
            i += 1
        while i < n and b'0' <= p[i] <= b'9' and edigits < 6:
            e = e * 10 + (p[i] - 48)
            edigits += 1
            i += 1
        if edigits == 0:
            seen = False
    if seen and i == n and digits <= 15:
        e = esign * e - scale
        if -22 <= e <= 22:
            v = <double>m  # exact: fewer than 16 digits
            v = v * _TEN[e] if e >= 0 else v / _TEN[-e]
            return -v if neg else v
    v = strtod(p, &after)
    ok[0] = after == p + n and v == v
    return v


cdef class Columns:
    """The kept lines of a table so far: ``sources`` and ``targets`` (bytes, each once, in order
    of first appearance), per line ``source_ids``, ``target_ids`` and ``n_scores`` scores."""
    cdef readonly set wanted
    cdef readonly int n_scores
    cdef readonly bint ok
    cdef readonly list sources
    cdef readonly list targets
    cdef dict _source_id
    cdef dict _target_id
    cdef object _sid
    cdef object _tid
    cdef object _scores
    cdef Py_ssize_t _n, _cap

    def __init__(self, set wanted, int n_scores):
        self.wanted, self.n_scores, self.ok = wanted, n_scores, True
        self.sources, self.targets = [], []
        self._source_id, self._target_id = {}, {}
        self._n, self._cap = 0, 1 << 16
        self._sid = np.empty(self._cap, np.int64)
        self._tid = np.empty(self._cap, np.int64)
        self._scores = np.empty((self._cap, max(n_scores, 1)), np.float64)

    cdef void _grow(self):
        self._cap *= 2
        self._sid = np.resize(self._sid, self._cap)
        self._tid = np.resize(self._tid, self._cap)
        s = np.empty((self._cap, self._scores.shape[1]), np.float64)
        s[:self._n] = self._scores[:self._n]
        self._scores = s

    def add(self, bytes block) -> int:
        """Scan the lines of ``block`` (whole lines; the last one may lack its newline); the
        number of lines seen.  Stops at the first unusual kept line, leaving ``ok`` False."""
        cdef const char* p = PyBytes_AS_STRING(block)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(block)
        cdef Py_ssize_t start = 0, end, k, k2, k3, i, tok
        cdef const char* nl
        cdef bint good = True
        cdef int m
        cdef double v
        cdef Py_ssize_t lines = 0
        cdef long long[:] sid = self._sid
        cdef long long[:] tid = self._tid
        cdef double[:, :] scores = self._scores
        while start < size and self.ok:
            nl = <const char*>memchr(p + start, b'\n', size - start)
            end = (nl - p) if nl != NULL else size
            lines += 1
            k = _find_sep(p, start, end)
            if k >= 0:
                src = PyBytes_FromStringAndSize(p + start, k - start)
                if src in self.wanted:
                    k2 = _find_sep(p, k + 5, end)
                    if k2 < 0:
                        self.ok = False
                        break
                    k3 = _find_sep(p, k2 + 5, end)
                    if k3 < 0:
                        k3 = end
                    if self._n == self._cap:
                        self._grow()
                        sid, tid, scores = self._sid, self._tid, self._scores
                    # the scores: n_scores numbers, each token read whole by _number
                    m = 0
                    i = k2 + 5
                    while i < k3:
                        if _space(p[i]):
                            i += 1
                            continue
                        tok = i
                        while i < k3 and not _space(p[i]):
                            if not _number_char(p[i]):
                                self.ok = False
                                break
                            i += 1
                        if not self.ok:
                            break
                        v = _number(p + tok, i - tok, &good)
                        if not good or m >= self.n_scores:
                            self.ok = False
                            break
                        scores[self._n, m] = v
                        m += 1
                    if not self.ok or m != self.n_scores:
                        self.ok = False
                        break
                    s = self._source_id.get(src)
                    if s is None:
                        s = self._source_id[src] = len(self.sources)
                        self.sources.append(src)
                    tgt = PyBytes_FromStringAndSize(p + k + 5, k2 - k - 5)
                    t = self._target_id.get(tgt)
                    if t is None:
                        t = self._target_id[tgt] = len(self.targets)
                        self.targets.append(tgt)
                    sid[self._n] = s
                    tid[self._n] = t
                    self._n += 1
            start = end + 1
        return lines

    @property
    def source_ids(self):
        return self._sid[:self._n].copy()

    @property
    def target_ids(self):
        return self._tid[:self._n].copy()

    @property
    def scores(self):
        return self._scores[:self._n, :self.n_scores].copy()
