"""Building a Moses-style baseline from raw parallel text: the steps the stages of
``experiments/build_baseline.py`` run (text preprocessing, KenLM, moses.ini); the stage runner
itself is ``moses_integration.stages``."""
from __future__ import annotations

import gzip
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import sys

from tqdm import tqdm

from rescorer.fileio import atomic_write

from .prepare import Preprocessor

log = logging.getLogger(__name__)


# -- the steps ---------------------------------------------------------------------------------
def _preprocess_chunk(args):
    lang, model, lines = args
    p = Preprocessor(lang, model)
    return [p(line) if line.strip() else "" for line in lines]


def preprocess(lines: list[str], lang: str, truecase_model: str | None, processes: int = 2,
               desc: str = "tokenising") -> list[str]:
    """Normalise, tokenise (and truecase) lines over ``processes`` workers, order kept."""
    chunk = 2000
    jobs = [(lang, truecase_model, lines[i:i + chunk]) for i in range(0, len(lines), chunk)]
    out: list[str] = []
    with tqdm(total=len(lines), desc=desc, unit=" lines", mininterval=1.0, disable=None) as bar:
        if processes <= 1 or len(jobs) <= 1:
            for j in jobs:
                out.extend(_preprocess_chunk(j))
                bar.update(len(j[2]))
        else:
            with mp.get_context("fork").Pool(processes) as pool:
                for res in pool.imap(_preprocess_chunk, jobs):
                    out.extend(res)
                    bar.update(len(res))
    return out


def write_lines(path: str, lines) -> None:
    if path.endswith(".gz"):
        with atomic_write(path, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8", compresslevel=3) as f:
            for line in lines:
                f.write(line + "\n")
    else:
        with atomic_write(path, "w") as f:
            for line in lines:
                f.write(line + "\n")


def tool(name: str) -> str:
    here = os.path.join(os.path.dirname(sys.executable), name)
    path = here if os.access(here, os.X_OK) else shutil.which(name)
    if not path:
        raise FileNotFoundError(f"{name} not found: run 'make setup' (moses_integration/install_kenlm.sh)")
    return path


def build_lm(texts: list[str], order: int, arpa: str, binary: str, tmp: str, memory: str = "20%") -> None:
    """KenLM: ``lmplz -o ORDER`` (modified Kneser-Ney) over the texts, then ``build_binary``."""
    files = " ".join(f"<(gzip -dcf {t})" for t in texts)
    cmd = (f"set -o pipefail; cat {files} | {tool('lmplz')} -o {order} -S {memory} -T {tmp} "
           f"--discount_fallback > {arpa}.tmp")
    if subprocess.run(["bash", "-c", cmd], stderr=subprocess.DEVNULL).returncode != 0:
        raise RuntimeError(f"lmplz failed on {', '.join(texts)}")
    os.replace(arpa + ".tmp", arpa)
    if subprocess.run([tool("build_binary"), arpa, binary + ".tmp"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        raise RuntimeError(f"build_binary failed on {arpa}")
    os.replace(binary + ".tmp", binary)


def moses_ini_text(phrase_table: str, reordering_table: str, lm: str, lm_order: int, n_scores: int = 4,
                   distortion_limit: int = 6) -> str:
    """moses.ini as ``train-model.perl`` writes it, Moses's default (untuned) weights."""
    return f"""#########################
### MOSES CONFIG FILE ###
#########################

# input factors
[input-factors]
0

# mapping steps
[mapping]
0 T 0

[distortion-limit]
{distortion_limit}

# feature functions
[feature]
UnknownWordPenalty
WordPenalty
PhrasePenalty
PhraseDictionaryMemory name=TranslationModel0 num-features={n_scores} path={phrase_table} input-factor=0 output-factor=0
LexicalReordering name=LexicalReordering0 num-features=6 type=wbe-msd-bidirectional-fe-allff input-factor=0 output-factor=0 path={reordering_table}
Distortion
KENLM name=LM0 factor=0 path={lm} order={lm_order}

# dense weights for feature functions
[weight]
# The default weights are NOT optimized for translation quality. You MUST tune the weights.
UnknownWordPenalty0= 1
WordPenalty0= -1
PhrasePenalty0= 0.2
TranslationModel0= {' '.join(['0.2'] * n_scores)}
LexicalReordering0= 0.3 0.3 0.3 0.3 0.3 0.3
Distortion0= 0.3
LM0= 0.5
"""
