"""Decoding a file with the built-in decoder (one process per core) or with a real Moses.

Both give, per sentence, the n-best list as (words, feature vector in the model's layout),
which is all MERT needs; both write Moses's n-best format.
"""
from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from rescorer.fileio import atomic_write

from .decoder import COMPILED, DecoderConfig, PhraseModel, no_cyclic_gc
from .nbest import group_by_sentence, read_nbest

log = logging.getLogger(__name__)

_MODEL: PhraseModel | None = None


def _init_worker() -> None:
    """One thread per worker process: the processes already use every core (the CSLM's torch).
    The cyclic garbage collector off for the worker's life (one ``translate``): decoding makes
    no reference cycles, and each sentence's young objects would otherwise be scanned once more
    when ``PhraseModel.decode`` turned it back on."""
    gc.disable()
    if _MODEL is not None and _MODEL.cslm is not None:
        import torch  # only with a CSLM: the decoder runs without torch
        torch.set_num_threads(1)


def _decode_one(args):
    i, sentence, nbest, distinct = args
    assert _MODEL is not None
    return i, _MODEL.decode(sentence, nbest=nbest, distinct=distinct)


class BuiltinDecoder:
    """The built-in decoder over a file, sentences spread over ``processes`` forked workers."""

    def __init__(self, ini: str, sentences: list[str], config: DecoderConfig | None = None,
                 processes: int | None = None, progress: bool = True):
        self.sentences, self.progress = sentences, progress
        if not COMPILED:
            log.warning("the decoder's search core (moses_integration/search.py) is not compiled: it runs as "
                        "plain Python, several times slower; `make setup` compiles it")
        self.model = PhraseModel(ini, sentences, config, progress=progress)
        self.processes = processes or os.cpu_count() or 1

    @property
    def layout(self):
        return self.model.layout

    def translate(self, weights: np.ndarray | None = None, nbest: int = 1, progress: bool | None = None,
                  distinct: bool = False):
        """Each sentence's n-best translations, in input order (a progress bar unless ``progress``
        or the decoder's own setting says no)."""
        progress = self.progress if progress is None else progress
        global _MODEL
        if weights is not None:
            self.model.set_weights(weights)
        _MODEL = self.model
        # what is alive now (the model and its tables) is left out of every later collection of the
        # cyclic garbage collector, here and in the forked workers: the collections between
        # sentences then look at the last sentence's objects only
        gc.freeze()
        jobs = [(i, s, nbest, distinct) for i, s in enumerate(self.sentences)]
        out = [None] * len(jobs)
        bar = tqdm(total=len(jobs), desc="decoding", unit=" sent", disable=not progress, mininterval=1.0)
        if self.processes <= 1 or len(jobs) < 2:
            with no_cyclic_gc():  # as in the workers
                for j in jobs:
                    i, r = _decode_one(j)
                    out[i] = r
                    bar.update(1)
        else:
            with mp.get_context("fork").Pool(self.processes, initializer=_init_worker) as pool:
                for i, r in pool.imap_unordered(_decode_one, jobs, chunksize=1):
                    out[i] = r
                    bar.update(1)
        bar.close()
        return out

    def nbest_lists(self, weights: np.ndarray, n: int) -> list[list[tuple[list[str], np.ndarray]]]:
        """Distinct n-best lists, as mert-moses.pl asks Moses for them."""
        return [[(t.words, t.features) for t in ts] for ts in self.translate(weights, n, distinct=True)]

    def write(self, results, output: str, nbest_file: str | None = None, segmentation: bool = False) -> None:
        with atomic_write(output, "w") as f:
            for ts in results:
                f.write(" ".join(ts[0].words) + "\n")
        if nbest_file:
            with atomic_write(nbest_file, "w") as f:
                for i, ts in enumerate(results):
                    for t in ts:
                        f.write(self.model.nbest_line(i, t, segmentation))


def find_moses(moses_bin: str | None = None) -> str | None:
    """The moses binary: --moses-bin (a file or a directory), $MOSES, or on PATH."""
    cand = moses_bin or os.environ.get("MOSES")
    if cand:
        if os.path.isdir(cand):
            for sub in ("bin/moses", "moses"):
                if os.access(os.path.join(cand, sub), os.X_OK):
                    return os.path.join(cand, sub)
            return None
        return cand if os.access(cand, os.X_OK) else None
    return shutil.which("moses")


