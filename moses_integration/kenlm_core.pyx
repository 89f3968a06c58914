# distutils: language = c++
# cython: language_level=3
"""The decoder's n-gram language model at the C++ level: KenLM's own C++ API (``libkenlm.so``
of the ``kenlm`` package, the headers of its source package, installed by ``make setup``).

A search asks the LM one thing, again and again: the log-probability of a target phrase after a
state, and the state after it.  Through the ``kenlm`` module each word costs a Python call, a
UTF-8 encoding, a ``kenlm.State`` and a dictionary lookup of it; here a phrase is one call over
its vocabulary ids, and the states a sentence reaches are numbered in C++ (equal states by
KenLM's own comparison and hash, one number), so that the search keys hypotheses on numbers.

``moses_integration.language_model`` chooses this or the same interface over the ``kenlm``
module; both give the same numbers, summed in the same order in double precision.
"""
import math

from libcpp cimport bool as cbool
from libcpp.vector cimport vector

COMPILED = True  # as search.py's flag: compiled.check_fresh looks at it
cdef double LN10 = math.log(10.0)  # the same number as language_model.LN10

cdef extern from * nogil:
    """
    #include <cstring>
    #include <unordered_map>
    #include <vector>
    #include "lm/model.hh"
    #include "lm/state.hh"

    namespace rescorer_lm {

    struct StateHash {
      size_t operator()(const lm::ngram::State &s) const { return (size_t)lm::ngram::hash_value(s); }
    };

    // One model and the states of the sentence being decoded, numbered in the order first seen.
    class States {
     public:
      explicit States(const char *path) : model_(lm::ngram::LoadVirtual(path, lm::ngram::Config())) {}
      ~States() { delete model_; }
      size_t StateSize() const { return model_->StateSize(); }
      static size_t CompiledStateSize() { return sizeof(lm::ngram::State); }
      unsigned Order() const { return model_->Order(); }
      unsigned Index(const char *word, size_t length) const {
        return model_->BaseVocabulary().Index(StringPiece(word, length));
      }
      int Begin() {
        states_.clear();
        ids_.clear();
        lm::ngram::State s;
        model_->BeginSentenceWrite(&s);
        return Intern(s);
      }
      size_t Count() const { return states_.size(); }
      // log10 p of n words (and </s> with eos) after state number sid; *after: the state's number
      double Extend(int sid, const char *ids, int n, bool eos, int *after) {
        lm::ngram::State a = states_[sid], b;
        double total = Score(a, b, ids, n, eos);
        *after = Intern(a);
        return total;
      }
      // log10 p of n words from the null context (Moses's LM estimate of a phrase alone)
      double Alone(const char *ids, int n) const {
        lm::ngram::State a, b;
        model_->NullContextWrite(&a);
        return Score(a, b, ids, n, false);
      }

     private:
      double Score(lm::ngram::State &a, lm::ngram::State &b, const char *ids, int n, bool eos) const {
        double total = 0.0;
        lm::WordIndex w;
        for (int i = 0; i < n; ++i) {
          std::memcpy(&w, ids + i * sizeof(w), sizeof(w));
          total += model_->BaseScore(&a, w, &b);
          a = b;
        }
        if (eos) {
          total += model_->BaseScore(&a, model_->BaseVocabulary().EndSentence(), &b);
          a = b;
        }
        return total;
      }
      int Intern(const lm::ngram::State &s) {
        auto it = ids_.find(s);
        if (it != ids_.end()) return it->second;
        int i = (int)states_.size();
        states_.push_back(s);
        ids_.emplace(s, i);
        return i;
      }
      lm::base::Model *model_;
      std::vector<lm::ngram::State> states_;
      std::unordered_map<lm::ngram::State, int, StateHash> ids_;
    };

    }  // namespace rescorer_lm
    """
    cdef cppclass States "rescorer_lm::States":
        States(const char *path) except +
        size_t StateSize()
        @staticmethod
        size_t CompiledStateSize()
        unsigned Order()
        unsigned Index(const char *word, size_t length)
        int Begin()
        size_t Count()
        double Extend(int sid, const char *ids, int n, cbool eos, int *after)
        double Alone(const char *ids, int n)


cdef class KenLM:
    """A KenLM model (ARPA or binary) for the decoder: phrases as packed vocabulary ids
    (``word_ids``), the sentence's states by number (``begin``, ``extend``), ln-probabilities
    (log10 from KenLM times ln 10, multiplied after the sums as the kenlm module's callers do)."""
    cdef States *core
    cdef readonly str path

    def __cinit__(self, str path):
        try:
            self.core = new States(path.encode())
        except RuntimeError as e:  # as the kenlm module says it
            raise OSError(f"Cannot read model '{path}' ({e})") from None
        if self.core.StateSize() != States.CompiledStateSize():
            size = self.core.StateSize()
            del self.core
            self.core = NULL
            raise RuntimeError(f"libkenlm.so's states are {size} bytes, this module's "
                              f"{States.CompiledStateSize()}: it was built with another KENLM_MAX_ORDER; "
                              "rebuild with `make setup`")
        self.path = path

    def __dealloc__(self):
        if self.core != NULL:
            del self.core

    @property
    def order(self) -> int:
        return self.core.Order()

    @property
    def states(self) -> int:
        """How many states the sentence has reached so far."""
        return self.core.Count()

    cdef void _index(self, tuple words, vector[unsigned] &ids):
        """The words' vocabulary ids into ``ids``; unknown words get <unk>'s."""
        cdef bytes b
        ids.clear()
        for word in words:
            b = (<str>word).encode("utf-8")
            ids.push_back(self.core.Index(b, len(b)))

    def word_ids(self, tuple words) -> bytes:
        """The words' vocabulary ids, packed (4 bytes each); unknown words get <unk>'s."""
        cdef vector[unsigned] ids
        self._index(words, ids)
        return (<char *>ids.data())[:4 * ids.size()] if ids.size() else b""

    def begin(self) -> int:
        """A new sentence: its states forgotten, the state after <s> numbered 0."""
        return self.core.Begin()

    def extend(self, int sid, bytes ids, cbool eos) -> tuple:
        """(ln p of the words ``ids`` after state number ``sid``, and </s> when ``eos``; the
        number of the state after them)."""
        cdef int after = 0
        if sid < 0 or <size_t>sid >= self.core.Count():
            raise IndexError(f"LM state number {sid}: the sentence has {self.core.Count()} states")
        cdef double total = self.core.Extend(sid, ids, len(ids) // 4, eos, &after)
        return (total * LN10, after)

    def alone(self, bytes ids) -> float:
        """ln p of the words from the null context (no <s>): the future-cost estimate."""
        return self.core.Alone(ids, len(ids) // 4) * LN10

    def alone_all(self, list phrases) -> list:
        """``alone`` of each phrase (a tuple of words): a list of floats."""
        cdef vector[unsigned] ids
        cdef list out = []
        for words in phrases:
            self._index(words, ids)
            out.append(self.core.Alone(<const char *>ids.data(), <int>ids.size()) * LN10)
        return out
