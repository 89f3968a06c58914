#!/usr/bin/env python3
"""Benchmark: the built-in decoder on 200 sentences of newstest2012 at Moses's default settings.

    python experiments/bench_decode.py [--sentences 200] [--lm-lines 200000] [--processes 2]

The Moses baseline phrase and reordering tables (filtered to the input), a 5-gram KenLM model
built here with lmplz from the French training text + lm/ (as the baseline README says;
``--lm-lines`` limits the training text), pop limit 1000, stack 200, table-limit 20,
distortion limit 6.  Prints sentences/s, the mean model score, and the time of loading.
With $MOSES pointing at a real Moses, prints its figures beside ours.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from moses_integration.decoder import DecoderConfig  # noqa: E402
from moses_integration.moses_ini import MosesIni  # noqa: E402
from moses_integration.phrase_tables import filter_table  # noqa: E402
from moses_integration.runner import BuiltinDecoder, find_moses  # noqa: E402


def tool(name: str) -> str:
    here = os.path.join(os.path.dirname(sys.executable), name)
    path = here if os.access(here, os.X_OK) else shutil.which(name)
    if not path:
        sys.exit(f"{name} not found: run 'make setup'")
    return path


def build_system(a: argparse.Namespace) -> tuple[str, list[str]]:
    """moses.ini over the baseline tables filtered to the first a.sentences of newstest2012 and
    an LM built here (once); the ini's path and the sentences."""
    base = os.path.join(a.data, "moses-baseline")
    os.makedirs(a.work, exist_ok=True)
    lm = os.path.join(a.work, f"lm{a.lm_lines}.binary")
    if not os.path.exists(lm):
        t = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            arpa = os.path.join(tmp, "lm.arpa")
            cmd = (f"(zcat {base}/train.clean.fr.gz | head -{a.lm_lines}; zcat {base}/lmextra.tc.fr.gz) | "
                   f"{tool('lmplz')} -o 5 -S 20% -T {tmp} --discount_fallback > {arpa} 2>/dev/null && "
                   f"{tool('build_binary')} {arpa} {lm} >/dev/null 2>&1")
            subprocess.run(cmd, shell=True, check=True)
        print(f"LM: 5-gram, {a.lm_lines} training lines + lm/, built in {time.time() - t:.0f} s")
    src = open(os.path.join(base, "newstest2012.tc.en"), encoding="utf-8").read().splitlines()[:a.sentences]
    t = time.time()
    pt, reo = os.path.join(a.work, "pt.gz"), os.path.join(a.work, "reo.gz")
    filter_table(os.path.join(base, "phrase-table.gz"), src, pt, overwrite=True)
    filter_table(os.path.join(base, "reordering-table.wbe-msd-bidirectional-fe.gz"), src, reo, overwrite=True)
    ini = MosesIni.read(os.path.join(base, "moses.ini"))
    for name, path in (("TranslationModel0", pt), ("LexicalReordering0", reo), ("LM0", lm)):
        ini.set_feature_arg(name, "path", os.path.abspath(path))
    ini_path = os.path.join(a.work, "moses.ini")
    ini.write(ini_path)
    print(f"filtering the tables to {len(src)} sentences: {time.time() - t:.1f} s")
    return ini_path, src


def arguments(doc: str, sentences: int, work: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("RESCORER_DATA", "../shared/data"))
    ap.add_argument("--sentences", type=int, default=sentences)
    ap.add_argument("--lm-lines", type=int, default=200000)
    ap.add_argument("--processes", type=int, default=os.cpu_count())
    ap.add_argument("--work", default=work)
    return ap


def main() -> None:
    a = arguments(__doc__, 200, "work/bench_decode").parse_args()
    ini_path, src = build_system(a)
    t = time.time()
    dec = BuiltinDecoder(ini_path, src, DecoderConfig(), a.processes)
    print(f"loading: {time.time() - t:.1f} s")
    t = time.time()
    res = dec.translate(nbest=1, progress=False)
    secs = time.time() - t
    words = sum(len(s.split()) for s in src)
    print(f"built-in decoder, {a.processes} processes, pop limit 1000, stack 200, table-limit 20, dl 6: "
          f"{len(src) / secs:.2f} sentences/s ({words / secs:.0f} source words/s), "
          f"mean model score {np.mean([r[0].score for r in res]):.3f}")
    t = time.time()
    res100 = dec.translate(nbest=100, progress=False, distinct=True)
    print(f"with distinct 100-best lists (as MERT asks): {len(src) / (time.time() - t):.2f} sentences/s")
    moses = find_moses()
    if moses:
        t = time.time()
        subprocess.run([moses, "-f", ini_path, "-threads", str(a.processes)], input="\n".join(src) + "\n",
                       text=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"real Moses ({moses}): {len(src) / (time.time() - t):.2f} sentences/s")
    else:
        print("no real Moses here (set MOSES to compare)")


if __name__ == "__main__":
    main()