class MosesDecoder:
    """A real Moses: ``moses -f INI -n-best-list FILE N distinct -weight-overwrite ...``."""

    def __init__(self, moses: str, ini: str, sentences: list[str], layout, threads: int | None = None):
        self.moses, self.ini, self.sentences, self.layout = moses, ini, sentences, layout
        self.threads = threads or os.cpu_count() or 1

    def _weights_arg(self, weights: np.ndarray) -> str:
        parts, a = [], 0
        for name, n, _ in self.layout.groups:
            parts.append(f"{name}= " + " ".join(f"{v:.6g}" for v in weights[a:a + n]))
            a += n
        return " ".join(parts)

    def nbest_lists(self, weights: np.ndarray, n: int) -> list[list[tuple[list[str], np.ndarray]]]:
        """Moses's distinct n-best lists, with its log (``-v 0``, standard error) kept out of the
        caller's: it is shown only when Moses fails."""
        with tempfile.TemporaryDirectory() as tmp:
            nb, err = os.path.join(tmp, "nbest"), os.path.join(tmp, "moses.log")
            cmd = [self.moses, "-f", self.ini, "-v", "0", "-n-best-list", nb, str(n), "distinct",
                   "-threads", str(self.threads), "-weight-overwrite", self._weights_arg(weights)]
            with open(err, "w") as f:
                r = subprocess.run(cmd, input="\n".join(self.sentences) + "\n", text=True,
                                   stdout=subprocess.DEVNULL, stderr=f)
            if r.returncode != 0:
                with open(err, errors="replace") as f:
                    tail = f.read()[-3000:]
                raise RuntimeError(f"{self.moses} -f {self.ini} failed (exit status {r.returncode}); "
                                   f"the end of its log:\n{tail}")
            sl = self.layout.slices()
            out = []
            for group in group_by_sentence(read_nbest(nb)):
                cands = []
                for h in group:
                    f = np.zeros(self.layout.size)
                    for name, vals in h.feature_dict().items():
                        if name in sl:
                            f[sl[name]] = vals
                    cands.append((h.text.split(), f))
                out.append(cands)
            return out

    def run_mert(self, refs: str, workdir: str, mert_script: str | None = None) -> None:
        """Moses's own ``mert-moses.pl`` (found beside the moses binary's scripts)."""
        script = mert_script or os.path.join(os.path.dirname(os.path.dirname(self.moses)),
                                             "scripts", "training", "mert-moses.pl")
        if not os.path.exists(script):
            raise FileNotFoundError(f"{script}: mert-moses.pl not found (give --mert-script)")
        with tempfile.NamedTemporaryFile("w", suffix=".in", delete=False) as f:
            f.write("\n".join(self.sentences) + "\n")
        subprocess.run([script, f.name, refs, self.moses, self.ini, "--working-dir", workdir,
                        "--decoder-flags", f"-threads {self.threads}"], check=True)


class RescoredDecoder:
    """A decoder whose n-best lists get one more feature, computed on whole hypotheses (a
    sentence-level model such as the CSLM used for n-best rescoring), appended last to every
    feature vector; each list is then re-ranked by all the weights, so its first candidate is
    the rescored 1-best.  Each distinct hypothesis is scored once (cached across calls, as MERT
    decodes again and again).

    The search does not see the new feature.  Without ``standin`` it decodes with the other
    weights alone.  With ``standin`` (the name of a search feature measuring the same thing,
    the n-gram LM for the CSLM: both are ln p of the same target words), it decodes with the
    new feature's weight added to that feature's, so the hypotheses it keeps are those the
    rescoring is likely to prefer.  Without a stand-in MERT can offset the new feature's
    length effect (a sum of log-probabilities lowers long hypotheses) with a more negative
    word penalty that the search then applies without the new feature, and MERT's next n-best
    lists are long and poor."""

    def __init__(self, decoder, name: str, score: Callable[[list[list[str]]], Sequence[float]],
                 standin: str | None = None):
        self.decoder, self.name, self.score = decoder, name, score
        self.cache: dict[tuple[str, ...], float] = {}
        self.standin_index = None
        if standin is not None:
            places = decoder.layout.slices()
            if standin not in places:
                raise ValueError(f"stand-in {standin!r} for {name} is not a feature of the search "
                                 f"({', '.join(places)})")
            self.standin_index = places[standin].start

    @property
    def groups(self) -> list[tuple[str, int, bool]]:
        return list(self.decoder.layout.groups) + [(self.name, 1, True)]

    def start_weights(self, w0: np.ndarray, share: float, alone: float = 0.5) -> np.ndarray:
        """MERT's start for the search's start weights ``w0`` and the new feature: with a stand-in,
        the new feature takes ``share`` of the stand-in's weight and the stand-in keeps the rest,
        so the search starts where it would without the new feature; without one, the new
        feature starts at ``alone``."""
        w0 = np.array(w0, float)
        if self.standin_index is None:
            return np.append(w0, alone)
        if not 0 < share < 1:
            raise ValueError(f"start share {share}: expected a number between 0 and 1")
        i = self.standin_index
        w0 = np.append(w0, share * w0[i])
        w0[i] *= 1 - share
        return w0

    def search_weights(self, weights: np.ndarray) -> np.ndarray:
        """The weights the search decodes with: all but the last, the last added to the stand-in's."""
        w = np.array(weights[:-1], float)
        if self.standin_index is not None:
            w[self.standin_index] += weights[-1]
        return w

    def nbest_lists(self, weights: np.ndarray, n: int) -> list[list[tuple[list[str], np.ndarray]]]:
        weights = np.asarray(weights, float)
        lists = self.decoder.nbest_lists(self.search_weights(weights), n)
        todo = list({tuple(w) for cands in lists for w, _ in cands} - self.cache.keys())
        if todo:
            self.cache.update(zip(todo, (float(v) for v in self.score([list(t) for t in todo]))))
        out = []
        for cands in lists:
            full = [(w, np.append(f, self.cache[tuple(w)])) for w, f in cands]
            full.sort(key=lambda c: -float(c[1] @ weights))  # stable: ties keep the decoder's order
            out.append(full)
        return out
